/**
 * A private, real PostgreSQL server for tests: `initdb` into a temp dir owned
 * by the `postgres` account, `postgres` on a free loopback port with its
 * socket in that dir, a `jumpgate` role (password auth over TCP) owning a
 * `jumpgate` database. Nothing is shared with a system cluster.
 *
 * Needs Debian's `postgresql` package (the server binaries under
 * /usr/lib/postgresql/<version>/bin) and root (to run it as `postgres`).
 */
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
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
  /**
   * Turns the durability settings on (fsync, synchronous_commit, full_page_writes: PostgreSQL's
   * defaults) and makes everything written so far durable (a CHECKPOINT), or off again. For a
   * server started with `durable: false` that one test crashes. Survives restarts (ALTER SYSTEM).
   */
  setDurable(on: boolean): Promise<void>;
}

export interface PostgresOptions {
  /**
   * true (default): PostgreSQL's durability settings, as in production. false: `fsync=off`,
   * `synchronous_commit=off`, `full_page_writes=off` (no write waits on a disk flush: CREATE DATABASE
   * 1.0-1.5 s instead of 1.5-2.7 s through psql at load 15 here, 0.4-0.9 s through the socket): for
   * servers that are never crashed (kill -9 loses the last commits without synchronous_commit);
   * a stop/start (fast shutdown) keeps everything. `setDurable(true)` before a crash test.
   */
  durable?: boolean;
}

/** The settings `durable: false` turns off (PostgreSQL's defaults are on). */
const DURABILITY = ['fsync', 'synchronous_commit', 'full_page_writes'] as const;

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
export async function startPostgres(opts: PostgresOptions = {}): Promise<TestPostgres> {
  const durable = opts.durable ?? true;
  const bin = postgresBinDir();
  if (process.getuid?.() !== 0) throw new Error('the PostgreSQL test server runs as the postgres account: run the tests as root (CI does)');
  const dir = mkdtempSync(join(tmpdir(), 'jumpgate-pg-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const ids = await run('id', ['-u', 'postgres']);
  const gids = await run('id', ['-g', 'postgres']);
  if (ids.code !== 0) throw new Error(`there is no postgres account; install the server with: ${INSTALL}`);
  const uid = Number(ids.stdout.trim());
  const gid = Number(gids.stdout.trim());
  chownSync(dir, uid, gid);
  // A copy of one initdb output per machine (initdb: 15 s at load 15 here, a copy about 2 s).
  const copied = await run('cp', ['-a', await templateDataDir(bin, uid, gid), data], { timeoutMs: 60_000 });
  if (copied.code !== 0) throw new Error(`copying the initdb template failed: ${copied.stderr}`);
  // In the config file, not on the command line: a -c setting cannot be changed by ALTER SYSTEM (setDurable).
  appendFileSync(join(data, 'postgresql.conf'), DURABILITY.map((k) => `${k} = ${durable ? 'on' : 'off'}\n`).join(''));
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
      ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', 'shared_buffers=32MB',
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
      if ((await acceptsTcp(port)) && (await superuserSql(dir, port, 'SELECT 1').then(() => true, () => false))) break;
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
  // pg_hba: the socket (psql, superuserSql) is trusted; TCP needs the password (scram-sha-256), as production would.
  await superuserSql(dir, port, `CREATE ROLE jumpgate LOGIN PASSWORD '${password}'`);
  await superuserSql(dir, port, 'CREATE DATABASE jumpgate OWNER jumpgate');
  const connStringFor = (db: string) => `postgres://jumpgate:${password}@127.0.0.1:${port}/${db}`;

  return {
    host: '127.0.0.1',
    port,
    connString: connStringFor('jumpgate'),
    connStringFor,
    createDatabase: async (name) => {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad test database name ${name}`);
      await superuserSql(dir, port, `CREATE DATABASE ${name} OWNER jumpgate`);
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
    setDurable: async (on) => {
      const value = on ? 'on' : 'off';
      for (const k of DURABILITY) await superuserSql(dir, port, `ALTER SYSTEM SET ${k} = ${value}`);
      await superuserSql(dir, port, 'SELECT pg_reload_conf()');
      // A reload is asynchronous: wait until a new backend runs with it.
      const deadline = Date.now() + 10_000;
      while ((await superuserSql(dir, port, 'SHOW fsync')).rows[0]?.['fsync'] !== value) {
        if (Date.now() > deadline) throw new Error(`postgres did not take fsync=${value} within 10 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
      if (on) await superuserSql(dir, port, 'CHECKPOINT');
    },
  };
}

/** One statement as the superuser over the server's socket (no psql process: two spawns saved per call). */
async function superuserSql(socketDir: string, port: number, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ host: socketDir, port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5_000 });
  client.on('error', () => {}); // a server going away mid-call rejects the query below
  try {
    await client.connect();
    return await client.query(sql);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * initdb's output for this PostgreSQL, made once per machine under the temp dir
 * (`jumpgate-pg-template-<hash of the binaries' path and mtime>/data`) and copied
 * for each server. Made in a private dir and renamed into place, so concurrent test
 * files never see half of one; one not made by root (this runner) is not used.
 */
async function templateDataDir(bin: string, uid: number, gid: number): Promise<string> {
  const args = ['--auth-local=trust', '--auth-host=scram-sha-256', '-U', 'postgres', '--no-sync'];
  // The locale initdb picks comes from the environment: part of the key too.
  const locale = ['LC_ALL', 'LC_CTYPE', 'LANG'].map((k) => process.env[k] ?? '');
  const key = createHash('sha256').update(JSON.stringify([bin, statSync(join(bin, 'postgres')).mtimeMs, args, locale])).digest('hex').slice(0, 16);
  const final = join(tmpdir(), `jumpgate-pg-template-${key}`);
  const usable = () => existsSync(join(final, 'ready')) && statSync(final).uid === 0;
  if (usable()) return join(final, 'data');
  const work = mkdtempSync(join(tmpdir(), 'jumpgate-pg-template-new-'));
  try {
    chmodSync(work, 0o755);
    // initdb fills an empty directory the postgres account owns; `work` itself stays root's.
    mkdirSync(join(work, 'data'), { mode: 0o700 });
    chownSync(join(work, 'data'), uid, gid);
    const init = await run('runuser', asPostgres(join(bin, 'initdb'), ['-D', join(work, 'data'), ...args]), { timeoutMs: 120_000 });
    if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
    writeFileSync(join(work, 'ready'), '');
    try {
      renameSync(work, final);
    } catch (err) {
      // Another test file made it first (ENOTEMPTY/EEXIST): use theirs.
      if (!usable()) throw err;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (!usable()) throw new Error(`the PostgreSQL template ${final} is not usable (not made by root, or incomplete): remove it`);
  return join(final, 'data');
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
