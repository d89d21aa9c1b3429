/**
 * Which host names one login may route through its proxy (ssh_config) and
 * trust its host CA for (known_hosts). The rule: a login to one cluster never
 * changes how ssh reaches a host outside that cluster's own names, and never
 * takes a name another profile already routes.
 *
 * A cluster's own names are:
 *  - `*.<cluster>` (the cluster name has at least two labels: api/names.ts);
 *  - bare node names (`node1`) that no other profile routes: first come keeps
 *    it, and the node stays reachable as `node1.<cluster>`;
 *  - node names under the cluster (`web.<cluster>`).
 * Dropped with a note: node names outside the cluster (`github.com`), IP
 * addresses, names equal to the proxy's own host. Refused: a cluster name
 * another profile already uses, or one that contains or sits inside another
 * profile's cluster name (either `*.` pattern would take the other's names).
 * The SSH proxy's host must be the host given to --proxy or a name under the
 * cluster (not the cluster name itself: `github.com` claiming to be the
 * cluster `github.com` would get the CA trusted for github.com): its address
 * becomes a known_hosts pattern for the cluster's CA.
 */
import { UserError } from '../errors.js';
import { isBareName, isClusterName, isIpLiteral, isPlainHostName, isRoutableNodeAddressHost, isThisMachine, isUnderCluster, isWithinCluster, sameHost, splitPlainHostPort } from '../api/names.js';
import { printable } from '../util/printable.js';
import type { Profile } from './profile.js';

/** What one login claims. */
export interface ScopeRequest {
  /** The profile this login writes (the --proxy host). */
  profileName: string;
  /** The host given to --proxy. */
  proxyHost: string;
  clusterName: string;
  /** host:port of the SSH proxy, from the proxy's answer. */
  sshProxyAddr: string;
  /** Node names from the proxy's answer. */
  nodeNames: string[];
}

/** A node name left out of ssh_config and known_hosts, and why (for one line to the user). */
export interface DroppedName {
  name: string;
  reason: string;
}

export interface ClusterScope {
  /** The node names this profile routes and trusts its host CA for, in the proxy's order, without duplicates. */
  nodeNames: string[];
  dropped: DroppedName[];
}

/**
 * Decides the names a login may claim against every other profile on disk.
 * Pure: `others` are the stored profiles (the one being replaced excluded).
 * @throws UserError LOGIN_SCOPE_CONFLICT when the cluster name clashes with another profile's,
 *         LOGIN_BAD_ANSWER when the cluster name or SSH proxy address is not one tsh can scope.
 */
export function claimClusterScope(req: ScopeRequest, others: Profile[]): ClusterScope {
  const cluster = req.clusterName;
  if (!isClusterName(cluster)) {
    throw new UserError('LOGIN_BAD_ANSWER', `the proxy's cluster name "${printable(cluster, 80)}" is not one tsh can scope ssh by`, {
      hint: 'a cluster name must be a DNS name of at least two labels, like example.com; ask the admin to fix cluster_name',
    });
  }
  const ssh = splitPlainHostPort(req.sshProxyAddr);
  if (!ssh || !(sameHost(ssh.host, req.proxyHost) || isUnderCluster(ssh.host, cluster))) {
    throw new UserError('LOGIN_BAD_ANSWER', `the proxy says its SSH service is at "${printable(req.sshProxyAddr, 80)}", which is neither ${printable(req.proxyHost)} nor a name under ${cluster}`, {
      hint: 'nothing was saved: tsh would have trusted the cluster\'s host CA for that address; ask the admin to fix proxy.ssh_public_addr, or check --proxy',
    });
  }
  const other = others.filter((p) => p.name !== req.profileName);
  for (const p of other) {
    const clash = sameHost(p.clusterName, cluster) ? 'is the same as' : isWithinCluster(cluster, p.clusterName) ? 'is inside' : isWithinCluster(p.clusterName, cluster) ? 'contains' : undefined;
    if (clash) {
      throw new UserError('LOGIN_SCOPE_CONFLICT', `the cluster name ${cluster} ${clash} the cluster ${printable(p.clusterName)} of the profile ${printable(p.name)}: both would route the same host names`, {
        hint: `nothing was saved; if this is meant to replace that login, run \`tsh logout --proxy=${printable(p.name)}\` first`,
      });
    }
  }
  // Another profile's proxy (its profile name, web and SSH hosts) is that profile's: no
  // later login may route it, trust its CA for it, or pick a cluster name whose `*.` covers it.
  const proxies = otherProxyHosts(other);
  for (const [host, owner] of proxies) {
    if (isWithinCluster(host, cluster) && !sameHost(host, req.proxyHost)) {
      throw new UserError('LOGIN_SCOPE_CONFLICT', `the cluster name ${cluster} would route ${printable(host)}, the proxy of the profile ${printable(owner)}`, {
        hint: `nothing was saved; if this is meant to replace that login, run \`tsh logout --proxy=${printable(owner)}\` first`,
      });
    }
  }
  const owner = new Map<string, string>();
  for (const p of other) for (const n of p.nodeNames) if (isBareName(n) && !owner.has(n.toLowerCase())) owner.set(n.toLowerCase(), p.name);
  const nodeNames: string[] = [];
  const dropped: DroppedName[] = [];
  const seen = new Set<string>();
  for (const name of req.nodeNames) {
    const key = name.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    const why = proxies.has(key) ? `it is the proxy of the profile ${proxies.get(key)}` : dropReason(name, cluster, req.proxyHost, ssh.host, owner.get(key));
    if (why) dropped.push({ name, reason: why });
    else nodeNames.push(name);
  }
  return { nodeNames, dropped };
}

