import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  CertError,
  CertRequest,
  CLOCK_SKEW_SECONDS,
  MAX_TTL_SECONDS,
  publicKeyFromKeyObject,
  signCertificate,
  type CertRequestFields,
} from '../../src/sshcert/index.js';
import { keyPair, NOW, NOW_S, codeOf } from './fixtures.js';

function base(over: Partial<CertRequestFields> = {}): CertRequest {
  return new CertRequest({
    publicKey: keyPair('ed25519').publicKey,
    type: 'user',
    keyId: 'alice',
    principals: ['alice'],
    ttlSeconds: 3600,
    ...over,
  });
}


const invalid: Array<[string, Partial<CertRequestFields>]> = [
  ['an empty key id', { keyId: '' }],
  ['a key id with a line break', { keyId: 'a\nb' }],
  ['an empty principal', { principals: ['alice', ''] }],
  ['a duplicate principal', { principals: ['alice', 'alice'] }],
  ['a principal with a space', { principals: ['alice smith'] }],
  ['a principal with a tab', { principals: ['alice\t'] }],
  ['a principal with a NUL', { principals: ['al\0ice'] }],
  ['a principal with a non-breaking space', { principals: ['alice\u00a0'] }],
  ['a user certificate without principals', { principals: [] }],
  ['a host certificate without principals', { type: 'host', principals: [] }],
  ['more than 256 principals', { principals: Array.from({ length: 257 }, (_, i) => `p${i}`) }],
  ['a zero TTL', { ttlSeconds: 0 }],
  ['a negative TTL', { ttlSeconds: -1 }],
  ['a fractional TTL', { ttlSeconds: 1.5 }],
  ['a NaN TTL', { ttlSeconds: Number.NaN }],
  ['a TTL above ten years', { ttlSeconds: MAX_TTL_SECONDS + 1 }],
  ['an empty option name', { extensions: { '': '' } }],
  ['a non-ASCII option name', { extensions: { 'perm\u00eft-pty': '' } }],
  ['an option name with a space', { extensions: { 'permit pty': '' } }],
  ['a flag extension with a value', { extensions: { 'permit-pty': 'yes' } }],
  ['force-command without a value', { criticalOptions: { 'force-command': '' } }],
  ['an option value with a NUL', { criticalOptions: { 'force-command': 'ls\0rm' } }],
  ['a host certificate with a critical option', { type: 'host', principals: ['node1'], criticalOptions: { 'force-command': 'ls' } }],
  ['a negative serial', { serial: -1n }],
  ['a serial above 2^64-1', { serial: 1n << 64n }],
  ['an unknown certificate type', { type: 'robot' as never }],
];
for (const [name, over] of invalid) {
  test(`check() rejects ${name} with CERT_REQUEST_INVALID`, () => {
    assert.equal(codeOf(() => base(over).check()), 'CERT_REQUEST_INVALID');
    // signCertificate calls check() itself: nothing invalid is ever signed.
    assert.equal(codeOf(() => signCertificate(base(over), keyPair('ed25519'), NOW)), 'CERT_REQUEST_INVALID');
  });
}

test('check() rejects an RSA key below 2048 bits for a new certificate', () => {
  const small = publicKeyFromKeyObject(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey);
  assert.equal(codeOf(() => base({ publicKey: small }).check()), 'CERT_REQUEST_INVALID');
});

test('check() accepts a ten-year TTL, wildcard host principals and custom extensions', () => {
  base({ ttlSeconds: MAX_TTL_SECONDS }).check();
  base({ type: 'host', principals: ['*.example.test', '10.0.0.1'] }).check();
  base({ extensions: { 'roles@jumpgate': 'admin,user', 'permit-pty': '' } }).check();
});

test('derives validity from the TTL: validAfter is now minus the clock skew, validBefore now plus the TTL', () => {
  const cert = signCertificate(base({ ttlSeconds: 86400 }), keyPair('ed25519'), NOW);
  assert.equal(cert.validAfter, NOW_S - BigInt(CLOCK_SKEW_SECONDS));
  assert.equal(cert.validBefore, NOW_S + 86400n);
});

test('uses the given serial and nonce, and otherwise random ones', () => {
  const nonce = Buffer.alloc(32, 0xab);
  const fixed = signCertificate(base({ serial: 7n }), keyPair('ed25519'), NOW, { nonce });
  assert.equal(fixed.serial, 7n);
  assert.deepEqual(fixed.nonce, nonce);
  const a = signCertificate(base(), keyPair('ed25519'), NOW);
  const b = signCertificate(base(), keyPair('ed25519'), NOW);
  assert.notEqual(a.serial, b.serial);
  assert.notDeepEqual(a.nonce, b.nonce);
  assert.ok(a.serial > 0n && a.serial < 1n << 63n);
});

test('refuses to sign with a CA public key that does not belong to the CA private key', () => {
  const ca = { privateKey: keyPair('ed25519').privateKey, publicKey: keyPair('ecdsa-p256').publicKey };
  assert.equal(codeOf(() => signCertificate(base(), ca, NOW)), 'CERT_REQUEST_INVALID');
});

test('does not let later changes to the request alter an issued certificate', () => {
  const req = base({ principals: ['alice'] });
  const cert = signCertificate(req, keyPair('ed25519'), NOW);
  req.principals.push('root');
  assert.deepEqual(cert.principals, ['alice']);
});

test('never repeats a nonce or serial across many certificates', () => {
  const nonces = new Set<string>();
  const serials = new Set<bigint>();
  // More than one 4 KiB randomness pool's worth (about 100 certificates each).
  for (let i = 0; i < 500; i++) {
    const c = signCertificate(base(), keyPair('ed25519'), NOW);
    nonces.add(c.nonce.toString('hex'));
    serials.add(c.serial);
  }
  assert.equal(nonces.size, 500);
  assert.equal(serials.size, 500);
});
