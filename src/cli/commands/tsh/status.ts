import { AuthError } from '../../../errors.js';
import { nonDefaultTshHome, TshPaths } from '../../../client/paths.js';
import { ProfileStore, type Profile } from '../../../client/profile.js';
import type { Certificate } from '../../../sshcert/index.js';
import { certValidity, clockBehindText, notLoggedInHint, profileLoginCommand, readProfileCertificate, type CertValidity } from '../../../client/credentials.js';
import { formatDuration } from '../../../shared/duration.js';
import type { Deps } from '../../deps.js';
import { printable } from '../../../util/printable.js';
import { credentialOptions } from './client-context.js';
import { readLastRoute, type LastRoute } from '../../../client/last-route.js';

export interface StatusOptions {
  format: 'text' | 'json';
}

interface ProfileStatus {
  profile: Profile;
  cert: Certificate | undefined;
  validity: CertValidity | undefined;
  valid: boolean;
  current: boolean;
  lastRoute: LastRoute | undefined;
}

/**
 * `tsh status`: for every profile, the proxy, user, logins, roles and expiry,
 * read from the certificate itself. Exit 4 when the current profile has no
 * valid certificate. A certificate that starts in this machine's future
 * (its clock is behind) is "not valid yet" with the clock named, never
 * "EXPIRED"; within TSH_CLOCK_LEEWAY it is valid, with a note about the clock.
 */
export function run(opts: StatusOptions, deps: Deps): void {
  const paths = new TshPaths(deps);
  const store = new ProfileStore(paths);
  const how = credentialOptions(deps);
  const current = store.currentName();
  const nowDate = deps.clock();
  const now = BigInt(Math.floor(nowDate.getTime() / 1000));
  const all: ProfileStatus[] = store.list().map((profile) => {
    const cert = readProfileCertificate(paths, profile)?.cert;
    const validity = cert ? certValidity(cert, nowDate, how.leewaySeconds) : undefined;
    return { profile, cert, validity, valid: validity?.state === 'valid', current: profile.name === current, lastRoute: readLastRoute(paths, profile.name) };
  });
  if (opts.format === 'json') {
    deps.io.stdout.write(JSON.stringify({ current: current ?? null, profiles: all.map((s) => toJson(s, now)) }, null, 2) + '\n');
  } else {
    for (const s of all.sort((a, b) => Number(b.current) - Number(a.current))) deps.io.stdout.write(toText(s, now, deps) + '\n');
  }
  const cur = all.find((s) => s.current);
  if (!cur) throw new AuthError('NOT_LOGGED_IN', 'not logged in', { hint: notLoggedInHint(deps.env['TSH_PROXY'], how.program, nonDefaultTshHome(paths.penv)) });
  const relogin = profileLoginCommand(cur.profile, paths, how.program);
  const v = cur.validity;
  if (v?.state === 'not-yet-valid') {
    const clock = clockBehindText(v.behindSeconds);
    throw new AuthError('CERT_NOT_YET_VALID', `the certificate for ${cur.profile.name} is not valid yet (from ${v.from.toISOString()}): ${clock.message}`, { hint: clock.hint });
  }
  if (!cur.valid) {
    throw new AuthError('CERT_EXPIRED', `the certificate for ${printable(cur.profile.name)} is ${cur.cert ? 'expired' : 'missing'}`, {
      hint: `run \`${relogin}\``,
    });
  }
}

function validity(s: ProfileStatus, now: bigint): { until: string | null; remaining: string } {
  if (!s.cert || !s.validity) return { until: null, remaining: 'no certificate' };
  const until = new Date(Number(s.cert.validBefore) * 1000).toISOString();
  const v = s.validity;
  if (v.state === 'expired') return { until, remaining: 'EXPIRED' };
  if (v.state === 'not-yet-valid') return { until, remaining: `not valid yet: this machine's clock is at least ${formatDuration(v.behindSeconds)} behind` };
  const left = `valid for ${formatDuration(Number(s.cert.validBefore - now))}`;
  return { until, remaining: v.behindSeconds > 0 ? `${left}; this machine's clock is at least ${formatDuration(v.behindSeconds)} behind` : left };
}

function toJson(s: ProfileStatus, now: bigint) {
  const v = validity(s, now);
  return {
    profile: s.profile.name,
    current: s.current,
    proxy: s.profile.webProxyAddr,
    ssh_proxy: s.profile.sshProxyAddr,
    cluster: s.profile.clusterName,
    user: s.profile.username,
    logins: s.cert?.principals ?? s.profile.logins,
    roles: s.profile.roles,
    valid: s.valid,
    /** valid, expired, not_yet_valid (this machine's clock is behind) or missing. */
    state: s.validity ? s.validity.state.replace(/-/g, '_') : 'missing',
    valid_until: v.until,
    clock_behind_seconds: s.validity && s.validity.state !== 'expired' ? s.validity.behindSeconds : 0,
    extensions: s.cert ? [...s.cert.extensions.keys()].filter((k) => !k.includes('@')) : [],
    keystore: s.profile.keystore,
    /** The login recorded that the proxy routes SSH through its web port (TLS routing). */
    tls_routing: s.profile.tlsRouting === true,
    /** The path of the last connection to a node: `tls` (web port) or `ssh` (SSH port), the node and when; null before the first. */
    last_connection: s.lastRoute ? { path: s.lastRoute.path, node: s.lastRoute.node, at: s.lastRoute.at } : null,
  };
}

/** "TLS routing (web port localhost:3080) to node1 at …" / "SSH port localhost:3023 to …". */
function routeText(s: ProfileStatus): string {
  const r = s.lastRoute;
  if (!r) return s.profile.tlsRouting ? 'none yet (TLS routing on the web port is available)' : 'none yet';
  const via = r.path === 'tls' ? `TLS routing (web port ${s.profile.webProxyAddr})` : `SSH port ${s.profile.sshProxyAddr}`;
  return `${via} to ${r.node} at ${r.at}`;
}

function toText(s: ProfileStatus, now: bigint, deps: Deps): string {
  const j = toJson(s, now);
  const v = validity(s, now);
  const c = deps.colors.out;
  // What the profile holds came from a server (parsed with its schema when read, but
  // escaped all the same); the colours are added after escaping, so they survive it.
  const p = (text: string) => printable(text, 2000);
  const remaining = s.valid ? c.green(p(v.remaining)) : c.red(p(v.remaining));
  const rows: [string, string][] = [
    ['Proxy', p(`https://${j.proxy}`)],
    ['Cluster', p(j.cluster)],
    ['Logged in as', p(j.user)],
    ['Roles', p(j.roles.join(', '))],
    ['Logins', p(j.logins.join(', '))],
    ['Valid until', v.until ? `${p(v.until)} [${remaining}]` : remaining],
    ['Extensions', p(j.extensions.join(', '))],
    ['Key', s.profile.keystore === 'keychain' ? 'OS keychain' : 'file under TSH_HOME'],
    ['Last path', p(routeText(s))],
  ];
  const head = `${s.current ? '> ' : '  '}Profile ${c.bold(printable(j.profile))}`;
  return [head, ...rows.map(([k, val]) => `  ${(k + ':').padEnd(14)}${val}`)].join('\n');
}
