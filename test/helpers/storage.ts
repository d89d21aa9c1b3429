/**
 * Storage backends for the contract suite (test/server/storage/contract.test.ts):
 * each harness makes a fresh, empty store and opens any number of backend
 * instances on it (each instance = one process's view), on real parts.
 */
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe } from 'node:test';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendOptions, StateBackend } from '../../src/server/storage/backend.js';
import { openPostgresBackend, type PostgresBackend } from '../../src/server/storage/postgres/index.js';
import { openDirBackend } from '../../src/server/storage/dir/index.js';
import { startPostgres, type TestPostgres } from './postgres.js';
import { tempDir } from './tools.js';

export interface TestStore {
  /** Another backend instance on the same store (what another proxy or tctl would open). */
  open(opts?: Partial<BackendOptions>): Promise<StateBackend>;
  /**
   * The store's host crashes and comes back (postgres: kill -9 of the postmaster, then start:
   * recovery from the WAL). Backends opened before it may fail; open new ones after.
   */
  crashAndRecover(): Promise<void>;
}

export interface StorageHarness {
  name: string;
  /** Whether pending logins are shared between instances (postgres) or live in each process (dir: one process). */
  sharedPending: boolean;
  setup(): Promise<void>;
  /**
   * A fresh, empty store. `forCrash`: the test will call crashAndRecover (postgres: a CHECKPOINT
   * first, so recovery replays this test's writes, not every earlier test's CREATE DATABASE: about
   * 1 s per database of WAL on this machine).
   */
  fresh(opts?: { forCrash?: boolean }): Promise<TestStore>;
  /** Closes every backend opened so far (after each test: idle instances would keep reconnecting). */
  closeAll(): Promise<void>;
  teardown(): Promise<void>;
}

/** Writes a 0600 encryption key file (32 random bytes, base64) into `dir`. */
export function writeKeyFile(dir: string, name = `key-${randomBytes(4).toString('hex')}`): string {
  const f = join(dir, name);
  writeFileSync(f, `${randomBytes(32).toString('base64')}\n`);
  chmodSync(f, 0o600);
  return f;
}

/** BackendOptions for tests: warnings collected in `warnings`. */
export function backendOptions(over: Partial<BackendOptions> = {}, warnings: string[] = []): BackendOptions {
  return { serverId: 'proxy-test', clock: () => new Date(), warn: (l) => warnings.push(l), ...over };
}

/** The postgres harness: one private server per test file (not durable but around a crash), one database per store. */
export function postgresHarness(): StorageHarness & { pg(): TestPostgres; keyFile(): string; tmp(): string } {
  let server: TestPostgres | undefined;
  let tmp: { dir: string; cleanup: () => void } | undefined;
  let key = '';
  let n = 0;
  const opened: StateBackend[] = [];
  return {
    name: 'postgres',
    sharedPending: true,
    pg: () => server!,
    keyFile: () => key,
    tmp: () => tmp!.dir,
    async setup() {
      tmp = tempDir('storage-pg');
      key = writeKeyFile(tmp.dir, 'storage.key');
      // Not durable (fsync, synchronous_commit, full_page_writes off: a CREATE DATABASE per test is
      // ~10x faster) except around a crash: fresh({ forCrash }) turns them on, crashAndRecover off again.
      server = await startPostgres({ durable: false });
    },
    async fresh({ forCrash = false } = {}) {
      const conn = await server!.createDatabase(`t${process.pid}_${n++}`);
      // setDurable(true) ends with a CHECKPOINT: recovery then replays only this test's writes.
      if (forCrash) await server!.setDurable(true);
      return {
        open: async (opts = {}) => {
          const b: PostgresBackend = await openPostgresBackend(
            { type: 'postgres', connString: conn, encryptionKeyFile: key, previousEncryptionKeyFiles: [], maxConnections: 5 },
            backendOptions(opts),
          );
          opened.push(b);
          return b;
        },
        crashAndRecover: async () => {
          await server!.kill9();
          await server!.start();
          await server!.setDurable(false);
        },
      };
    },
    async closeAll() {
      await Promise.all(opened.splice(0).map((b) => b.close()));
    },
    async teardown() {
      await Promise.all(opened.splice(0).map((b) => b.close()));
      await server?.stop();
      tmp?.cleanup();
    },
  };
}

/**
 * The dir harness: one temp data directory per store; another instance is
 * another DirBackend on the same directory (tctl beside the server). A crash
 * is the process dying: everything a resolved write promised is on disk
 * (fsynced), so recovery is opening the directory again. Pending logins
 * live in the process (dir = one process): a new instance starts with none.
 */
export function dirHarness(): StorageHarness {
  let tmp: { dir: string; cleanup: () => void } | undefined;
  let n = 0;
  const opened: StateBackend[] = [];
  return {
    name: 'dir',
    sharedPending: false,
    async setup() {
      tmp = tempDir('storage-dir');
    },
    async fresh() {
      const dataDir = join(tmp!.dir, `store-${n++}`);
      return {
        open: async (opts = {}) => {
          const b = openDirBackend({ dataDir }, backendOptions(opts));
          opened.push(b);
          return b;
        },
        crashAndRecover: async () => {},
      };
    },
    async closeAll() {
      await Promise.all(opened.splice(0).map((b) => b.close()));
    },
    async teardown() {
      await Promise.all(opened.splice(0).map((b) => b.close()));
      tmp?.cleanup();
    },
  };
}

/**
 * One `describe(`${title}: ${backend}`)` per backend (dir, then PostgreSQL)
 * with the harness set up before, torn down after, and every backend it
 * opened closed after each test; `suite` declares the tests with `h`.
 */
export function describeEachBackend(title: string, suite: (h: StorageHarness) => void): void {
  for (const make of [dirHarness, postgresHarness]) {
    const h = make();
    describe(`${title}: ${h.name}`, () => {
      before(() => h.setup());
      after(() => h.teardown());
      afterEach(() => h.closeAll());
      suite(h);
    });
  }
}
