/**
 * A private, real PostgreSQL server for tests: `initdb` into a temp dir owned
 * by the `postgres` account, `postgres` on a free loopback port with its
 * socket in that dir, a `jumpgate` role (password auth over TCP) owning a
 * `jumpgate` database. Nothing is shared with a system cluster.
 *
 * Needs Debian's `postgresql` package (the server binaries under
 * /usr/lib/postgresql/<version>/bin) and root (to run it as `postgres`).
 */
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { acceptsTcp, run } from './tools.js';
import { freePort } from './sshd.js';

const INSTALL = 'apt-get install -y postgresql';

export interface TestPostgres {
  host: string;
  port: number;
  /** postgres://jumpgate:<password>@127.0.0.1:<port>/jumpgate */
  connString: string;
  /** The connection string of another database on the same server (made by `createDatabase`). */
  connStringFor(db: string): string;
  /** Creates a fresh database owned by the jumpgate role; returns its connection string. */
  createDatabase(name: string): Promise<string>;
  /** Runs SQL as the superuser through psql (over the socket); returns stdout. Throws on an error. */
  psql(sql: string, db?: string): Promise<string>;
  /** Fast shutdown and start again on the same port and data (a database that went away and came back). */
  restart(): Promise<void>;
  /** Stops the server (fast shutdown); `start()` brings it back on the same port and data. */
  stopServer(): Promise<void>;
  start(): Promise<void>;
  /** SIGKILL of the postmaster (a crash); `start()` recovers from its WAL. */
  kill9(): Promise<void>;
  /** Stops it and removes its files. */
  stop(): Promise<void>;
}

/** The server binaries of the newest installed PostgreSQL, or an error naming the package. */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(`PostgreSQL's server (initdb, postgres) is not installed; install it with: ${INSTALL}`);
  return join(root, versions[0]!, 'bin');
}

function asPostgres(cmd: string, args: string[]): string[] {
  return ['-u', 'postgres', '--', cmd, ...args];
}

/** Starts a private PostgreSQL server; call `stop()` when done. */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (process.getuid?.() !== 0) throw new Error('the PostgreSQL test server runs as the postgres account: run the tests as root (CI does)');
  const dir = mkdtempSync(join(tmpdir(), 'jumpgate-pg-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  mkdirSync(data, { mode: 0o700 });
  const ids = await run('id', ['-u', 'postgres']);
  const gids = await run('id', ['-g', 'postgres']);
  if (ids.code !== 0) throw new Error(`there is no postgres account; install the server with: ${INSTALL}`);
  const uid = Number(ids.stdout.trim());
  const gid = Number(gids.stdout.trim());
  chownSync(dir, uid, gid);
  chownSync(data, uid, gid);
  const init = await run('runuser', asPostgres(join(bin, 'initdb'), ['-D', data, '--auth-local=trust', '--auth-host=scram-sha-256', '-U', 'postgres', '--no-sync']), { timeoutMs: 60_000 });
  if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  let child: ChildProcess | undefined;
  let log = '';

  const start = async () => {
    log = '';
    // Spawned as the postgres account directly (not through runuser): the postmaster is this process's
    // own child, so a SIGKILL reaches it and its exit is reaped (no zombie holding postmaster.pid).
    child = spawn(
      join(bin, 'postgres'),
      ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=on', '-c', 'max_connections=200', '-c', 'shared_buffers=32MB',
        // Crash recovery first fsyncs every file of the data dir, one by one (tens of seconds here once a
        // test file made a few dozen databases); syncfs() does it in one call per file system (Linux).
        '-c', 'recovery_init_sync_method=syncfs'],
      { stdio: ['ignore', 'pipe', 'pipe'], uid, gid, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C.UTF-8' } },
    );
    child.stdout!.on('data', (b: Buffer) => (log += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`postgres exited at start: ${log.slice(-2000)}`);
      if ((await acceptsTcp(port)) && (await run('runuser', asPostgres(join(bin, 'pg_isready'), ['-h', dir, '-p', String(port)]))).code === 0) break;
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 30 s: ${log.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const exited = () =>
    new Promise<void>((resolve) => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
    });
  const stopServer = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    // SIGINT = fast shutdown: rolls back open transactions, disconnects clients.
    child.kill('SIGINT');
    const done = exited();
    const timer = setTimeout(() => child?.kill('SIGKILL'), 20_000);
    await done;
    clearTimeout(timer);
  };
  const psql = async (sql: string, db = 'postgres') => {
    const r = await run('runuser', asPostgres(join(bin, 'psql'), ['-h', dir, '-p', String(port), '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql]));
    if (r.code !== 0) throw new Error(`psql failed (${sql.slice(0, 80)}): ${r.stderr}`);
    return r.stdout;
  };

  await start();
  await psql(`CREATE ROLE jumpgate LOGIN PASSWORD '${password}'`);
  // pg_hba: the socket (psql here) is trusted; TCP needs the password (scram-sha-256), as production would.
  await psql(`CREATE DATABASE jumpgate OWNER jumpgate`);
  const connStringFor = (db: string) => `postgres://jumpgate:${password}@127.0.0.1:${port}/${db}`;

  return {
    host: '127.0.0.1',
    port,
    connString: connStringFor('jumpgate'),
    connStringFor,
    createDatabase: async (name) => {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad test database name ${name}`);
      await psql(`CREATE DATABASE ${name} OWNER jumpgate`);
      return connStringFor(name);
    },
    psql,
    restart: async () => {
      await stopServer();
      await start();
    },
    stopServer,
    start,
    kill9: async () => {
      child?.kill('SIGKILL');
      await exited();
      // Orphaned backends exit when they notice the postmaster is gone; a new postmaster refuses to
      // start while they still hold the shared memory, so wait for them.
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && (await backendsOf(data))) {
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: async () => {
      await stopServer();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether any process still has `data` (its backends' cwd) open: orphaned backends of a killed postmaster. */
async function backendsOf(data: string): Promise<boolean> {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readlinkSync(join('/proc', pid, 'cwd')) === data) return true;
    } catch {
      // gone, or not ours to read
    }
  }
  return false;
}
