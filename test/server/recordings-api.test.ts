/**
 * The recordings API's authentication (server/proxy/request-auth.ts, signed
 * by client/recordings.ts signRequest) against the real HTTPS API in-process:
 * only a fresh request signed by the key of a certificate from this
 * cluster's user CA gets an answer. Who may read which recording is in
 * test/e2e/recordings.test.ts (the built tsh against `jumpgate start`).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadServerConfig } from '../../src/config/index.js';
import { signRequest } from '../../src/client/recordings.js';
import { issueUserCertificate } from '../../src/server/auth/issuer.js';
import { generateKeyPair, signCertificate, CertRequest, type Certificate } from '../../src/sshcert/index.js';
import type { KeyObject } from 'node:crypto';
import { openDirState } from '../helpers/runtime.js';
import { addLock, removeLock } from '../../src/server/auth/locks.js';
import { request, startTestWebApi, type TestWebApi } from '../helpers/web-api.js';
import { tempDir } from '../helpers/tools.js';

describe('recordings API: requests signed with the user certificate', () => {
  let tmp: { dir: string; cleanup: () => void };
  let api: TestWebApi;
  let creds: { privateKey: KeyObject; cert: Certificate };

  before(async () => {
    tmp = tempDir('rec-api');
    api = await startTestWebApi({ dir: tmp.dir });
    const config = loadServerConfig(join(tmp.dir, 'jumpgate.yaml'));
    const state = await openDirState(config.dataDir);
    const kp = generateKeyPair('ed25519');
    const cert = await issueUserCertificate({ username: 'alice', roles: ['user'], publicKey: kp.publicKey, via: 'test' }, { config, ca: state.ca, audit: state.audit, clock: state.clock, store: state.store });
    await state.close();
    creds = { privateKey: kp.privateKey, cert };
  });
  after(async () => {
    await api?.close();
    tmp?.cleanup();
  });

  const get = (path: string, authorization?: string) => request(api.port, { path, headers: authorization ? { authorization } : {} });
  const code = (body: string) => (JSON.parse(body) as { error: { code: string } }).error.code;

  test('a fresh signed request is answered; an unsigned one is 401 NOT_AUTHENTICATED', async () => {
    const ok = await get('/v1/recordings', signRequest(creds, 'GET', '/v1/recordings', new Date()));
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(JSON.parse(ok.body), { recordings: [] });
    const none = await get('/v1/recordings');
    assert.equal(none.status, 401);
    assert.equal(code(none.body), 'NOT_AUTHENTICATED');
  });

  test('the same signed header twice: the second is refused (REPLAYED)', async () => {
    const h = signRequest(creds, 'GET', '/v1/recordings', new Date());
    assert.equal((await get('/v1/recordings', h)).status, 200);
    const again = await get('/v1/recordings', h);
    assert.equal(again.status, 401);
    assert.equal(code(again.body), 'REPLAYED');
  });

  test('a header signed for another path, another method or a time 2 minutes off is refused', async () => {
    const other = await get('/v1/recordings', signRequest(creds, 'GET', '/v1/recordings/abc', new Date()));
    assert.equal(code(other.body), 'CERT_BAD_SIGNATURE');
    const post = await get('/v1/recordings', signRequest(creds, 'POST', '/v1/recordings', new Date()));
    assert.equal(code(post.body), 'CERT_BAD_SIGNATURE');
    const old = await get('/v1/recordings', signRequest(creds, 'GET', '/v1/recordings', new Date(Date.now() - 120_000)));
    assert.equal(old.status, 401);
    assert.equal(code(old.body), 'CLOCK_SKEW');
  });

  test("a certificate from another CA, or someone else's certificate with my key, is refused", async () => {
    const foreignCa = generateKeyPair('ed25519');
    const mine = generateKeyPair('ed25519');
    const now = new Date();
    const foreign = signCertificate(
      new CertRequest({ type: 'user', publicKey: mine.publicKey, keyId: 'alice', principals: ['alice'], ttlSeconds: 600, extensions: { 'roles@jumpgate.dev': 'user' } }),
      foreignCa,
      now,
    );
    const r = await get('/v1/recordings', signRequest({ privateKey: mine.privateKey, cert: foreign }, 'GET', '/v1/recordings', now));
    assert.equal(r.status, 401);
    assert.equal(code(r.body), 'CERT_UNTRUSTED_CA');
    const stolen = await get('/v1/recordings', signRequest({ privateKey: mine.privateKey, cert: creds.cert }, 'GET', '/v1/recordings', now));
    assert.equal(code(stolen.body), 'CERT_BAD_SIGNATURE');
  });

  test('an unknown session id is 404 NOT_FOUND', async () => {
    const path = '/v1/recordings/0b7c2f1e-5d3a-4c1b-9e8f-7a6b5c4d3e2f';
    const r = await get(path, signRequest(creds, 'GET', path, new Date()));
    assert.equal(r.status, 404);
    assert.equal(code(r.body), 'NOT_FOUND');
  });

  test('a lock on the user, a role or the certificate refuses the API (403 ACCESS_LOCKED, message escaped) until removed', async () => {
    const rt = api.server.rt;
    const deps = { store: rt.store, audit: rt.audit, clock: rt.clock };
    const lockedGet = async () => get('/v1/recordings', signRequest(creds, 'GET', '/v1/recordings', new Date()));
    for (const [target, value] of [['user', 'alice'], ['role', 'user'], ['cert', creds.cert.serial.toString()]] as const) {
      const lock = await addLock(deps, { target, value, message: 'stolen laptop\x1b]0;pwned\x07', createdBy: 'test' });
      await rt.locks.refresh();
      const r = await lockedGet();
      assert.equal(r.status, 403, `${target} lock: ${r.body}`);
      assert.equal(code(r.body), 'ACCESS_LOCKED');
      assert.doesNotMatch(r.body, /\x1b|\\u001b/, 'the lock message reaches the client escaped');
      const path = '/v1/recordings/0b7c2f1e-5d3a-4c1b-9e8f-7a6b5c4d3e2f';
      const one = await get(path, signRequest(creds, 'GET', path, new Date()));
      assert.equal(code(one.body), 'ACCESS_LOCKED');
      await removeLock(deps, lock.id, 'test');
      await rt.locks.refresh();
    }
    assert.equal((await lockedGet()).status, 200);
  });
});
