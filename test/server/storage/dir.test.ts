/**
 * What is particular to the dir backend (server/storage/dir): items as files
 * that two processes' backends share (create and take races have one
 * winner), expiry, the ca.json poll behind watch(), audit.log read back.
 * The CA files' crash safety is in test/server/ca.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { openCaStore } from '../../../src/server/auth/ca.js';
import { AuditLog } from '../../../src/server/auth/audit.js';
import { DirBackend } from '../../../src/server/storage/dir/index.js';
import { openStateBackend, type ChangeTopic } from '../../../src/server/storage/index.js';
import { parseServerConfig } from '../../../src/config/index.js';
import { UserError } from '../../../src/errors.js';
import { REPO, run, tempDir, waitFor } from '../../helpers/tools.js';

const opts = (clock: () => Date = () => new Date()) => ({ serverId: 'test', clock, warn: () => {} });

describe('dir backend: items', () => {
  test('one 0600 file per item under state/<kind>/ (0700), named by the key hash, the key inside', async () => {
    const { dir, cleanup } = tempDir('dir-items');
    try {
      const b = new DirBackend(dir, opts());
      assert.equal(await b.items.create('token', 'a/../../b\n', { roles: ['node'] }), true);
      const kindDir = join(dir, 'state', 'token');
      assert.equal(statSync(join(dir, 'state')).mode & 0o777, 0o700);
      assert.equal(statSync(kindDir).mode & 0o777, 0o700);
      const files = readdirSync(kindDir);
      assert.equal(files.length, 1);
      assert.match(files[0]!, /^[0-9a-f]{64}\.json$/);
      assert.equal(statSync(join(kindDir, files[0]!)).mode & 0o777, 0o600);
      assert.equal(JSON.parse(readFileSync(join(kindDir, files[0]!), 'utf8')).key, 'a/../../b\n');
      const got = await b.items.get<{ roles: string[] }>('token', 'a/../../b\n');
      assert.deepEqual(got?.value, { roles: ['node'] });
      assert.equal(got?.kind, 'token');
    } finally {
      cleanup();
    }
  });

  test('create refuses an existing item; put replaces and changes the revision; list is ordered by key; delete says whether it was there', async () => {
    const { dir, cleanup } = tempDir('dir-items');
    try {
      const b = new DirBackend(dir, opts());
      assert.equal(await b.items.create('node', 'n2', 1), true);
      assert.equal(await b.items.create('node', 'n2', 2), false);
      assert.equal((await b.items.get('node', 'n2'))?.value, 1);
      const r1 = (await b.items.get('node', 'n2'))!.revision;
      await b.items.put('node', 'n2', 3);
      const after = (await b.items.get('node', 'n2'))!;
      assert.equal(after.value, 3);
      assert.notEqual(after.revision, r1);
      await b.items.put('node', 'n1', 0);
      assert.deepEqual((await b.items.list('node')).map((i) => i.key), ['n1', 'n2']);
      assert.deepEqual(await b.items.list('lock'), []);
      assert.equal(await b.items.delete('node', 'n1'), true);
      assert.equal(await b.items.delete('node', 'n1'), false);
      assert.equal(await b.items.get('node', 'n1'), undefined);
    } finally {
      cleanup();
    }
  });

  test('expired items are never returned, are removed when met, and do not block a create', async () => {
    const { dir, cleanup } = tempDir('dir-items');
    try {
      let now = 1_000_000;
      const b = new DirBackend(dir, opts(() => new Date(now)));
      await b.items.put('web_session', 's1', 'x', now + 1_000);
      await b.items.put('web_session', 's2', 'y');
      assert.equal((await b.items.get('web_session', 's1'))?.value, 'x');
      now += 1_000;
      assert.equal(await b.items.get('web_session', 's1'), undefined, 'expired at expiresAt');
      assert.equal(readdirSync(join(dir, 'state', 'web_session')).length, 1, 'removed lazily');
      await b.items.put('web_session', 's3', 'z', now + 10);
      now += 10;
      assert.deepEqual((await b.items.list('web_session')).map((i) => i.key), ['s2']);
      await b.items.put('token', 't', 'old', now + 5);
      now += 5;
      assert.equal(await b.items.take('token', 't'), undefined, 'an expired item cannot be taken');
      await b.items.put('token', 't', 'old', now + 5);
      now += 5;
      assert.equal(await b.items.create('token', 't', 'new'), true, 'create wins over an expired item');
      assert.equal((await b.items.get('token', 't'))?.value, 'new');
    } finally {
      cleanup();
    }
  });

  test('a file that is not an item is an error naming it, not skipped', async () => {
    const { dir, cleanup } = tempDir('dir-items');
    try {
      const b = new DirBackend(dir, opts());
      await b.items.put('lock', 'k', true);
      const f = join(dir, 'state', 'lock', readdirSync(join(dir, 'state', 'lock'))[0]!);
      writeFileSync(f, '{"key": 1}');
      await assert.rejects(b.items.get('lock', 'k'), (e: unknown) => e instanceof UserError && e.code === 'STATE_CORRUPT' && e.message.includes(f));
    } finally {
      cleanup();
    }
  });

  /** Runs `op` on one key from `n` processes at once, each with its own DirBackend on `dir`; returns what each printed. */
  async function race(dir: string, n: number, op: 'create' | 'take'): Promise<string[]> {
    const script = `
      import { DirBackend } from ${JSON.stringify(join(REPO, 'src/server/storage/dir/index.ts'))};
      const b = new DirBackend(process.argv[1], { serverId: 'p' + process.pid, clock: () => new Date(), warn: () => {} });
      // Start together: say ready, then wait for the go file.
      const { existsSync, writeFileSync } = await import('node:fs');
      writeFileSync(process.argv[1] + '/ready-' + process.pid, '');
      while (!existsSync(process.argv[1] + '/go')) await new Promise((r) => setTimeout(r, 2));
      const r = ${op === 'create' ? "await b.items.create('token', 'k', { by: process.pid })" : "await b.items.take('token', 'k')"};
      process.stdout.write(JSON.stringify(r ?? null));
    `;
    const runs = Array.from({ length: n }, () => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], { cwd: REPO }));
    await waitFor(() => readdirSync(dir).filter((f) => f.startsWith('ready-')).length === n, 'every racer to start', 60_000);
    writeFileSync(join(dir, 'go'), '');
    const done = await Promise.all(runs);
    for (const r of done) assert.equal(r.code, 0, r.stderr);
    return done.map((r) => r.stdout);
  }

  test('two processes racing to create one item: exactly one wins', async () => {
    const { dir, cleanup } = tempDir('dir-race');
    try {
      const out = await race(dir, 4, 'create');
      assert.equal(out.filter((o) => o === 'true').length, 1, out.join(' '));
      assert.equal(out.filter((o) => o === 'false').length, 3, out.join(' '));
      assert.equal(readdirSync(join(dir, 'state', 'token')).length, 1, 'no temp files left');
    } finally {
      cleanup();
    }
  });

  test('two processes racing to take one item: exactly one gets it', async () => {
    const { dir, cleanup } = tempDir('dir-race');
    try {
      await new DirBackend(dir, opts()).items.put('token', 'k', { secret: 1 });
      const out = await race(dir, 4, 'take');
      const got = out.filter((o) => o !== 'null');
      assert.equal(got.length, 1, out.join(' '));
      assert.deepEqual(JSON.parse(got[0]!).value, { secret: 1 });
      assert.deepEqual(readdirSync(join(dir, 'state', 'token')), [], 'gone, no temp files left');
    } finally {
      cleanup();
    }
  });
});

