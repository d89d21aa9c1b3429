/**
 * What shared state costs (issue 12): login issuance per second and short SSH
 * sessions per second in three set-ups, one after the other in one run:
 *   1. one proxy on `dir` (today's default),
 *   2. one proxy on `postgres` (the helper PostgreSQL on this machine),
 *   3. two proxies on `postgres` behind HAProxy (mode tcp, round robin).
 * Target: postgres costs no more than 20% of dir's login throughput
 * (set-up 2 / set-up 1 >= 0.8).
 *
 * Logins: whole logins over HTTP (bench/login.ts loginIssuanceRate), the same
 * concurrency and count in every set-up. Sessions: short sessions (TCP, SSH
 * to the proxy with the user certificate, proxy:node1:22, SSH to the node's
 * sshd, a session channel (the sftp subsystem: no login shell), close;
 * bench/ssh-session.ts shortSession) at a fixed
 * concurrency for a fixed count. Everything goes to the set-up's entry point:
 * HAProxy's ports in set-up 3, which connects from each client's own address
 * (`usesrc clientip`) so the per-source limits see 32 and 50 clients as in
 * set-ups 1 and 2, not one balancer.
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { DEMO_ACCOUNTS } from '../scripts/dev-idp.js';
import { ROOT_ACCOUNT, startHaCluster } from '../test/helpers/ha-cluster.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { tempDir } from '../test/helpers/tools.js';
import { loginIssuanceRate } from './login.js';
import { atConcurrency, LIFTED_LIMITS, NODE_SSHD_SETTINGS, sessionCredentials, shortSession } from './ssh-session.js';

/** The target: postgres login throughput at least this share of dir's. */
export const POSTGRES_LOGIN_TARGET = 0.8;

export interface StorageSetUp {
  name: string;
  proxies: 1 | 2;
  storage: 'dir' | 'postgres';
}

export const STORAGE_SET_UPS: readonly StorageSetUp[] = [
  { name: 'one proxy, dir', proxies: 1, storage: 'dir' },
  { name: 'one proxy, postgres', proxies: 1, storage: 'postgres' },
  { name: 'two proxies, postgres, behind HAProxy', proxies: 2, storage: 'postgres' },
];

export interface StorageBenchResult {
  rows: Array<StorageSetUp & { loginsPerSec: number; sessionsPerSec: number; sessionsFailed: number; errors: string[] }>;
  flows: number;
  loginConcurrency: number;
  sessions: number;
  sessionConcurrency: number;
  /** 1-minute load average before and after. */
  load: [number, number];
}

export async function benchStorage(
  opts: { flows?: number; loginConcurrency?: number; sessions?: number; sessionConcurrency?: number; setUps?: readonly StorageSetUp[] } = {},
): Promise<StorageBenchResult> {
  const flows = opts.flows ?? 100;
  const loginConcurrency = opts.loginConcurrency ?? 8;
  const sessions = opts.sessions ?? 100;
  const sessionConcurrency = opts.sessionConcurrency ?? 8;
  const pg = await startPostgres();
  const r: StorageBenchResult = { rows: [], flows, loginConcurrency, sessions, sessionConcurrency, load: [loadavg()[0]!, 0] };
  try {
    for (const s of opts.setUps ?? STORAGE_SET_UPS) {
      const tmp = tempDir('bench-storage');
      process.stderr.write(`bench: storage: ${s.name}...\n`);
      const c = await startHaCluster({
        dir: tmp.dir,
        proxies: s.proxies,
        storage: s.storage,
        haproxy: s.proxies > 1,
        preserveClientAddr: true,
        pg,
        oidc: { accounts: [...DEMO_ACCOUNTS, ROOT_ACCOUNT] },
        sshdExtra: [...NODE_SSHD_SETTINGS, 'Match all', '    LogLevel ERROR'],
        proxyExtra: LIFTED_LIMITS,
      });
      try {
        const logins = await loginIssuanceRate(c.webPort, { flows, concurrency: loginConcurrency });
        const creds = sessionCredentials(
          readFileSync(c.userKeyFile, 'utf8'),
          readFileSync(`${c.userKeyFile}-cert.pub`, 'utf8').trim(),
          readFileSync(c.knownHostsFile, 'utf8').split('\n').filter((l) => l.trim() !== ''),
        );
        const one = (i: number) => shortSession({ proxyPort: c.sshPort, node: 'node1', creds, localAddress: `127.0.0.${2 + (i % 50)}` });
        await one(0); // warm-up: JIT, the node's first connection
        const ss = await atConcurrency(sessions, sessionConcurrency, one);
        r.rows.push({ ...s, loginsPerSec: logins.perSec, sessionsPerSec: ss.perSec, sessionsFailed: ss.failed, errors: ss.errors });
      } catch (err) {
        process.stderr.write(c.proxies.map((p, i) => `--- proxy ${i + 1} (tail) ---\n${p.log().slice(-3000)}\n`).join(''));
        throw err;
      } finally {
        await c.stop();
        tmp.cleanup();
      }
    }
  } finally {
    await pg.stop();
  }
  r.load[1] = loadavg()[0]!;
  return r;
}

/** The BENCHMARKS.md section body. */
export function formatStorageBench(r: StorageBenchResult): string {
  const dir = r.rows.find((x) => x.storage === 'dir' && x.proxies === 1)!;
  const pg1 = r.rows.find((x) => x.storage === 'postgres' && x.proxies === 1)!;
  const ratio = pg1.loginsPerSec / dir.loginsPerSec;
  const f = (n: number) => n.toFixed(1);
  return [
    `| set-up | login issuance, ${r.loginConcurrency} at once (${r.flows} logins) | short SSH sessions, ${r.sessionConcurrency} at once (${r.sessions} sessions) | failed sessions |`,
    '|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.name} | ${f(x.loginsPerSec)}/s | ${f(x.sessionsPerSec)}/s | ${x.sessionsFailed} |`),
    '',
    `Login throughput, one proxy on postgres / one proxy on dir: ${ratio.toFixed(2)} (target >= ${POSTGRES_LOGIN_TARGET}: ${ratio >= POSTGRES_LOGIN_TARGET ? 'meets' : 'MISSES'}).`,
    '',
    'A login is the whole flow over HTTP (login start, IdP login and consent, code exchange, signing, audit, sealed answer), from',
    '32 loopback addresses; a short session is TCP + SSH to the proxy (user certificate) + `proxy:node1:22` + SSH to the node\'s sshd',
    '+ a session channel (the sftp subsystem) + close, from 50 loopback addresses. PostgreSQL 15 runs on the same machine (fsync on); HAProxy connects from each',
    'client\'s own address (`usesrc clientip`) so the per-source limits see the clients, not the balancer. The IdP, the clients, the',
    `proxies, PostgreSQL and sshd share the same 2 cores (1-minute load average ${r.load[0].toFixed(1)} before, ${r.load[1].toFixed(1)} after): a second proxy`,
    'on the same two cores adds no CPU, so set-up 3 shows what the balancer and the shared store cost, not how far two hosts scale.',
    'Not `true`: on this machine the node\'s `bash -c true` for root takes about 2.7 s (root\'s ~/.bashrc, which bash reads when started',
    'by sshd), which would bound every set-up alike at about concurrency / 2.7 s.',
    ...(r.rows.some((x) => x.errors.length) ? ['', 'Errors seen:', '', ...r.rows.flatMap((x) => x.errors.map((e) => `- ${x.name}: ${e.replace(/\n/g, ' ')}`))] : []),
  ].join('\n');
}
