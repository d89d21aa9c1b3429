/**
 * The X.509 user CA (server/auth/x509-ca.ts): the CA certificate and the
 * client certificate are read back by real OpenSSL (`openssl x509 -text`,
 * `openssl verify`), the identity inside is the SSH certificate, and each
 * user-CA key generation gets its own, deterministic, X.509 key.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { CertRequest, generateKeyPair, parseCertificate, signCertificate } from '../../src/sshcert/index.js';
import { issueClientCertificate, readClientCertificate, verifiedBy, x509CaFor } from '../../src/server/auth/x509-ca.js';
import type { CaKey } from '../../src/server/auth/ca.js';
import { requireTool, run, tempDir } from '../helpers/tools.js';

const openssl = requireTool('openssl', 'apt-get install openssl');
const tmp = tempDir('x509-ca');
after(() => tmp.cleanup());

function caKey(id: string): CaKey {
  const k = generateKeyPair('ed25519');
  return { id, privateKey: k.privateKey, publicKey: k.publicKey, createdAt: new Date('2026-11-01T00:00:00Z'), trustedUntil: undefined };
}

function userCert(ca: CaKey, now: Date) {
  const user = generateKeyPair('ed25519');
  const req = new CertRequest({ publicKey: user.publicKey, type: 'user', keyId: 'alice@example.com', principals: ['alice', 'root'], ttlSeconds: 3600, extensions: { 'roles@jumpgate.dev': 'ops' } });
  return { user, cert: signCertificate(req, ca, now) };
}

describe('X.509 user CA', () => {
  const ca = caKey('20261101T000000Z-00000001');
  const now = new Date();

  test('the client certificate names the user, carries the SSH certificate, and OpenSSL verifies it against the CA', async () => {
    const { user, cert } = userCert(ca, now);
    const pem = issueClientCertificate(ca, 'unit.test', cert);
    const caPem = x509CaFor(ca, 'unit.test').certPem;
    writeFileSync(join(tmp.dir, 'ca.pem'), caPem);
    writeFileSync(join(tmp.dir, 'client.pem'), pem);
    const text = await run(openssl, ['x509', '-in', join(tmp.dir, 'client.pem'), '-noout', '-text']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /Subject: O ?= ?unit\.test, CN ?= ?alice@example\.com/);
    assert.match(text.stdout, /Signature Algorithm: ED25519/);
    assert.match(text.stdout, /TLS Web Client Authentication/);
    assert.match(text.stdout, /CA:FALSE/);
    assert.match(text.stdout, /1\.3\.9999\.7347\.1:/);
    const ver = await run(openssl, ['verify', '-CAfile', join(tmp.dir, 'ca.pem'), '-purpose', 'sslclient', join(tmp.dir, 'client.pem')]);
    assert.equal(ver.code, 0, ver.stdout + ver.stderr);

    const x = new X509Certificate(pem);
    assert.equal(x.validTo.length > 0, true);
    assert.equal(new Date(x.validTo).getTime(), Number(cert.validBefore) * 1000, 'notAfter = the SSH certificate valid-before');
    assert.equal(new Date(x.validFrom).getTime(), Number(cert.validAfter) * 1000);
    assert.ok(x.publicKey.equals(user.publicKey.key), 'the same public key as the SSH certificate');

    const inside = readClientCertificate(x.raw);
    assert.deepEqual(parseCertificate(inside.sshCertBlob).principals, ['alice', 'root']);
    assert.ok(inside.spkiDer.equals(user.publicKey.key.export({ format: 'der', type: 'spki' })));
  });

  test('each CA key generation has its own X.509 key, never the SSH CA key', () => {
    const other = caKey('20261102T000000Z-00000002');
    const a = x509CaFor(ca, 'unit.test');
    const b = x509CaFor(other, 'unit.test');
    assert.notEqual(a.certPem, b.certPem);
    const caSpki = ca.publicKey.key.export({ format: 'der', type: 'spki' });
    assert.ok(!new X509Certificate(a.certPem).publicKey.export({ format: 'der', type: 'spki' }).equals(caSpki), 'not the SSH CA key');
    // The cluster is in the CA's subject.
    const again = x509CaFor({ ...ca, id: ca.id }, 'unit.test2');
    assert.notEqual(again.certPem, a.certPem);
    const { cert } = userCert(ca, now);
    const der = new X509Certificate(issueClientCertificate(ca, 'unit.test', cert)).raw;
    assert.equal(verifiedBy(der, a), true);
    assert.equal(verifiedBy(der, b), false, 'a certificate of one generation does not verify under another');
  });

  test('OpenSSL refuses a client certificate against another generation\'s CA', async () => {
    const other = caKey('20261103T000000Z-00000003');
    const { cert } = userCert(ca, now);
    writeFileSync(join(tmp.dir, 'other.pem'), x509CaFor(other, 'unit.test').certPem);
    writeFileSync(join(tmp.dir, 'c2.pem'), issueClientCertificate(ca, 'unit.test', cert));
    const ver = await run(openssl, ['verify', '-CAfile', join(tmp.dir, 'other.pem'), join(tmp.dir, 'c2.pem')]);
    assert.notEqual(ver.code, 0);
  });
});
