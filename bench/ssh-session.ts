/**
 * One SSH session through the proxy as the benchmarks open it, with tsh's own
 * code (`sshOver`, `openNodeChannel` from src/client/proxy-conn.ts):
 *   1. TCP to the proxy's SSH port (optionally from a given loopback source address),
 *   2. an SSH connection to the proxy, authenticated with the user certificate,
 *   3. the subsystem `proxy:NODE:22` on it (the proxy dials NODE's sshd and relays),
 *   4. a second SSH connection over that channel to NODE's sshd, authenticated
 *      with the same certificate (sshd checks it against TrustedUserCAKeys).
 * Shared by `npm run load` (held and churned sessions) and the storage
 * benchmark (short sessions: open, the sftp subsystem, close).
 */
import { connect as netConnect } from 'node:net';
import type ssh2 from 'ssh2';
import { openNodeChannel, sshOver } from '../src/client/proxy-conn.js';
import { parseCertificateLine, parseOpenSSHPrivateKey, parsePublicKeyLine, type PublicKey } from '../src/sshcert/index.js';
import { certIdentity } from '../src/sshconn/index.js';

/** sshd settings for a node that takes this load (README: "Nodes behind the proxy"). */
export const NODE_SSHD_SETTINGS = [
  // Unauthenticated connections: start refusing 30% at 500, all at 1000 (default 10:30:100 drops bursts).
  'MaxStartups 500:30:1000',
  // Per connection; the load test opens at most one channel on a node connection.
  'MaxSessions 10',
];

/** One user holds every session: lift the per-user caps (the nodes' MaxStartups is raised too, NODE_SSHD_SETTINGS). Lines under `proxy:`. */
export const LIFTED_LIMITS = [
  'limits:',
  ...['max_connections_per_user', 'max_channels_per_connection', 'max_sessions_per_user', 'max_concurrent_node_dials_per_user', 'max_concurrent_node_dials_per_node'].map((k) => `  ${k}: 1000000`),
];

/** Who opens sessions: the user's key and certificate, and the host CA keys that vouch for the proxy and the nodes. */
export interface SessionCredentials {
  identity: ReturnType<typeof certIdentity>;
  cas: PublicKey[];
}

/** From OpenSSH texts: the private key, its `*-cert.pub` line, and `@cert-authority` or plain public key lines of the host CA. */
export function sessionCredentials(keyText: string, certLine: string, hostCALines: string[]): SessionCredentials {
  return {
    identity: certIdentity(parseOpenSSHPrivateKey(keyText).privateKey, parseCertificateLine(certLine).cert.blob),
    cas: hostCALines.map((l) => parsePublicKeyLine(l.replace(/^@cert-authority\s+\S+\s+/, '')).key),
  };
}

export interface ProxiedSession {
  /** The connection to the proxy. */
  outer: ssh2.Client;
  /** The connection to the node, inside `outer`. */
  inner: ssh2.Client;
}

/** Steps 1-4 above, as `login` (root here) to `node`; on failure nothing stays open. */
export async function openProxiedSession(o: { proxyPort: number; node: string; creds: SessionCredentials; localAddress?: string; login?: string }): Promise<ProxiedSession> {
  const sock = netConnect({ host: '127.0.0.1', port: o.proxyPort, noDelay: true, ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const common = { login: o.login ?? 'root', identity: o.creds.identity, cas: () => o.creds.cas, now: () => new Date(), webProxyAddr: 'bench' };
  const outer = await sshOver(sock, { ...common, what: 'the proxy', hostname: 'localhost' });
  try {
    const ch = await openNodeChannel(outer, o.node, 22, () => {});
    const inner = await sshOver(ch, { ...common, what: o.node, hostname: o.node });
    return { outer, inner };
  } catch (err) {
    outer.end();
    throw err;
  }
}

/**
 * A short session: open, start the `sftp` subsystem on the node (sshd's
 * internal-sftp: a session channel, no login shell), end it, close both
 * connections. Not `true`: sshd runs commands through the login shell, and
 * root's ~/.bashrc takes about 2.7 s on the test machines, which would make
 * every set-up measure bash. Rejects unless the node accepted the subsystem.
 */
export async function shortSession(o: Parameters<typeof openProxiedSession>[0]): Promise<void> {
  const s = await openProxiedSession(o);
  try {
    await new Promise<void>((resolve, reject) => {
      s.inner.subsys('sftp', (err, ch) => {
        if (err) return reject(err);
        ch.on('close', () => resolve());
        ch.resume();
        ch.end();
      });
    });
  } finally {
    s.inner.end();
    s.outer.end();
  }
}

/**
 * Runs `count` calls of `fn` with `concurrency` in flight; resolves to the
 * calls per second over the whole run and the failures (first messages kept).
 */
export async function atConcurrency(count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<{ perSec: number; failed: number; errors: string[] }> {
  let next = 0;
  let failed = 0;
  const errors: string[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        try {
          await fn(i);
        } catch (err) {
          failed++;
          if (errors.length < 5) errors.push((err as Error).message);
        }
      }
    }),
  );
  return { perSec: count / ((performance.now() - t0) / 1000), failed, errors };
}
