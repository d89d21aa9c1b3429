/**
 * The storage interface's promised behaviour (src/server/storage/backend.ts),
 * one suite run against every backend on real parts. Several instances of a
 * backend on one store stand for several processes (proxies, tctl).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CHANGE_VISIBILITY_MS, type ChangeTopic, type StoredCaKey, type StoreUnavailableError } from '../../../src/server/storage/backend.js';
import { encodeOpenSSHPrivateKey, generateKeyPair } from '../../../src/sshcert/index.js';
import { describeEachBackend } from '../../helpers/storage.js';

/** A CA key id in the one format every backend accepts (`<UTC time>-<hex>`: also a dir file name), from a short label. */
const kid = (label: string) => `20261130T040000Z-${Buffer.from(label).toString('hex')}`;
const caKey = (label: string, created = '2026-11-30T04:00:00.000Z'): StoredCaKey => ({
  id: kid(label),
  created,
  // A real key: the dir backend parses what it loads (a CA key file that is not a key is CA_CORRUPT).
  privateKeyPem: encodeOpenSSHPrivateKey(generateKeyPair('ed25519').privateKey, `test CA ${label}`),
});
const rec = (key: string, addr: string, expiresAt = Date.now() + 600_000) => ({
  key,
  requestId: `req-${key}`,
  clientAddr: addr,
  expiresAt,
  data: Buffer.from([0, 1, 2, 255, ...Buffer.from(key)]),
});
const limits = { total: 10, perPrefix: 5, perSource: 3, entryBytes: 4096 };