function dropReason(name: string, cluster: string, proxyHost: string, sshHost: string, owner: string | undefined): string | undefined {
  if (!isPlainHostName(name)) return 'not a plain host name';
  if (sameHost(name, proxyHost) || sameHost(name, sshHost)) return "it is the proxy's own host";
  if (isThisMachine(name)) return "it is a name of this machine (ssh to it must stay local)";
  if (isIpLiteral(name)) return 'an IP address is not a name of the cluster';
  if (sameHost(name, cluster)) return 'it is the cluster name itself';
  if (!isBareName(name) && !isWithinCluster(name, cluster)) return `it is outside ${cluster}`;
  if (owner) return `the profile ${owner} already routes it; reach this one as ${name}.${cluster}`;
  return undefined;
}

/**
 * The node addresses (host:port) a login may route and trust its host CA for
 * (the address forms `tsh ls` shows): the host must be one of the cluster's
 * own names or a private IP address (api/names.ts isRoutableNodeAddressHost),
 * not a node name this login dropped, and not an address another profile
 * already routes (first come keeps it, as for bare node names).
 */
export function scopeNodeAddrs(addrs: string[], clusterName: string, scope: ClusterScope, others: Profile[]): string[] {
  const hostOf = (a: string) => splitPlainHostPort(a)?.host.toLowerCase();
  const taken = new Set<string>(otherProxyHosts(others).keys());
  for (const p of others) for (const a of p.nodeAddrs ?? []) taken.add(hostOf(a) ?? '');
  const dropped = new Set(scope.dropped.map((d) => d.name.toLowerCase()));
  return addrs.filter((a) => {
    const host = hostOf(a);
    if (host === undefined || !isRoutableNodeAddressHost(host, clusterName) || dropped.has(host) || taken.has(host)) return false;
    // A bare name is routed only as one of this login's node names.
    return !isBareName(host) || scope.nodeNames.some((n) => n.toLowerCase() === host);
  });
}

/** Lower-case proxy hosts of other profiles (profile name, web and SSH hosts) → the profile. */
function otherProxyHosts(others: Profile[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of others) {
    for (const h of [p.name, splitPlainHostPort(p.webProxyAddr)?.host, splitPlainHostPort(p.sshProxyAddr)?.host]) {
      if (h !== undefined && !out.has(h.toLowerCase())) out.set(h.toLowerCase(), p.name);
    }
  }
  return out;
}

/** One line per dropped name, escaped, for the user (stderr). */
export function droppedNotes(clusterName: string, dropped: DroppedName[], max = 10): string[] {
  const lines = dropped.slice(0, max).map((d) => `note: node "${printable(d.name, 80)}" of ${clusterName} is not added to ~/.ssh/config: ${printable(d.reason, 200)}`);
  if (dropped.length > max) lines.push(`note: ${dropped.length - max} more node names were left out the same way`);
  return lines;
}
