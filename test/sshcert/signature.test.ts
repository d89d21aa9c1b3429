import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { WireReader, WireWriter } from '../../src/sshwire/index.js';
import { signData, verifySignature } from '../../src/sshcert/index.js';
import { KINDS, keyPair } from './fixtures.js';

const data = Buffer.from('the bytes being signed');
const sigBlob = (alg: string, sig: Buffer): Buffer => Buffer.from(new WireWriter().string(alg).string(sig).finish());

for (const kind of KINDS) {
  test(`a ${kind} signature verifies and fails on changed data or another key`, () => {
    const { privateKey, publicKey } = keyPair(kind);
    const blob = signData(privateKey, data);
    assert.equal(verifySignature(publicKey, data, blob), true);
    assert.equal(verifySignature(publicKey, Buffer.from('other bytes'), blob), false);
    const other = keyPair(kind === 'ed25519' ? 'ecdsa-p256' : 'ed25519').publicKey;
    assert.equal(verifySignature(other, data, blob), false);
  });
}

test('names the signature by its algorithm: ssh-ed25519, ecdsa-sha2-*, rsa-sha2-512 by default', () => {
  const alg = (kind: (typeof KINDS)[number]): string => new WireReader(signData(keyPair(kind).privateKey, data)).utf8();
  assert.equal(alg('ed25519'), 'ssh-ed25519');
  assert.equal(alg('ecdsa-p384'), 'ecdsa-sha2-nistp384');
  assert.equal(alg('rsa-3072'), 'rsa-sha2-512');
});

test('signs and verifies rsa-sha2-256', () => {
  const { privateKey, publicKey } = keyPair('rsa-3072');
  const blob = signData(privateKey, data, 'rsa-sha2-256');
  assert.equal(new WireReader(blob).utf8(), 'rsa-sha2-256');
  assert.equal(verifySignature(publicKey, data, blob), true);
});

test('ECDSA signatures are two minimal mpints (RFC 5656 §3.1.2)', () => {
  for (let i = 0; i < 20; i++) {
    const r = new WireReader(signData(keyPair('ecdsa-p521').privateKey, Buffer.from([i])));
    r.utf8();
    const inner = new WireReader(r.string());
    inner.mpint();
    inner.mpint();
    inner.end();
    r.end();
  }
});

test('refuses a legacy SHA-1 ssh-rsa signature even though it is mathematically valid', () => {
  const { privateKey, publicKey } = keyPair('rsa-3072');
  const blob = sigBlob('ssh-rsa', sign('sha1', data, privateKey));
  assert.equal(verifySignature(publicKey, data, blob), false);
});

test('refuses a signature whose algorithm does not fit the key', () => {
  const { privateKey, publicKey } = keyPair('ed25519');
  const raw = sign(null, data, privateKey);
  assert.equal(verifySignature(publicKey, data, sigBlob('ssh-ed25519', raw)), true);
  assert.equal(verifySignature(publicKey, data, sigBlob('ecdsa-sha2-nistp256', raw)), false);
  const p256 = keyPair('ecdsa-p256');
  const ecdsa = signData(p256.privateKey, data);
  const r = new WireReader(ecdsa);
  r.string();
  const relabelled = sigBlob('ecdsa-sha2-nistp384', r.string());
  assert.equal(verifySignature(p256.publicKey, data, relabelled), false);
});

test('refuses a signature blob with trailing bytes', () => {
  const { privateKey, publicKey } = keyPair('ed25519');
  assert.equal(verifySignature(publicKey, data, Buffer.concat([signData(privateKey, data), Buffer.of(0)])), false);
});

test('refuses an ECDSA signature with a non-minimal mpint', () => {
  const { privateKey, publicKey } = keyPair('ecdsa-p256');
  const p1363 = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  const inner = new WireWriter().string(Buffer.concat([Buffer.of(0, 0), p1363.subarray(0, 32)])).mpint(p1363.subarray(32)).finish();
  assert.equal(verifySignature(publicKey, data, sigBlob('ecdsa-sha2-nistp256', inner)), false);
});

test('accepts an RSA signature shorter than the modulus, zero-padded like OpenSSH does', () => {
  const { privateKey, publicKey } = keyPair('rsa-3072');
  // Find a message whose signature starts with a zero byte (1 in 256).
  for (let i = 0; i < 5000; i++) {
    const msg = Buffer.from(`m${i}`);
    const s = sign('sha512', msg, privateKey);
    if (s[0] === 0) {
      assert.equal(verifySignature(publicKey, msg, sigBlob('rsa-sha2-512', s.subarray(1))), true);
      return;
    }
  }
  assert.fail('no signature with a leading zero found');
});

test('refuses garbage and an Ed25519 signature of the wrong length', () => {
  const { publicKey } = keyPair('ed25519');
  assert.equal(verifySignature(publicKey, data, Buffer.alloc(0)), false);
  assert.equal(verifySignature(publicKey, data, Buffer.from('00000005abc', 'hex')), false);
  assert.equal(verifySignature(publicKey, data, sigBlob('ssh-ed25519', Buffer.alloc(63))), false);
});