async function waitFor(fn: () => Promise<boolean> | boolean, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describeEachBackend('storage contract', (h) => {
    // First: crash recovery replays (and fsyncs) every database made so far, seconds per database here.
    test('a write that resolved before the store crashed is there after it recovers', async () => {
      const store = await h.fresh({ forCrash: true });
      const a = await store.open({ serverId: 'proxy-a' });
      await a.ca.create('user', caKey('K1'));
      const e = { time: '2026-11-30T04:00:00.000Z', server_id: 'proxy-a', event: 'session.start', user: 'alice' };
      await a.audit.append(JSON.stringify(e), e);
      await a.items.put('token', 't', { ok: true });
      await a.pending.add(rec('st', '10.0.0.1'), limits);
      await store.crashAndRecover();
      const b = await store.open();
      assert.equal((await b.ca.read('user'))?.active, kid('K1'));
      assert.deepEqual((await b.audit.query({})).map((x) => [x.event, x.server_id]), [['session.start', 'proxy-a']]);
      assert.deepEqual((await b.items.get('token', 't'))?.value, { ok: true });
      // dir keeps pending logins in the process that crashed: they go with it (tsh logs in again).
      if (h.sharedPending) assert.equal((await b.pending.take('st'))?.requestId, 'req-st');
      // The instance from before the crash works again by itself.
      await waitFor(async () => (await a.items.get('token', 't').catch((err: StoreUnavailableError) => (assert.equal(err.code, 'STORE_UNAVAILABLE'), undefined))) !== undefined, 'the old instance recovering', 15_000);
    });

    describe('CA', () => {
      test('no CA before create; of two racing creates one wins and both see the same keys', async () => {
        const store = await h.fresh();
        const [a, b] = await Promise.all([store.open(), store.open()]);
        assert.equal(await a.ca.read('user'), undefined);
        const [ra, rb] = await Promise.all([a.ca.create('user', caKey('A')), b.ca.create('user', caKey('B'))]);
        assert.deepEqual(ra, rb);
        assert.equal(ra.keys.length, 1);
        assert.ok([kid('A'), kid('B')].includes(ra.active));
        assert.equal(ra.keys[0]!.id, ra.active);
        const c = await store.open();
        assert.deepEqual(await c.ca.read('user'), ra);
        assert.equal(await c.ca.read('host'), undefined, 'the types are separate');
        // A later create changes nothing.
        assert.deepEqual(await c.ca.create('user', caKey('C')), ra);
      });

      test('update rotates atomically; every instance sees the new active key and the trust window', async () => {
        const store = await h.fresh();
        const a = await store.open();
        const first = caKey('K1');
        const created = await a.ca.create('host', first);
        const until = '2026-12-01T04:00:00.000Z';
        const next = caKey('K2', '2026-11-30T05:00:00.000Z');
        const rotated = await a.ca.update('host', (cur) => ({
          type: cur.type,
          active: next.id,
          keys: [next, ...cur.keys.map((k) => ({ ...k, trustedUntil: until }))],
        }));
        assert.notEqual(rotated.revision, created.revision);
        assert.equal(rotated.active, kid('K2'));
        assert.deepEqual(rotated.keys, [next, { ...first, trustedUntil: until }]);
        const b = await store.open();
        assert.deepEqual(await b.ca.read('host'), rotated);
        assert.deepEqual(await a.ca.read('host'), rotated);
      });

      test('concurrent updates from two instances lose nothing (the change runs under the lock)', async () => {
        const store = await h.fresh();
        const [a, b] = await Promise.all([store.open(), store.open()]);
        await a.ca.create('user', caKey('K0'));
        await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            (i % 2 ? a : b).ca.update('user', (cur) => ({ type: cur.type, active: cur.active, keys: [...cur.keys, caKey(`N${i}`)] })),
          ),
        );
        const c = await store.open();
        const ids = (await c.ca.read('user'))!.keys.map((k) => k.id).sort();
        assert.deepEqual(ids, ['K0', 'N0', 'N1', 'N2', 'N3', 'N4', 'N5'].map(kid));
      });

      test('update of a CA that does not exist is refused', async () => {
        const store = await h.fresh();
        const a = await store.open();
        await assert.rejects(a.ca.update('user', (cur) => cur), /does not exist/);
      });

      test("watch reports another instance's CA change within CHANGE_VISIBILITY_MS, and read returns it", async () => {
        const store = await h.fresh();
        const [a, b] = await Promise.all([store.open(), store.open()]);
        await a.ca.create('user', caKey('K1'));
        assert.equal((await b.ca.read('user'))!.active, kid('K1'));
        const heard: ChangeTopic[] = [];
        const stop = b.watch((t) => heard.push(t));
        const next = caKey('K2');
        await a.ca.update('user', (cur) => ({ type: cur.type, active: kid('K2'), keys: [next, ...cur.keys] }));
        await waitFor(() => heard.includes('ca:user'), 'ca:user change', CHANGE_VISIBILITY_MS);
        assert.equal((await b.ca.read('user'))!.active, kid('K2'));
        stop();
      });

      test('a reader that never watches still sees the change within CHANGE_VISIBILITY_MS', async () => {
        const store = await h.fresh();
        const [a, b] = await Promise.all([store.open(), store.open()]);
        await a.ca.create('host', caKey('K1'));
        assert.equal((await b.ca.read('host'))!.active, kid('K1'));
        await a.ca.update('host', (cur) => ({ type: cur.type, active: kid('K2'), keys: [caKey('K2'), ...cur.keys] }));
        await waitFor(async () => (await b.ca.read('host'))!.active === kid('K2'), 'b reading K2', CHANGE_VISIBILITY_MS);
      });
    });

    describe('pending logins', () => {
      test('round-trips every field; take is single use', async () => {
        const store = await h.fresh();
        const a = await store.open();
        // Shared: a login started on one instance finishes on another. dir: one process.
        const b = h.sharedPending ? await store.open() : a;
        const r = rec('state-1', '192.0.2.1');
        assert.deepEqual(await a.pending.add(r, limits), []);
        assert.equal(await b.pending.count(), 1);
        assert.deepEqual(await b.pending.take('state-1'), r, 'a login started on one finishes on another');
        assert.equal(await a.pending.take('state-1'), undefined);
        assert.equal(await a.pending.count(), 0);
      });

      test('of many concurrent takes exactly one gets the record', async () => {
        const store = await h.fresh();
        const a = await store.open();
        const b = h.sharedPending ? await store.open() : a;
        await a.pending.add(rec('once', '192.0.2.1'), limits);
        const got = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).pending.take('once')));
        assert.equal(got.filter(Boolean).length, 1);
      });

      test('a source over its cap evicts its own oldest', async () => {
        const a = await (await h.fresh()).open();
        for (let i = 0; i < 3; i++) assert.deepEqual(await a.pending.add(rec(`s${i}`, '10.0.0.1'), limits), []);
        assert.deepEqual((await a.pending.add(rec('s3', '10.0.0.1'), limits)).map((e) => e.key), ['s0']);
        assert.equal(await a.pending.take('s0'), undefined);
        assert.equal((await a.pending.take('s3'))?.key, 's3');
      });

      test('a full prefix evicts from its heaviest source: a user with one pending login keeps it', async () => {
        const a = await (await h.fresh()).open();
        await a.pending.add(rec('user', '127.0.0.1'), limits);
        for (let i = 0; i < 40; i++) await a.pending.add(rec(`f${i}`, `127.9.${i % 2}.1`), limits);
        assert.equal(await a.pending.count(), 5, 'all of 127/8 is one prefix');
        assert.equal((await a.pending.take('user'))?.key, 'user', 'the flood evicted its own entries');
      });

      test('a full table evicts from the heaviest prefix; other prefixes keep theirs', async () => {
        const a = await (await h.fresh()).open();
        await a.pending.add(rec('user', '192.0.2.7'), limits);
        for (let i = 0; i < 100; i++) await a.pending.add(rec(`f${i}`, `198.51.${100 + (i % 2)}.${i % 250}`), limits);
        assert.equal(await a.pending.count(), 10);
        assert.equal((await a.pending.take('user'))?.key, 'user');
      });

      test('the eviction order is oldest first, per source and per prefix (IPv6 /64 and /48)', async () => {
        const a = await (await h.fresh()).open();
        // Two addresses of one /64 are one source.
        await a.pending.add(rec('x0', '2001:db8:1:2::1'), limits);
        await a.pending.add(rec('x1', '2001:db8:1:2::2'), limits);
        await a.pending.add(rec('x2', '2001:db8:1:2:ffff::3'), limits);
        assert.deepEqual((await a.pending.add(rec('x3', '2001:db8:1:2::9'), limits)).map((e) => e.key), ['x0']);
        // Another /64 of the same /48: the prefix fills (5); the heaviest source (the first) loses its oldest.
        await a.pending.add(rec('y0', '2001:db8:1:3::1'), limits);
        await a.pending.add(rec('y1', '2001:db8:1:3::1'), limits);
        assert.deepEqual((await a.pending.add(rec('y2', '2001:db8:1:3::1'), limits)).map((e) => e.key), ['x1']);
      });

      // dir keeps pending logins in its one process: nothing to share.
      if (h.sharedPending) {
        test('caps hold across instances adding at once', async () => {
          const store = await h.fresh();
          const [a, b] = await Promise.all([store.open(), store.open()]);
          const evicted = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).pending.add(rec(`c${i}`, '10.9.9.9'), limits)));
          assert.equal(await a.pending.count(), 3);
          assert.equal(evicted.flat().length, 9);
        });
      }

      test('sweep removes and returns what expired, oldest first', async () => {
        const a = await (await h.fresh()).open();
        await a.pending.add(rec('a', '10.0.0.1', 10), limits);
        await a.pending.add(rec('b', '10.0.0.2', 30), limits);
        await a.pending.add(rec('c', '10.0.0.3', 15), limits);
        assert.deepEqual((await a.pending.sweep(20)).map((e) => e.key), ['a', 'c']);
        assert.equal(await a.pending.count(), 1);
        assert.deepEqual((await a.pending.sweep(40)).map((e) => e.key), ['b']);
        assert.equal(await a.pending.count(), 0);
      });
    });

    describe('audit', () => {
      const ev = (time: string, event: string, user?: string, extra: Record<string, unknown> = {}) => ({ time, event, ...(user ? { user } : {}), ...extra });

      test('events of every instance in one order, each with its writer, filtered by since / type / user and limit', async () => {
        const store = await h.fresh();
        const a = await store.open({ serverId: 'proxy-a' });
        const b = await store.open({ serverId: 'proxy-b' });
        const lines = [
          [a, ev('2026-11-30T04:00:00.000Z', 'login.success', 'alice', { roles: ['dev'] })],
          [b, ev('2026-11-30T04:00:01.000Z', 'session.start', 'alice')],
          [a, ev('2026-11-30T04:00:02.000Z', 'session.start', 'bob')],
          [b, ev('2026-11-30T04:00:03.000Z', 'session.end', 'alice')],
          [a, ev('2026-11-30T04:00:04.000Z', 'login.failure')],
        ] as const;
        for (const [w, e] of lines) {
          const full = { ...e, server_id: w === a ? 'proxy-a' : 'proxy-b' };
          await w.audit.append(JSON.stringify(full), full);
        }
        const all = await b.audit.query({});
        assert.deepEqual(all.map((e) => e.event), ['login.success', 'session.start', 'session.start', 'session.end', 'login.failure']);
        assert.deepEqual(all.map((e) => e.server_id), ['proxy-a', 'proxy-b', 'proxy-a', 'proxy-b', 'proxy-a']);
        assert.ok(all.every((e, i) => i === 0 || e.seq > all[i - 1]!.seq), 'seq grows');
        assert.deepEqual(all[0]!['roles'], ['dev']);
        assert.equal(all[0]!.time, '2026-11-30T04:00:00.000Z');
        assert.deepEqual((await a.audit.query({ type: 'session.start' })).map((e) => e['user']), ['alice', 'bob']);
        assert.deepEqual((await a.audit.query({ user: 'alice' })).map((e) => e.event), ['login.success', 'session.start', 'session.end']);
        assert.deepEqual((await a.audit.query({ since: new Date('2026-11-30T04:00:02.000Z') })).map((e) => e.time.slice(17, 19)), ['02', '03', '04']);
        assert.deepEqual((await a.audit.query({ limit: 2 })).map((e) => e.event), ['session.end', 'login.failure'], 'the newest, oldest first');
        assert.deepEqual((await a.audit.query({ user: 'alice', type: 'session.end', since: new Date('2026-11-30T04:00:00.000Z') })).length, 1);
        assert.equal(a.audit.lowOnSpace(0), false);
      });

      test('text from outside with control characters (NUL included) is stored, not refused', async () => {
        const a = await (await h.fresh()).open();
        const e = { time: '2026-11-30T04:00:00.000Z', server_id: 'proxy-test', event: 'login.failure', user: 'eve\u0000\u001b[2J', reason: 'x\u0000y' };
        await a.audit.append(JSON.stringify(e), e);
        const [got] = await a.audit.query({});
        assert.equal(got!.event, 'login.failure');
        assert.match(String(got!['reason']), /^x.+y$/);
      });
    });

    describe('items', () => {
      test('create / put / get / list / delete / take', async () => {
        const store = await h.fresh();
        const [a, b] = await Promise.all([store.open(), store.open()]);
        assert.equal(await a.items.create('token', 'tok-b', { roles: ['node'] }), true);
        assert.equal(await b.items.create('token', 'tok-b', { roles: ['other'] }), false, 'create does not replace');
        assert.deepEqual((await b.items.get<{ roles: string[] }>('token', 'tok-b'))?.value, { roles: ['node'] });
        const r1 = (await a.items.get('token', 'tok-b'))!.revision;
        await b.items.put('token', 'tok-b', { roles: ['changed'] });
        const after = (await a.items.get('token', 'tok-b'))!;
        assert.deepEqual(after.value, { roles: ['changed'] });
        assert.notEqual(after.revision, r1, 'every write changes the revision');
        await a.items.put('token', 'tok-a', 'a string \u0000 with NUL');
        await a.items.put('token', 'Tok-c', [1, 2, { deep: null }]);
        await a.items.put('node', 'n1', { addr: '10.0.0.1:22' });
        assert.deepEqual((await b.items.list('token')).map((i) => i.key), ['Tok-c', 'tok-a', 'tok-b'], 'ordered by key (code points)');
        assert.equal(await b.items.count('token'), 3, 'count without reading the items');
        assert.equal(await b.items.count('lock'), 0);
        assert.equal((await b.items.get('token', 'tok-a'))?.value, 'a string \u0000 with NUL', 'values round-trip exactly');
        assert.deepEqual((await b.items.list('node')).map((i) => [i.kind, i.key]), [['node', 'n1']]);
        assert.equal(await a.items.delete('token', 'tok-a'), true);
        assert.equal(await b.items.delete('token', 'tok-a'), false);
        assert.equal(await a.items.get('token', 'tok-a'), undefined);
        const taken = await b.items.take<number[]>('token', 'Tok-c');
        assert.deepEqual(taken?.value, [1, 2, { deep: null }]);
        assert.equal(await a.items.take('token', 'Tok-c'), undefined);
      });

      test('of concurrent creates one wins; of concurrent takes one gets it', async () => {
        const store = await h.fresh();
        const [a, b] = await Promise.all([store.open(), store.open()]);
        const created = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).items.create('lock', 'L', { by: i })));
        assert.equal(created.filter(Boolean).length, 1);
        const taken = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).items.take('lock', 'L')));
        assert.equal(taken.filter(Boolean).length, 1);
      });

      test('an expired item is never returned, and create may take its key', async () => {
        let now = Date.parse('2026-11-30T04:00:00Z');
        const store = await h.fresh();
        const a = await store.open({ clock: () => new Date(now) });
        await a.items.put('web_session', 's1', { u: 'alice' }, now + 1_000);
        await a.items.put('web_session', 's2', { u: 'bob' }, now + 5_000);
        await a.items.put('web_session', 's3', { u: 'carol' });
        assert.equal((await a.items.list('web_session')).length, 3);
        assert.equal((await a.items.get('web_session', 's1'))?.expiresAt, now + 1_000);
        now += 2_000;
        assert.equal(await a.items.get('web_session', 's1'), undefined);
        assert.deepEqual((await a.items.list('web_session')).map((i) => i.key), ['s2', 's3']);
        assert.equal(await a.items.create('web_session', 's2', { u: 'mallory' }), false, 's2 is still valid');
        now += 10_000;
        assert.equal(await a.items.take('web_session', 's2'), undefined, 'an expired item cannot be taken');
        await a.items.put('web_session', 's4', 1, now + 1);
        now += 5;
        assert.equal(await a.items.create('web_session', 's4', 2), true, 'an expired key is free');
        assert.equal((await a.items.get('web_session', 's4'))?.value, 2);
        assert.equal(await a.items.delete('web_session', 's1'), false, 'expired is gone');
      });

      test("watch reports another instance's item change", async () => {
        const store = await h.fresh();
        const [a, b] = await Promise.all([store.open(), store.open()]);
        const heard: ChangeTopic[] = [];
        b.watch((t) => heard.push(t));
        await a.items.put('node', 'n1', { up: true });
        await waitFor(() => heard.includes('item:node'), 'item:node change', CHANGE_VISIBILITY_MS);
      });
    });

    describe('recordings', () => {
      const collect = async (it: AsyncIterable<Buffer>) => {
        const parts: Buffer[] = [];
        for await (const c of it) parts.push(c);
        return Buffer.concat(parts);
      };

      test("appends are read back in order by another instance, whole or from an offset; an unknown name has no size and no bytes", async () => {
        const store = await h.fresh();
        const [a, b] = await Promise.all([store.open(), store.open()]);
        assert.equal(await b.recordings.size('s1.cast'), undefined);
        assert.equal((await collect(b.recordings.read('s1.cast'))).length, 0);
        await a.recordings.append('s1.cast', Buffer.from('{"version": 2}\n'));
        await a.recordings.append('s1.cast', Buffer.from([0xe2, 0x82]));
        await a.recordings.append('s1.cast', Buffer.from([0xac, 0x0a]));
        await a.recordings.append('s2.cast', Buffer.from('other'));
        const want = Buffer.concat([Buffer.from('{"version": 2}\n'), Buffer.from([0xe2, 0x82, 0xac, 0x0a])]);
        assert.equal(await b.recordings.size('s1.cast'), want.length);
        assert.deepEqual(await collect(b.recordings.read('s1.cast')), want);
        assert.deepEqual(await collect(b.recordings.read('s1.cast', 15)), want.subarray(15), 'from an offset inside a chunk');
        assert.deepEqual(await collect(b.recordings.read('s2.cast')), Buffer.from('other'));
        assert.equal(await b.recordings.delete('s2.cast'), true);
        assert.equal(await a.recordings.size('s2.cast'), undefined);
        assert.equal(await a.recordings.delete('s2.cast'), false);
      });

      test('a recording of many appends (3 MiB) reads back byte for byte', async () => {
        const store = await h.fresh();
        const a = await store.open();
        const parts = Array.from({ length: 48 }, (_, i) => randomBytes(64 * 1024 + i));
        for (const p of parts) await a.recordings.append('big.cast', p);
        const whole = Buffer.concat(parts);
        assert.equal(await a.recordings.size('big.cast'), whole.length);
        assert.ok((await collect(a.recordings.read('big.cast'))).equals(whole));
        assert.ok((await collect(a.recordings.read('big.cast', 1_000_000))).equals(whole.subarray(1_000_000)));
      });

      test('a name that could be a path is refused with BAD_RECORDING_NAME', async () => {
        const store = await h.fresh();
        const a = await store.open();
        for (const name of ['../x.cast', 'a/b', '', '.hidden', 'x'.repeat(129), 'a\nb']) {
          await assert.rejects(a.recordings.append(name, Buffer.from('x')), { code: 'BAD_RECORDING_NAME' }, JSON.stringify(name));
          await assert.rejects(a.recordings.size(name), { code: 'BAD_RECORDING_NAME' });
        }
      });
    });
});
