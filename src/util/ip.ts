/**
 * IP address literals as bytes: enough to compare addresses and ranges
 * without DNS (NO_PROXY rules, a certificate's source-address list). Strict:
 * IPv4 is four decimal parts without leading zeros (no "127.1", no "010");
 * IPv6 is RFC 4291 text form, an embedded IPv4 only at the end, no zone.
 */

/** 4 or 6 for an IP literal, undefined for anything else. */
export function ipFamily(text: string): 4 | 6 | undefined {
  const bytes = ipBytes(text);
  return bytes === undefined ? undefined : bytes.length === 4 ? 4 : 6;
}

/** The address as 4 (IPv4) or 16 (IPv6) bytes, or undefined when the text is not an IP literal. */
export function ipBytes(text: string): number[] | undefined {
  return parseIPv4(text) ?? parseIPv6(text);
}

/** Dotted-quad IPv4 as 4 bytes, or undefined. */
export function parseIPv4(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const bytes: number[] = [];
  for (const p of parts) {
    // Decimal only, no leading zeros: "010" means 8 to some resolvers and 10 to others.
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return undefined;
    bytes.push(Number(p));
  }
  return bytes;
}

/** RFC 4291 IPv6 text (lower-case hex) as 16 bytes, or undefined. */
export function parseIPv6(text: string): number[] | undefined {
  if (!text.includes(':') || text.includes('%')) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (half: string): number[] | undefined => {
    if (half === '') return [];
    const out: number[] = [];
    const parts = half.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-f]{1,4}$/.test(p)) {
        out.push(parseInt(p, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  // An embedded IPv4 is only allowed at the very end.
  if (halves.length === 2 && halves[0]!.includes('.')) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const words = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

/** Whether two byte forms are the same address (an IPv4 never equals an IPv6). */
export function sameBytes(a: number[], b: number[] | undefined): boolean {
  return b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Whether `ip` lies in `network`/`prefix` (same family only; prefix in bits). */
export function inRange(ip: number[], network: number[] | undefined, prefix: number): boolean {
  if (network === undefined || ip.length !== network.length) return false;
  for (let bit = 0; bit < prefix; bit++) {
    const mask = 0x80 >> bit % 8;
    if ((ip[bit >> 3]! & mask) !== (network[bit >> 3]! & mask)) return false;
  }
  return true;
}

/** An address range from a list such as `proxy.proxy_protocol_from`: `10.0.0.0/8`, `2001:db8::/32`, or one address (a /32 or /128). */
export interface AddressRange {
  /** As written, for messages. */
  entry: string;
  network: number[];
  /** Prefix length in bits. */
  prefix: number;
}

/**
 * Parses `ADDRESS` or `ADDRESS/BITS` (IPv4 dotted quad or RFC 4291 IPv6, no
 * zone, no host names) into an AddressRange, or returns the reason it is not
 * one. Host bits set below the prefix (`10.1.2.3/8`) are refused: they usually
 * mean a typo in the prefix length.
 */
export function parseAddressRange(entry: string): AddressRange | string {
  const slash = entry.indexOf('/');
  const address = (slash < 0 ? entry : entry.slice(0, slash)).toLowerCase();
  const network = ipBytes(address);
  if (network === undefined) return `${JSON.stringify(address)} is not an IP address (host names are not allowed here: write the balancer's address, e.g. 10.0.0.5 or 10.0.0.0/24)`;
  const max = network.length * 8;
  if (slash < 0) return { entry, network, prefix: max };
  const bits = entry.slice(slash + 1);
  if (!/^(0|[1-9]\d{0,2})$/.test(bits) || Number(bits) > max) return `the prefix length after "/" must be a number from 0 to ${max}`;
  const prefix = Number(bits);
  for (let bit = prefix; bit < max; bit++) {
    if (network[bit >> 3]! & (0x80 >> bit % 8)) return `${JSON.stringify(entry)} has host bits set below /${prefix}; write the network address (e.g. ${JSON.stringify(maskedText(network, prefix) + '/' + prefix)})`;
  }
  return { entry, network, prefix };
}

/**
 * Whether a socket's peer address (as node reports it: `10.1.2.3`,
 * `::ffff:10.1.2.3` on a dual-stack listener, `fe80::1%eth0`) lies in any of
 * `ranges`. An IPv4-mapped IPv6 address is matched as its IPv4 address.
 */
export function addressInRanges(addr: string | undefined, ranges: readonly AddressRange[]): boolean {
  if (addr === undefined || ranges.length === 0) return false;
  let ip = ipBytes(addr.split('%')[0]!.toLowerCase());
  if (ip && ip.length === 16 && ip.slice(0, 10).every((b) => b === 0) && ip[10] === 0xff && ip[11] === 0xff) ip = ip.slice(12);
  return ip !== undefined && ranges.some((r) => inRange(ip, r.network, r.prefix));
}

/** The text form of 4 or 16 address bytes (IPv6 compressed per RFC 5952, as node prints peer addresses). */
export function ipText(bytes: ArrayLike<number>): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // The WHATWG URL serializer compresses the longest run of zero groups (RFC 5952).
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

function maskedText(network: number[], prefix: number): string {
  return ipText(network.map((b, i) => (i * 8 >= prefix ? 0 : i * 8 + 8 <= prefix ? b : b & (0xff << (8 - (prefix - i * 8))))));
}
