/**
 * The character rules for every name a proxy sends a client and every token
 * tsh writes into ~/.ssh/config or known_hosts. One module, used by the API
 * schemas (api/schema.ts), by the client's scope checks and by the renderers'
 * own guards (client/ssh-config.ts, client/known-hosts.ts), so the check at
 * the boundary and the check where a value is written cannot drift apart.
 *
 * Everything here is an allow-list: a value is plain when every character is
 * one of a few known-safe ones, never when it merely lacks the known-bad ones.
 * Pure: no I/O.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** Longest DNS name (RFC 1035 §2.3.4, without the trailing dot). */
export const MAX_HOST_NAME_LENGTH = 253;
/** Longest user name, login or role name tsh accepts (also a file name under TSH_HOME). */
export const MAX_TOKEN_LENGTH = 128;

// RFC 952/1123 labels: letters, digits, inner hyphens, 1-63 characters.
const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * A DNS host name as ssh and ssh_config see it: dot-separated labels of
 * letters, digits and inner hyphens (so never a leading `-`), at most 253
 * characters, no trailing dot, not all digits and dots (that is an IPv4 typo).
 * No wildcard, space, quote, `!`, `,`, `%` or control character can pass.
 */
export function isDnsName(text: string): boolean {
  if (text.length === 0 || text.length > MAX_HOST_NAME_LENGTH) return false;
  if (/^[\d.]+$/.test(text)) return false;
  return text.split('.').every((l) => LABEL.test(l));
}

/** An IPv4 or IPv6 literal (IPv6 without brackets or zone). */
export function isIpLiteral(text: string): boolean {
  return isIPv4(text) || (isIPv6(text) && !text.includes('%'));
}

// Addresses a node of a cluster may have and a host on the Internet may not:
// RFC 1918, shared address space (RFC 6598), link-local, IPv6 unique local
// (RFC 4193) and link-local. Loopback is this machine (isThisMachine), never a node's.
const PRIVATE = new BlockList();
for (const [net, bits] of [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['100.64.0.0', 10], ['169.254.0.0', 16]] as const) PRIVATE.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['fc00::', 7], ['fe80::', 10]] as const) PRIVATE.addSubnet(net, bits, 'ipv6');

// This machine: all of loopback and the unspecified address, in IPv4, IPv6 and
// IPv4-mapped IPv6 spellings (BlockList parses every spelling of an IPv6 literal).
const LOCAL = new BlockList();
LOCAL.addSubnet('127.0.0.0', 8, 'ipv4');
LOCAL.addAddress('0.0.0.0', 'ipv4');
LOCAL.addAddress('::1', 'ipv6');
LOCAL.addAddress('::', 'ipv6');
LOCAL.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');
LOCAL.addAddress('::ffff:0.0.0.0', 'ipv6');
const LOCAL_NAMES = new Set(['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback']);

/**
 * A name or address of the machine tsh runs on: `localhost` (and any name
 * under `.localhost`, RFC 6761 §6.3), `localhost.localdomain`,
 * `ip6-localhost`/`ip6-loopback`, 127.0.0.0/8, 0.0.0.0, `::1`, `::` and their
 * IPv4-mapped forms, in any case or spelling, with or without a trailing dot.
 * No login may route such a name through a proxy or trust a cluster's host CA
 * for it (a proxy's own address excepted: the profile was made with it).
 */
export function isThisMachine(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '').replace(/^\[(.*)\]$/, '$1');
  if (LOCAL_NAMES.has(h) || h.endsWith('.localhost')) return true;
  if (isIPv4(h)) return LOCAL.check(h, 'ipv4');
  if (isIPv6(h)) return LOCAL.check(h.replace(/%.*$/, ''), 'ipv6');
  return false;
}

/**
 * An IP literal in a private or link-local range: a node address
 * tsh may route through a cluster's proxy (and trust its host CA for). A
 * public address is never routed: a proxy could otherwise take over the
 * address of a host on the Internet (a Git server, another bastion).
 */
