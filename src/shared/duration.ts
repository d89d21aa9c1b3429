/**
 * Durations as admins and users type them, in the style of Go's
 * `time.ParseDuration` that Teleport's `--ttl` and config files use:
 * `24h`, `90m`, `1h30m`, `45s`, plus `d` for days.
 *
 * Deliberately stricter than Go: whole numbers only, every number needs a unit,
 * units go from largest to smallest and appear once (`1h30m`, not `30m1h` or
 * `1h1h`), and the total must be above zero. A TTL is the one place where a
 * typo silently becomes "forever" or "expired at once", so anything unusual is
 * refused with an example of what works.
 *
 * `d` is always exactly 24h (86400 s): certificate lifetimes are counted in
 * seconds, so daylight-saving days do not exist here.
 */

/** Seconds per unit, largest first: the order units must appear in. */
const UNITS = [
  ['d', 86_400],
  ['h', 3_600],
  ['m', 60],
  ['s', 1],
] as const;

const EXAMPLES = 'use a number with a unit, e.g. 24h, 90m or 1h30m';

/**
 * A duration that does not parse. The message does not repeat `what`: callers
 * name the subject themselves (`--ttl: ...`, `file:line: auth.cert_ttl: ...`),
 * and a prefix here would print it twice.
 */
export class DurationError extends Error {
  constructor(
    /** What was being parsed: a flag (`--ttl`) or a config key. */
    readonly what: string,
    readonly text: string,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'DurationError';
  }
}

/**
 * Parses `24h`, `90m`, `1h30m`, `45s` or `7d` (d = 24h) into whole seconds.
 * `what` names the thing being parsed for the error message (`--ttl`, `auth.cert_ttl`).
 * @throws DurationError with a message that shows valid examples.
 */
export function parseDuration(text: string, what: string): number {
  const shown = JSON.stringify(text);
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) {
    // A bare number is the most likely mistake (seconds? hours?): say which unit to add.
    throw new DurationError(what, text, `${shown} has no unit; write ${trimmed}s for seconds, or ${EXAMPLES}`);
  }
  const part = /(\d+)([a-z]+)/gy;
  let seconds = 0;
  let lastUnitIndex = -1;
  let consumed = 0;
  let match: RegExpExecArray | null;
  while ((match = part.exec(trimmed)) !== null) {
    const [, digits = '', unit = ''] = match;
    const unitIndex = UNITS.findIndex(([name]) => name === unit);
    if (unitIndex < 0) {
      throw new DurationError(what, text, `${shown} is not a duration; ${EXAMPLES} (units: d, h, m, s)`);
    }
    if (unitIndex <= lastUnitIndex) {
      throw new DurationError(what, text, `${shown} is not a duration: write units once each, largest first (d, h, m, s), e.g. 1h30m`);
    }
    lastUnitIndex = unitIndex;
    seconds += Number(digits) * UNITS[unitIndex]![1];
    consumed = part.lastIndex;
  }
  if (trimmed === '' || consumed !== trimmed.length) {
    throw new DurationError(what, text, `${shown} is not a duration; ${EXAMPLES}`);
  }
  if (!Number.isSafeInteger(seconds)) {
    throw new DurationError(what, text, `${shown} is too long a duration`);
  }
  if (seconds === 0) {
    throw new DurationError(what, text, `${shown} must be longer than zero; ${EXAMPLES}`);
  }
  return seconds;
}

/**
 * Formats seconds the way `parseDuration` reads them back, without days so the
 * common TTLs read as admins write them: 86400 → `24h`, 5400 → `1h30m`, 45 → `45s`.
 * Fractions are rounded to whole seconds; negative values get a leading `-`.
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) throw new RangeError(`cannot format ${seconds} as a duration`);
  let rest = Math.round(Math.abs(seconds));
  const sign = seconds < 0 && rest > 0 ? '-' : '';
  if (rest === 0) return '0s';
  let out = '';
  for (const [unit, size] of UNITS) {
    if (unit === 'd') continue;
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count > 0) out += `${count}${unit}`;
  }
  return sign + out;
}
