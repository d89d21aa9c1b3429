/**
 * The cap on `issued_cert` records (auth/revocation.ts recordIssued): on
 * both storage backends (the contract suite's harnesses), expired records are
 * removed before a certificate is refused, and a refused one leaves no record
 * behind (it is never issued: a record dropped would be a certificate a lock
 * cannot revoke by serial).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IssuedCertsFullError, IssuedCertsUserFullError, issuedCerts, recordIssued } from '../../../src/server/auth/revocation.js';
import { CertRequest, generateKeyPair, signCertificate } from '../../../src/sshcert/index.js';
import { describeEachBackend } from '../../helpers/storage.js';

const ca = generateKeyPair('ed25519');
const userKey = generateKeyPair('ed25519');
const cert = (user: string) => signCertificate(new CertRequest({ publicKey: userKey.publicKey, type: 'user', keyId: user, principals: [user], ttlSeconds: 3600 }), ca, new Date());

describeEachBackend('issued_cert cap', (h) => {
  test('at the cap expired records are removed first; still full, the certificate is refused and nothing is recorded', async () => {
    const store = await (await h.fresh()).open();
    const MAX = 3;
    await recordIssued(store, cert('alice'), ['user'], MAX);
    await recordIssued(store, cert('bob'), ['user'], MAX);
    // A record whose certificate has expired, still on disk or in a row until something lists the kind.
    const stale = cert('carol');
    await store.items.put('issued_cert', 'stale', { serial: '1', key_id: 'carol', principals: ['carol'], roles: [], valid_after: 0, valid_before: 1, ca_key: stale.signatureKey.blob.toString('base64'), key_fingerprint: 'SHA256:x' }, Date.now() - 1_000);
    await recordIssued(store, cert('dave'), ['user'], MAX); // room: the stale one does not count
    assert.deepEqual((await issuedCerts(store)).map((c) => c.key_id).sort(), ['alice', 'bob', 'dave']);

    const refused = cert('eve');
    await assert.rejects(recordIssued(store, refused, ['user'], MAX), (err: IssuedCertsFullError) => {
      assert.equal(err.code, 'ISSUED_CERTS_FULL');
      assert.match(err.message, /holds 3 unexpired certificate records \(the cap\), so no certificate was issued/);
      assert.match(err.hint ?? '', /auth\.cert_ttl/);
      return true;
    });
    const kept = await issuedCerts(store);
    assert.equal(kept.length, 3, 'no record was dropped to make room');
    assert.ok(!kept.some((c) => c.serial === refused.serial.toString()), 'the refused certificate left no record');
  });

  test('one user cannot fill the cap: past half of it, a user holding MAX_ISSUED_CERTS_PER_USER is refused and every other user still logs in', async () => {
    // Before: mallory logging in in a loop took all 6 places and alice, bob and carol were refused (a cluster-wide lock-out by one user).
    const store = await (await h.fresh()).open();
    const MAX = 6;
    const PER_USER = 2;
    for (let i = 0; i < 3; i++) await recordIssued(store, cert('mallory'), ['user'], MAX, PER_USER); // below half the cap: not counted per user
    await assert.rejects(recordIssued(store, cert('mallory'), ['user'], MAX, PER_USER), (err: IssuedCertsUserFullError) => {
      assert.equal(err.code, 'ISSUED_CERTS_USER_FULL');
      assert.match(err.message, /mallory holds 3 unexpired certificates \(at most 2 each once the cluster holds 3\), so no certificate was issued/);
      assert.match(err.hint ?? '', /logging in in a loop/);
      return true;
    });
    for (const user of ['alice', 'bob', 'carol']) await recordIssued(store, cert(user), ['user'], MAX, PER_USER);
    assert.deepEqual((await issuedCerts(store)).map((c) => c.key_id).sort(), ['alice', 'bob', 'carol', 'mallory', 'mallory', 'mallory']);
    // The cluster cap still holds for everyone.
    await assert.rejects(recordIssued(store, cert('dave'), ['user'], MAX, PER_USER), (err: IssuedCertsFullError) => err.code === 'ISSUED_CERTS_FULL');
  });
});
