/**
 * tsh's own known_hosts (TSH_HOME/known_hosts): one `@cert-authority` line
 * per trusted host CA key of each cluster (sshd(8) "SSH_KNOWN_HOSTS FILE
 * FORMAT"). The generated ssh_config block points `UserKnownHostsFile` here,
 * and tsh's own SSH connections read the same lines, so ssh and tsh trust
 * exactly the same keys. The user's ~/.ssh/known_hosts is never touched.
 *
 * Each line ends with the comment `jumpgate-cluster=<name>`: a login replaces
 * the lines of its cluster and keeps every other line as it was.
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { ensurePrivateDir } from '../util/private-dir.js';
import { parseHostPort } from '../shared/address.js';
import { formatPublicKeyLine, parsePublicKeyLine, type PublicKey } from '../sshcert/index.js';
import { isBareName, isClusterName, isClusterPattern, isDnsName, isPlainHostName, isPrivateIpLiteral, isRoutableNodeAddressHost, isThisMachine, isUnderCluster, sameHost } from '../api/names.js';
import { printable } from '../util/printable.js';

const TAG = 'jumpgate-cluster=';

/** What the patterns of a cluster's line cover. */
export interface KnownHostsScope {
  clusterName: string;
  /** Node names from the inventory (profile.nodeNames). */
  nodeNames: string[];
  /** host:port of the proxy's SSH service (profile.sshProxyAddr), for `ssh -J`. */
  sshProxyAddr: string;
  /** host:port of the nodes (profile.nodeAddrs): `ssh -J proxy user@<address>` checks these. */
  nodeAddrs?: string[];
}

/**
 * The host patterns the cluster's host CA is trusted for: the node names,
 * `*.<cluster>`, the nodes' addresses (host, and `[host]:port` for a port
 * other than 22: what ssh looks up with `-p`), and the proxy's SSH address,
 * lower-case. ssh looks a host up as
 * `[host]:port` when the port is not 22, so that is how the proxy is written.
 * Scoped rather than `*`, so one cluster's CA can never vouch for another
 * cluster's nodes or for unrelated hosts.
 */
export function knownHostsPatterns(scope: KnownHostsScope): string[] {
  const out: string[] = [];
  // Lower-case: ssh looks up the host name it lower-cased (the patterns are
  // lower-cased by OpenSSH too, but tsh's own check and readers compare as written).
  const add = (raw: string) => {
    const p = raw.toLowerCase();
    if (p !== '' && !/[\s,]/.test(p) && !out.includes(p)) out.push(p);
  };
  for (const n of scope.nodeNames) if (!isThisMachine(n)) add(n);
  add(`*.${scope.clusterName}`);
  for (const a of scope.nodeAddrs ?? []) {
    const hp = splitHostPort(a);
    // Only an address host that is one of the cluster's own names or a private IP
    // address: a proxy must not get its CA trusted for hosts on the Internet.
    if (!hp || !isRoutableNodeAddressHost(hp.host, scope.clusterName)) continue;
    if (isBareName(hp.host) && !scope.nodeNames.some((n) => sameHost(n, hp.host))) continue;
    add(hp.host);
    if (hp.port !== 22) add(`[${hp.host}]:${hp.port}`);
  }
  const proxy = splitHostPort(scope.sshProxyAddr);
  if (proxy) add(proxy.port === 22 ? proxy.host : `[${proxy.host}]:${proxy.port}`);
  return out;
}

function splitHostPort(addr: string): { host: string; port: number } | undefined {
  try {
    return parseHostPort(addr);
  } catch {
    return undefined;
  }
}

/**
 * `@cert-authority <patterns> <key> jumpgate-cluster=<name>`, one line per CA
 * key. The guard is here, where the line is written: the cluster name must be
 * a cluster name (api/names.ts), and every pattern must stay within the
 * cluster's own names (isClusterPattern: node names, names under the cluster,
 * `*.<cluster>`) or be the proxy's own address: `proxyHost` or
 * `[proxyHost]:port`, or `[name]:port` for a name under the cluster. With
 * `nodeNames`, a bare name (`node1`) must be one of them (or the proxy host):
 * a bare name is the cluster's only when it is its node. Never `*`,
 * never a broader pattern, never an unsafe character.
 * @throws UserError KNOWN_HOSTS_UNSAFE_VALUE naming the value (escaped)
 */
export function formatHostCaLines(clusterName: string, patterns: string[], caKeys: PublicKey[], scope: HostCaScope = {}): string[] {
  if (!isClusterName(clusterName)) throw unsafeValue('cluster name', clusterName);
  if (patterns.length === 0) throw unsafeValue('pattern list', '');
  const nodes = scope.nodeNames && new Set(scope.nodeNames.map((n) => n.toLowerCase()));
  for (const p of patterns) {
    const bareOk = !nodes || !isBareName(p) || nodes.has(p.toLowerCase()) || (scope.proxyHost !== undefined && sameHost(p, scope.proxyHost));
    if (!bareOk || !isScopedPattern(p, clusterName, scope.proxyHost, nodes)) throw unsafeValue(`pattern for ${clusterName}`, p);
  }
  return caKeys.map((k) => `@cert-authority ${patterns.join(',')} ${formatPublicKeyLine(k, `${TAG}${clusterName}`)}`);
}

