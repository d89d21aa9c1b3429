import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { WireWriter } from '../../src/sshwire/index.js';
import {
  CertError,
  fingerprintSha256,
  formatPublicKeyLine,
  generateKeyPair,
  parsePublicKeyBlob,
  parsePublicKeyLine,
  publicKeyFromKeyObject,
  type KeyAlgorithm,
} from '../../src/sshcert/index.js';
import { KINDS, keyPair, codeOf } from './fixtures.js';


const wire = (...parts: Array<string | Buffer | ['mpint', Buffer]>): Buffer => {
  const w = new WireWriter();
  for (const p of parts) {
    if (Array.isArray(p)) w.mpint(p[1]);
    else w.string(p);
  }
  return Buffer.from(w.finish());
};

const expectedType: Record<string, KeyAlgorithm> = {
  ed25519: 'ssh-ed25519',
  'ecdsa-p256': 'ecdsa-sha2-nistp256',
  'ecdsa-p384': 'ecdsa-sha2-nistp384',
  'ecdsa-p521': 'ecdsa-sha2-nistp521',
  'rsa-3072': 'ssh-rsa',
};

for (const kind of KINDS) {
  test(`a generated ${kind} key round-trips through its wire blob and its .pub line`, () => {
    const { privateKey, publicKey } = keyPair(kind);
    assert.equal(publicKey.type, expectedType[kind]);
    const again = parsePublicKeyBlob(publicKey.blob);
    assert.equal(again.type, publicKey.type);
    assert.ok(again.key.equals(publicKey.key));
    assert.deepEqual(publicKeyFromKeyObject(privateKey).blob, publicKey.blob);
    const line = formatPublicKeyLine(publicKey, 'alice@laptop');
    const parsed = parsePublicKeyLine(line);
    assert.equal(parsed.comment, 'alice@laptop');
    assert.deepEqual(parsed.key.blob, publicKey.blob);
  });
}

test('generateKeyPair makes ed25519 keys by default', () => {
  assert.equal(generateKeyPair().publicKey.type, 'ssh-ed25519');
});

test('fingerprintSha256 is "SHA256:" and unpadded base64 of the blob hash', () => {
  const blob = keyPair('ed25519').publicKey.blob;
  const want = createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
  assert.equal(fingerprintSha256(blob), `SHA256:${want}`);
  assert.equal(fingerprintSha256(blob).length, 7 + 43);
});