export function isPrivateIpLiteral(text: string): boolean {
  if (isIPv4(text)) return PRIVATE.check(text, 'ipv4');
  if (!isIPv6(text) || text.includes('%')) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(text)?.[1];
  return mapped ? PRIVATE.check(mapped, 'ipv4') : PRIVATE.check(text, 'ipv6');
}

/**
 * A node address host tsh may route and trust the cluster's host CA for:
 * one of the cluster's own names (isClusterPattern) or a private IP literal,
 * and never a name or address of this machine (isThisMachine).
 */
export function isRoutableNodeAddressHost(host: string, cluster: string): boolean {
  return !isThisMachine(host) && (isClusterPattern(host, cluster) || isPrivateIpLiteral(host));
}

/** A plain host name from a server: a DNS name or an IP literal. */
export function isPlainHostName(text: string): boolean {
  return isDnsName(text) || isIpLiteral(text);
}

/**
 * A cluster name tsh can scope ssh by: a DNS name of at least two labels
 * whose last label is not all digits. Refused: single labels (`com`,
 * `internal`: `*.com` would send a whole top-level domain through the
 * proxy), IP literals (`*.10.0.0.1` is meaningless and `10.0.0.1` is not a
 * scope), anything with a wildcard or an unsafe character.
 */
export function isClusterName(text: string): boolean {
  if (!isDnsName(text)) return false;
  const labels = text.split('.');
  return labels.length >= 2 && !/^\d+$/.test(labels[labels.length - 1]!);
}

/**
 * A user name, login (certificate principal) or role name: starts with a
 * letter, digit or `_`, then letters, digits and `._@-`, at most 128. The
 * same characters TSH_HOME file names allow (paths.ts safeName), never a
 * leading `-` (an option to ssh) or `.`.
 */
export function isPlainToken(text: string): boolean {
  return text.length <= MAX_TOKEN_LENGTH && /^[A-Za-z0-9_][A-Za-z0-9._@-]*$/.test(text);
}

/** `host:port` or `[v6]:port` with a plain host and a port 1-65535; undefined when it is not one. */
export function splitPlainHostPort(text: string): { host: string; port: number } | undefined {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const host = m[1]!;
  const port = Number(m[2]);
  const bracketed = text.startsWith('[');
  if (port < 1 || port > 65535) return undefined;
  if (bracketed ? !isIPv6(host) : !(isDnsName(host) || isIPv4(host))) return undefined;
  return { host, port };
}

/** True for `host:port` with a plain host (see splitPlainHostPort). */
export function isPlainHostPort(text: string): boolean {
  return splitPlainHostPort(text) !== undefined;
}

/** Case-insensitive equality of host names (DNS names are case-insensitive, RFC 4343). */
export function sameHost(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** True when `name` is `cluster` itself or a name under it (`x.cluster`), ignoring case. */
export function isWithinCluster(name: string, cluster: string): boolean {
  const n = name.toLowerCase();
  const c = cluster.toLowerCase();
  return n === c || n.endsWith(`.${c}`);
}

/** True when `name` is strictly under `cluster` (`x.cluster`, not `cluster` itself), ignoring case: what `*.<cluster>` matches. */
export function isUnderCluster(name: string, cluster: string): boolean {
  return name.toLowerCase().endsWith(`.${cluster.toLowerCase()}`);
}

/** True for a single DNS label (`node1`): a bare node name. */
export function isBareName(name: string): boolean {
  return isDnsName(name) && !name.includes('.');
}

/**
 * A Host pattern or known_hosts pattern that stays within a cluster's own
 * names: a bare node name, a name under the cluster, or `*.<cluster>`. No
 * other wildcard, no negation, no IP. The renderers check every pattern with
 * this right where they write it.
 */
export function isClusterPattern(pattern: string, cluster: string): boolean {
  if (!isClusterName(cluster)) return false;
  if (pattern.toLowerCase() === `*.${cluster.toLowerCase()}`) return true;
  if (!isDnsName(pattern)) return false;
  return isBareName(pattern) || (isWithinCluster(pattern, cluster) && !sameHost(pattern, cluster));
}