function isScopedPattern(p: string, clusterName: string, proxyHost: string | undefined, nodes: Set<string> | undefined): boolean {
  if (p.startsWith('!')) return false;
  // This machine's names and addresses only as the profile's own proxy (the login was made with it).
  const host = /^\[([^\]]+)\]:\d+$/.exec(p)?.[1] ?? p;
  if (isThisMachine(host) && !(proxyHost !== undefined && sameHost(host, proxyHost))) return false;
  // A bare node name on another port (a node address form): only a node of this cluster's scope.
  const isNode = (h: string) => isBareName(h) && (nodes === undefined || nodes.has(h.toLowerCase()));
  if (isClusterPattern(p, clusterName)) return true;
  const isProxy = (h: string) => proxyHost !== undefined && isPlainHostName(proxyHost) && sameHost(h, proxyHost);
  if (isPlainHostName(p)) return isProxy(p) || isPrivateIpLiteral(p);
  // known_hosts names a host on another port than 22 as [host]:port (sshd(8) SSH_KNOWN_HOSTS FILE FORMAT).
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(p);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535 || !isPlainHostName(m[1]!)) return false;
  return isProxy(m[1]!) || (isDnsName(m[1]!) && isUnderCluster(m[1]!, clusterName)) || isPrivateIpLiteral(m[1]!) || isNode(m[1]!);
}

function unsafeValue(what: string, value: string): UserError {
  return new UserError('KNOWN_HOSTS_UNSAFE_VALUE', `refusing to write the ${what} "${printable(value, 80)}" into known_hosts: it is not a plain name within the cluster`, {
    hint: 'the profile or the proxy\'s answer holds a value no proxy may set; run `tsh logout` and then `tsh login` again',
  });
}

function clusterOf(line: string): string | undefined {
  const m = /^\s*@cert-authority\s+\S+\s+\S+\s+\S+\s+(.*)$/.exec(line);
  if (!m) return undefined;
  const tag = m[1]!.split(/\s+/).find((w) => w.startsWith(TAG));
  return tag?.slice(TAG.length);
}

/**
 * The known_hosts text with the cluster's lines replaced by `lines` (in the
 * place of the first old one, or appended); every other line kept byte for byte.
 */
export function replaceClusterLines(existing: string, clusterName: string, lines: string[]): string {
  const old = existing === '' ? [] : existing.replace(/\r?\n$/, '').split(/\r?\n/);
  const out: string[] = [];
  let placed = false;
  for (const line of old) {
    if (clusterOf(line) === clusterName) {
      if (!placed) out.push(...lines);
      placed = true;
    } else {
      out.push(line);
    }
  }
  if (!placed) out.push(...lines);
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

/** What the known_hosts guard checks patterns against (formatHostCaLines). */
export interface HostCaScope {
  /** The proxy's host (the profile name): the only host outside the cluster a pattern may name. */
  proxyHost?: string;
  /** The cluster's node names: the only bare names a pattern may be. */
  nodeNames?: readonly string[];
}

export interface HostCaEntry extends HostCaScope {
  clusterName: string;
  patterns: string[];
  /** Every host CA key the cluster trusts now (during a rotation: new and old). */
  caKeys: PublicKey[];
}

/**
 * Writes a cluster's `@cert-authority` lines into tsh's known_hosts
 * atomically, replacing the cluster's older lines. Creates the directory 0700
 * and the file 0600 when absent. `write` is injectable for the disk-full test.
 */
export function writeClusterHostCAs(file: string, entry: HostCaEntry, write: typeof writeFileAtomic = writeFileAtomic): void {
  ensurePrivateDir(dirname(file));
  const existing = readIfExists(file);
  write(file, replaceClusterLines(existing, entry.clusterName, formatHostCaLines(entry.clusterName, entry.patterns, entry.caKeys, entry)), 0o600);
}

/** The host CA keys recorded for a cluster (empty when none). */
export function readClusterHostCAs(file: string, clusterName: string): PublicKey[] {
  const keys: PublicKey[] = [];
  for (const line of readIfExists(file).split(/\r?\n/)) {
    if (clusterOf(line) !== clusterName) continue;
    const m = /^\s*@cert-authority\s+\S+\s+(.*)$/.exec(line);
    try {
      keys.push(parsePublicKeyLine(m![1]!).key);
    } catch {
      // a damaged line trusts nothing; the other lines still count
    }
  }
  return keys;
}

function readIfExists(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new UserError('KNOWN_HOSTS_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}