const ed = keyPair('ed25519').publicKey;
const p256 = keyPair('ecdsa-p256').publicKey;
const p256Point = (() => {
  const r = p256.blob.subarray(4 + 19 + 4 + 8 + 4);
  return Buffer.from(r);
})();
const badBlobs: Array<[string, () => Buffer, string]> = [
  ['an Ed25519 key of 31 bytes', () => wire('ssh-ed25519', Buffer.alloc(31)), 'KEY_MALFORMED'],
  ['an Ed25519 key of 33 bytes', () => wire('ssh-ed25519', Buffer.alloc(33)), 'KEY_MALFORMED'],
  ['trailing bytes after a key', () => Buffer.concat([ed.blob, Buffer.of(0)]), 'KEY_MALFORMED'],
  ['a truncated key', () => ed.blob.subarray(0, ed.blob.length - 1), 'KEY_MALFORMED'],
  ['an ECDSA key naming another curve', () => wire('ecdsa-sha2-nistp256', 'nistp384', p256Point), 'KEY_MALFORMED'],
  ['a compressed ECDSA point', () => wire('ecdsa-sha2-nistp256', 'nistp256', Buffer.concat([Buffer.of(2), p256Point.subarray(1, 33)])), 'KEY_MALFORMED'],
  ['an ECDSA point off the curve', () => { const q = Buffer.from(p256Point); q[64]! ^= 1; return wire('ecdsa-sha2-nistp256', 'nistp256', q); }, 'KEY_MALFORMED'],
  ['an ECDSA point with a coordinate above the field prime', () => wire('ecdsa-sha2-nistp256', 'nistp256', Buffer.concat([Buffer.of(4), Buffer.alloc(64, 0xff)])), 'KEY_MALFORMED'],
  ['an RSA key of 512 bits', () => { const k = generateKeyPairSync('rsa', { modulusLength: 512 }).publicKey.export({ format: 'jwk' }); return wire('ssh-rsa', ['mpint', Buffer.from(k.e!, 'base64url')], ['mpint', Buffer.from(k.n!, 'base64url')]); }, 'KEY_UNSUPPORTED'],
  ['an RSA key with an even exponent', () => { const k = keyPair('rsa-3072').publicKey.key.export({ format: 'jwk' }); return wire('ssh-rsa', ['mpint', Buffer.of(1, 0, 0)], ['mpint', Buffer.from(k.n!, 'base64url')]); }, 'KEY_MALFORMED'],
  ['an RSA key with a non-minimal mpint', () => { const k = keyPair('rsa-3072').publicKey.key.export({ format: 'jwk' }); return wire('ssh-rsa', Buffer.of(0, 1, 0, 1), ['mpint', Buffer.from(k.n!, 'base64url')]); }, 'KEY_MALFORMED'],
  ['a DSA key', () => wire('ssh-dss', 'p', 'q', 'g', 'y'), 'KEY_UNSUPPORTED'],
  ['a FIDO key', () => wire('sk-ssh-ed25519@openssh.com', Buffer.alloc(32), 'ssh:'), 'KEY_UNSUPPORTED'],
  ['a certificate where a plain key is expected', () => wire('ssh-ed25519-cert-v01@openssh.com', Buffer.alloc(32)), 'KEY_UNSUPPORTED'],
  ['an empty buffer', () => Buffer.alloc(0), 'KEY_MALFORMED'],
];
for (const [name, make, want] of badBlobs) {
  test(`parsePublicKeyBlob rejects ${name} (${want})`, () => {
    assert.equal(codeOf(() => parsePublicKeyBlob(make())), want);
  });
}

const badLines: Array<[string, () => string, string]> = [
  ['a type word that differs from the key inside', () => formatPublicKeyLine(ed).replace('ssh-ed25519', 'ssh-rsa'), 'KEY_MALFORMED'],
  ['base64 with a stray character', () => `ssh-ed25519 ${ed.blob.toString('base64').replace('AAAA', 'AA!A')}`, 'KEY_MALFORMED'],
  ['base64 without its padding', () => `ecdsa-sha2-nistp256 ${p256.blob.toString('base64').replace(/=+$/, '')}`, 'KEY_MALFORMED'],
  ['a certificate line', () => `ssh-ed25519-cert-v01@openssh.com AAAA`, 'KEY_UNSUPPORTED'],
  ['a line with authorized_keys options in front', () => `no-pty ${formatPublicKeyLine(ed)}`, 'KEY_UNSUPPORTED'],
  ['a line with only a type', () => 'ssh-ed25519', 'KEY_MALFORMED'],
];
for (const [name, make, want] of badLines) {
  test(`parsePublicKeyLine rejects ${name} (${want})`, () => {
    assert.equal(codeOf(() => parsePublicKeyLine(make())), want);
  });
}

test('parsePublicKeyLine keeps a comment with spaces and tolerates a trailing newline', () => {
  const { comment } = parsePublicKeyLine(`${formatPublicKeyLine(ed)} jumpgate user CA 1\n`);
  assert.equal(comment, 'jumpgate user CA 1');
});

test('formatPublicKeyLine refuses a comment with a line break', () => {
  assert.throws(() => formatPublicKeyLine(ed, 'a\nssh-ed25519 AAAA evil'), RangeError);
});

test('publicKeyFromKeyObject refuses key types SSH cannot carry', () => {
  assert.equal(codeOf(() => publicKeyFromKeyObject(generateKeyPairSync('x25519').publicKey)), 'KEY_UNSUPPORTED');
  assert.equal(codeOf(() => publicKeyFromKeyObject(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey)), 'KEY_UNSUPPORTED');
});