describe('dir backend: watch, audit, pending, open', () => {
  test('watch reports a CA rotation made by another backend on the same directory within about a second', async () => {
    const { dir, cleanup } = tempDir('dir-watch');
    try {
      const server = new DirBackend(dir, opts());
      const ca = await openCaStore(server, () => new Date());
      const seen: ChangeTopic[] = [];
      const stop = server.watch((t) => {
        seen.push(t);
        void ca.refresh();
      });
      const tctl = new DirBackend(dir, opts());
      const rotated = await (await openCaStore(tctl, () => new Date())).rotate('host', 60);
      await waitFor(() => ca.get('host').active.id === rotated.active.id, 'the server to see the rotation', 3_000);
      assert.deepEqual(seen, ['ca:host']);
      stop();
      await server.close();
    } finally {
      cleanup();
    }
  });

  test('audit: events go to audit.log with time and server_id; query reads them back with seq = line number and filters', async () => {
    const { dir, cleanup } = tempDir('dir-audit');
    try {
      const b = new DirBackend(dir, opts());
      const log = new AuditLog(b.audit, () => new Date('2026-11-30T04:00:00.000Z'), { serverId: 'host1:3080', location: b.audit.path });
      await log.emit({ event: 'ca.created', ca_type: 'user', key: 'k' });
      await log.emit({ event: 'login.success', request_id: 'r', user: 'alice', roles: ['user'], client_addr: '10.0.0.1', valid_before: 'x' });
      const line1 = JSON.parse(readFileSync(join(dir, 'audit.log'), 'utf8').split('\n')[0]!);
      assert.equal(line1.server_id, 'host1:3080');
      assert.equal(line1.time, '2026-11-30T04:00:00.000Z');
      const all = await b.audit.query({});
      assert.deepEqual(all.map((e) => [e.seq, e.event, e.server_id]), [[1, 'ca.created', 'host1:3080'], [2, 'login.success', 'host1:3080']]);
      assert.deepEqual((await b.audit.query({ user: 'alice' })).map((e) => e.seq), [2]);
      assert.deepEqual((await b.audit.query({ type: 'ca.created' })).map((e) => e.seq), [1]);
      assert.deepEqual((await b.audit.query({ limit: 1 })).map((e) => e.seq), [2], 'the newest ones');
      assert.deepEqual(await b.audit.query({ since: new Date('2026-11-30T05:00:00Z') }), []);
      appendFileSync(join(dir, 'audit.log'), 'not json\n');
      await assert.rejects(b.audit.query({}), (e: unknown) => e instanceof UserError && e.code === 'AUDIT_LOG_CORRUPT' && /audit\.log line 3 /.test(e.message));
      await log.close();
      await b.close();
    } finally {
      cleanup();
    }
  });

  test('pending: caps per source evict the oldest of that source; take is single use; sweep removes the expired', async () => {
    const { dir, cleanup } = tempDir('dir-pending');
    try {
      const b = new DirBackend(dir, opts());
      const limits = { total: 100, perPrefix: 100, perSource: 2, entryBytes: 4096 };
      const rec = (key: string, addr: string, expiresAt = 10) => ({ key, requestId: `r-${key}`, clientAddr: addr, expiresAt, data: Buffer.from(key) });
      assert.deepEqual(await b.pending.add(rec('a', '10.0.0.1'), limits), []);
      assert.deepEqual(await b.pending.add(rec('b', '10.0.0.1', 100), limits), []);
      const evicted = await b.pending.add(rec('c', '10.0.0.1', 100), limits);
      assert.deepEqual(evicted.map((r) => r.key), ['a']);
      assert.equal(await b.pending.count(), 2);
      assert.equal((await b.pending.take('b'))?.data.toString(), 'b');
      assert.equal(await b.pending.take('b'), undefined);
      await b.pending.add(rec('d', '10.0.1.1', 5), limits);
      assert.deepEqual((await b.pending.sweep(6)).map((r) => r.key), ['d']);
      assert.equal(await b.pending.count(), 1);
    } finally {
      cleanup();
    }
  });

  test('openStateBackend: storage type dir opens the data directory', async () => {
    const { dir, cleanup } = tempDir('dir-open');
    try {
      const config = parseServerConfig(`cluster_name: open.test\ndata_dir: ${dir}/data\n`, `${dir}/jumpgate.yaml`);
      const b = await openStateBackend(config, opts());
      assert.equal(b.kind, 'dir');
      assert.equal(b.location, `${dir}/data`);
      assert.equal(b.healthy(), true);
      assert.equal(statSync(`${dir}/data`).mode & 0o777, 0o700);
      await b.close();
    } finally {
      cleanup();
    }
  });
});
