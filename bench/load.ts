/**
 * `npm run load`: the SSH proxy under load, on loopback, stopping by itself.
 *
 * Set-up: the real `jumpgate start` (dist/), NODES private OpenSSH servers
 * (one host certificate naming them all; `MaxStartups 500:30:1000`), one
 * user certificate (login root, role `user`).
 *
 * Client side: WORKERS Node processes (this file with `--worker`), each
 * running ssh2 clients through tsh's own code (`sshOver`, `openNodeChannel`
 * from src/client/proxy-conn.ts). One SESSION is:
 *   1. TCP to the proxy from one of 50 loopback source addresses (127.0.0.2-51),
 *   2. an SSH connection to the proxy, authenticated with the certificate,
 *   3. the subsystem `proxy:NODE:22` on it (the proxy dials NODE's sshd and relays),
 *   4. a second SSH connection over that channel, to NODE's sshd, authenticated
 *      with the same certificate (sshd checks it against TrustedUserCAKeys).
 * An IDLE session is exactly that and nothing more: both connections
 * authenticated, no channel open on the node (like `ssh -N`), only tsh's
 * keepalives (every 30 s on each connection) on the wire.
 *
 * Phases: warm-up (50 sessions opened and closed; the proxy's RSS after it
 * is the baseline) → ramp to SESSIONS held, at RATE per second → RSS with
 * them idle (5 s and IDLE_SECONDS after the ramp) → churn for SECONDS: RATE
 * new sessions per second, each one closing the oldest, so SESSIONS stay
 * held → relay: `cat > /dev/null` on a node through one session per worker,
 * RELAY_MIB MiB in all, the proxy's CPU time read from /proc/<pid>/stat
 * around it → close. Opens are paced at RATE but at most MAX_PENDING per
 * client process are in flight: a machine that cannot keep up shows a lower
 * achieved rate, not a pile of timeouts. Every phase is bounded; it stops by itself.
 * A failed session is one that could not be opened, or a held one that closed
 * without the client closing it; any failure makes the exit code 1.
 *
 * Usage: npm run load [-- --sessions 2000 --rate 200 --seconds 60 --idle-seconds 30 --nodes 4
 *   --workers 2 --max-pending 50 --relay-mib 1024 --write (the section in BENCHMARKS.md)
 *   --proxies 2 --storage postgres (the helper PostgreSQL, two jumpgate processes and HAProxy in front:
 *   the same phases through HAProxy's SSH port; --storage postgres alone: one proxy on the database)
 *   --proxy-node-options '--max-semi-space-size=1' (NODE_OPTIONS of jumpgate)]
 * Needs root (sshd logs in as root here) and `ulimit -n` >= 2.5 x SESSIONS.
 */
