/**
 * Makes text that came from the network or an IdP safe for a terminal: C0/C1
 * control characters become `\xNN`; Unicode line and paragraph separators,
 * bidirectional marks, embeddings, overrides and isolates (which reorder what
 * a reader sees: "Trojan Source", CVE-2021-42574), zero-width characters, the
 * BOM and lone surrogates become `\u{XXXX}`; the length is capped at `max`
 * characters (after escaping) with "…".
 */
export function printable(text: string, max = 200): string {
  const clean = text
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .replace(UNICODE_CONTROLS, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
  return truncate(clean, max);
}

/**
 * `text` cut to at most `max` UTF-16 units with "…", never between the two
 * halves of a surrogate pair (half a pair is not valid Unicode: PostgreSQL's
 * json refuses it, a terminal shows garbage).
 */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = max > 0 && /[\uD800-\uDBFF]/.test(text[max - 1]!) ? max - 1 : max;
  return `${text.slice(0, end)}…`;
}

/** Lone surrogates (half a pair, from a cut or a hostile peer) replaced by U+FFFD: the text is valid Unicode. */
export function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/**
 * `value` as indented JSON that is safe in a terminal: JSON.stringify escapes
 * only C0 controls; DEL, C1 (an 8-bit CSI), line separators, bidi overrides
 * and zero-width characters are written as `\uXXXX` too (still valid JSON,
 * the same value when parsed).
 */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// Line/paragraph separators, bidi marks (LRM, RLM, ALM), embeddings and overrides,
// isolates, zero-width space/joiners, word joiner and invisible operators, the BOM,
// and surrogates that are not part of a pair.
const UNICODE_CONTROLS = /[\u2028\u2029\u200b-\u200f\u061c\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
