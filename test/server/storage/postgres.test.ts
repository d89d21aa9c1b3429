/**
 * The postgres backend's own behaviour (the shared behaviour is in
 * contract.test.ts): reaching the database, losing it and getting it back,
 * migrations, encryption at rest and its key rotation. A real private
 * PostgreSQL server (test/helpers/postgres.ts).
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openPostgresBackend, type PostgresBackend } from '../../../src/server/storage/postgres/index.js';
import { readConnTarget } from '../../../src/server/storage/postgres/conn-string.js';
import { SCHEMA_VERSION } from '../../../src/server/storage/postgres/schema.js';
import { CHANGE_VISIBILITY_MS, type ChangeTopic, type StoredCaKey } from '../../../src/server/storage/backend.js';
import { UserError } from '../../../src/errors.js';
import { backendOptions, writeKeyFile } from '../../helpers/storage.js';
import { startPostgres, type TestPostgres } from '../../helpers/postgres.js';
import { freePort } from '../../helpers/sshd.js';
import { tempDir } from '../../helpers/tools.js';

let pg: TestPostgres;
const tmp = tempDir('storage-pg-only');
let key = '';
let n = 0;
const opened: PostgresBackend[] = [];

before(async () => {
  key = writeKeyFile(tmp.dir, 'storage.key');
  // Never crashed here (stopped and started: a fast shutdown keeps every commit): without fsync.
  pg = await startPostgres({ durable: false });
});
after(async () => {
  await Promise.all(opened.map((b) => b.close()));
  await pg?.stop();
  tmp.cleanup();
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((b) => b.close()));
});

const password = () => new URL(pg.connString).password;
const freshDb = () => pg.createDatabase(`p${process.pid}_${n++}`);

async function open(connString: string, over: { keyFile?: string; previous?: string[]; warnings?: string[] } = {}): Promise<PostgresBackend> {
  const b = await openPostgresBackend(
    { type: 'postgres', connString, encryptionKeyFile: over.keyFile ?? key, previousEncryptionKeyFiles: over.previous ?? [], maxConnections: 4 },
    backendOptions({}, over.warnings ?? []),
  );
  opened.push(b);
  return b;
}

const caKey = (id: string): StoredCaKey => ({
  id,
  created: '2026-11-30T04:00:00.000Z',
  privateKeyPem: `-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA${id}\n-----END OPENSSH PRIVATE KEY-----\n`,
});

async function rejectsWith(p: Promise<unknown>, code: string, ...res: RegExp[]): Promise<UserError> {
  let caught: unknown;
  await p.then(
    () => assert.fail(`expected ${code}`),
    (err: unknown) => (caught = err),
  );
  assert.ok(caught instanceof UserError, `expected a UserError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const re of res) assert.match(`${caught.message} ${caught.hint ?? ''}`, re);
  return caught;
}

async function waitFor(fn: () => Promise<boolean> | boolean, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await Promise.resolve().then(fn).catch(() => false))) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('reaching the database', () => {
  test('a closed port at open is STORE_UNAVAILABLE naming the address, without the password', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const err = await rejectsWith(open(`postgres://jumpgate:s3cret-pw@127.0.0.1:${port}/jumpgate`), 'STORE_UNAVAILABLE', new RegExp(`postgres://jumpgate@127\\.0\\.0\\.1:${port}/jumpgate`), /ECONNREFUSED/);
    console.log(`# unreachable at open: refused after ${Date.now() - t0} ms`);
    assert.doesNotMatch(`${err.message} ${err.hint} ${String((err.cause as Error)?.message)}`, /s3cret-pw/);
  });

  test('a wrong password is STORE_UNAVAILABLE; neither password appears in the error', async () => {
    const bad = pg.connString.replace(password(), 'wrong-pw-123');
    const err = await rejectsWith(open(bad), 'STORE_UNAVAILABLE', /password authentication failed/, new RegExp(`postgres://jumpgate@127\\.0\\.0\\.1:${pg.port}/jumpgate`));
    assert.doesNotMatch(`${err.message} ${err.hint}`, /wrong-pw-123/);
    assert.doesNotMatch(`${err.message} ${err.hint}`, new RegExp(password()));
  });

  test('conn_string_file is read at open; one readable by others is used with a warning', async () => {
    const conn = await freshDb();
    const f = join(tmp.dir, 'pg.conn');
    writeFileSync(f, `  ${conn}\n`);
    chmodSync(f, 0o644);
    const warnings: string[] = [];
    const b = await openPostgresBackend(
      { type: 'postgres', connStringFile: f, encryptionKeyFile: key, previousEncryptionKeyFiles: [], maxConnections: 3 },
      backendOptions({}, warnings),
    );
    opened.push(b);
    assert.equal(b.location, `postgres://jumpgate@127.0.0.1:${pg.port}/${new URL(conn).pathname.slice(1)}`);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`storage.conn_string_file: ${f} is readable by group or others.*chmod 600 ${f}`));
    assert.ok(!warnings.join('').includes(password()));
    writeFileSync(f, '\n');
    await rejectsWith(
      openPostgresBackend({ type: 'postgres', connStringFile: f, encryptionKeyFile: key, previousEncryptionKeyFiles: [], maxConnections: 3 }, backendOptions()),
      'STORE_CONFIG',
      /conn_string_file.*is empty/,
    );
  });

  const forms: [string, string, string, string[]][] = [
    ['a URL with a password', 'postgres://app:pa%40ss@db.example:6432/jg?sslmode=require', 'postgres://app@db.example:6432/jg', ['pa@ss', 'pa%40ss']],
    ['a URL without port or database', 'postgresql://app@db.example', 'postgres://app@db.example:5432/app', []],
    ['a URL with the password as a parameter', 'postgres://app@db/jg?password=hunter2', 'postgres://app@db:5432/jg', ['hunter2']],
    ['key=value', "host=db.example port=6432 user=app password='p w' dbname=jg", 'postgres://app@db.example:6432/jg', ['p w']],
  ];
  for (const [name, text, location, secrets] of forms) {
    test(`the location of ${name} carries no password`, () => {
      const t = readConnTarget({ connString: text }, () => undefined);
      assert.equal(t.location, location);
      for (const s of secrets) assert.ok(t.secrets.includes(s), `${s} is scrubbed`);
    });
  }
});

describe('losing the database while running', () => {
  test('calls fail with STORE_UNAVAILABLE (not a hang) while it is down; it works again by itself when it returns', async () => {
    const conn = await freshDb();
    const warnings: string[] = [];
    const a = await open(conn, { warnings });
    const b = await open(conn);
    await a.ca.create('user', caKey('K1'));
    await a.items.put('node', 'n1', { up: true });
    assert.equal(a.healthy(), true);
    await pg.stopServer();
    try {
      await rejectsWith(a.items.get('node', 'n1'), 'STORE_UNAVAILABLE', /state store unavailable/, new RegExp(`postgres://jumpgate@127\\.0\\.0\\.1:${pg.port}/`), /retries by itself/);
      await rejectsWith(a.pending.add({ key: 's', requestId: 'r', clientAddr: '10.0.0.1', expiresAt: Date.now() + 60_000, data: Buffer.from('x') }, { total: 10, perPrefix: 5, perSource: 3, entryBytes: 4096 }), 'STORE_UNAVAILABLE');
      assert.equal(a.healthy(), false);
      assert.equal((await a.ca.read('user'))?.active, 'K1', 'the cached CA still serves running sessions');
      assert.ok(warnings.some((w) => /state store at postgres:\/\/jumpgate@/.test(w)));
      assert.ok(!warnings.join('\n').includes(password()));
    } finally {
      await pg.start();
    }
    await waitFor(async () => (await a.items.get('node', 'n1')) !== undefined, 'a working again', 15_000);
    assert.equal(a.healthy(), true);
    // The listener came back too: b's change reaches a's watcher.
    const heard: ChangeTopic[] = [];
    a.watch((t) => heard.push(t));
    await waitFor(async () => {
      await b.items.put('node', 'n2', { up: true });
      return heard.includes('item:node');
    }, "a hearing b's change", 15_000);
  });

  test('a query stuck behind a lock is STORE_UNAVAILABLE after the lock timeout, not a hang', async () => {
    const conn = await freshDb();
    const a = await open(conn);
    await a.items.put('lock', 'x', 1);
    const db = new URL(conn).pathname.slice(1);
    const holder = pg.psql('BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(20); COMMIT;', db).catch(() => undefined);
    await waitFor(async () => (await pg.psql("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'items'::regclass", db)).trim() !== '0', 'the lock held', 10_000);
    await rejectsWith(a.items.get('lock', 'x'), 'STORE_UNAVAILABLE', /lock timeout|statement timeout|timeout/i);
    await pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20)%' AND pid <> pg_backend_pid()", db);
    await holder;
    assert.equal((await a.items.get('lock', 'x'))?.value, 1);
  });
});

describe('changes', () => {
  test('a CA change made without a NOTIFY (a listener that heard nothing) is still seen within CHANGE_VISIBILITY_MS: the poll', async () => {
    const conn = await freshDb();
    const a = await open(conn);
    await a.ca.create('user', caKey('K1'));
    const b = await open(conn);
    const heard: ChangeTopic[] = [];
    b.watch((t) => heard.push(t));
    const db = new URL(conn).pathname.slice(1);
    // Another writer's commit whose NOTIFY never arrived: only the revision tells.
    await pg.psql("UPDATE ca SET revision = revision + 1 WHERE type = 'user'", db);
    await waitFor(() => heard.includes('ca:user'), 'the poll reporting ca:user', CHANGE_VISIBILITY_MS);
  });

  test('a listener whose connection was cut reconnects and hears changes again', async () => {
    const conn = await freshDb();
    const a = await open(conn);
    const b = await open(conn);
    await a.ca.create('user', caKey('K1'));
    const heard: ChangeTopic[] = [];
    b.watch((t) => heard.push(t));
    const db = new URL(conn).pathname.slice(1);
    await pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN jumpgate_changes'", db);
    await waitFor(() => heard.includes('ca:user'), 'the reconnected listener reporting every CA topic', CHANGE_VISIBILITY_MS);
    await waitFor(async () => {
      await a.items.put('node', 'n1', { up: true });
      return heard.includes('item:node');
    }, 'a change heard after the reconnect', CHANGE_VISIBILITY_MS);
  });
});

describe('schema migrations', () => {
  test('four processes opening a new database at once apply each migration once', async () => {
    const conn = await freshDb();
    const all = await Promise.all([open(conn), open(conn), open(conn), open(conn)]);
    const db = new URL(conn).pathname.slice(1);
    assert.equal((await pg.psql('SELECT string_agg(version::text, \',\' ORDER BY version) FROM jumpgate_schema', db)).trim(), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1).join(','));
    await Promise.all(all.map((b, i) => b.items.put('node', `n${i}`, i)));
    assert.equal((await all[0]!.items.list('node')).length, 4);
  });

  test('a database written by a newer Jumpgate is refused (no downgrade)', async () => {
    const conn = await freshDb();
    await open(conn);
    await pg.psql(`INSERT INTO jumpgate_schema (version) VALUES (${SCHEMA_VERSION + 1})`, new URL(conn).pathname.slice(1));
    await rejectsWith(open(conn), 'STORE_SCHEMA_NEWER', new RegExp(`schema version ${SCHEMA_VERSION + 1}, newer than this Jumpgate knows \\(${SCHEMA_VERSION}\\)`));
  });
});

describe('encryption at rest', () => {
  test('CA private keys and pending logins are not in the clear in the database', async () => {
    const conn = await freshDb();
    const a = await open(conn);
    await a.ca.create('user', caKey('K1'));
    await a.ca.create('host', caKey('H1'));
    await a.pending.add({ key: 'the-oidc-state-secret', requestId: 'r1', clientAddr: '10.0.0.1', expiresAt: Date.now() + 60_000, data: Buffer.from('pkce-verifier-secret') }, { total: 10, perPrefix: 5, perSource: 3, entryBytes: 4096 });
    const db = new URL(conn).pathname.slice(1);
    const dump = await pg.psql("SELECT encode(private_key, 'escape') FROM ca_keys; SELECT key_hash || encode(data, 'escape') FROM pending_logins;", db);
    assert.ok((await pg.psql('SELECT count(*) FROM ca_keys', db)).trim() === '2');
    assert.doesNotMatch(dump, /OPENSSH PRIVATE KEY|b3BlbnNzaC1rZXkt|the-oidc-state-secret|pkce-verifier-secret/);
  });

  const edits: [string, string][] = [
    ["a rotated-out key's trust window stretched", "UPDATE ca_keys SET trusted_until = '2099-01-01T00:00:00.000Z' WHERE id = 'K1'"],
    ['a key moved to the other CA', "UPDATE ca_keys SET private_key = (SELECT private_key FROM ca_keys WHERE id = 'K1') WHERE id = 'H1'"],
    ["one key's ciphertext put in another key's row", "UPDATE ca_keys SET private_key = (SELECT private_key FROM ca_keys WHERE id = 'K1') WHERE id = 'K2'"],
    ['a changed creation date', "UPDATE ca_keys SET created = '2020-01-01T00:00:00.000Z' WHERE id = 'K2'"],
  ];
  for (const [name, sql] of edits) {
    test(`${name} in the database is refused with STORE_KEY_MISMATCH`, async () => {
      const conn = await freshDb();
      const a = await open(conn);
      await a.ca.create('user', caKey('K1'));
      await a.ca.update('user', (cur) => ({ type: 'user', active: 'K2', keys: [caKey('K2'), ...cur.keys.map((k) => ({ ...k, trustedUntil: '2026-12-01T00:00:00.000Z' }))] }));
      await a.ca.create('host', caKey('H1'));
      await pg.psql(sql, new URL(conn).pathname.slice(1));
      await rejectsWith(open(conn), 'STORE_KEY_MISMATCH', /does not authenticate/, /storage\.encryption_key_file/);
    });
  }

  test('another encryption key fails the open clearly; never a new CA', async () => {
    const conn = await freshDb();
    const a = await open(conn);
    const made = await a.ca.create('user', caKey('K1'));
    const other = writeKeyFile(tmp.dir);
    await rejectsWith(open(conn, { keyFile: other }), 'STORE_KEY_MISMATCH', /storage\.encryption_key_file/, /encrypted with key [0-9a-f]{16}/);
    assert.deepEqual(await a.ca.read('user'), made);
  });

  test('previous_encryption_key_files open old rows; reencryptAll rewrites them so the old key can go', async () => {
    const oldKey = writeKeyFile(tmp.dir);
    const newKey = writeKeyFile(tmp.dir);
    const conn = await freshDb();
    const a = await open(conn, { keyFile: oldKey });
    const ca = await a.ca.create('user', caKey('K1'));
    await a.pending.add({ key: 's1', requestId: 'r1', clientAddr: '10.0.0.1', expiresAt: Date.now() + 60_000, data: Buffer.from('d') }, { total: 10, perPrefix: 5, perSource: 3, entryBytes: 4096 });
    await rejectsWith(open(conn, { keyFile: newKey }), 'STORE_KEY_MISMATCH');
    const b = await open(conn, { keyFile: newKey, previous: [oldKey] });
    assert.deepEqual(await b.ca.read('user'), ca);
    await b.ca.create('host', caKey('H1'));
    assert.deepEqual(await b.reencryptAll(), { caKeys: 1, pending: 1 });
    assert.deepEqual(await b.reencryptAll(), { caKeys: 0, pending: 0 }, 'nothing left to rewrite');
    const c = await open(conn, { keyFile: newKey });
    assert.deepEqual((await c.ca.read('user'))?.keys, ca.keys);
    assert.equal((await c.pending.take('s1'))?.requestId, 'r1');
  });
});

describe('rows read back are checked', () => {
  const cases: [string, string, (b: PostgresBackend) => Promise<unknown>][] = [
    ['a CA naming an active key it does not hold', "UPDATE ca SET active = 'nope'", (b) => b.ca.read('user')],
    ['an audit event that is not an object', `INSERT INTO audit_events (time, server_id, event, data) VALUES (now(), 'x', 'e', '"a string"')`, (b) => b.audit.query({})],
    ['an audit event without its event field', `INSERT INTO audit_events (time, server_id, event, data) VALUES (now(), 'x', 'e', '{"time": "t", "server_id": "x"}')`, (b) => b.audit.query({})],
  ];
  for (const [name, sql, read] of cases) {
    test(`${name} is STORE_CORRUPT naming the table or the CA`, async () => {
      const conn = await freshDb();
      const a = await open(conn);
      await a.ca.create('user', caKey('K1'));
      await pg.psql(sql, new URL(conn).pathname.slice(1));
      const b = await open(conn).catch((err: unknown) => err);
      const err = b instanceof UserError ? b : await read(b as PostgresBackend).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
      assert.equal(err.code, 'STORE_CORRUPT');
      assert.match(err.message, /audit_events|user CA/);
    });
  }
});

describe('audit text from outside', () => {
  test('an unverified name cut in the middle of an emoji is stored (valid Unicode), not refused as a store failure', async () => {
    const { AuditLog, claimedIdentity } = await import('../../../src/server/auth/audit.js');
    const b = await open(await freshDb());
    const log = new AuditLog(b.audit, () => new Date(), { serverId: 'proxy-test', location: b.location });
    const claimed = claimedIdentity(`a${'\u{1F600}'.repeat(100)}`);
    await log.emit({ event: 'access.denied', stage: 'authentication', claimed_user: claimed, untrusted: true, login: 'x', client_addr: '192.0.2.1', code: 'T', reason: 'test' });
    await log.emit({ event: 'login.failure', stage: 'callback', reason: `r${'\u{1F600}'.repeat(600)}`, client_addr: '192.0.2.1' });
    const events = await b.audit.query({});
    assert.equal(events.length, 2);
    assert.ok(String(events[0]!['claimed_user']).startsWith('a\u{1F600}'));
    assert.equal(events[1]!['truncated'], true);
    await log.close();
  });
});
