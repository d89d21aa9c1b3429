/**
 * Encryption at rest (src/server/storage/crypto.ts): key files and sealing.
 * Pure apart from the key files in a temp dir.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyRing, loadKeyRing, readKeyFile, keyId } from '../../../src/server/storage/crypto.js';
import { UserError } from '../../../src/errors.js';
import { tempDir } from '../../helpers/tools.js';

const tmp = tempDir('crypto');
after(() => tmp.cleanup());
let n = 0;
function keyFile(text: string, mode = 0o600): string {
  const f = join(tmp.dir, `key${n++}`);
  writeFileSync(f, text);
  chmodSync(f, mode); // not through writeFileSync's mode: the umask would clear bits
  return f;
}
const goodKey = () => keyFile(`${randomBytes(32).toString('base64')}\n`);

function expectCode(fn: () => unknown, code: string, ...res: RegExp[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
    assert.equal(err.code, code);
    for (const re of res) assert.match(`${err.message} ${err.hint ?? ''}`, re);
    return true;
  });
}

describe('encryption key files', () => {
  test('a 32-byte base64 key with surrounding whitespace is read; its id is the first 8 bytes of its SHA-256', () => {
    const raw = randomBytes(32);
    const k = readKeyFile(keyFile(`  \n${raw.toString('base64')}\r\n\n`), 'storage.encryption_key_file');
    assert.deepEqual(k.key, raw);
    assert.match(k.id, /^[0-9a-f]{16}$/);
    assert.equal(k.id, keyId(raw));
  });

  const bad: [string, string, RegExp][] = [
    ['empty', '', /exactly 32 bytes/],
    ['16 bytes', randomBytes(16).toString('base64'), /exactly 32 bytes.*16 bytes/],
    ['33 bytes', randomBytes(33).toString('base64'), /exactly 32 bytes/],
    ['hex instead of base64', randomBytes(32).toString('hex'), /exactly 32 bytes/],
    ['a typo outside the alphabet', `${randomBytes(32).toString('base64').slice(0, 20)}*${randomBytes(32).toString('base64').slice(21)}`, /outside base64/],
    ['two keys in one file', `${randomBytes(32).toString('base64')}\n${randomBytes(32).toString('base64')}`, /exactly 32 bytes/],
  ];
  for (const [name, text, re] of bad) {
    test(`refuses a key file holding ${name}, naming the file, the config key and how to make one`, () => {
      const f = keyFile(text);
      expectCode(() => readKeyFile(f, 'storage.encryption_key_file'), 'STORE_KEY_INVALID', re, new RegExp(f), /storage\.encryption_key_file/, /openssl rand -base64 32/);
    });
  }

  for (const mode of [0o640, 0o604, 0o660, 0o644, 0o602]) {
    test(`refuses a key file with mode ${mode.toString(8)} with the fix chmod 600 (not on win32)`, () => {
      const f = keyFile(randomBytes(32).toString('base64'), mode);
      expectCode(() => readKeyFile(f, 'storage.previous_encryption_key_files[0]'), 'STORE_KEY_INVALID', /group or others/, new RegExp(`chmod 600 ${f}`), /previous_encryption_key_files\[0\]/);
      assert.equal(readKeyFile(f, 'storage.encryption_key_file', 'win32').key.length, 32);
    });
  }

  test('a missing file or a directory is refused naming the file', () => {
    const missing = join(tmp.dir, 'nope');
    expectCode(() => readKeyFile(missing, 'storage.encryption_key_file'), 'STORE_KEY_INVALID', /does not exist/, /storage\.encryption_key_file/);
    expectCode(() => readKeyFile(tmp.dir, 'storage.encryption_key_file'), 'STORE_KEY_INVALID', /not a regular file/);
  });

  test('loadKeyRing names the position of a bad previous key', () => {
    const bad2 = keyFile('short');
    expectCode(() => loadKeyRing({ encryptionKeyFile: goodKey(), previousEncryptionKeyFiles: [goodKey(), bad2] }), 'STORE_KEY_INVALID', /previous_encryption_key_files\[1\]/);
  });
});

describe('sealing', () => {
  const ring = loadKeyRing({ encryptionKeyFile: goodKey(), previousEncryptionKeyFiles: [] });
  const secret = Buffer.from('-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n');

  test('round-trips, with a fresh nonce each time, and the plaintext is not in the output', () => {
    const a = ring.seal(secret, 'ca:user:k1');
    const b = ring.seal(secret, 'ca:user:k1');
    assert.notDeepEqual(a, b);
    assert.equal(a.includes(Buffer.from('OPENSSH PRIVATE KEY')), false);
    assert.deepEqual(ring.open(a, 'ca:user:k1'), secret);
    assert.ok(ring.isCurrent(a));
  });

  const tamper: [string, (s: Buffer) => Buffer, string, RegExp][] = [
    ['a flipped ciphertext bit', (s) => flip(s, s.length - 1), 'ca:user:k1', /does not authenticate/],
    ['a flipped tag bit', (s) => flip(s, 25), 'ca:user:k1', /does not authenticate/],
    ['a flipped nonce bit', (s) => flip(s, 10), 'ca:user:k1', /does not authenticate/],
    ['a changed key id', (s) => flip(s, 2), 'ca:user:k1', /encrypted with key [0-9a-f]{16}, which is neither/],
    ['an unknown format version', (s) => flip(s, 0), 'ca:user:k1', /not in a format/],
    ['a truncated value', (s) => s.subarray(0, 20), 'ca:user:k1', /not in a format/],
    ['another CA type (wrong AAD)', (s) => s, 'ca:host:k1', /does not authenticate/],
    ['another key id (wrong AAD)', (s) => s, 'ca:user:k2', /does not authenticate/],
    ['a pending login row (wrong AAD)', (s) => s, 'pending:k1', /does not authenticate/],
  ];
  for (const [name, change, aad, re] of tamper) {
    test(`refuses ${name} with STORE_KEY_MISMATCH naming storage.encryption_key_file`, () => {
      const sealed = change(Buffer.from(ring.seal(secret, 'ca:user:k1')));
      expectCode(() => ring.open(sealed, aad), 'STORE_KEY_MISMATCH', re, /storage\.encryption_key_file/);
    });
  }

  test('a value sealed with a previous key opens when that key is listed, and not when it is not', () => {
    const oldFile = goodKey();
    const old = loadKeyRing({ encryptionKeyFile: oldFile, previousEncryptionKeyFiles: [] });
    const sealed = old.seal(secret, 'pending:x');
    const rotated = loadKeyRing({ encryptionKeyFile: goodKey(), previousEncryptionKeyFiles: [oldFile] });
    assert.deepEqual(rotated.open(sealed, 'pending:x'), secret);
    assert.equal(rotated.isCurrent(sealed), false);
    assert.ok(rotated.isCurrent(rotated.seal(secret, 'pending:x')));
    const forgot = new KeyRing(rotated.current);
    expectCode(() => forgot.open(sealed, 'pending:x'), 'STORE_KEY_MISMATCH', new RegExp(old.current.id), /previous_encryption_key_files/);
  });
});

function flip(b: Buffer, i: number): Buffer {
  const c = Buffer.from(b);
  c[i] = c[i]! ^ 1;
  return c;
}
