/**
 * NO_PROXY: which destinations bypass the HTTP proxy. Pure, no I/O, no DNS.
 *
 * There is no standard for NO_PROXY; this follows curl (the de-facto
 * reference, https://curl.se/libcurl/c/CURLOPT_NOPROXY.html) and adds what
 * Go's net/http/httpproxy and the Jumpgate contract add: ports and `*.domain`.
 *
 * Entries are comma-separated; whitespace around them is ignored; matching is
 * case-insensitive and ignores a trailing dot.
 *
 * | entry                         | matches                                              |
 * |-------------------------------|------------------------------------------------------|
 * | `*`                           | every destination (the proxy is never used)          |
 * | `example.com`                 | example.com and every name under it (a.example.com)  |
 * | `.example.com`, `*.example.com` | the same: example.com and every name under it      |
 * | `example.com:3023`            | the above, on port 3023 only                         |
 * | `10.1.2.3`, `10.1.2.3:22`     | that IPv4 address (on that port)                     |
 * | `::1`, `[::1]`, `[::1]:3023`  | that IPv6 address (a port needs the brackets)        |
 * | `10.0.0.0/8`, `fd00::/8`      | addresses in that range, any port                    |
 *
 * Choices, and why:
 * - A plain name matches its subdomains too, as in curl, wget and Go: that is
 *   what every shell profile in the wild was written for.
 * - A leading `.` or `*.` also matches the bare domain. curl drops the dot
 *   (so `.example.com` matches example.com); Go excludes the bare domain. We
 *   side with curl: one rule for all three spellings, and erring towards a
 *   direct connection is visible (the error names the NO_PROXY entry), while
 *   erring towards the proxy fails as a baffling 403 from the proxy.
 * - IP entries and ranges only match destinations written as IP addresses;
 *   names are never resolved (neither curl nor Go resolve them either), so
 *   `10.0.0.0/8` does not cover `jump.example.org` even if it resolves there.
 * - A malformed entry is skipped with a warning instead of failing: one bad
 *   entry in a shell profile must not break every login.
 */

import { inRange, ipBytes, ipFamily, sameBytes } from '../util/ip.js';

/** One parsed NO_PROXY entry. `entry` is the text as written, for messages. */
export type NoProxyRule =
  | { kind: 'all'; entry: string }
  | { kind: 'domain'; domain: string; port?: number; entry: string }
  | { kind: 'ip'; address: string; port?: number; entry: string }
  | { kind: 'cidr'; network: string; prefix: number; entry: string };

/** The usable rules of a NO_PROXY value and one warning per entry that was ignored. */
export interface NoProxyList {
  rules: NoProxyRule[];
  warnings: string[];
}

/**
 * Parses a NO_PROXY value. Never throws: malformed entries are left out and
 * reported in `warnings` (`source` names the variable in those messages).
 */
export function parseNoProxy(value: string | undefined, source = 'NO_PROXY'): NoProxyList {
  const rules: NoProxyRule[] = [];
  const warnings: string[] = [];
  for (const raw of (value ?? '').split(',')) {
    const entry = raw.trim();
    if (entry === '') continue; // "a,,b" and a trailing comma are common and harmless
    const parsed = parseEntry(entry);
    if (typeof parsed === 'string') {
      warnings.push(`ignoring ${source} entry ${JSON.stringify(entry)}: ${parsed}`);
    } else {
      rules.push(parsed);
    }
  }
  return { rules, warnings };
}

/** The first rule that sends host:port direct, or undefined when the proxy applies. */
export function findNoProxyMatch(rules: readonly NoProxyRule[], host: string, port: number): NoProxyRule | undefined {
  const name = normalizeHost(host);
  const ip = ipBytes(name);
  return rules.find((rule) => {
    switch (rule.kind) {
      case 'all':
        return true;
      case 'domain':
        return ip === undefined && portMatches(rule.port, port) && (name === rule.domain || name.endsWith(`.${rule.domain}`));
      case 'ip':
        return ip !== undefined && portMatches(rule.port, port) && sameBytes(ip, ipBytes(rule.address));
      case 'cidr':
        return ip !== undefined && inRange(ip, ipBytes(rule.network), rule.prefix);
    }
  });
}

/** Whether a connection to host:port bypasses the proxy. */
export function matchesNoProxy(rules: readonly NoProxyRule[], host: string, port: number): boolean {
  return findNoProxyMatch(rules, host, port) !== undefined;
}

