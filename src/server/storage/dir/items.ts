/**
 * The dir backend's keyed items: one JSON file per item,
 *
 *   <data_dir>/state/                0700
 *   └── <kind>/                      0700  token, node, lock, web_session, ...
 *       └── <hex sha256(key)>.json   0600  {"key", "value", "expires_at"?, "revision"}
 *
 * The key is hashed for the file name (any string is a key; none is a path)
 * and kept inside the file. Writes are atomic (util/atomic-write: temp file,
 * fsync, rename). `create` links the staged file into place, which fails if
 * the name exists, so of two processes racing one wins; `take` renames the
 * file to a name of its own before reading it, so of two concurrent takes
 * exactly one gets it. Expired items are never returned and are removed when
 * met (no sweeper).
 *
 * `list` keeps each file it parsed under its inode, size and change time and
 * parses it again only when those change (every write renames a new file into
 * place): the live inventory lists all nodes whenever one changes
 * (server/nodes/inventory.ts), and a stat is far cheaper than open, read and
 * parse. Values are handed out as copies, so no caller can change the cache.
 */
import { createHash, randomBytes } from 'node:crypto';
import { linkSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import * as v from 'valibot';
import { UserError } from '../../../errors.js';
import { stageFile, writeFileAtomic } from '../../../util/atomic-write.js';
import { ensurePrivateDir } from '../../../util/private-dir.js';
import { ITEM_KINDS, type Item, type ItemBackend, type ItemKind } from '../backend.js';

/** Item kinds that may name a directory (backend.ts ItemKind). */

const ItemFileSchema = v.strictObject({
  key: v.string(),
  value: v.unknown(),
  expires_at: v.optional(v.pipe(v.number(), v.safeInteger())),
  revision: v.pipe(v.string(), v.regex(/^[0-9a-f]{16}$/)),
});
type ItemFile = v.InferOutput<typeof ItemFileSchema>;

export class DirItems implements ItemBackend {
  /** Kind directories already made (0700) by this process. */
  private readonly made = new Set<ItemKind>();
  /** Per kind, per file name: the parsed file and the stat stamp it was read at (see the top of this file). */
  private readonly parsed = new Map<ItemKind, Map<string, { stamp: string; file: ItemFile }>>();

  constructor(
    private readonly dataDir: string,
    private readonly clock: () => Date,
  ) {}

  async create<T>(kind: ItemKind, key: string, value: T, expiresAt?: number): Promise<boolean> {
    const path = this.path(kind, key);
    for (let attempt = 0; attempt < 2; attempt++) {
      const staged = stageFile(path, encode(key, value, expiresAt), 0o600);
      if (staged.commitIfAbsent()) return true;
      // The name is taken: by a live item (refuse), or by an expired one (take it away, then try once more).
      const existing = this.readFile(path, kind);
      if (existing && !this.expired(existing)) return false;
      if (existing) this.takeFile(path, kind);
    }
    return false;
  }

  async put<T>(kind: ItemKind, key: string, value: T, expiresAt?: number): Promise<void> {
    writeFileAtomic(this.path(kind, key), encode(key, value, expiresAt), 0o600);
  }

  async get<T>(kind: ItemKind, key: string): Promise<Item<T> | undefined> {
    const path = this.path(kind, key);
    const f = this.readFile(path, kind);
    if (!f) return undefined;
    if (this.expired(f)) {
      this.removeExpired(path, kind);
      return undefined;
    }
    return toItem<T>(kind, f);
  }

  async count(kind: ItemKind): Promise<number> {
    // One readdir, no file read: expired files not yet met count too (the interface allows it).
    return readdirSync(this.kindDir(kind)).filter((name) => /^[0-9a-f]{64}\.json$/.test(name)).length;
  }

  async list<T>(kind: ItemKind): Promise<Item<T>[]> {
    const dir = this.kindDir(kind);
    const out: Item<T>[] = [];
    const before = this.parsed.get(kind) ?? new Map<string, { stamp: string; file: ItemFile }>();
    const now = new Map<string, { stamp: string; file: ItemFile }>();
    for (const name of readdirSync(dir)) {
      if (!/^[0-9a-f]{64}\.json$/.test(name)) continue; // temp files of writes and takes in flight
      const path = join(dir, name);
      const stamp = fileStamp(path);
      if (stamp === undefined) continue; // removed since readdir
      const known = before.get(name);
      const f = known?.stamp === stamp ? known.file : this.readFile(path, kind);
      if (!f) continue;
      now.set(name, { stamp, file: f });
      if (this.expired(f)) {
        this.removeExpired(path, kind);
        continue;
      }
      out.push(toItem<T>(kind, { ...f, value: structuredClone(f.value) }));
    }
    this.parsed.set(kind, now);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(kind: ItemKind, key: string): Promise<boolean> {
    return (await this.take(kind, key)) !== undefined;
  }

  async take<T>(kind: ItemKind, key: string): Promise<Item<T> | undefined> {
    const f = this.takeFile(this.path(kind, key), kind);
    if (!f || this.expired(f)) return undefined;
    return toItem<T>(kind, f);
  }

  /** Renames the file to a name only this call knows, then reads and removes it: one winner. */
  private takeFile(path: string, kind: ItemKind): ItemFile | undefined {
    const mine = `${path}.${randomBytes(6).toString('hex')}.taking`;
    try {
      renameSync(path, mine);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      return this.readFile(mine, kind);
    } finally {
      unlinkSync(mine);
    }
  }

  /** Takes an expired item away; one replaced meanwhile by a live one is put back unless a newer one is already there. */
  private removeExpired(path: string, kind: ItemKind): void {
    const mine = `${path}.${randomBytes(6).toString('hex')}.taking`;
    try {
      renameSync(path, mine);
    } catch {
      return; // gone already
    }
    try {
      const f = this.readFile(mine, kind);
      if (f && !this.expired(f)) linkSync(mine, path);
    } catch {
      // a newer item took the name: it wins
    } finally {
      unlinkSync(mine);
    }
  }

  private expired(f: ItemFile): boolean {
    return f.expires_at !== undefined && f.expires_at <= this.clock().getTime();
  }

  private kindDir(kind: ItemKind): string {
    if (!(ITEM_KINDS as readonly string[]).includes(kind)) throw new Error(`unknown item kind ${JSON.stringify(kind)}`);
    const dir = join(this.dataDir, 'state', kind);
    if (!this.made.has(kind)) {
      ensurePrivateDir(join(this.dataDir, 'state'));
      ensurePrivateDir(dir);
      this.made.add(kind);
    }
    return dir;
  }

  private path(kind: ItemKind, key: string): string {
    return join(this.kindDir(kind), `${createHash('sha256').update(key).digest('hex')}.json`);
  }

  /** The file's item, undefined when absent. @throws UserError STATE_CORRUPT naming the file when it is not an item. */
  private readFile(path: string, kind: ItemKind): ItemFile | undefined {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
    const r = v.safeParse(ItemFileSchema, data);
    if (!r.success) {
      throw new UserError('STATE_CORRUPT', `${path} is not a stored ${kind} item (${r.issues[0].message})`, {
        hint: `remove ${path} (it is one ${kind} item) or restore it from a backup`,
      });
    }
    return r.output;
  }
}

/** The file's inode, size and change time (nanoseconds), or undefined when it is gone. */
function fileStamp(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function encode(key: string, value: unknown, expiresAt: number | undefined): string {
  const f: ItemFile = { key, value, ...(expiresAt !== undefined ? { expires_at: expiresAt } : {}), revision: randomBytes(8).toString('hex') };
  return JSON.stringify(f) + '\n';
}

function toItem<T>(kind: ItemKind, f: ItemFile): Item<T> {
  return { kind, key: f.key, value: f.value as T, ...(f.expires_at !== undefined ? { expiresAt: f.expires_at } : {}), revision: f.revision };
}
