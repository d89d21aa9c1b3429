/**
 * The KRL encoder and parser (src/sshcert/krl.ts) against the real OpenSSH:
 * `ssh-keygen -Q` reads what we write and agrees on what is revoked;
 * `ssh-keygen -k` writes KRLs (lists, ranges, bitmaps, key ids, keys) that we
 * read back as the same revocations. A missing ssh-keygen fails the suite.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool, run, tempDir } from '../helpers/tools.js';
import {
  CertError,
  CertRequest,
  encodeCertificateLine,
  encodeKrl,
  formatPublicKeyLine,
  generateKeyPair,
  isKeyRevoked,
  isRevoked,
  parseKrl,
  signCertificate,
  type Certificate,
  type Krl,
} from '../../src/sshcert/index.js';
import { keyPair, NOW } from './fixtures.js';

let keygen = '';
let dir = '';
let cleanup = (): void => {};

before(() => {
  keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
  ({ dir, cleanup } = tempDir('krl'));
});
after(() => cleanup());

const ca = keyPair('ed25519');
const otherCa = keyPair('ecdsa-p256');

function cert(keyId: string, serial: bigint, signer = ca): Certificate {
  const req = new CertRequest({ publicKey: generateKeyPair('ed25519').publicKey, type: 'user', keyId, principals: [keyId], ttlSeconds: 3600, serial });
  return signCertificate(req, signer, NOW);
}

function writeCert(name: string, c: Certificate): string {
  const p = join(dir, `${name}-cert.pub`);
  writeFileSync(p, encodeCertificateLine(c, name) + '\n');
  return p;
}

/** `ssh-keygen -Q -f KRL FILE`: true when it says REVOKED, false for ok; anything else fails. */
async function keygenSaysRevoked(krlPath: string, file: string): Promise<boolean> {
  const res = await run(keygen, ['-Q', '-f', krlPath, file]);
  const line = res.stdout.trim();
  if (/: REVOKED$/.test(line) && res.code === 1) return true;
  if (/: ok$/.test(line) && res.code === 0) return false;
  throw new Error(`ssh-keygen -Q gave exit ${res.code}: ${res.stdout}${res.stderr}`);
}

const empty = (): Krl => ({ version: 1n, generatedDate: BigInt(NOW.getTime() / 1000), comment: 'jumpgate', certificates: [], explicitKeys: [], sha256: [] });

test('ssh-keygen -Q agrees with our KRL: revoked by serial, by key id and by key fingerprint; others ok', async () => {
  const bySerial = cert('alice', 1001n);
  const sameSerialOtherCa = cert('alice', 1001n, otherCa);
  const byKeyId = cert('carol', 77n);
  const notRevoked = cert('bob', 1002n);
  const plainRevoked = generateKeyPair('ed25519').publicKey;
  const plainExplicit = generateKeyPair('ecdsa-p256').publicKey;
  const plainOk = generateKeyPair('ed25519').publicKey;
  const krl: Krl = {
    ...empty(),
    certificates: [{ caKey: ca.publicKey.blob, serials: [1001n, 5n, 1001n], keyIds: ['carol'] }],
    explicitKeys: [plainExplicit.blob],
    sha256: [createHash('sha256').update(plainRevoked.blob).digest()],
  };
  const krlPath = join(dir, 'ours.krl');
  writeFileSync(krlPath, encodeKrl(krl));
  const cases: Array<[string, string, boolean]> = [
    ['revoked by serial', writeCert('alice', bySerial), true],
    ['same serial, another CA', writeCert('alice-other', sameSerialOtherCa), false],
    ['revoked by key id', writeCert('carol', byKeyId), true],
    ['not revoked', writeCert('bob', notRevoked), false],
  ];
  for (const [name, pk, want] of [
    ['plain key by sha256', plainRevoked, true],
    ['plain key explicit', plainExplicit, true],
    ['plain key not revoked', plainOk, false],
  ] as const) {
    const p = join(dir, `${name.replace(/ /g, '_')}.pub`);
    writeFileSync(p, formatPublicKeyLine(pk) + '\n');
    cases.push([name, p, want]);
  }
  const parsed = parseKrl(readFileSync(krlPath));
  for (const [name, file, want] of cases) {
    assert.equal(await keygenSaysRevoked(krlPath, file), want, `ssh-keygen on ${name}`);
  }
  // Our own check says the same.
  assert.equal(isRevoked(parsed, bySerial), true);
  assert.equal(isRevoked(parsed, sameSerialOtherCa), false);
  assert.equal(isRevoked(parsed, byKeyId), true);
  assert.equal(isRevoked(parsed, notRevoked), false);
  assert.equal(isKeyRevoked(parsed, plainRevoked.blob), true);
  assert.equal(isKeyRevoked(parsed, plainOk.blob), false);
  // The listing ssh-keygen prints names the revocations too.
  const dump = await run(keygen, ['-Q', '-l', '-f', krlPath]);
  assert.match(dump.stdout, /Revoked by serial|serial: 1001|1001/);
  assert.match(dump.stdout, /carol/);
});

test('a key id revoked for any CA (empty ca_key) is revoked whichever CA signed the certificate', async () => {
  const krlPath = join(dir, 'anyca.krl');
  writeFileSync(krlPath, encodeKrl({ ...empty(), certificates: [{ serials: [], keyIds: ['dave'] }] }));
  assert.equal(await keygenSaysRevoked(krlPath, writeCert('dave-a', cert('dave', 9n))), true);
  assert.equal(await keygenSaysRevoked(krlPath, writeCert('dave-b', cert('dave', 9n, otherCa))), true);
  assert.equal(await keygenSaysRevoked(krlPath, writeCert('erin', cert('erin', 9n))), false);
});

