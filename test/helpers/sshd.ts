import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { requireTool } from './tools.js';

/** A private OpenSSH server on 127.0.0.1, as a Jumpgate node. */
export interface SshdNode {
  port: number;
  /** Everything sshd logged so far (-e sends its log to stderr). */
  log(): string;
  /** Waits until the log matches (sshd writes auth failures asynchronously). */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface SshdOptions {
  dir: string;
  hostKey: string;
  hostCertificate: string;
  trustedUserCaKeys: string;
  extra?: string[];
  /** The loopback address to listen on (default 127.0.0.1; any 127.x works on Linux). */
  listenAddress?: string;
  /** A fixed port (default: a free one). */
  port?: number;
  /** sshd's PidFile (default none): a node agent's SIGHUP goes to that pid. */
  pidFile?: string;
  /**
   * HOME of the node's sessions (default: `dir`). Not the account's own home: a command over ssh
   * runs `bash -c`, which on Debian reads ~/.bashrc, and root's on the test machines (pyenv init)
   * takes 3-6 s of every session under load; the tests check the proxy, not the machine's dotfiles.
   */
  home?: string;
}

/** Asks the kernel for a free loopback port (sshd cannot report a port 0 choice). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Starts `sshd -D -e` with only the given host certificate and user CA as trust. */
export async function startSshd(opts: SshdOptions): Promise<SshdNode> {
  const sshd = requireTool('sshd', 'apt-get install -y openssh-server');
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const conf = join(opts.dir, 'sshd_config');
    writeFileSync(
      conf,
      [
        `Port ${port}`,
        `ListenAddress ${opts.listenAddress ?? '127.0.0.1'}`,
        `HostKey ${opts.hostKey}`,
        `HostCertificate ${opts.hostCertificate}`,
        `TrustedUserCAKeys ${opts.trustedUserCaKeys}`,
        'AuthorizedKeysFile none',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        `PidFile ${opts.pidFile ?? 'none'}`,
        // DEBUG2: sshd says why it refused a certificate (e.g. a CA not listed) only at this level.
        'LogLevel DEBUG2',
        'PermitRootLogin prohibit-password',
        'Subsystem sftp internal-sftp',
        // sshd(8): SetEnv overrides the default environment, HOME included (see `home` above).
        `SetEnv HOME=${opts.home ?? opts.dir}`,
        ...(opts.extra ?? []),
        '',
      ].join('\n'),
    );
    const child = spawn(sshd, ['-D', '-e', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    const ready = await waitFor(child, () => log, /Server listening on 127\.\d+\.\d+\.\d+ port/, 10_000);
    if (ready) return makeNode(child, port, () => log);
    child.kill('SIGKILL');
    if (attempt >= 2 || !/Address already in use/.test(log)) {
      throw new Error(`sshd did not start:\n${log}`);
    }
  }
}

function makeNode(child: ChildProcess, port: number, log: () => string): SshdNode {
  return {
    port,
    log,
    async waitForLog(re, timeoutMs = 5_000) {
      const ok = await waitFor(child, log, re, timeoutMs);
      if (!ok) throw new Error(`sshd log never matched ${re}:\n${log()}`);
      return log();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function waitFor(child: ChildProcess, log: () => string, re: RegExp, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (re.test(log())) return true;
    if (child.exitCode !== null) return re.test(log());
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}
