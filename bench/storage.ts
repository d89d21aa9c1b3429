/**
 * What shared state costs (issue 12): login issuance per second and short SSH
 * sessions per second in three set-ups, running side by side and taking turns in one run:
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
import { ROOT_ACCOUNT, startHaCluster, type HaCluster } from '../test/helpers/ha-cluster.js';
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
  /** The set-ups took turns this many times (the counts are split over the rounds). */
  rounds: number;
  /** 1-minute load average before and after. */
  load: [number, number];
}

export async function benchStorage(
  opts: { flows?: number; loginConcurrency?: number; sessions?: number; sessionConcurrency?: number; rounds?: number; setUps?: readonly StorageSetUp[] } = {},
): Promise<StorageBenchResult> {
  const flows = opts.flows ?? 120;
  const loginConcurrency = opts.loginConcurrency ?? 8;
  const sessions = opts.sessions ?? 120;
  const sessionConcurrency = opts.sessionConcurrency ?? 8;
  // All set-ups run at once and take turns, in rounds (each round in another order): the machine's load
  // drifts a lot (other work on it), and a set-up measured in one block would carry that drift into the ratio.
  const rounds = opts.rounds ?? 3;
  const share = (n: number, i: number) => Math.floor(n / rounds) + (i < n % rounds ? 1 : 0);
  const pg = await startPostgres();
  const r: StorageBenchResult = { rows: [], flows, loginConcurrency, sessions, sessionConcurrency, rounds, load: [loadavg()[0]!, 0] };
  const running: Array<{ s: StorageSetUp; c: HaCluster; cleanup: () => void; one: (i: number) => Promise<void>; loginSec: number; sessionSec: number; failed: number; errors: string[] }> = [];
  try {
    for (const s of opts.setUps ?? STORAGE_SET_UPS) {
      const tmp = tempDir('bench-storage');
      process.stderr.write(`bench: storage: starting ${s.name}\n`);
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
      }).catch((err: unknown) => {
        tmp.cleanup();
        throw err;
      });
      const creds = sessionCredentials(
        readFileSync(c.userKeyFile, 'utf8'),
        readFileSync(`${c.userKeyFile}-cert.pub`, 'utf8').trim(),
        readFileSync(c.knownHostsFile, 'utf8').split('\n').filter((l) => l.trim() !== ''),
      );
      const one = (i: number) => shortSession({ proxyPort: c.sshPort, node: 'node1', creds, localAddress: `127.0.0.${2 + (i % 50)}` });
      running.push({ s, c, cleanup: tmp.cleanup, one, loginSec: 0, sessionSec: 0, failed: 0, errors: [] });
      await one(0); // warm-up: JIT, the node's first connection
    }
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < running.length; k++) {
        const x = running[(k + round) % running.length]!;
        process.stderr.write(`bench: storage: round ${round + 1}/${rounds}: ${x.s.name}\n`);
        const n = share(flows, round);
        x.loginSec += n / (await loginIssuanceRate(x.c.webPort, { flows: n, concurrency: loginConcurrency })).perSec;
        const m = share(sessions, round);
        const ss = await atConcurrency(m, sessionConcurrency, x.one);
        x.sessionSec += m / ss.perSec;
        x.failed += ss.failed;
        x.errors.push(...ss.errors.slice(0, 5 - x.errors.length));
      }
    }
    r.rows = running.map((x) => ({ ...x.s, loginsPerSec: flows / x.loginSec, sessionsPerSec: sessions / x.sessionSec, sessionsFailed: x.failed, errors: x.errors }));
  } catch (err) {
    for (const x of running) process.stderr.write(x.c.proxies.map((p, i) => `--- ${x.s.name}: proxy ${i + 1} (tail) ---\n${p.log().slice(-3000)}\n`).join(''));
    throw err;
  } finally {
    for (const x of running) {
      await x.c.stop();
      x.cleanup();
    }
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
    `The three set-ups ran at the same time and took turns in ${r.rounds} rounds (another order each round), so drifting load on the`,
    'machine falls on all of them alike; each rate is its total count over its total time.',
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
