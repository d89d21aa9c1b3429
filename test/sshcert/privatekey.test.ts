import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WireReader, WireWriter } from '../../src/sshwire/index.js';
import { CertError, encodeOpenSSHPrivateKey, parseOpenSSHPrivateKey, signData, verifySignature } from '../../src/sshcert/index.js';
import { KINDS, keyPair, codeOf } from './fixtures.js';


const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';

function body(pem: string): Buffer {
  return Buffer.from(pem.replace(BEGIN, '').replace(END, '').replace(/\s+/g, ''), 'base64');
}
function pem(raw: Buffer): string {
  return `${BEGIN}\n${raw.toString('base64').replace(/(.{70})/g, '$1\n')}\n${END}\n`;
}

/** Splits an encoded key into its outer fields so tests can rebuild it with one part changed. */
function explode(text: string): { cipher: string; kdf: string; pub: Buffer; priv: Buffer } {
  const raw = body(text);
  const r = new WireReader(raw.subarray(15));
  const cipher = r.utf8();
  const kdf = r.utf8();
  r.string();
  r.u32();
  return { cipher, kdf, pub: Buffer.from(r.string()), priv: Buffer.from(r.string()) };
}
function assemble(p: { cipher: string; kdf: string; pub: Buffer; priv: Buffer; kdfOptions?: Buffer; nkeys?: number }): string {
  const w = new WireWriter().raw(Buffer.from('openssh-key-v1\0', 'latin1'));
  w.string(p.cipher).string(p.kdf).string(p.kdfOptions ?? Buffer.alloc(0)).u32(p.nkeys ?? 1).string(p.pub).string(p.priv);
  return pem(Buffer.from(w.finish()));
}

for (const kind of KINDS) {
  test(`a ${kind} private key survives encode -> parse with its comment, and still signs`, () => {
    const { privateKey, publicKey } = keyPair(kind);
    const text = encodeOpenSSHPrivateKey(privateKey, 'ca key');
    const back = parseOpenSSHPrivateKey(text);
    assert.equal(back.comment, 'ca key');
    assert.deepEqual(back.publicKey.blob, publicKey.blob);
    assert.equal(verifySignature(publicKey, Buffer.from('x'), signData(back.privateKey, Buffer.from('x'))), true);
  });
}

test('writes the PEM armour, 70-column lines and a trailing newline, as ssh-keygen does', () => {
  const text = encodeOpenSSHPrivateKey(keyPair('ecdsa-p384').privateKey);
  const lines = text.split('\n');
  assert.equal(lines[0], BEGIN);
  assert.equal(lines.at(-2), END);
  assert.equal(lines.at(-1), '');
  const b64 = lines.slice(1, -2);
  for (const l of b64.slice(0, -1)) assert.equal(l.length, 70);
  assert.ok(b64.at(-1)!.length <= 70);
});

test('uses random check integers and padding 1, 2, 3, ... to a multiple of 8', () => {
  const { priv } = explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey, 'abc'));
  assert.equal(priv.length % 8, 0);
  assert.equal(priv.readUInt32BE(0), priv.readUInt32BE(4));
  const checks = new Set(Array.from({ length: 5 }, () => explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey)).priv.readUInt32BE(0)));
  assert.ok(checks.size > 1, 'check integers are not random');
  // ed25519 layout: 8 check + (4+11) type + (4+32) pk + (4+64) sk + (4+3) comment = 134 -> 2 bytes of padding.
  assert.deepEqual([...priv.subarray(134)], [1, 2]);
});

test('rejects a passphrase-protected key with KEY_ENCRYPTED and says how to fix it', () => {
  const parts = explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey));
  const text = assemble({ ...parts, cipher: 'aes256-ctr', kdf: 'bcrypt', kdfOptions: Buffer.from('0000001000000000', 'hex') });
  assert.equal(codeOf(() => parseOpenSSHPrivateKey(text)), 'KEY_ENCRYPTED');
  assert.throws(() => parseOpenSSHPrivateKey(text), /protected by a passphrase.*ssh-keygen -p/);
});

const broken: Array<[string, () => string, string]> = [
  ['check integers that differ', () => { const p = explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey)); p.priv[0]! ^= 1; return assemble(p); }, 'KEY_MALFORMED'],
  ['a public part from another key', () => { const p = explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey)); return assemble({ ...p, pub: Buffer.from(new WireWriter().string('ssh-ed25519').string(Buffer.alloc(32, 9)).finish()) }); }, 'KEY_MALFORMED'],
  ['a public part of another type', () => { const p = explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey)); return assemble({ ...p, pub: keyPair('ecdsa-p256').publicKey.blob }); }, 'KEY_MALFORMED'],
  ['an Ed25519 secret whose embedded public half differs', () => { const p = explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey)); p.priv[8 + 15 + 36 + 4 + 40]! ^= 1; return assemble(p); }, 'KEY_MALFORMED'],
  ['an ECDSA scalar that does not match its point', () => { const p = explode(encodeOpenSSHPrivateKey(keyPair('ecdsa-p256').privateKey)); p.priv[p.priv.length - 20]! ^= 1; return assemble(p); }, 'KEY_MALFORMED'],
  ['wrong padding bytes', () => { const p = explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey, 'abc')); p.priv[p.priv.length - 1] = 9; return assemble(p); }, 'KEY_MALFORMED'],
  ['a private section not padded to 8 bytes', () => { const p = explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey, 'abc')); return assemble({ ...p, priv: p.priv.subarray(0, p.priv.length - 1) }); }, 'KEY_MALFORMED'],
  ['two keys in one file', () => assemble({ ...explode(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey)), nkeys: 2 }), 'KEY_UNSUPPORTED'],
  ['a bad magic string', () => pem(Buffer.concat([Buffer.from('openssh-key-v2\0'), body(encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey)).subarray(15)])), 'KEY_MALFORMED'],
  ['no PEM armour', () => 'hello', 'KEY_MALFORMED'],
  ['a PKCS#8 PEM key', () => keyPair('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), 'KEY_UNSUPPORTED'],
  ['invalid base64 inside the armour', () => `${BEGIN}\nb3BlbnNza*\n${END}\n`, 'KEY_MALFORMED'],
];
for (const [name, make, want] of broken) {
  test(`rejects a private key with ${name} (${want})`, () => {
    assert.equal(codeOf(() => parseOpenSSHPrivateKey(make())), want);
  });
}

test('an RSA key with a corrupted prime is refused', () => {
  const p = explode(encodeOpenSSHPrivateKey(keyPair('rsa-3072').privateKey));
  p.priv[p.priv.length - 30]! ^= 1; // inside q
  assert.equal(codeOf(() => parseOpenSSHPrivateKey(assemble(p))), 'KEY_MALFORMED');
});

test('rejects a private key truncated at every 4th offset with a CertError', () => {
  const raw = body(encodeOpenSSHPrivateKey(keyPair('ecdsa-p256').privateKey, 'c'));
  for (let n = 0; n < raw.length; n += 4) {
    const code = codeOf(() => parseOpenSSHPrivateKey(pem(raw.subarray(0, n))));
    assert.equal(code, 'KEY_MALFORMED', `truncated to ${n}`);
  }
});

test('accepts CRLF line endings and surrounding text', () => {
  const text = encodeOpenSSHPrivateKey(keyPair('ed25519').privateKey, 'x').replace(/\n/g, '\r\n');
  assert.equal(parseOpenSSHPrivateKey(`# header\r\n${text}trailer`).comment, 'x');
});
