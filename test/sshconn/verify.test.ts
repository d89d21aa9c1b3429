/**
 * The checks of hostCertVerifier and verifyUserCertAuth one by one, with
 * authentication contexts shaped exactly as the patched ssh2 builds them
 * (signature header stripped, ECDSA as DER, RSA hash in hashAlgo). The
 * real-OpenSSH paths are in server.test.ts and client.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { hostCertVerifier, verifyUserCertAuth } from '../../src/sshconn/index.js';
import { CertError, generateKeyPair, signData, type Certificate, type KeyKind } from '../../src/sshcert/index.js';
import { certify, keyPair, type KeyPair } from './fixtures.js';

const userCA = keyPair('ed25519', 'verify-user-ca');
const hostCA = keyPair('ed25519', 'verify-host-ca');
const DATA = Buffer.from('session id and userauth request, as ssh2 builds ctx.blob');

/** ctx.signature as the patched ssh2 hands it over for each key kind. */
function ssh2Signature(kp: KeyPair, kind: KeyKind, hash: 'sha256' | 'sha512' = 'sha512'): Buffer {
  if (kind === 'ed25519') return sign(null, DATA, kp.privateKey);
  if (kind === 'rsa-3072') return sign(hash, DATA, kp.privateKey);
  return sign('sha256', DATA, kp.privateKey); // P-256: DER, as ssh2's sigSSHToASN1 leaves it
}

function ctxFor(cert: Certificate, signature: Buffer | undefined, over: Partial<{ algo: string; hashAlgo: string; username: string }> = {}) {
  return {
    username: over.username ?? 'alice',
    key: { algo: over.algo ?? (cert.key.type === 'ssh-rsa' ? 'ssh-rsa-cert-v01@openssh.com' : cert.algorithm), data: cert.blob },
    signature,
    blob: signature ? DATA : undefined,
    hashAlgo: over.hashAlgo ?? (cert.key.type === 'ssh-rsa' ? 'sha512' : undefined),
  };
}

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof CertError) return err.code;
    throw err;
  }
  return 'no error';
};

describe('verifyUserCertAuth', () => {
  for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-3072'] as const) {
    test(`accepts a ${kind} user certificate with a signature by the certified key`, () => {
      const kp = keyPair(kind, 'verify-user');
      const cert = certify(userCA, kp.publicKey, { type: 'user', principals: ['alice'] });
      const got = verifyUserCertAuth(ctxFor(cert, ssh2Signature(kp, kind)), { trustedUserCAs: [userCA.publicKey], now: new Date() });
      assert.equal(got.keyId, cert.keyId);
    });
  }

  test('the query step (no signature) checks only the certificate', () => {
    const kp = keyPair('ed25519', 'verify-user');
    const cert = certify(userCA, kp.publicKey, { type: 'user', principals: ['alice'] });
    assert.equal(verifyUserCertAuth(ctxFor(cert, undefined), { trustedUserCAs: [userCA.publicKey], now: new Date() }).serial, cert.serial);
  });

  test('refuses a signature by another key, and one still carrying its SSH header', () => {
    const kp = keyPair('ed25519', 'verify-user');
    const cert = certify(userCA, kp.publicKey, { type: 'user', principals: ['alice'] });
    const opts = { trustedUserCAs: [userCA.publicKey], now: new Date() };
    assert.equal(code(() => verifyUserCertAuth(ctxFor(cert, sign(null, DATA, generateKeyPair('ed25519').privateKey)), opts)), 'CERT_BAD_SIGNATURE');
    // What unpatched ssh2 passed on: string "ssh-ed25519", string sig. It must never verify.
    assert.equal(code(() => verifyUserCertAuth(ctxFor(cert, signData(kp.privateKey, DATA)), opts)), 'CERT_BAD_SIGNATURE');
  });

  test('refuses SHA-1 RSA signatures (ssh-rsa-cert-v01), as OpenSSH 8.8+ does', () => {
    const kp = keyPair('rsa-3072', 'verify-user');
    const cert = certify(userCA, kp.publicKey, { type: 'user', principals: ['alice'] });
    const sig = sign('sha1', DATA, kp.privateKey);
    assert.equal(code(() => verifyUserCertAuth(ctxFor(cert, sig, { hashAlgo: 'sha1' }), { trustedUserCAs: [userCA.publicKey], now: new Date() })), 'CERT_BAD_SIGNATURE');
  });

  test('refuses an untrusted CA, an expired certificate, a host certificate, a plain key and a mislabelled algorithm', () => {
    const kp = keyPair('ed25519', 'verify-user');
    const opts = { trustedUserCAs: [userCA.publicKey], now: new Date() };
    const sig = ssh2Signature(kp, 'ed25519');
    const rogue = certify(generateKeyPair('ed25519'), kp.publicKey, { type: 'user', principals: ['alice'] });
    assert.equal(code(() => verifyUserCertAuth(ctxFor(rogue, sig), opts)), 'CERT_UNTRUSTED_CA');
    const expired = certify(userCA, kp.publicKey, { type: 'user', principals: ['alice'], signedAt: new Date(Date.now() - 7200_000) });
    assert.equal(code(() => verifyUserCertAuth(ctxFor(expired, sig), opts)), 'CERT_EXPIRED');
    const host = certify(userCA, kp.publicKey, { type: 'host', principals: ['alice'] });
    assert.equal(code(() => verifyUserCertAuth(ctxFor(host, sig), opts)), 'CERT_WRONG_TYPE');
    const plain = { username: 'alice', key: { algo: 'ssh-ed25519', data: kp.publicKey.blob }, signature: sig, blob: DATA, hashAlgo: undefined };
    assert.equal(code(() => verifyUserCertAuth(plain, opts)), 'CERT_MALFORMED');
    const good = certify(userCA, kp.publicKey, { type: 'user', principals: ['alice'] });
    assert.equal(code(() => verifyUserCertAuth(ctxFor(good, sig, { algo: 'ecdsa-sha2-nistp256-cert-v01@openssh.com' }), opts)), 'CERT_MALFORMED');
  });

  test('checks the SSH username against the principals unless told otherwise', () => {
    const kp = keyPair('ed25519', 'verify-user');
    const cert = certify(userCA, kp.publicKey, { type: 'user', principals: ['alice'] });
    const sig = ssh2Signature(kp, 'ed25519');
    const base = { trustedUserCAs: [userCA.publicKey], now: new Date() };
    assert.equal(code(() => verifyUserCertAuth(ctxFor(cert, sig, { username: 'root' }), base)), 'CERT_PRINCIPAL_MISMATCH');
    assert.equal(code(() => verifyUserCertAuth(ctxFor(cert, sig, { username: 'root' }), { ...base, principal: 'alice' })), 'no error');
    assert.equal(code(() => verifyUserCertAuth(ctxFor(cert, sig, { username: 'root' }), { ...base, allowAnyPrincipal: true })), 'no error');
  });
});

