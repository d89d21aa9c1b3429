/**
 * The per-source rule (sourceKey, prefixKey), the pending-login table's caps
 * and eviction order, and the audit log's bounds and aggregation. Pure or on
 * a temp directory; the same code under real floods is in test/e2e/floods.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { prefixKey, SourceCounter, sourceKey } from '../../src/server/limits.js';
import { PendingLogins } from '../../src/server/auth/pending-logins.js';
import { AuditLog, type AuditLogOptions, MAX_AUDIT_FIELD_CHARS, MAX_SUMMARY_KEYS, SUMMARY_INTERVAL_MS } from '../../src/server/auth/audit.js';
import { DirAuditFile } from '../../src/server/storage/dir/audit-file.js';
import { MAX_LOG_LINE_CHARS, textLog } from '../../src/server/runtime.js';
import { tempDir } from '../helpers/tools.js';

describe('prefixKey', () => {
  const cases: [string, string][] = [
    ['10.1.2.3', '10.1.2.0/24'],
    ['::ffff:10.1.2.3', '10.1.2.0/24'],
    ['127.0.0.1', '127.0.0.0/8'],
    ['127.200.3.4', '127.0.0.0/8'],
    ['::1', '::1/128'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1::/48'],
    ['2001:db8:1:ffff::9', '2001:db8:1::/48'],
    ['fe80::1%eth0', 'fe80:0:0::/48'],
  ];
  for (const [addr, key] of cases) test(`prefixKey(${addr}) = ${key}`, () => assert.equal(prefixKey(addr), key));
});

describe('SourceCounter', () => {
  test('counts per source: the addresses of one IPv6 /64 share a count, an IPv4-mapped address counts as IPv4', () => {
    const c = new SourceCounter(2);
    const a = c.acquire('2001:db8::1')!;
    assert.ok(c.acquire('2001:db8::2'));
    assert.equal(c.acquire('2001:db8::ffff'), undefined, 'a third address of the same /64 is refused');
    assert.ok(c.acquire('2001:db8:0:1::1'), 'the next /64 is another source');
    a();
    a();
    assert.equal(c.count('2001:db8::1'), 1, 'a release counts once');
    assert.ok(c.acquire('10.0.0.1'));
    assert.ok(c.acquire('::ffff:10.0.0.1'));
    assert.equal(c.acquire('10.0.0.1'), undefined);
  });
});

describe('PendingLogins', () => {
  const entry = (id: string) => ({ id, expiresAt: 1_000 });
  const limits = { total: 10, perPrefix: 5, perSource: 3, entryBytes: 4096 };

  test('a source over its cap evicts its own oldest', () => {
    const t = new PendingLogins<{ id: string; expiresAt: number }>(limits);
    for (let i = 0; i < 3; i++) assert.deepEqual(t.add(`s${i}`, entry(`a${i}`), '10.0.0.1'), []);
    assert.deepEqual(t.add('s3', entry('a3'), '10.0.0.1').map((e) => e.id), ['a0']);
    assert.equal(t.take('s0'), undefined);
    assert.equal(t.take('s3')?.id, 'a3');
  });

  test('a full prefix evicts from its heaviest source: a user with one pending login keeps it', () => {
    const t = new PendingLogins<{ id: string; expiresAt: number }>(limits);
    t.add('user', entry('user'), '127.0.0.1');
    for (let i = 0; i < 40; i++) t.add(`f${i}`, entry(`f${i}`), `127.9.${i % 2}.1`);
    assert.equal(t.countFor('127.0.0.1').prefix, 5, 'all of 127/8 is one prefix');
    assert.equal(t.take('user')?.id, 'user', 'the flood evicted its own entries');
  });

  test('a full table evicts from the heaviest prefix; other prefixes keep theirs', () => {
    const t = new PendingLogins<{ id: string; expiresAt: number }>(limits);
    t.add('user', entry('user'), '192.0.2.7');
    for (let i = 0; i < 100; i++) t.add(`f${i}`, entry(`f${i}`), `198.51.${100 + (i % 2)}.${i % 250}`);
    assert.equal(t.size, 10);
    assert.equal(t.take('user')?.id, 'user');
  });

  test('sweep removes what expired, and the counts follow', () => {
    const t = new PendingLogins<{ id: string; expiresAt: number }>(limits);
    t.add('a', { id: 'a', expiresAt: 10 }, '10.0.0.1');
    t.add('b', { id: 'b', expiresAt: 30 }, '10.0.0.1');
    assert.deepEqual(t.sweep(20).map((e) => e.id), ['a']);
    assert.deepEqual(t.countFor('10.0.0.1'), { source: 1, prefix: 1 });
    t.sweep(40);
    assert.equal(t.size, 0);
    assert.deepEqual(t.countFor('10.0.0.1'), { source: 0, prefix: 0 });
  });
});

/** An AuditLog on the dir backend's audit.log in `dir`. */
function dirAudit(dir: string, clock: () => Date, opts: Omit<AuditLogOptions, 'serverId' | 'location'>): AuditLog {
  const file = new DirAuditFile(dir);
  return new AuditLog(file, clock, { serverId: 'test', location: file.path, ...opts });
}

