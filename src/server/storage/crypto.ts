/**
 * Encryption at rest for what the postgres backend stores that must stay
 * secret from whoever reads the database (a backup, a replica, a DBA): the CA
 * private keys and the pending logins.
 *
 * Keys: `storage.encryption_key_file` (the one that seals) and
 * `storage.previous_encryption_key_files` (still open old rows after a
 * rotation of the encryption key). Each file holds exactly 32 random bytes,
 * base64 (surrounding whitespace ignored), readable by its owner only.
 *
 * Sealed format (AES-256-GCM, NIST SP 800-38D; a fresh random 96-bit nonce
 * per seal):
 *
 *   byte 0       format version (1)
 *   bytes 1-8    key id: the first 8 bytes of SHA-256 of the key
 *   bytes 9-20   nonce
 *   bytes 21-36  GCM tag
 *   bytes 37-    ciphertext
 *
 * The additional authenticated data is the header (version + key id) plus
 * the caller's `aad`, which names where the value is stored
 * (`ca:user:<key id>`, `pending:<key hash>`): a row copied to another place
 * in the database does not open there.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { UserError } from '../../errors.js';

const VERSION = 1;
const KEY_BYTES = 32;
const ID_BYTES = 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + ID_BYTES + NONCE_BYTES + TAG_BYTES;

/** One encryption key and where it came from (for messages). */
export interface EncryptionKey {
  /** 16 hex digits: the first 8 bytes of SHA-256 of the key. */
  id: string;
  key: Buffer;
  file: string;
  /** The config key that named the file (`storage.encryption_key_file`, `storage.previous_encryption_key_files[1]`). */
  configKey: string;
}

/** A key file that cannot be used; the message names the file, the config key and the fix. */
export class EncryptionKeyError extends UserError {}

/**
 * The current key and the previous ones: seals with the current, opens with
 * whichever key the sealed value names.
 */
export class KeyRing {
  private readonly byId = new Map<string, EncryptionKey>();

  constructor(
    readonly current: EncryptionKey,
    readonly previous: readonly EncryptionKey[] = [],
  ) {
    for (const k of [current, ...previous]) if (!this.byId.has(k.id)) this.byId.set(k.id, k);
  }

  /** Encrypts `plain`, bound to `aad` (where it is stored); the result names the current key. */
  seal(plain: Buffer, aad: string): Buffer {
    const header = Buffer.alloc(1 + ID_BYTES);
    header[0] = VERSION;
    Buffer.from(this.current.id, 'hex').copy(header, 1);
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.current.key, nonce);
    cipher.setAAD(Buffer.concat([header, Buffer.from(aad, 'utf8')]));
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([header, nonce, cipher.getAuthTag(), body]);
  }

  /**
   * Decrypts what `seal` made for the same `aad`.
   * @throws EncryptionKeyError (code STORE_KEY_MISMATCH) naming storage.encryption_key_file when no
   *   configured key has the value's key id, or when the value does not authenticate (tampered, wrong
   *   place, wrong key): never a silent fallback.
   */
  open(sealed: Buffer, aad: string): Buffer {
    if (sealed.length < HEADER_BYTES || sealed[0] !== VERSION) {
      throw this.mismatch(`the stored value at ${aad} is not in a format this version knows (${sealed.length} bytes, version ${sealed[0] ?? 'none'})`);
    }
    const id = sealed.subarray(1, 1 + ID_BYTES).toString('hex');
    const k = this.byId.get(id);
    if (!k) {
      throw this.mismatch(`the stored value at ${aad} was encrypted with key ${id}, which is neither storage.encryption_key_file (${this.current.id}) nor one of storage.previous_encryption_key_files`);
    }
    const nonce = sealed.subarray(1 + ID_BYTES, 1 + ID_BYTES + NONCE_BYTES);
    const tag = sealed.subarray(1 + ID_BYTES + NONCE_BYTES, HEADER_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', k.key, nonce);
    decipher.setAAD(Buffer.concat([sealed.subarray(0, 1 + ID_BYTES), Buffer.from(aad, 'utf8')]));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(sealed.subarray(HEADER_BYTES)), decipher.final()]);
    } catch (err) {
      throw this.mismatch(`the stored value at ${aad} does not authenticate with key ${id} (${k.file}): it was changed or copied from another row`, err);
    }
  }

  /** Whether `sealed` was made with the current key (else `tctl storage rekey` rewrites it). */
  isCurrent(sealed: Buffer): boolean {
    return sealed.length >= 1 + ID_BYTES && sealed.subarray(1, 1 + ID_BYTES).toString('hex') === this.current.id;
  }

  private mismatch(what: string, cause?: unknown): EncryptionKeyError {
    return new EncryptionKeyError('STORE_KEY_MISMATCH', `cannot decrypt the state store: ${what}`, {
      cause,
      hint: `set storage.encryption_key_file to the key this database was written with (the same file on every proxy), listing older keys under storage.previous_encryption_key_files; the server will not create new CA keys over unreadable ones`,
    });
  }
}

/** The key id of `key`: the first 8 bytes of its SHA-256, hex. */
export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest().subarray(0, ID_BYTES).toString('hex');
}

/**
 * Reads one key file: exactly 32 bytes, base64, surrounding whitespace ok;
 * not readable or writable by group or others (skipped on win32, where the
 * mode bits mean nothing).
 * @param configKey the config key that named it, for messages.
 * @throws EncryptionKeyError (code STORE_KEY_INVALID) naming the file, the config key and the fix.
 */
export function readKeyFile(file: string, configKey: string, platform: NodeJS.Platform = process.platform): EncryptionKey {
  const bad = (reason: string, hint: string, cause?: unknown) =>
    new EncryptionKeyError('STORE_KEY_INVALID', `${configKey}: ${file}: ${reason}`, { cause, hint });
  const make = `make one with: (umask 077; openssl rand -base64 32 > ${file})`;
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw bad('is not a regular file', make);
    if (platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw bad(`is readable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`, `restrict it with: chmod 600 ${file}`);
    }
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof EncryptionKeyError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw bad(code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(err)})`, code === 'ENOENT' ? make : `check the path and that this user may read it`, err);
  }
  const b64 = text.trim();
  const key = Buffer.from(b64, 'base64');
  // Buffer.from ignores characters outside the alphabet: check the text round-trips, so a key pasted
  // with a typo is refused instead of becoming another key.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || key.toString('base64') !== b64 || key.length !== KEY_BYTES) {
    throw bad(`must hold exactly ${KEY_BYTES} bytes as base64 (found ${b64.length} characters${/^[A-Za-z0-9+/=]*$/.test(b64) ? `, ${key.length} bytes` : ' with characters outside base64'})`, make);
  }
  return { id: keyId(key), key, file, configKey };
}

/** The key ring of `storage`: encryption_key_file seals, previous_encryption_key_files still open. */
export function loadKeyRing(
  storage: { encryptionKeyFile: string; previousEncryptionKeyFiles: readonly string[] },
  platform: NodeJS.Platform = process.platform,
): KeyRing {
  const current = readKeyFile(storage.encryptionKeyFile, 'storage.encryption_key_file', platform);
  const previous = storage.previousEncryptionKeyFiles.map((f, i) => readKeyFile(f, `storage.previous_encryption_key_files[${i}]`, platform));
  return new KeyRing(current, previous);
}