test('an empty KRL is read by ssh-keygen and revokes nothing', async () => {
  const krlPath = join(dir, 'empty.krl');
  writeFileSync(krlPath, encodeKrl(empty()));
  assert.equal(await keygenSaysRevoked(krlPath, writeCert('frank', cert('frank', 1n))), false);
  assert.deepEqual(parseKrl(readFileSync(krlPath)).certificates, []);
});

test('we read what ssh-keygen -k writes (serial lists, ranges, bitmaps, key ids, keys) as the same revocations', async () => {
  const caPub = join(dir, 'ca.pub');
  writeFileSync(caPub, formatPublicKeyLine(ca.publicKey) + '\n');
  const explicit = generateKeyPair('ed25519').publicKey;
  const hashed = generateKeyPair('ed25519').publicKey;
  const dense = Array.from({ length: 40 }, (_, i) => 500 + i * 2); // a bitmap is smaller than a list here
  const spec = [
    'serial: 7',
    'serial: 1000-5000',
    'serial: 123456789',
    ...dense.map((s) => `serial: ${s}`),
    'id: grace',
    'id: heidi',
    `key: ${formatPublicKeyLine(explicit)}`,
    `sha256: ${formatPublicKeyLine(hashed)}`,
  ].join('\n');
  const specPath = join(dir, 'spec.txt');
  writeFileSync(specPath, spec + '\n');
  const krlPath = join(dir, 'keygen.krl');
  const res = await run(keygen, ['-k', '-f', krlPath, '-s', caPub, '-z', '42', specPath]);
  assert.equal(res.code, 0, res.stderr);
  const krl = parseKrl(readFileSync(krlPath));
  assert.equal(krl.version, 42n);
  assert.equal(krl.certificates.length, 1);
  const sect = krl.certificates[0]!;
  assert.ok(sect.caKey?.equals(ca.publicKey.blob), 'the section names our CA key');
  const revoked = (s: bigint) => sect.serials.includes(s) || (sect.ranges ?? []).some(([lo, hi]) => s >= lo && s <= hi);
  for (const s of [7n, 1000n, 3000n, 5000n, 123456789n, ...dense.map(BigInt)]) assert.ok(revoked(s), `serial ${s} revoked`);
  for (const s of [6n, 8n, 999n, 5001n, 501n, 579n, 123456788n]) assert.ok(!revoked(s), `serial ${s} not revoked`);
  assert.deepEqual([...sect.keyIds].sort(), ['grace', 'heidi']);
  assert.equal(krl.explicitKeys.length, 1);
  assert.ok(krl.explicitKeys[0]!.equals(explicit.blob));
  assert.ok(isKeyRevoked(krl, hashed.blob));
  // And what we write from the parsed revocations, ssh-keygen reads the same way.
  const againPath = join(dir, 'again.krl');
  writeFileSync(againPath, encodeKrl(krl));
  for (const [c, want] of [
    [cert('x', 3000n), true],
    [cert('x', 502n), true],
    [cert('x', 503n), false],
    [cert('heidi', 1n), true],
    [cert('ivan', 1n), false],
  ] as const) {
    const file = writeCert(`again-${c.serial}-${c.keyId}`, c);
    assert.equal(await keygenSaysRevoked(againPath, file), want, `${c.keyId}/${c.serial}`);
    assert.equal(await keygenSaysRevoked(krlPath, file), want, `original ${c.keyId}/${c.serial}`);
    assert.equal(isRevoked(krl, c), want);
  }
});

test('encoding is canonical: the same revocations in any order give the same bytes', () => {
  const a = encodeKrl({ ...empty(), certificates: [{ caKey: ca.publicKey.blob, serials: [3n, 1n, 2n], keyIds: ['b', 'a'] }] });
  const b = encodeKrl({ ...empty(), certificates: [{ caKey: ca.publicKey.blob, serials: [2n, 3n, 1n, 1n], keyIds: ['a', 'b', 'a'] }] });
  assert.ok(a.equals(b));
  const back = parseKrl(a);
  assert.deepEqual(back.certificates[0]!.serials, [1n, 2n, 3n]);
  assert.deepEqual(back.certificates[0]!.keyIds, ['a', 'b']);
  assert.equal(back.comment, 'jumpgate');
});

test('refuses what OpenSSH refuses: serial 0, a NUL in a key id', () => {
  assert.throws(() => encodeKrl({ ...empty(), certificates: [{ serials: [0n], keyIds: [] }] }), /serial 0/);
  assert.throws(() => encodeKrl({ ...empty(), certificates: [{ serials: [], keyIds: ['a\0b'] }] }), /NUL/);
});

test('the parser refuses a bad magic, a truncated file, a signature section and unknown sections with KEY_MALFORMED', () => {
  const good = encodeKrl({ ...empty(), certificates: [{ serials: [5n], keyIds: ['a'] }] });
  const code = (b: Buffer) => {
    try {
      parseKrl(b);
      return 'OK';
    } catch (err) {
      assert.ok(err instanceof CertError, String(err));
      assert.match(err.message, /key revocation list/);
      return err.code;
    }
  };
  assert.equal(code(good), 'OK');
  assert.equal(code(Buffer.from('not a krl at all, really')), 'KEY_MALFORMED');
  assert.equal(code(good.subarray(0, good.length - 3)), 'KEY_MALFORMED');
  assert.equal(code(Buffer.concat([good, Buffer.from([4, 0, 0, 0, 0])])), 'KEY_MALFORMED');
  assert.equal(code(Buffer.concat([good, Buffer.from([9, 0, 0, 0, 0])])), 'KEY_MALFORMED');
});
