import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { freePort } from './sshd.js';
import { requireTool, run } from './tools.js';

/** A private squid on 127.0.0.1: a real HTTP CONNECT proxy for the net tests. */
export interface Squid {
  port: number;
  /** http://127.0.0.1:PORT (with the test credentials when auth is on). */
  url: string;
  /** squid's access.log so far. squid logs a CONNECT only when the tunnel closes. */
  accessLog(): string;
  /** Polls access.log until it matches (the line appears after the tunnel closes). */
  waitForAccessLog(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface SquidOptions {
  /** A fresh directory for config, logs, pid and cache (tempDir()). */
  dir: string;
  /** CONNECT to these ports is answered 403. */
  denyConnectPorts?: number[];
  /** Require Basic proxy auth with this one account. */
  basicAuth?: { user: string; password: string };
}

const INSTALL = 'apt-get install -y squid';

/** Starts `squid -N -d1 -f CONF` on a free loopback port with everything under opts.dir. */
export async function startSquid(opts: SquidOptions): Promise<Squid> {
  const squid = requireTool('squid', INSTALL);
  const asRoot = process.getuid?.() === 0;
  const lines: string[] = [];
  if (opts.basicAuth) {
    const helper = '/usr/lib/squid/basic_ncsa_auth';
    const openssl = requireTool('openssl', 'apt-get install -y openssl');
    // basic_ncsa_auth reads crypt(3), MD5 ($1$) and Apache MD5 ($apr1$) hashes.
    const hash = execFileSync(openssl, ['passwd', '-apr1', opts.basicAuth.password]).toString().trim();
    writeFileSync(join(opts.dir, 'htpasswd'), `${opts.basicAuth.user}:${hash}\n`);
    lines.push(
      `auth_param basic program ${helper} ${join(opts.dir, 'htpasswd')}`,
      'auth_param basic children 1 startup=1 idle=1',
      'auth_param basic realm jumpgate-test',
      'acl authenticated proxy_auth REQUIRED',
    );
  }
  const deny = opts.denyConnectPorts ?? [];
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const conf = join(opts.dir, 'squid.conf');
    mkdirSync(join(opts.dir, 'run'), { recursive: true });
    writeFileSync(
      conf,
      [
        `http_port 127.0.0.1:${port}`,
        `pid_filename ${join(opts.dir, 'run', 'squid.pid')}`,
        `cache_log ${join(opts.dir, 'run', 'cache.log')}`,
        // stdio: squid writes the file itself (no log daemon), unbuffered by default
        `access_log stdio:${join(opts.dir, 'run', 'access.log')}`,
        `coredump_dir ${join(opts.dir, 'run')}`,
        'netdb_filename none',
        'cache deny all',
        'pinger_enable off',
        'shutdown_lifetime 0 seconds',
        'visible_hostname jumpgate-test',
        'dns_v4_first on',
        'logfile_rotate 0',
        'acl CONNECT method CONNECT',
        ...(deny.length ? [`acl denied_ports port ${deny.join(' ')}`, 'http_access deny CONNECT denied_ports'] : []),
        ...lines,
        ...(opts.basicAuth ? ['http_access deny !authenticated'] : []),
        'http_access allow localhost',
        'http_access deny all',
        '',
      ].join('\n'),
    );
    // As root squid drops to user proxy, which must reach the (0700) temp dir
    // and write the logs and pid file.
    if (asRoot) chmodSync(opts.dir, 0o755);
    if (asRoot) chownSync(join(opts.dir, 'run'), uidOf('proxy'), gidOf('proxy'));
    const parse = await run(squid, ['-k', 'parse', '-f', conf]);
    if (parse.code !== 0) throw new Error(`squid rejected its test config:\n${parse.stderr}`);

    let stderr = '';
    // -n: a service name of its own, so parallel squids do not share shared-memory segments
    const child = spawn(squid, ['-N', '-d1', '-n', `jgtest${port}`, '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const up = await waitUntilListening(port, 15_000, () => child.exitCode !== null);
    if (!up) {
      child.kill('SIGKILL');
      await exited;
      if (attempt < 3 && /Address already in use|bind/i.test(stderr)) continue;
      throw new Error(`squid did not start on 127.0.0.1:${port}:\n${stderr}`);
    }
    const accessLogPath = join(opts.dir, 'run', 'access.log');
    const accessLog = (): string => {
      try {
        return readFileSync(accessLogPath, 'utf8');
      } catch {
        return '';
      }
    };
    const auth = opts.basicAuth ? `${encodeURIComponent(opts.basicAuth.user)}:${encodeURIComponent(opts.basicAuth.password)}@` : '';
    return {
      port,
      url: `http://${auth}127.0.0.1:${port}`,
      accessLog,
      async waitForAccessLog(re, timeoutMs = 10_000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const text = accessLog();
          if (re.test(text)) return text;
          if (Date.now() > deadline) throw new Error(`squid's access.log never matched ${re}:\n${text}\n--- cache.log:\n${stderr}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      async stop() {
        if (child.exitCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
          await exited;
          clearTimeout(timer);
        }
      },
    };
  }
}

function waitUntilListening(port: number, timeoutMs: number, gaveUp: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const attempt = (): void => {
      if (gaveUp() || Date.now() > deadline) {
        resolve(false);
        return;
      }
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

function uidOf(user: string): number {
  return Number(execFileSync('id', ['-u', user]).toString().trim());
}

function gidOf(user: string): number {
  return Number(execFileSync('id', ['-g', user]).toString().trim());
}