// ---------------------------------------------------------------------------

/** A rule, or the reason the entry is unusable. */
function parseEntry(entry: string): NoProxyRule | string {
  const text = entry.toLowerCase();
  if (text === '*') return { kind: 'all', entry };
  if (text.includes('://')) return 'entries are host names, not URLs: drop the scheme';
  if (/\s/.test(text)) return 'an entry cannot contain spaces (entries are separated by commas)';

  const slash = text.indexOf('/');
  if (slash >= 0) return parseCidr(entry, text.slice(0, slash), text.slice(slash + 1));

  // [v6] or [v6]:port
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return 'missing the closing "]" of an IPv6 address';
    const address = text.slice(1, close);
    if (ipFamily(address) !== 6) return `${JSON.stringify(address)} is not an IPv6 address`;
    const rest = text.slice(close + 1);
    if (rest === '') return { kind: 'ip', address, entry };
    if (!rest.startsWith(':')) return 'expected ":PORT" after "]"';
    const port = parsePort(rest.slice(1));
    return typeof port === 'string' ? port : { kind: 'ip', address, port, entry };
  }

  // A bare IPv6 literal: every colon belongs to the address, so no port.
  if (ipFamily(text) === 6) return { kind: 'ip', address: text, entry };

  let hostPart = text;
  let port: number | undefined;
  const colon = text.lastIndexOf(':');
  if (colon >= 0) {
    hostPart = text.slice(0, colon);
    if (hostPart.includes(':')) return 'an IPv6 address with a port must be written in brackets, like [::1]:3023';
    const parsed = parsePort(text.slice(colon + 1));
    if (typeof parsed === 'string') return parsed;
    port = parsed;
  }
  if (hostPart.endsWith('.')) hostPart = hostPart.slice(0, -1);
  if (hostPart === '*') return 'a port on "*" is not supported; "*" alone bypasses the proxy for everything';
  if (ipFamily(hostPart) === 4) return { kind: 'ip', address: hostPart, ...(port === undefined ? {} : { port }), entry };

  let domain = hostPart;
  if (domain.startsWith('*.')) domain = domain.slice(2);
  else if (domain.startsWith('.')) domain = domain.slice(1);
  if (domain === '') return 'no host name';
  if (domain.includes('*')) return 'the only wildcards are "*" alone and a leading "*."';
  const ascii = toAsciiDomain(domain);
  if (ascii === undefined) return 'not a host name, IP address or CIDR range';
  // IDNA mapping can turn a non-ASCII spelling ("10\uff0e0\uff0e0\uff0e1", a zero-width space) into an address: treat it as one.
  if (ipFamily(ascii) === 4 && ascii !== domain) return { kind: 'ip', address: ascii, ...(port === undefined ? {} : { port }), entry };
  if (/^[0-9.]+$/.test(ascii)) return 'looks like a partial IP address; write a range such as 10.0.0.0/8';
  return { kind: 'domain', domain: ascii, ...(port === undefined ? {} : { port }), entry };
}

function parseCidr(entry: string, address: string, bits: string): NoProxyRule | string {
  const family = ipFamily(address);
  if (family === undefined) return `${JSON.stringify(address)} is not an IP address, so this is not a CIDR range`;
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `the prefix length must be a number from 0 to ${max}`;
  return { kind: 'cidr', network: address, prefix: Number(bits), entry };
}

function parsePort(text: string): number | string {
  if (/^\d{1,5}$/.test(text)) {
    const port = Number(text);
    if (port >= 1 && port <= 65535) return port;
  }
  return 'the port must be a number from 1 to 65535';
}

function portMatches(rulePort: number | undefined, port: number): boolean {
  return rulePort === undefined || rulePort === port;
}

/** Lower case, no brackets around IPv6, no trailing dot, IDN as punycode. */
function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.') && ipFamily(h) === undefined) h = h.slice(0, -1);
  return toAsciiDomain(h) ?? h;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/;

/** The ASCII (punycode) form of a domain, or undefined when it is not one. */
function toAsciiDomain(domain: string): string | undefined {
  let ascii = domain;
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(domain)) {
    try {
      ascii = new URL(`http://${domain}/`, undefined).hostname;
    } catch {
      return undefined; // not a name the URL parser's IDNA accepts ("ü%", a control character, ...)
    }
  }
  if (ascii.length > 253) return undefined;
  return ascii.split('.').every((label) => label.length <= 63 && LABEL.test(label)) ? ascii : undefined;
}
