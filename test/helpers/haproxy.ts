/**
 * A private, real HAProxy in front of several `jumpgate start` processes, on
 * loopback: one TCP frontend for the HTTPS API and one for the SSH proxy,
 * each balancing round-robin over the given backend ports. The config is the
 * one README.md "Several proxies: shared state on PostgreSQL" shows
 * (`haproxyConfig` writes both), with the addresses filled in.
 *
 * Needs Debian's `haproxy` package (2.6 here); `haproxy -f CONF -db` runs in
 * the foreground and logs to its stdout.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './sshd.js';
import { requireTool, run } from './tools.js';

const INSTALL = 'apt-get install -y haproxy';

export interface HaproxyBackends {
  /** HTTPS ports of the proxies (their own web_listen_addr). */
  web: number[];
  /** SSH ports of the proxies (their own ssh_listen_addr). */
  ssh: number[];
}

export interface HaproxyOptions extends HaproxyBackends {
  /** A fresh directory for the config, the stats socket and the log. */
  dir: string;
  /** Host of the backends (default 127.0.0.1). */
  backendHost?: string;
  /**
   * Connect to the proxies from each client's own address (`source 0.0.0.0
   * usesrc clientip`: transparent proxying, root only). On loopback every
   * 127.x address is local, so this just works; benchmarks use it so the
   * per-source limits see many clients, not one balancer. In production it
   * needs TPROXY routing: see README "Several proxies".
   */
  preserveClientAddr?: boolean;
}

/** How often HAProxy checks each proxy (with `fall 1`: a dead one is out within about this long). */
export const CHECK_INTERVAL_MS = 300;

/** One row of `show stat`: a frontend, backend or server with its state. */
export interface HaproxyStat {
  proxy: string;
  server: string;
  /** UP, DOWN, OPEN (frontends), no check, ... */
  status: string;
  /** Sessions handled so far. */
  total: number;
  /** Connection errors and retries/redispatches seen by this server or backend. */
  connectErrors: number;
  retries: number;
  redispatches: number;
}