describe('hostCertVerifier', () => {
  const hostCert = (kp: KeyPair, principals = ['node1.test']) => certify(hostCA, kp.publicKey, { type: 'host', principals });

  test('keeps the accepted certificate and refuses a different host key at a later key exchange', () => {
    const v = hostCertVerifier({ trustedHostCAs: () => [hostCA.publicKey], hostname: 'node1.test', now: () => new Date() });
    const first = hostCert(keyPair('ed25519', 'verify-host'));
    assert.equal(v(first.blob), true);
    assert.equal(v(hostCert(keyPair('ed25519', 'verify-host')).blob), true, 'a re-issued certificate for the same key is fine');
    assert.equal(v(hostCert(keyPair('ecdsa-p256', 'verify-host')).blob), false);
    assert.match(v.error!.message, /changed its host key during re-keying/);
    assert.equal(v.certificate?.blob, first.blob);
  });

  test('reads the trusted CAs at each check, so a rotation applies without a new verifier', () => {
    let cas = [generateKeyPair('ed25519').publicKey];
    const v = hostCertVerifier({ trustedHostCAs: () => cas, hostname: 'node1.test', now: () => new Date() });
    const cert = hostCert(keyPair('ed25519', 'verify-host'));
    assert.equal(v(cert.blob), false);
    assert.equal(v.error?.code, 'CERT_UNTRUSTED_CA');
    cas = [...cas, hostCA.publicKey];
    assert.equal(v(cert.blob), true);
    assert.equal(v.error, undefined);
  });

  test('refuses a user certificate and an expired host certificate, with the reason', () => {
    const kp = keyPair('ed25519', 'verify-host');
    const v = hostCertVerifier({ trustedHostCAs: () => [hostCA.publicKey], hostname: 'node1.test', now: () => new Date(Date.now() + 2 * 3600_000) });
    assert.equal(v(hostCert(kp).blob), false);
    assert.equal(v.error?.code, 'CERT_EXPIRED');
    assert.equal(v(certify(hostCA, kp.publicKey, { type: 'user', principals: ['node1.test'] }).blob), false);
    assert.equal(v.error?.code, 'CERT_WRONG_TYPE');
  });
});