import { fork, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import type ssh2 from 'ssh2';
import { loadServerConfig } from '../src/config/index.js';
import { issueHostCertificate, issueUserCertificate } from '../src/server/auth/issuer.js';
import {
  encodeCertificateLine,
  encodeOpenSSHPrivateKey,
  formatPublicKeyLine,
  generateKeyPair,
} from '../src/sshcert/index.js';
import { LIFTED_LIMITS, NODE_SSHD_SETTINGS, openProxiedSession, sessionCredentials, type SessionCredentials } from './ssh-session.js';
import { startCluster } from '../test/helpers/cluster.js';
import { startHaCluster } from '../test/helpers/ha-cluster.js';
import { freePort, startSshd, type SshdNode } from '../test/helpers/sshd.js';
import { tempDir } from '../test/helpers/tools.js';
import { openDirState } from '../test/helpers/runtime.js';
import { formatSection, writeSections } from './report.js';



const SOURCE_ADDRS = Array.from({ length: 50 }, (_, i) => `127.0.0.${i + 2}`);

interface Opts {
  sessions: number;
  rate: number;
  seconds: number;
  nodes: number;
  workers: number;
  relayMiB: number;
  write: boolean;
  /** How long the held sessions sit idle before the memory reading (RSS is also read 5 s in). */
  idleSeconds: number;
  /** Opens in flight per client process at most; when reached, the client falls behind the rate rather than pile up. */
  maxPending: number;
  /** NODE_OPTIONS for the jumpgate process (e.g. `--import=/tmp/profiler.mjs`). */
  proxyNodeOptions: string | undefined;
  /** `jumpgate start` processes (2: behind HAProxy; needs storage postgres). */
  proxies: 1 | 2;
  /** Where the cluster state lives: dir (default) or the helper PostgreSQL. */
  storage: 'dir' | 'postgres';
}

// ---------------------------------------------------------------- worker side

interface InitMsg {
  cmd: 'init';
  proxyPort: number;
  nodes: string[];
  keyText: string;
  certLine: string;
  hostCALines: string[];
  worker: number;
  maxPending: number;
}
type Cmd =
  | InitMsg
  | { cmd: 'hold'; count: number; perSec: number }
  | { cmd: 'churn'; perSec: number; seconds: number }
  | { cmd: 'relay'; bytes: number }
  | { cmd: 'closeAll' };

interface Session {
  outer: ssh2.Client;
  inner: ssh2.Client;
  closing: boolean;
}

interface Counters {
  opened: number;
  failed: number;
  unexpectedCloses: number;
  errors: string[];
}

async function worker(): Promise<void> {
  let init!: InitMsg;
  let creds!: SessionCredentials;
  const held: Session[] = [];
  const counters: Counters = { opened: 0, failed: 0, unexpectedCloses: 0, errors: [] };
  let serial = 0;
  const send = (m: object) => process.send!(m);
  const fail = (err: unknown) => {
    counters.failed++;
    if (counters.errors.length < 10) counters.errors.push((err as Error).message ?? String(err));
  };

  const openSession = async (): Promise<Session> => {
    const k = serial++ * 7 + init.worker; // spread sessions over nodes and source addresses
    const { outer, inner } = await openProxiedSession({ proxyPort: init.proxyPort, node: init.nodes[k % init.nodes.length]!, creds, localAddress: SOURCE_ADDRS[k % SOURCE_ADDRS.length]! });
    const s: Session = { outer, inner, closing: false };
    const onClose = () => {
      if (s.closing) return;
      s.closing = true;
      counters.unexpectedCloses++;
      if (counters.errors.length < 10) counters.errors.push('a held session closed by itself');
      const i = held.indexOf(s);
      if (i >= 0) held.splice(i, 1);
    };
    outer.on('close', onClose);
    inner.on('close', onClose);
    return s;
  };
  const closeSession = (s: Session) => {
    s.closing = true;
    s.inner.end();
    s.outer.end();
  };

  /** Calls `fn` `perSec` times a second for `seconds` (evenly, in 20 ms ticks); resolves when all calls settled. */
  const paced = async (perSec: number, total: number, fn: () => Promise<void>, seconds = Infinity) => {
    const started = Date.now();
    let behind = 0;
    const pending = new Set<Promise<void>>();
    let issued = 0;
    let maxPending = 0;
    while (issued < total && Date.now() - started < seconds * 1000) {
      const due = Math.min(total, Math.floor(((Date.now() - started) / 1000) * perSec) + 1);
      while (issued < due) {
        if (pending.size >= init.maxPending) {
          behind = Math.max(behind, due - issued);
          break;
        }
        const p = fn().finally(() => pending.delete(p));
        pending.add(p);
        issued++;
      }
      maxPending = Math.max(maxPending, pending.size);
      await new Promise((r) => setTimeout(r, 20));
    }
    const issuedMs = Date.now() - started;
    await Promise.all(pending);
    return { issuedMs, settledMs: Date.now() - started, maxPending, behind };
  };

  process.on('message', async (m: Cmd) => {
    try {
      if (m.cmd === 'init') {
        init = m;
        creds = sessionCredentials(m.keyText, m.certLine, m.hostCALines);
        send({ ev: 'ready' });
      } else if (m.cmd === 'hold') {
        const before = { ...counters };
        const pace = await paced(m.perSec, m.count - held.length, async () => {
          try {
            held.push(await openSession());
            counters.opened++;
          } catch (err) {
            fail(err);
          }
        });
        send({ ev: 'done', held: held.length, opened: counters.opened - before.opened, failed: counters.failed - before.failed, ...pace, counters });
      } else if (m.cmd === 'churn') {
        const before = { ...counters };
        const setupMs: number[] = [];
        const pace = await paced(m.perSec, Math.round(m.perSec * m.seconds), async () => {
          const t0 = performance.now();
          try {
            const s = await openSession();
            setupMs.push(performance.now() - t0);
            counters.opened++;
            held.push(s);
            const oldest = held.shift()!;
            closeSession(oldest);
          } catch (err) {
            fail(err);
          }
        }, m.seconds);
        send({ ev: 'done', held: held.length, opened: counters.opened - before.opened, failed: counters.failed - before.failed, setupMs, ...pace, counters });
      } else if (m.cmd === 'relay') {
        const s = held[held.length - 1]!;
        const t0 = performance.now();
        await new Promise<void>((resolve, reject) => {
          s.inner.exec('cat > /dev/null', (err, ch) => {
            if (err) return reject(err);
            const chunk = Buffer.alloc(1 << 20);
            let left = m.bytes;
            let code: number | undefined;
            ch.on('exit', (c: number) => (code = c));
            ch.on('close', () => (code === 0 ? resolve() : reject(new Error(`cat exited ${code}`))));
            ch.resume();
            const pump = () => {
              while (left > 0) {
                const n = Math.min(left, chunk.length);
                left -= n;
                if (!ch.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void ch.once('drain', pump);
              }
              ch.end();
            };
            pump();
          });
        });
        send({ ev: 'done', ms: performance.now() - t0 });
      } else if (m.cmd === 'closeAll') {
        for (const s of held.splice(0)) closeSession(s);
        await new Promise((r) => setTimeout(r, 500));
        send({ ev: 'done', counters });
      }
    } catch (err) {
      send({ ev: 'error', message: (err as Error).stack ?? String(err) });
    }
  });
  process.on('disconnect', () => process.exit(0));
  // sshOver handles the first error of a connection that fails before it is ready; ssh2 may emit a second
  // one ("Connection lost before handshake") as the socket closes, with no listener left: it is the same failure.
  process.on('uncaughtException', (err) => {
    if (/before handshake/.test(err.message)) return;
    send({ ev: 'error', message: err.stack ?? String(err) });
  });
}

// ----------------------------------------------------------- coordinator side

interface Worker {
  child: ChildProcess;
  ask<T = Record<string, unknown>>(m: Cmd): Promise<T>;
}

function startWorker(): Worker {
  const child = fork(import.meta.filename, ['--worker'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return {
    child,
    ask: (m) =>
      new Promise((resolve, reject) => {
        const onMsg = (r: { ev: string; message?: string }) => {
          child.off('message', onMsg);
          child.off('exit', onExit);
          if (r.ev === 'error') reject(new Error(`load worker: ${r.message}`));
          else resolve(r as never);
        };
        const onExit = (code: number | null) => reject(new Error(`load worker exited (${code})`));
        child.on('message', onMsg);
        child.once('exit', onExit);
        child.send(m);
      }),
  };
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** utime + stime of a process in seconds (/proc/<pid>/stat fields 14 and 15). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Resident set size of a process in bytes (VmRSS). */
function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** Busy and total CPU time of the whole machine in seconds (/proc/stat). */
function machineCpu(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = f[3]! + f[4]!;
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}

/** CPU seconds of the sshd nodes' finished connections: their listeners' cutime + cstime (children they reaped). */
function sshdReapedCpu(): number {
  let sum = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (!stat.includes('(sshd)') || Number(f[1]) !== process.pid) continue;
      sum += (Number(f[13]) + Number(f[14])) / CLK_TCK;
    } catch {
      // gone meanwhile
    }
  }
  return sum;
}

/** `f` summed over several processes (the proxies of a multi-proxy set-up). */
function sum(pids: number[], f: (pid: number) => number): number {
  return pids.reduce((a, p) => a + f(p), 0);
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** sshd processes on the machine and their summed RSS (node side of the load). */
function sshdProcesses(): { count: number; rssMiB: number } {
  let count = 0;
  let rss = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() !== 'sshd') continue;
      count++;
      rss += rssBytes(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return { count, rssMiB: rss / 2 ** 20 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const log = (line: string) => process.stderr.write(`load: ${line}\n`);

function parseArgs(argv: string[]): Opts {
  const num = (name: string, dflt: number) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
  const proxies = num('proxies', 1);
  const storage = argv.includes('--storage') ? argv[argv.indexOf('--storage') + 1] : 'dir';
  if (proxies !== 1 && proxies !== 2) throw new Error(`--proxies ${proxies}: 1 or 2`);
  if (storage !== 'dir' && storage !== 'postgres') throw new Error(`--storage ${storage}: dir or postgres`);
  if (proxies === 2 && storage !== 'postgres') throw new Error('--proxies 2 needs --storage postgres (two proxies share state only in a database)');
  return {
    sessions: num('sessions', 2000),
    rate: num('rate', 200),
    seconds: num('seconds', 60),
    nodes: num('nodes', 4),
    workers: num('workers', 2),
    relayMiB: num('relay-mib', 1024),
    write: argv.includes('--write'),
    maxPending: num('max-pending', 50),
    idleSeconds: num('idle-seconds', 30),
    proxyNodeOptions: argv.includes('--proxy-node-options') ? argv[argv.indexOf('--proxy-node-options') + 1] : undefined,
    proxies,
    storage,
  };
}

/** What the phases run against: the SSH port clients use, the proxy processes measured, the user's credentials. */
interface Target {
  sshPort: number;
  /** The jumpgate processes (CPU, RSS and fds are summed over them). */
  pids: number[];
  nodes: string[];
  keyText: string;
  certLine: string;
  hostCALines: string[];
  /** The set-up in words, for the report. */
  setUp: string;
  log(): string;
  stop(): Promise<void>;
}

/** Today's set-up: one `jumpgate start` on dir, NODES sshd processes, the CAs made in its data directory. */
async function setUpDir(o: Opts, dir: string): Promise<Target> {
  const dataDir = join(dir, 'data');
  const nodeNames = Array.from({ length: o.nodes }, (_, i) => `load${i + 1}`);
  const [webPort, sshPort] = [await freePort(), await freePort()];
  const yaml = (ports: number[]) =>
    [
      'cluster_name: load.test',
      `data_dir: ${dataDir}`,
      'proxy:',
      `  web_listen_addr: 127.0.0.1:${webPort}`,
      `  public_addr: localhost:${webPort}`,
      `  ssh_listen_addr: 127.0.0.1:${sshPort}`,
      `  ssh_public_addr: localhost:${sshPort}`,
      ...LIFTED_LIMITS.map((l) => `  ${l}`),
      'roles:',
      '  user:',
      '    logins: ["{{username}}"]',
      '    node_labels: { env: load }',
      'nodes:',
      ...nodeNames.map((n, i) => `  - { name: ${n}, addr: "127.0.0.1:${ports[i] ?? 22}", labels: { env: load } }`),
      '',
    ].join('\n');
  const preFile = join(dir, 'pre.yaml');
  writeFileSync(preFile, yaml([]));
  const pre = loadServerConfig(preFile);
  const state = await openDirState(dataDir, { serverId: 'load' });
  const { ca, audit, clock } = state;
  const hostKey = generateKeyPair('ed25519');
  const userKey = generateKeyPair('ed25519');
  let hostCert, userCert;
  try {
    hostCert = await issueHostCertificate({ names: nodeNames, publicKey: hostKey.publicKey, ttlSeconds: 24 * 3600, via: 'load' }, { config: pre, ca, audit, clock });
    userCert = await issueUserCertificate({ username: 'root', roles: ['user'], publicKey: userKey.publicKey, via: 'load' }, { config: pre, ca, audit, clock, store: state.store });
  } finally {
    await state.close();
  }
  const hostKeyFile = join(dir, 'node_host_key');
  writeFileSync(hostKeyFile, encodeOpenSSHPrivateKey(hostKey.privateKey, 'load'), { mode: 0o600 });
  writeFileSync(`${hostKeyFile}-cert.pub`, encodeCertificateLine(hostCert, 'load') + '\n');
  const userCaFile = join(dir, 'user_ca.pub');
  writeFileSync(userCaFile, ca.get('user').trusted.map((k) => formatPublicKeyLine(k.publicKey)).join('\n') + '\n');

  const nodes: SshdNode[] = [];
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  const stop = async () => {
    await cluster?.stop();
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (const name of nodeNames) {
      const nodeDir = join(dir, name);
      mkdirSync(nodeDir);
      // The helper's sshd logs at DEBUG2 (tests read why a certificate was refused); `Match all` lowers it after authentication.
      nodes.push(await startSshd({ dir: nodeDir, hostKey: hostKeyFile, hostCertificate: `${hostKeyFile}-cert.pub`, trustedUserCaKeys: userCaFile, extra: [...NODE_SSHD_SETTINGS, 'Match all', '    LogLevel ERROR'] }));
    }
    const env = { ...process.env };
    for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy']) delete env[k];
    if (o.proxyNodeOptions) env['NODE_OPTIONS'] = o.proxyNodeOptions;
    cluster = await startCluster(dir, yaml(nodes.map((n) => n.port)), { env });
    const started = cluster;
    return {
      sshPort: started.sshPort,
      pids: [started.pid],
      nodes: nodeNames,
      keyText: encodeOpenSSHPrivateKey(userKey.privateKey, 'load'),
      certLine: encodeCertificateLine(userCert, 'load'),
      hostCALines: ca.get('host').trusted.map((k) => formatPublicKeyLine(k.publicKey)),
      setUp: `\`jumpgate start\` and ${o.nodes} OpenSSH ${o.nodes === 1 ? 'node' : 'nodes'}`,
      log: () => started.log(),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}


/**
 * `--proxies N --storage dir|postgres`: the helper PostgreSQL (postgres), N
 * `jumpgate start` processes and HAProxy in front of them when N > 1
 * (test/helpers/ha-cluster.ts, which makes every certificate with tctl), one
 * sshd serving every node name. HAProxy keeps the client's address
 * (`usesrc clientip`): otherwise every session would come from one address
 * and the per-source limits would measure the balancer, not the proxies.
 */
async function setUpShared(o: Opts, dir: string): Promise<Target> {
  const nodeNames = Array.from({ length: o.nodes }, (_, i) => `load${i + 1}`);
  const c = await startHaCluster({
    dir,
    proxies: o.proxies,
    storage: o.storage,
    haproxy: o.proxies > 1,
    preserveClientAddr: true,
    nodes: nodeNames,
    sshdExtra: [...NODE_SSHD_SETTINGS, 'Match all', '    LogLevel ERROR'],
    proxyExtra: LIFTED_LIMITS,
  });
  return {
    sshPort: c.sshPort,
    pids: c.proxies.map((p) => p.pid),
    nodes: nodeNames,
    keyText: readFileSync(c.userKeyFile, 'utf8'),
    certLine: readFileSync(`${c.userKeyFile}-cert.pub`, 'utf8').trim(),
    hostCALines: readFileSync(c.knownHostsFile, 'utf8').split('\n').filter((l) => l.trim() !== ''),
    setUp: `${o.proxies} \`jumpgate start\` on ${o.storage}${o.storage === 'postgres' ? ' (one PostgreSQL 15)' : ''}${o.proxies > 1 ? ' behind HAProxy (mode tcp, round robin)' : ''} and one OpenSSH sshd serving ${o.nodes} node names`,
    log: () => c.proxies.map((p, i) => `--- proxy ${i + 1} ---\n${p.log().slice(-3000)}`).join('\n'),
    stop: () => c.stop(),
  };
}

async function coordinator(o: Opts): Promise<void> {
  const tmp = tempDir('load');
  const workers: Worker[] = [];
  let target: Target | undefined;
  try {
    target = o.proxies === 1 && o.storage === 'dir' ? await setUpDir(o, tmp.dir) : await setUpShared(o, tmp.dir);
    const pids = target.pids;
    log(`jumpgate pid ${pids.join(', ')} on 127.0.0.1:${target.sshPort}; ${o.nodes} node names; ${o.workers} client processes`);

    const init: Omit<InitMsg, 'worker'> = {
      cmd: 'init',
      proxyPort: target.sshPort,
      nodes: target.nodes,
      keyText: target.keyText,
      certLine: target.certLine,
      hostCALines: target.hostCALines,
      maxPending: o.maxPending,
    };
    for (let w = 0; w < o.workers; w++) workers.push(startWorker());
    await Promise.all(workers.map((w, i) => w.ask({ ...init, worker: i })));
    type Done = { held: number; opened: number; failed: number; issuedMs: number; settledMs: number; maxPending: number; behind: number; setupMs?: number[]; counters: Counters };
    const all = (m: (w: number) => Cmd) => Promise.all(workers.map((w, i) => w.ask<Done>(m(i))));
    const share = (n: number, i: number) => Math.floor(n / o.workers) + (i < n % o.workers ? 1 : 0);

    // Warm-up: JIT, lazily loaded code, the first dial of each node; the baseline is taken after it.
    await all((i) => ({ cmd: 'hold', count: share(50, i), perSec: 50 }));
    await all(() => ({ cmd: 'closeAll' }));
    await sleep(3_000);
    const base = { rss: sum(pids, rssBytes), fds: sum(pids, openFds), sshd: sshdProcesses() };
    log(`baseline: RSS ${(base.rss / 2 ** 20).toFixed(1)} MiB, ${base.fds} fds`);

    // Ramp to SESSIONS held.
    const cpu0 = sum(pids, cpuSeconds);
    const ramp = await all((i) => ({ cmd: 'hold', count: share(o.sessions, i), perSec: o.rate / o.workers }));
    const rampCpu = sum(pids, cpuSeconds) - cpu0;
    const heldAfterRamp = ramp.reduce((a, r) => a + r.held, 0);
    log(`ramp: ${heldAfterRamp} held, ${ramp.reduce((a, r) => a + r.failed, 0)} failed, ${(Math.max(...ramp.map((r) => r.settledMs)) / 1000).toFixed(1)} s`);
    await sleep(5_000);
    const early = { rss: sum(pids, rssBytes) };
    const earlyPerSessionKiB = (early.rss - base.rss) / 1024 / Math.max(1, heldAfterRamp);
    log(`idle 5 s: RSS ${(early.rss / 2 ** 20).toFixed(1)} MiB (${earlyPerSessionKiB.toFixed(1)} KiB per session above baseline)`);
    await sleep(Math.max(0, o.idleSeconds - 5) * 1000);
    const idle = { rss: sum(pids, rssBytes), fds: sum(pids, openFds), sshd: sshdProcesses(), held: heldAfterRamp };
    const perSessionKiB = (idle.rss - base.rss) / 1024 / Math.max(1, idle.held);
    log(`idle ${o.idleSeconds} s: RSS ${(idle.rss / 2 ** 20).toFixed(1)} MiB (${perSessionKiB.toFixed(1)} KiB per session above baseline), ${idle.fds} fds, ${idle.sshd.count} sshd processes (${idle.sshd.rssMiB.toFixed(0)} MiB RSS)`);

    // Churn: RATE new sessions per second for SECONDS, each closing the oldest.
    const load0 = loadavg()[0]!;
    const cpu1 = sum(pids, cpuSeconds);
    const clientCpu1 = workers.reduce((a, w) => a + cpuSeconds(w.child.pid!), 0);
    const machine1 = machineCpu();
    const sshd1 = sshdReapedCpu();
    const churn = await all(() => ({ cmd: 'churn', perSec: o.rate / o.workers, seconds: o.seconds }));
    const churnCpu = sum(pids, cpuSeconds) - cpu1;
    const churnClientCpu = workers.reduce((a, w) => a + cpuSeconds(w.child.pid!), 0) - clientCpu1;
    const machine2 = machineCpu();
    const churnSshdCpu = sshdReapedCpu() - sshd1;
    const churnOtherCpu = machine2.busy - machine1.busy - churnCpu - churnClientCpu - churnSshdCpu;
    const churnMachineBusy = (machine2.busy - machine1.busy) / (machine2.total - machine1.total);
    const churnBehind = Math.max(...churn.map((r) => r.behind));
    const churnOpened = churn.reduce((a, r) => a + r.opened, 0);
    const churnFailed = churn.reduce((a, r) => a + r.failed, 0);
    const churnSettled = Math.max(...churn.map((r) => r.settledMs)) / 1000;
    const churnIssued = Math.max(...churn.map((r) => r.issuedMs)) / 1000;
    const setup = churn.flatMap((r) => r.setupMs ?? []);
    const heldAfterChurn = churn.reduce((a, r) => a + r.held, 0);
    const loadAfter = loadavg()[0]!;
    log(`churn: ${churnOpened} opened in ${churnIssued.toFixed(1)} s (settled ${churnSettled.toFixed(1)} s), ${churnFailed} failed, setup p50 ${pct(setup, 50).toFixed(0)} ms p99 ${pct(setup, 99).toFixed(0)} ms, ${heldAfterChurn} held`);
    await sleep(3_000);
    const afterChurn = { rss: sum(pids, rssBytes), fds: sum(pids, openFds) };

    // Relay: RELAY_MIB through one session per worker, at once.
    const bytesEach = Math.floor((o.relayMiB * 2 ** 20) / o.workers);
    const cpu2 = sum(pids, cpuSeconds);
    const t0 = performance.now();
    await Promise.all(workers.map((w) => w.ask({ cmd: 'relay', bytes: bytesEach })));
    const relaySec = (performance.now() - t0) / 1000;
    const relayCpu = sum(pids, cpuSeconds) - cpu2;
    const relayBytes = bytesEach * o.workers;
    const cpuPerGiB = relayCpu / (relayBytes / 2 ** 30);
    const peakRss = sum(pids, rssBytes);
    log(`relay: ${(relayBytes / 2 ** 20).toFixed(0)} MiB in ${relaySec.toFixed(1)} s (${(relayBytes / 1e6 / relaySec).toFixed(0)} MB/s), proxy CPU ${relayCpu.toFixed(2)} s = ${cpuPerGiB.toFixed(2)} CPU-s per GiB`);

    const closed = await all(() => ({ cmd: 'closeAll' }));
    const unexpected = closed.reduce((a, r) => a + r.counters.unexpectedCloses, 0);
    const failedTotal = closed.reduce((a, r) => a + r.counters.failed, 0) + unexpected;
    const errors = [...new Set(closed.flatMap((r) => r.counters.errors))].slice(0, 10);
    const totalOpened = closed.reduce((a, r) => a + r.counters.opened, 0);
    const f1 = (n: number) => n.toFixed(1);
    const body = [
      '| what | result | target |',
      '|---|---|---|',
      `| sessions held at once (idle) | ${idle.held} | ${o.sessions} |`,
      `| proxy RSS per idle session above baseline, after ${o.idleSeconds} s idle | ${f1(perSessionKiB)} KiB (baseline ${f1(base.rss / 2 ** 20)} MiB, ${f1(idle.rss / 2 ** 20)} MiB with ${idle.held} held) | <= 64 KiB: ${perSessionKiB <= 64 ? 'meets' : 'MISSES'} |`,
      `| the same 5 s after the last one opened | ${f1(earlyPerSessionKiB)} KiB (${f1(early.rss / 2 ** 20)} MiB) | |`,
      `| new sessions per second for ${o.seconds} s, on top of the held ones | ${f1(churnOpened / churnSettled)}/s achieved (${churnOpened} in ${f1(churnSettled)} s; paced at ${o.rate}/s with at most ${o.maxPending * o.workers} opens in flight${churnBehind > 0 ? `, which held it back by up to ${churnBehind} opens per client` : ''}) | ${o.rate}/s |`,
      `| session set-up while churning (both SSH connections authenticated), ms | p50 ${pct(setup, 50).toFixed(0)}, p95 ${pct(setup, 95).toFixed(0)}, p99 ${pct(setup, 99).toFixed(0)}, max ${pct(setup, 100).toFixed(0)} | |`,
      `| failed sessions (of ${totalOpened + failedTotal - unexpected} opened) | ${failedTotal} | 0: ${failedTotal === 0 ? 'meets' : 'MISSES'} |`,
      `| proxy CPU per GiB relayed (${o.workers} streams, ${f1(relayBytes / 2 ** 30)} GiB, ${(relayBytes / 1e6 / relaySec).toFixed(0)} MB/s in all) | ${cpuPerGiB.toFixed(2)} CPU-s | |`,
      `| proxy CPU per new session (ramp; churn incl. the close of one) | ${((rampCpu / Math.max(1, heldAfterRamp)) * 1000).toFixed(2)} ms; ${((churnCpu / Math.max(1, churnOpened)) * 1000).toFixed(2)} ms | |`,
      `| client CPU per new session while churning (${o.workers} processes, two SSH connections each) | ${((churnClientCpu / Math.max(1, churnOpened)) * 1000).toFixed(2)} ms | |`,
      `| sshd CPU per session (connections that ended while churning: fork, re-exec, key exchange, authentication, privilege separation) | ${((churnSshdCpu / Math.max(1, churnOpened)) * 1000).toFixed(2)} ms | |`,
      `| everything else (kernel, this coordinator, other work on the machine) per new session while churning | ${((churnOtherCpu / Math.max(1, churnOpened)) * 1000).toFixed(2)} ms; the machine was ${(churnMachineBusy * 100).toFixed(0)}% busy | |`,
      `| proxy open fds: baseline, ${idle.held} idle, after churn | ${base.fds}, ${idle.fds}, ${afterChurn.fds} | |`,
      `| proxy RSS after churn, after relay | ${f1(afterChurn.rss / 2 ** 20)} MiB, ${f1(peakRss / 2 ** 20)} MiB | |`,
      `| node side with ${idle.held} idle sessions | ${idle.sshd.count} sshd processes, ${idle.sshd.rssMiB.toFixed(0)} MiB RSS summed (shared pages counted in each) | |`,
      '',
      `Set-up: ${target.setUp} (\`${NODE_SSHD_SETTINGS.join('`, `')}\`) on loopback; ${o.workers} client processes of ssh2 clients`,
      "(tsh's own `sshOver` and `openNodeChannel`), 50 loopback source addresses. A session is an SSH connection to the proxy",
      'authenticated with a user certificate, the subsystem `proxy:NODE:22`, and a second SSH connection through it to the node\'s sshd,',
      'authenticated with the same certificate. Idle: both authenticated, no channel on the node (like `ssh -N`), keepalives every 30 s.',
      `RSS is VmRSS of the jumpgate ${target.pids.length > 1 ? 'processes, summed' : 'process'} (default V8 flags), garbage not yet collected included; the baseline is taken after 50`,
      'warm-up sessions were opened and closed. CPU from /proc/<pid>/stat (utime + stime); sshd CPU from the listeners\' cutime + cstime.',
      `The client processes, the proxy and the sshd nodes share the same 2 cores (1-minute load average ${load0.toFixed(1)} before the churn,`,
      `${loadAfter.toFixed(1)} after): the new-session rate is what the machine as a whole reached, CPU per session says who spent it.`,
      ...(errors.length ? ['', 'Errors seen (first distinct ones):', '', ...errors.map((e) => `- ${e.replace(/\n/g, ' ')}`)] : []),
    ].join('\n');
    const shared = o.proxies > 1 || o.storage !== 'dir';
    const through = o.proxies > 1 ? `${o.proxies} proxies on ${o.storage} behind HAProxy` : shared ? `the proxy on ${o.storage}` : 'the proxy';
    const section = formatSection(`Load: ${o.sessions} SSH sessions held through ${through}, ${o.rate} new per second for ${o.seconds} s`, body);
    process.stdout.write(section + '\n');
    if (o.write) {
      writeSections([{ name: shared ? `load-${o.proxies}x${o.storage}` : 'load', section }]);
      log('updated BENCHMARKS.md');
    }
    if (failedTotal > 0) process.exitCode = 1;
  } catch (err) {
    process.stderr.write(`--- jumpgate log (tail) ---\n${target?.log().slice(-4000) ?? ''}\n`);
    throw err;
  } finally {
    for (const w of workers) w.child.kill();
    await target?.stop();
    tmp.cleanup();
  }
}

if (process.argv.includes('--worker')) await worker();
else await coordinator(parseArgs(process.argv.slice(2)));