export interface Haproxy {
  /** HAProxy's own loopback ports: what clients (public_addr, ssh_public_addr) use. */
  webPort: number;
  sshPort: number;
  configFile: string;
  /** Everything HAProxy logged so far (one line per connection with `option tcplog`, and server state changes). */
  log(): string;
  /** `show stat` over the admin socket, parsed. */
  stats(): Promise<HaproxyStat[]>;
  /** One command of HAProxy's runtime API over the admin socket (e.g. `disable health web/jumpgate1`); resolves with its answer. */
  admin(command: string): Promise<string>;
  /** Waits until `server` of `backend` (web or ssh) shows `status` (e.g. DOWN after a kill); resolves with the ms waited. */
  waitForStatus(backend: 'web' | 'ssh', server: string, status: string, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

/** The names HAProxy gives the backends' servers: jumpgate1, jumpgate2, ... in the order the ports were given. */
export const serverName = (i: number): string => `jumpgate${i + 1}`;

/**
 * HAProxy's config text for two TCP frontends. Choices, each for a reason:
 * - `mode tcp` on both ports: TLS ends at the proxies (tsh checks their
 *   certificate) and SSH is not HTTP.
 * - health checks every 300 ms, `fall 1 rise 1`: a killed proxy is out
 *   within about 0.3 s; a restarted one is back as fast.
 * - `retries 3` + `option redispatch 1`: a connection refused by a dead
 *   proxy (before the check noticed) is retried on another server at once,
 *   so no new client sees the detection window.
 * - `timeout client/server 1h` and `timeout tunnel 8h`: an idle SSH session
 *   (tsh sends keepalives every 30 s) is never cut by the balancer.
 */
export function haproxyConfig(o: {
  webBind: string;
  sshBind: string;
  backends: HaproxyBackends;
  backendHost?: string;
  statsSocket?: string;
  preserveClientAddr?: boolean;
}): string {
  const host = o.backendHost ?? '127.0.0.1';
  const inter = `${CHECK_INTERVAL_MS}ms`;
  const servers = (ports: number[]) => ports.map((p, i) => `    server ${serverName(i)} ${host}:${p} check`);
  return [
    'global',
    '    log stdout format raw local0 info',
    '    maxconn 4000',
    ...(o.statsSocket ? [`    stats socket ${o.statsSocket} mode 600 level admin`] : []),
    '',
    'defaults',
    '    mode tcp',
    '    log global',
    '    option tcplog',
    '    option dontlognull',
    '    timeout connect 2s',
    '    timeout client 1h',
    '    timeout server 1h',
    '    timeout tunnel 8h',
    '    timeout client-fin 30s',
    '    timeout server-fin 30s',
    '    retries 3',
    '    option redispatch 1',
    `    default-server inter ${inter} fastinter ${inter} downinter ${inter} fall 1 rise 1`,
    '',
    'frontend jumpgate_web',
    `    bind ${o.webBind}`,
    '    default_backend web',
    '',
    'frontend jumpgate_ssh',
    `    bind ${o.sshBind}`,
    '    default_backend ssh',
    '',
    'backend web',
    '    balance roundrobin',
    ...(o.preserveClientAddr ? ['    source 0.0.0.0 usesrc clientip'] : []),
    ...servers(o.backends.web),
    '',
    'backend ssh',
    '    balance roundrobin',
    ...(o.preserveClientAddr ? ['    source 0.0.0.0 usesrc clientip'] : []),
    ...servers(o.backends.ssh),
    '',
  ].join('\n');
}

/** Starts HAProxy on two free loopback ports in front of `opts.web` and `opts.ssh`; call `stop()` when done. */
export async function startHaproxy(opts: HaproxyOptions): Promise<Haproxy> {
  const haproxy = requireTool('haproxy', INSTALL);
  if (opts.web.length === 0 || opts.ssh.length === 0) throw new Error('startHaproxy: give at least one web and one ssh backend port');
  const statsSocket = join(opts.dir, 'haproxy.sock');
  for (let attempt = 0; ; attempt++) {
    const [webPort, sshPort] = [await freePort(), await freePort()];
    const configFile = join(opts.dir, 'haproxy.cfg');
    writeFileSync(
      configFile,
      haproxyConfig({
        webBind: `127.0.0.1:${webPort}`,
        sshBind: `127.0.0.1:${sshPort}`,
        backends: opts,
        statsSocket,
        ...(opts.backendHost ? { backendHost: opts.backendHost } : {}),
        ...(opts.preserveClientAddr ? { preserveClientAddr: true } : {}),
      }),
    );
    const check = await run(haproxy, ['-c', '-q', '-f', configFile]);
    if (check.code !== 0) throw new Error(`haproxy rejected its test config:\n${check.stderr}${check.stdout}`);
    const child = spawn(haproxy, ['-f', configFile, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout!.on('data', (b: Buffer) => (log += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const up = (await listening(webPort, 10_000, () => child.exitCode !== null)) && (await listening(sshPort, 10_000, () => child.exitCode !== null));
    if (!up) {
      child.kill('SIGKILL');
      await exited;
      if (attempt < 3 && /Address already in use|cannot bind/i.test(log)) continue;
      throw new Error(`haproxy did not start on 127.0.0.1:${webPort}/${sshPort}:\n${log}`);
    }
    // The stats socket is bound after the listeners: a test that asks for stats right away would find no socket yet.
    const t0 = Date.now();
    while (!existsSync(statsSocket) && child.exitCode === null && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    if (!existsSync(statsSocket)) throw new Error(`haproxy did not create its stats socket ${statsSocket} within 10 s:\n${log}`);
    const admin = (command: string) => adminCommand(statsSocket, command);
    const stats = async () => parseStat(await admin('show stat'));
    return {
      webPort,
      sshPort,
      configFile,
      log: () => log,
      stats,
      admin,
      async waitForStatus(backend, server, status, timeoutMs = 10_000) {
        const t0 = Date.now();
        for (;;) {
          const row = (await stats()).find((r) => r.proxy === backend && r.server === server);
          if (row?.status.startsWith(status)) return Date.now() - t0;
          if (Date.now() - t0 > timeoutMs) throw new Error(`haproxy: ${backend}/${server} is ${row?.status ?? 'absent'}, not ${status}, after ${timeoutMs} ms:\n${log.slice(-2000)}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      },
      async stop() {
        if (child.exitCode !== null || child.signalCode !== null) return;
        // SIGUSR1 = soft stop (waits for sessions); SIGTERM = hard stop: tests want it gone.
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      },
    };
  }
}

/** Sends one command to the admin socket; HAProxy answers and closes the connection. */
function adminCommand(socket: string, command: string): Promise<string> {
  if (/[\r\n;]/.test(command)) throw new Error(`haproxy admin: one command, no separators: ${JSON.stringify(command)}`);
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let text = '';
    s.on('data', (b: Buffer) => (text += b.toString()));
    s.once('error', reject);
    s.once('connect', () => s.write(`${command}\n`));
    s.once('close', () => resolve(text));
  });
}

/** `show stat`'s CSV, whose header line starts with "# ". */
function parseStat(text: string): HaproxyStat[] {
  const [header, ...rows] = text.split('\n').filter((l) => l.trim() !== '');
  if (!header?.startsWith('# ')) throw new Error(`haproxy stats: unexpected answer ${JSON.stringify(text.slice(0, 200))}`);
  const cols = header.slice(2).split(',');
  const at = (r: string[], name: string) => r[cols.indexOf(name)] ?? '';
  return rows.map((line) => {
    const r = line.split(',');
    return {
      proxy: at(r, 'pxname'),
      server: at(r, 'svname'),
      status: at(r, 'status'),
      total: Number(at(r, 'stot')) || 0,
      connectErrors: Number(at(r, 'econ')) || 0,
      retries: Number(at(r, 'wretr')) || 0,
      redispatches: Number(at(r, 'wredis')) || 0,
    };
  });
}

function listening(port: number, timeoutMs: number, gaveUp: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const attempt = (): void => {
      if (gaveUp() || Date.now() > deadline) return resolve(false);
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => setTimeout(attempt, 50));
    };
    attempt();
  });
}
