/**
 * The cluster's two certificate authorities (user CA, host CA), kept in the
 * data directory:
 *
 *   <data_dir>/                 0700
 *   └── ca/                     0700
 *       ├── user/               0700
 *       │   ├── ca.json         0600  which keys exist, which one signs, until when the others are trusted
 *       │   ├── <id>.key        0600  OpenSSH private key (usable with ssh-keygen -s)
 *       │   └── .lock                 held while creating or rotating
 *       └── host/               same layout
 *
 * ca.json is the single source of truth. A CA is created only when its
 * directory holds neither ca.json nor key files; anything else that cannot be
 * read stops the program: minting a fresh CA would silently cut off every node
 * and client that trusts the old one.
 */
import { chmodSync, closeSync, existsSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { UserError } from '../../errors.js';
import { withLockFile } from '../../util/lockfile.js';
import { ensurePrivateDir } from '../../util/private-dir.js';
import { fsyncDir, writeError, writeFileAtomic } from '../../util/atomic-write.js';
import { encodeOpenSSHPrivateKey, fingerprintSha256, generateKeyPair, parseOpenSSHPrivateKey, type PublicKey } from '../../sshcert/index.js';

export type CaType = 'user' | 'host';
export const CA_TYPES: readonly CaType[] = ['user', 'host'];

/** One CA key pair and how long it is trusted. */
export interface CaKey {
  id: string;
  privateKey: KeyObject;
  publicKey: PublicKey;
  createdAt: Date;
  /** Set on keys rotated out: trusted (exported, accepted) until then. */
  trustedUntil: Date | undefined;
}

/** A CA as it stands now: the key that signs and every key still trusted (active first). */
export interface CaSet {
  type: CaType;
  active: CaKey;
  trusted: CaKey[];
}

interface CaFileKey {
  id: string;
  created: string;
  trusted_until?: string;
}
interface CaFile {
  version: 1;
  type: CaType;
  active: string;
  keys: CaFileKey[];
}

/** Receives warnings the store wants a human to see (fixed permissions, for example). */
export type Warn = (message: string) => void;

/**
 * Loads, creates and rotates the CAs in one data directory. Re-reads ca.json
 * when it changes on disk, so a running server picks up `tctl auth rotate`.
 */
export class CaStore {
  private cache = new Map<CaType, { stamp: string; set: CaSet }>();

  constructor(
    readonly dataDir: string,
    private readonly clock: () => Date,
    private readonly warn: Warn = () => {},
  ) {}

  /** The directory of one CA. */
  dir(type: CaType): string {
    return join(this.dataDir, 'ca', type);
  }

  /** The CA of this type, created on first use; throws CA_CORRUPT rather than replace a broken one. */
  get(type: CaType): CaSet {
    const file = join(this.dir(type), 'ca.json');
    const stamp = statStamp(file);
    const cached = this.cache.get(type);
    if (cached && stamp !== undefined && cached.stamp === stamp) return withTrustNow(cached.set, this.clock());
    if (stamp === undefined) {
      this.create(type);
      return this.get(type);
    }
    const set = this.load(type);
    this.cache.set(type, { stamp, set });
    return withTrustNow(set, this.clock());
  }

  /**
   * Makes a new signing key; the old active key stays trusted for
   * `graceSeconds` (0 = not at all). Returns the new set.
   */
  rotate(type: CaType, graceSeconds: number): CaSet {
    this.get(type); // creates the CA if absent, and refuses a corrupt one
    return this.withLock(type, () => {
      const dir = this.dir(type);
      const file = readCaFile(join(dir, 'ca.json'), type);
      const now = this.clock();
      const until = new Date(now.getTime() + graceSeconds * 1000).toISOString();
      // The grace period bounds every old key, not only the one just retired:
      // `--grace-period=0` after a compromise must end all old trust at once.
      for (const k of file.keys) {
        if (k.id === file.active || k.trusted_until === undefined || k.trusted_until > until) k.trusted_until = until;
      }
      const key = this.writeNewKey(type, now, '');
      file.keys.unshift({ id: key.id, created: now.toISOString() });
      file.active = key.id;
      writeFileAtomic(join(dir, 'ca.json'), JSON.stringify(file, null, 2) + '\n', 0o600);
      this.cache.delete(type);
      return this.get(type);
    });
  }

  private create(type: CaType): void {
    const dir = this.dir(type);
    ensurePrivateDir(this.dataDir);
    ensurePrivateDir(join(this.dataDir, 'ca'));
    ensurePrivateDir(dir);
    this.withLock(type, () => {
      const caJson = join(dir, 'ca.json');
      if (existsSync(caJson)) return; // another process created it while we waited
      const leftovers = readdirSync(dir).filter((f) => f.endsWith('.key'));
      if (leftovers.length > 0) {
        throw caCorrupt(
          type,
          dir,
          `it holds key files (${leftovers.join(', ')}) but no ca.json`,
          'restore ca.json from a backup; if this CA was never used, move the directory away to create a new one',
        );
      }
      const now = this.clock();
      // The key is written under a pending name first: a crash before ca.json
      // exists leaves no *.key file, so the next start creates the CA cleanly.
      const key = this.writeNewKey(type, now, '.pending');
      const file: CaFile = { version: 1, type, active: key.id, keys: [{ id: key.id, created: now.toISOString() }] };
      const tmp = join(dir, `.ca.json.${randomBytes(6).toString('hex')}.tmp`);
      writeFileAtomic(tmp, JSON.stringify(file, null, 2) + '\n', 0o600);
      try {
        linkSync(tmp, caJson); // fails if it exists: never overwrite a CA
      } finally {
        unlinkSync(tmp);
      }
      renameSync(join(dir, `${key.id}.key.pending`), join(dir, `${key.id}.key`));
      fsyncDir(dir);
      this.warn(`created the ${type} CA in ${dir} (fingerprint ${fingerprintSha256(key.publicKey.blob)})`);
    });
  }

  private writeNewKey(type: CaType, now: Date, suffix: string): { id: string; publicKey: PublicKey } {
    const id = `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(4).toString('hex')}`;
    const { privateKey, publicKey } = generateKeyPair('ed25519');
    const path = join(this.dir(type), `${id}.key${suffix}`);
    const pem = encodeOpenSSHPrivateKey(privateKey, `jumpgate ${type} CA ${id}`);
    let fd: number | undefined;
    try {
      fd = openSync(path, 'wx', 0o600);
      writeSync(fd, pem);
      fsyncSync(fd);
    } catch (err) {
      throw writeError(path, err);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    return { id, publicKey };
  }

  private load(type: CaType): CaSet {
    const dir = this.dir(type);
    const file = readCaFile(join(dir, 'ca.json'), type);
    const keys = file.keys.map((k) => this.loadKey(type, k));
    const active = keys.find((k) => k.id === file.active);
    if (!active) throw caCorrupt(type, dir, `ca.json names active key ${file.active}, which is not in its key list`, 'restore ca.json from a backup');
    return { type, active, trusted: [active, ...keys.filter((k) => k !== active)] };
  }

  private loadKey(type: CaType, entry: CaFileKey): CaKey {
    const dir = this.dir(type);
    const path = join(dir, `${entry.id}.key`);
    if (!existsSync(path) && existsSync(`${path}.pending`)) {
      // A crash between writing ca.json and the final rename: the pending file is complete (fsynced first).
      renameSync(`${path}.pending`, path);
    }
    let text: string;
    try {
      const st = statSync(path);
      if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
        chmodSync(path, 0o600);
        this.warn(
          `${path} was readable by others (mode ${(st.mode & 0o777).toString(8)}); set it to 0600. ` +
            `If anyone else could have read it, rotate the CA: tctl auth rotate --type=${type} --grace-period=0`,
        );
      }
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw caCorrupt(type, dir, `cannot read CA key ${path}: ${(err as Error).message}`, 'restore the key file from a backup (and check its owner)', err);
    }
    let parsed;
    try {
      parsed = parseOpenSSHPrivateKey(text);
    } catch (err) {
      throw caCorrupt(type, dir, `CA key ${path} is not a valid OpenSSH private key: ${(err as Error).message}`, 'restore the key file from a backup', err);
    }
    return {
      id: entry.id,
      privateKey: parsed.privateKey,
      publicKey: parsed.publicKey,
      createdAt: new Date(entry.created),
      trustedUntil: entry.trusted_until ? new Date(entry.trusted_until) : undefined,
    };
  }

  private withLock<T>(type: CaType, fn: () => T): T {
    return withLockFile(join(this.dir(type), '.lock'), { what: `the ${type} CA` }, fn);
  }
}

/** Drops keys whose grace period has ended, as of `now`. */
function withTrustNow(set: CaSet, now: Date): CaSet {
  const trusted = set.trusted.filter((k) => k === set.active || (k.trustedUntil !== undefined && k.trustedUntil > now));
  return trusted.length === set.trusted.length ? set : { ...set, trusted };
}

function readCaFile(path: string, type: CaType): CaFile {
  const dir = join(path, '..');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw caCorrupt(type, dir, `cannot read ${path}: ${(err as Error).message}`, 'check the file and its owner, or restore it from a backup', err);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw caCorrupt(type, dir, `${path} is not valid JSON`, 'restore ca.json from a backup', err);
  }
  const f = data as Partial<CaFile>;
  const ok =
    f !== null &&
    typeof f === 'object' &&
    f.version === 1 &&
    f.type === type &&
    typeof f.active === 'string' &&
    Array.isArray(f.keys) &&
    f.keys.length > 0 &&
    f.keys.every(
      (k) =>
        k !== null &&
        typeof k === 'object' &&
        typeof k.id === 'string' &&
        /^[0-9TZ]+-[0-9a-f]+$/.test(k.id) &&
        typeof k.created === 'string' &&
        !Number.isNaN(Date.parse(k.created)) &&
        (k.trusted_until === undefined || !Number.isNaN(Date.parse(k.trusted_until))),
    );
  if (!ok) throw caCorrupt(type, dir, `${path} does not describe a ${type} CA (version 1)`, 'restore ca.json from a backup');
  return f as CaFile;
}

function caCorrupt(type: CaType, dir: string, reason: string, hint: string, cause?: unknown): UserError {
  return new UserError('CA_CORRUPT', `the ${type} CA in ${dir} cannot be used: ${reason}`, {
    cause,
    hint: `${hint}. Jumpgate will not create a new CA in its place, because every node and client trusts the existing one`,
  });
}

/** A cheap change detector for ca.json: inode, size and mtime, or undefined if absent. */
function statStamp(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
