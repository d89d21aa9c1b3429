/**
 * The dir backend's CA store: the cluster's two certificate authorities (user
 * CA, host CA) as files in the data directory:
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
 * read is CA_CORRUPT: minting a fresh CA would silently cut off every node
 * and client that trusts the old one.
 *
 * Crash safety: a new CA's first key is written as `<id>.key.pending` and
 * fsynced, then ca.json is linked into place (link fails if it exists: never
 * overwrite a CA), then the key is renamed; a `.pending` left by a crash
 * between the two is finished on the next read. A rotation writes the new key
 * file (fsynced) before ca.json, replaced atomically, names it.
 */
import { chmodSync, closeSync, existsSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { UserError } from '../../../errors.js';
import { withLockFile } from '../../../util/lockfile.js';
import { ensurePrivateDir } from '../../../util/private-dir.js';
import { fsyncDir, writeError, writeFileAtomic } from '../../../util/atomic-write.js';
import { parseOpenSSHPrivateKey } from '../../../sshcert/index.js';
import type { CaBackend, CaType, StoredCa, StoredCaKey } from '../backend.js';

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

/** Key ids as CaStore makes them (`<UTC time>-<hex>`): also file names, so nothing else is accepted. */
const KEY_ID = /^[0-9TZ]+-[0-9a-f]+$/;

/** `CaBackend` over `<dataDir>/ca/<type>/`. Synchronous file work behind async methods (the lock file is short-held). */
export class DirCaFiles implements CaBackend {
  private readonly cache = new Map<CaType, StoredCa>();

  constructor(
    readonly dataDir: string,
    private readonly warn: (line: string) => void,
  ) {}

  /** The directory of one CA. */
  dir(type: CaType): string {
    return join(this.dataDir, 'ca', type);
  }

  /** ca.json's stat stamp (inode:size:mtime), or undefined when there is none: the `revision`. */
  stamp(type: CaType): string | undefined {
    return statStamp(join(this.dir(type), 'ca.json'));
  }

  /** Reads ca.json and every key it names (cached by stamp). @throws UserError CA_CORRUPT. */
  async read(type: CaType): Promise<StoredCa | undefined> {
    return this.readSync(type);
  }

  /** Creates the CA unless ca.json or key files exist (CA_CORRUPT for key files without ca.json). */
  async create(type: CaType, first: StoredCaKey): Promise<StoredCa> {
    checkKeyId(first.id);
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
      // The key is written under a pending name first: a crash before ca.json
      // exists leaves no *.key file, so the next start creates the CA cleanly.
      writeKeyFile(join(dir, `${first.id}.key.pending`), first.privateKeyPem);
      const file: CaFile = { version: 1, type, active: first.id, keys: [{ id: first.id, created: first.created }] };
      const tmp = join(dir, `.ca.json.${randomBytes(6).toString('hex')}.tmp`);
      writeFileAtomic(tmp, JSON.stringify(file, null, 2) + '\n', 0o600);
      try {
        linkSync(tmp, caJson); // fails if it exists: never overwrite a CA
      } finally {
        unlinkSync(tmp);
      }
      renameSync(join(dir, `${first.id}.key.pending`), join(dir, `${first.id}.key`));
      fsyncDir(dir);
    });
    return this.readSync(type)!;
  }

  /** Under the lock file: reads the CA afresh, applies `change`, writes new key files (fsynced), then replaces ca.json atomically. */
  async update(type: CaType, change: (current: StoredCa) => Omit<StoredCa, 'revision'>): Promise<StoredCa> {
    const dir = this.dir(type);
    if (!existsSync(join(dir, 'ca.json'))) {
      throw new UserError('CA_MISSING', `the ${type} CA does not exist in ${dir}`, { hint: 'start the server once (or run any tctl command) to create it' });
    }
    this.withLock(type, () => {
      this.cache.delete(type);
      const current = this.readSync(type);
      if (!current) throw caCorrupt(type, dir, 'it has no ca.json', 'create the CA first (start the server once)');
      const next = change(current);
      if (next.type !== type || !next.keys.some((k) => k.id === next.active)) {
        throw new Error(`CA update of the ${type} CA must keep its type and name an active key that is in its key list`);
      }
      const known = new Set(current.keys.map((k) => k.id));
      for (const k of next.keys) {
        checkKeyId(k.id);
        if (!known.has(k.id)) writeKeyFile(join(dir, `${k.id}.key`), k.privateKeyPem);
      }
      const file: CaFile = {
        version: 1,
        type,
        active: next.active,
        keys: next.keys.map((k) => ({ id: k.id, created: k.created, ...(k.trustedUntil !== undefined ? { trusted_until: k.trustedUntil } : {}) })),
      };
      writeFileAtomic(join(dir, 'ca.json'), JSON.stringify(file, null, 2) + '\n', 0o600);
      this.cache.delete(type);
    });
    return this.readSync(type)!;
  }

  private readSync(type: CaType): StoredCa | undefined {
    const stamp = this.stamp(type);
    if (stamp === undefined) return undefined;
    const cached = this.cache.get(type);
    if (cached && cached.revision === stamp) return cached;
    const dir = this.dir(type);
    const file = readCaFile(join(dir, 'ca.json'), type);
    if (!file.keys.some((k) => k.id === file.active)) {
      throw caCorrupt(type, dir, `ca.json names active key ${file.active}, which is not in its key list`, 'restore ca.json from a backup');
    }
    const ca: StoredCa = { type, active: file.active, keys: file.keys.map((k) => this.readKey(type, k)), revision: stamp };
    this.cache.set(type, ca);
    return ca;
  }

  private readKey(type: CaType, entry: CaFileKey): StoredCaKey {
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
    try {
      parseOpenSSHPrivateKey(text);
    } catch (err) {
      throw caCorrupt(type, dir, `CA key ${path} is not a valid OpenSSH private key: ${(err as Error).message}`, 'restore the key file from a backup', err);
    }
    return { id: entry.id, created: entry.created, ...(entry.trusted_until !== undefined ? { trustedUntil: entry.trusted_until } : {}), privateKeyPem: text };
  }

  private withLock<T>(type: CaType, fn: () => T): T {
    return withLockFile(join(this.dir(type), '.lock'), { what: `the ${type} CA` }, fn);
  }
}

function checkKeyId(id: string): void {
  if (!KEY_ID.test(id)) throw new Error(`CA key id ${JSON.stringify(id)} is not <UTC time>-<hex>`);
}

/** Writes a new key file (O_EXCL, 0600) and fsyncs it. */
function writeKeyFile(path: string, pem: string): void {
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
        KEY_ID.test(k.id) &&
        typeof k.created === 'string' &&
        !Number.isNaN(Date.parse(k.created)) &&
        (k.trusted_until === undefined || (typeof k.trusted_until === 'string' && !Number.isNaN(Date.parse(k.trusted_until)))),
    );
  if (!ok) throw caCorrupt(type, dir, `${path} does not describe a ${type} CA (version 1)`, 'restore ca.json from a backup');
  return f as CaFile;
}

/** CA_CORRUPT: the stored CA cannot be used, and will not be replaced. */
export function caCorrupt(type: CaType, where: string, reason: string, hint: string, cause?: unknown): UserError {
  return new UserError('CA_CORRUPT', `the ${type} CA in ${where} cannot be used: ${reason}`, {
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