describe('AuditLog bounds and aggregation', () => {
  const events = (dir: string) =>
    readFileSync(join(dir, 'audit.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  test('a string field over the limit is cut and the event says truncated; control characters stay inside one line', async () => {
    const tmp = tempDir('audit-bounds');
    const audit = dirAudit(tmp.dir, () => new Date(), { reserveBytes: 0 });
    await audit.emit({ event: 'login.failure', stage: 'callback', reason: `x\ny\x1b[31m${'r'.repeat(50_000)}`, client_addr: '10.0.0.1' });
    await audit.close();
    const text = readFileSync(join(tmp.dir, 'audit.log'), 'utf8');
    assert.equal(text.split('\n').length, 2, 'one line');
    const [e] = events(tmp.dir);
    assert.equal(e!['truncated'], true);
    assert.ok(String(e!['reason']).length <= MAX_AUDIT_FIELD_CHARS + 1);
    tmp.cleanup();
  });

  test('unauthenticated failures: the first per prefix, event and stage in full, the rest one summary per interval; a wide flood is bounded by the key table', async () => {
    const tmp = tempDir('audit-aggregate');
    let now = Date.parse('2026-01-01T00:00:00Z');
    const audit = dirAudit(tmp.dir, () => new Date(now), { reserveBytes: 0 });
    const fail = (addr: string, reason = 'unknown state') => audit.unauthenticated({ event: 'login.failure', stage: 'callback', reason, client_addr: addr }, addr);
    for (let i = 0; i < 1_000; i++) fail(`10.0.${i % 4}.${i % 200}`, `r${i}`);
    assert.equal(events(tmp.dir).length, 4, 'four /24 prefixes: four full events');
    now += SUMMARY_INTERVAL_MS;
    fail('10.0.0.1', 'later');
    const all = events(tmp.dir);
    const summaries = all.filter((e) => e['event'] === 'failures.summary');
    assert.equal(summaries.length, 4);
    assert.equal(summaries.reduce((n, e) => n + Number(e['count']), 0), 996);
    assert.equal(summaries.find((e) => e['source'] === '10.0.0.0/24')!['first_reason'], 'r0');
    assert.equal(all.at(-1)!['reason'], 'later', 'a new interval starts with a full event');

    // Thousands of prefixes: at most MAX_SUMMARY_KEYS full events, the rest counted under source "*".
    now += SUMMARY_INTERVAL_MS;
    const before = events(tmp.dir).length;
    for (let i = 0; i < 5_000; i++) fail(`2001:db8:${i.toString(16)}::1`);
    await audit.close();
    const wide = events(tmp.dir).slice(before);
    assert.ok(wide.length <= 2 * MAX_SUMMARY_KEYS + 2, `${wide.length} lines for 5,000 prefixes`);
    const star = wide.find((e) => e['event'] === 'failures.summary' && e['source'] === '*');
    assert.ok(star && Number(star['count']) >= 5_000 - MAX_SUMMARY_KEYS);
    tmp.cleanup();
  });

  test('below the reserve, unauthenticated failures are dropped and reported once; real events are still written', async () => {
    const tmp = tempDir('audit-reserve');
    const warnings: string[] = [];
    const audit = dirAudit(tmp.dir, () => new Date(), { reserveBytes: Number.MAX_SAFE_INTEGER, warn: (l) => warnings.push(l) });
    for (let i = 0; i < 10; i++) audit.unauthenticated({ event: 'login.failure', stage: 'start', reason: 'bad body', client_addr: `10.0.${i}.1` }, `10.0.${i}.1`);
    await audit.emit({ event: 'login.success', request_id: 'r', user: 'alice', roles: ['user'], client_addr: '10.0.0.9', valid_before: 'x' });
    await audit.close();
    assert.deepEqual(events(tmp.dir).map((e) => e['event']), ['login.success']);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /dropped 10 unauthenticated failure events/);
    tmp.cleanup();
  });
});

describe('textLog', () => {
  test('escapes what it is given: one line per call, no terminal escapes, no Unicode line breaks or bidi overrides, bounded', () => {
    let out = '';
    const log = textLog({ write: (t) => (out += t), clock: () => new Date('2026-01-01T00:00:00Z'), debug: false });
    log.warn('key id mallory\n2026-01-01T00:00:00.000Z INFO forged\r\x1b[31m red \u2028 next \u202e evil');
    log.debug('not shown without --debug');
    log.info('x'.repeat(100_000));
    const lines = out.split('\n');
    assert.equal(lines.length, 3, 'two lines and the final newline');
    assert.equal(lines[0], '2026-01-01T00:00:00.000Z WARN key id mallory\\x0a2026-01-01T00:00:00.000Z INFO forged\\x0d\\x1b[31m red \\u{2028} next \\u{202e} evil');
    assert.ok(lines[1]!.length <= MAX_LOG_LINE_CHARS + 40);
  });

  test('the audit log keeps U+2028 and U+2029 escaped, so every reader sees one line per event', async () => {
    const tmp = tempDir('audit-u2028');
    const audit = dirAudit(tmp.dir, () => new Date(), { reserveBytes: 0 });
    await audit.emit({ event: 'login.failure', stage: 'callback', reason: 'a\u2028b\u2029c', client_addr: '10.0.0.1' });
    await audit.close();
    const text = readFileSync(join(tmp.dir, 'audit.log'), 'utf8');
    assert.doesNotMatch(text, /[\u2028\u2029]/);
    assert.equal(JSON.parse(text)['reason'], 'a\u2028b\u2029c');
    tmp.cleanup();
  });
});
