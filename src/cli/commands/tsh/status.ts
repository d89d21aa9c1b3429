import { AuthError } from '../../../errors.js';
import { TshPaths } from '../../../client/paths.js';
import { ProfileStore, type Profile } from '../../../client/profile.js';
import type { Certificate } from '../../../sshcert/index.js';
import { readProfileCertificate } from '../../../client/credentials.js';
import { formatDuration } from '../../../shared/duration.js';
import type { Deps } from '../../deps.js';
import { printable } from '../../../util/printable.js';

export interface StatusOptions {
  format: 'text' | 'json';
}

interface ProfileStatus {
  profile: Profile;
  cert: Certificate | undefined;
  valid: boolean;
  current: boolean;
}

/**
 * `tsh status`: for every profile, the proxy, user, logins, roles and expiry,
 * read from the certificate itself. Exit 4 when the current profile has no
 * valid certificate.
 */
export function run(opts: StatusOptions, deps: Deps): void {
  const paths = new TshPaths(deps);
  const store = new ProfileStore(paths);
  const current = store.currentName();
  const now = BigInt(Math.floor(deps.clock().getTime() / 1000));
  const all: ProfileStatus[] = store.list().map((profile) => {
    const cert = readProfileCertificate(paths, profile)?.cert;
    return { profile, cert, valid: cert !== undefined && cert.validBefore > now && cert.validAfter <= now, current: profile.name === current };
  });
  if (opts.format === 'json') {
    deps.io.stdout.write(JSON.stringify({ current: current ?? null, profiles: all.map((s) => toJson(s, now)) }, null, 2) + '\n');
  } else {
    for (const s of all.sort((a, b) => Number(b.current) - Number(a.current))) deps.io.stdout.write(toText(s, now) + '\n');
  }
  const cur = all.find((s) => s.current);
  if (!cur) throw new AuthError('NOT_LOGGED_IN', 'not logged in', { hint: 'run `tsh login --proxy=HOST`' });
  if (!cur.valid) {
    throw new AuthError('CERT_EXPIRED', `the certificate for ${printable(cur.profile.name)} is ${cur.cert ? 'expired' : 'missing'}`, {
      hint: `run \`tsh login --proxy=${cur.profile.webProxyAddr}\``,
    });
  }
}

function validity(s: ProfileStatus, now: bigint): { until: string | null; remaining: string } {
  if (!s.cert) return { until: null, remaining: 'no certificate' };
  const until = new Date(Number(s.cert.validBefore) * 1000).toISOString();
  if (!s.valid) return { until, remaining: 'EXPIRED' };
  return { until, remaining: `valid for ${formatDuration(Number(s.cert.validBefore - now))}` };
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
    valid_until: v.until,
    extensions: s.cert ? [...s.cert.extensions.keys()].filter((k) => !k.includes('@')) : [],
    keystore: s.profile.keystore,
  };
}

function toText(s: ProfileStatus, now: bigint): string {
  const j = toJson(s, now);
  const v = validity(s, now);
  const rows: [string, string][] = [
    ['Proxy', `https://${j.proxy}`],
    ['Cluster', j.cluster],
    ['Logged in as', j.user],
    ['Roles', j.roles.join(', ')],
    ['Logins', j.logins.join(', ')],
    ['Valid until', v.until ? `${v.until} [${v.remaining}]` : v.remaining],
    ['Extensions', j.extensions.join(', ')],
    ['Key', s.profile.keystore === 'keychain' ? 'OS keychain' : 'file under TSH_HOME'],
  ];
  // The profile is parsed with its schema when read, but what it holds came from a server: escaped all the same.
  const head = `${s.current ? '> ' : '  '}Profile ${printable(j.profile)}`;
  return [head, ...rows.map(([k, val]) => `  ${(k + ':').padEnd(14)}${printable(val, 2000)}`)].join('\n');
}
