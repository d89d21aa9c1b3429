/**
 * Locks in the state store (server/auth/locks.ts), the KRL built from them
 * (server/auth/revocation.ts) and the registry of running sessions
 * (server/proxy/active-sessions.ts), on a real dir store in a temp
 * directory. The paths through the real proxy, ssh and sshd are in
 * test/e2e/locks.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseServerConfig } from '../../src/config/index.js';
import { UserError } from '../../src/errors.js';
import { issueUser, LockedError, type IssuerDeps } from '../../src/server/auth/issuer.js';
import { addLock, lockMatches, lockedMessage, LockService, readLocks, removeLock, type Lock } from '../../src/server/auth/locks.js';
import { buildKrl, issuedCerts } from '../../src/server/auth/revocation.js';
import { ActiveSessions } from '../../src/server/proxy/active-sessions.js';
import { generateKeyPair, isRevoked, parseKrl } from '../../src/sshcert/index.js';
import { openDirState, type DirState } from '../helpers/runtime.js';
import { tempDir, waitFor } from '../helpers/tools.js';

const tmp = tempDir('locks-unit');
let now = new Date('2026-11-30T08:00:00Z');
const clock = () => now;
let state: DirState;
let other: DirState;
let deps: IssuerDeps;

before(async () => {
  state = await openDirState(`${tmp.dir}/data`, { clock });
  // A second process on the same data directory (another proxy, or tctl).
  other = await openDirState(`${tmp.dir}/data`, { clock, serverId: 'other' });
  const config = parseServerConfig(
    `cluster_name: unit.test
data_dir: ${tmp.dir}/data
roles:
  user:
    logins: ["{{username}}"]
  ops:
    logins: ["{{username}}", root]
`,
    `${tmp.dir}/jumpgate.yaml`,
  );
  deps = { config, ca: state.ca, audit: state.audit, clock, store: state.store };
});
after(async () => {
  await state.close();
  await other.close();
  tmp.cleanup();
});

const audit = async (event: string) => (await state.store.audit.query({ type: event })).map((e) => e as Record<string, unknown>);
const sign = (username: string, roles: string[]) => issueUser({ username, roles, publicKey: generateKeyPair('ed25519').publicKey, via: 'test' }, deps);

describe('lock matching', () => {
  const lock = (target: Lock['target'], value: string, expires?: string): Lock => ({ id: '0123456789abcdef', target, value, message: 'm', created: now.toISOString(), created_by: 't', ...(expires ? { expires } : {}) });
  const subject = { user: 'alice', roles: ['ops'], logins: ['alice', 'root'], node: 'Node1', serial: 42n };
  for (const [l, want] of [
    [lock('user', 'alice'), true],
    [lock('user', 'bob'), false],
    [lock('user', 'Alice'), false], // user names are case-sensitive (SECURITY.md: as Teleport; the KRL's KEY_ID is exact)
    [lock('login', 'Root'), false],
    [lock('node', 'NODE1'), true], // node names are host names
    [lock('role', 'ops'), true],
    [lock('role', 'user'), false],
    [lock('login', 'root'), true],
    [lock('login', 'admin'), false],
    [lock('node', 'node1'), true],
    [lock('node', 'node2'), false],
    [lock('cert', '42'), true],
    [lock('cert', '43'), false],
    [lock('user', 'alice', '2026-11-30T07:59:59Z'), false],
  ] as const) {
    test(`${l.target}=${l.value}${l.expires ? ' (expired)' : ''} ${want ? 'matches' : 'does not match'} alice/ops/root@Node1/serial 42`, () => {
      assert.equal(lockMatches(l, subject, now), want);
    });
  }
  test("the user's message is escaped for a terminal and names the lock", () => {
    const m = lockedMessage({ ...lock('user', 'alice'), message: 'bye\x1b[31m\nnow' });
    assert.ok(!m.includes('\x1b') && !m.includes('\n'), m);
    assert.match(m, /user=alice, lock 0123456789abcdef/);
  });
});

describe('locks in the store', () => {
  test('refuses a lock without a usable target, with control characters, or with a long message, naming the problem', async () => {
    const add = (value: string, message = '') => addLock({ store: state.store, audit: state.audit, clock }, { target: 'user', value, message, createdBy: 'test' });
    await assert.rejects(add(''), (e: UserError) => e.code === 'LOCK_INVALID' && /value/.test(e.message));
    await assert.rejects(add('a\nb'), (e: UserError) => e.code === 'LOCK_INVALID');
    await assert.rejects(add('alice', 'x'.repeat(300)), (e: UserError) => e.code === 'LOCK_INVALID' && /message/.test(e.message));
    await assert.rejects(removeLock(state, 'ffffffffffffffff', 'test'), (e: UserError) => e.code === 'LOCK_NOT_FOUND');
  });

  test('a user lock refuses the login before anything is signed; a role lock refuses its holders; a login lock leaves that login out', async () => {
    const before = (await issuedCerts(state.store)).length;
    const userLock = await addLock(state, { target: 'user', value: 'mallory', message: 'gone', createdBy: 'test' });
    await assert.rejects(sign('mallory', ['user']), (e: Error) => e instanceof LockedError && e.code === 'ACCESS_LOCKED' && /gone/.test(e.message));
    assert.equal((await issuedCerts(state.store)).length, before, 'nothing was signed or recorded');
    const roleLock = await addLock(state, { target: 'role', value: 'ops', createdBy: 'test' });
    await assert.rejects(sign('carol', ['ops']), LockedError);
    await removeLock(state, roleLock.id, 'test');
    const loginLock = await addLock(state, { target: 'login', value: 'root', createdBy: 'test' });
    const issued = await sign('carol', ['ops']);
    assert.deepEqual(issued.cert.principals, ['carol']);
    await removeLock(state, loginLock.id, 'test');
    await removeLock(state, userLock.id, 'test');
    assert.deepEqual((await sign('carol', ['ops'])).cert.principals, ['carol', 'root']);
  });

  test('the KRL revokes by key id and serial what user, role, login and cert locks cover, and nothing else', async () => {
    const dave = await sign('dave', ['user']);
    const erin = await sign('erin', ['ops']);
    const frank = await sign('frank', ['user']);
    const gina = await sign('gina', ['user']);
    now = new Date(now.getTime() + 1000); // the login lock comes after these certificates
    const locks = [
      await addLock(state, { target: 'user', value: 'dave', createdBy: 'test' }),
      await addLock(state, { target: 'login', value: 'root', createdBy: 'test' }),
      await addLock(state, { target: 'cert', value: frank.cert.serial.toString(), caKey: frank.cert.signatureKey.blob, expiresAt: new Date(Number(frank.cert.validBefore) * 1000), createdBy: 'frank' }),
    ];
    const krl = parseKrl(await buildKrl({ store: state.store, ca: state.ca, now }));
    assert.equal(isRevoked(krl, dave.cert), true, 'user lock');
    assert.ok(krl.certificates.some((c) => c.keyIds.includes('dave')), 'by key id too');
    assert.equal(isRevoked(krl, erin.cert), true, 'login lock: a certificate carrying root, issued before the lock');
    assert.equal(isRevoked(krl, frank.cert), true, 'cert lock');
    assert.equal(isRevoked(krl, gina.cert), false);
    // A certificate issued while the login lock holds does not carry root, and is not revoked.
    const erin2 = await sign('erin', ['ops']);
    assert.equal(isRevoked(parseKrl(await buildKrl({ store: state.store, ca: state.ca, now })), erin2.cert), false);
    for (const l of locks) await removeLock(state, l.id, 'test');
    const empty = parseKrl(await buildKrl({ store: state.store, ca: state.ca, now }));
    assert.equal(isRevoked(empty, dave.cert), false);
  });

  test('an expired lock is audited lock.expired once though two lock services (two proxies) see it', async () => {
    const a = new LockService({ store: state.store, audit: state.audit, clock, warn: () => {} }, 60_000);
    const b = new LockService({ store: other.store, audit: other.audit, clock, warn: () => {} }, 60_000);
    await a.start();
    await b.start();
    try {
      const l = await addLock(state, { target: 'node', value: 'node9', ttlSeconds: 10, createdBy: 'test' });
      await Promise.all([a.refresh(), b.refresh()]);
      assert.equal(a.check({ user: 'x', roles: [], node: 'node9' })?.id, l.id);
      assert.equal(b.check({ user: 'x', roles: [], node: 'node9' })?.id, l.id);
      now = new Date(now.getTime() + 11_000);
      assert.equal(a.check({ user: 'x', roles: [], node: 'node9' }), undefined, 'expired locks stop matching at once');
      await Promise.all([a.refresh(), b.refresh(), a.refresh(), b.refresh()]);
      const expired = (await audit('lock.expired')).filter((e) => e['lock_id'] === l.id);
      assert.equal(expired.length, 1);
      assert.equal((await readLocks(state.store)).some((x) => x.id === l.id), false, 'and it left the store');
    } finally {
      a.close();
      b.close();
    }
  });

  test("a lock added by another process reaches the service through the store's watch and ends matching registered sessions", async () => {
    const svc = new LockService({ store: state.store, audit: state.audit, clock, warn: () => {} }, 60_000);
    await svc.start();
    const sessions = new ActiveSessions();
    const ended: string[] = [];
    const reg = (id: string, user: string) =>
      sessions.register({ id, user, login: user, node: 'node1', roles: ['user'], serial: 1n, clientAddr: '127.0.0.1:1', end: (r) => ended.push(`${id}:${r.reason}:${r.message}`) });
    const unregister = reg('s1', 'hank');
    reg('s2', 'ivy');
    svc.onChange(() => sessions.endLocked((s) => svc.check({ user: s.user, roles: s.roles, logins: [s.login], node: s.node, serial: s.serial }), lockedMessage));
    try {
      const l = await addLock(other, { target: 'user', value: 'hank', message: 'bye hank', createdBy: 'tctl' });
      // Only the watch (dir: a 500 ms poll of the kind's directory) can bring it: the service's own poll is a minute here.
      await waitFor(() => ended.length > 0, 'the session of hank ended', 5_000);
      assert.equal(ended.length, 1);
      assert.match(ended[0]!, new RegExp(`^s1:locked:.*lock ${l.id}.*bye hank`));
      unregister();
      assert.equal(sessions.size, 1);
      await removeLock(other, l.id, 'tctl');
    } finally {
      svc.close();
    }
  });
});
