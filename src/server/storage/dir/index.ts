/**
 * The `dir` storage backend (the embedded default): the state of one server
 * process in its data directory, exactly the files Jumpgate always kept.
 *
 *   <data_dir>/           0700
 *   ├── ca/               CA keys and ca.json (ca-files.ts)
 *   ├── audit.log         0600  one JSON event per line (audit-file.ts)
 *   ├── recordings/       0700  session recordings, unless recordings.dir says elsewhere (recording-files.ts)
 *   └── state/<kind>/     keyed items, one file each (items.ts)
 *
 * Pending logins live in this process's memory (auth/pending-logins.ts: the
 * per-source / per-prefix / total eviction): a dir cluster is one process.
 * `tctl` opens the same directory beside the server; the server notices its
 * changes by polling (CA_POLL_MS) the two ca.json stamps and the stamps of
 * the `state/<kind>/` directories (a create, replace or delete renames or
 * unlinks a file there, which changes the directory's mtime).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { ServerConfig } from '../../../config/index.js';
import { ensurePrivateDir } from '../../../util/private-dir.js';
import { PendingLogins } from '../../auth/pending-logins.js';
import { CA_TYPES, ITEM_KINDS, type BackendOptions, type CaType, type ChangeTopic, type PendingBackend, type PendingLimits, type PendingRecord, type StateBackend } from '../backend.js';
import { DirAuditFile } from './audit-file.js';
import { DirCaFiles } from './ca-files.js';
import { DirItems } from './items.js';
import { DirRecordings } from './recording-files.js';

/** How often the ca.json and state/<kind>/ stamps are compared for watch(): a tctl change is seen within about this. */
export const CA_POLL_MS = 500;

/** Pending logins in this process's memory, capped by PendingLogins' eviction. */
class MemoryPending implements PendingBackend {
  private readonly table = new PendingLogins<PendingRecord>();

  async add(record: PendingRecord, limits: PendingLimits): Promise<PendingRecord[]> {
    return this.table.add(record.key, record, record.clientAddr, limits);
  }
  async take(key: string): Promise<PendingRecord | undefined> {
    return this.table.take(key);
  }
  async sweep(nowMs: number): Promise<PendingRecord[]> {
    return this.table.sweep(nowMs);
  }
  async count(): Promise<number> {
    return this.table.size;
  }
}

export class DirBackend implements StateBackend {
  readonly kind = 'dir' as const;
  readonly location: string;
  readonly ca: DirCaFiles;
  readonly pending: PendingBackend = new MemoryPending();
  readonly audit: DirAuditFile;
  readonly items: DirItems;
  readonly recordings: DirRecordings;
  private readonly watchers = new Set<(topic: ChangeTopic) => void>();
  private timer: NodeJS.Timeout | undefined;
  private stamps = new Map<string, string | undefined>();

  /**
   * Creates the data directory (0700) if absent; nothing else is touched until used.
   * `recordingsDir`: absolute, `recordings.dir` (default <data_dir>/recordings).
   */
  constructor(
    readonly dataDir: string,
    private readonly opts: BackendOptions,
    recordingsDir: string = join(dataDir, 'recordings'),
  ) {
    this.location = dataDir;
    ensurePrivateDir(dataDir);
    this.ca = new DirCaFiles(dataDir, opts.warn);
    this.audit = new DirAuditFile(dataDir);
    this.items = new DirItems(dataDir, opts.clock);
    this.recordings = new DirRecordings(recordingsDir);
  }

  /** Polls the stamps every CA_POLL_MS (an unref'd timer) and reports `ca:<type>` / `item:<kind>` when one changed. */
  watch(onChange: (topic: ChangeTopic) => void): () => void {
    this.watchers.add(onChange);
    if (!this.timer) {
      for (const t of this.topics()) this.stamps.set(t, this.safeStamp(t));
      this.timer = setInterval(() => this.poll(), CA_POLL_MS).unref();
    }
    return () => {
      this.watchers.delete(onChange);
      if (this.watchers.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  healthy(): boolean {
    return true;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.watchers.clear();
    this.audit.close();
  }

  private topics(): ChangeTopic[] {
    return [...CA_TYPES.map((t) => `ca:${t}` as const), ...ITEM_KINDS.map((k) => `item:${k}` as const)];
  }

  private poll(): void {
    for (const t of this.topics()) {
      const now = this.safeStamp(t);
      if (now === this.stamps.get(t)) continue;
      this.stamps.set(t, now);
      for (const w of [...this.watchers]) {
        try {
          w(t);
        } catch (err) {
          this.opts.warn(`storage: a watcher of ${t} failed: ${(err as Error).message}`);
        }
      }
    }
  }

  private safeStamp(topic: ChangeTopic): string | undefined {
    try {
      if (topic.startsWith('ca:')) return this.ca.stamp(topic.slice(3) as CaType);
      const st = statSync(join(this.dataDir, 'state', topic.slice(5)), { bigint: true });
      return `${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : 'unreadable';
    }
  }
}

/** Opens the dir backend of `config.dataDir`. */
export function openDirBackend(config: Pick<ServerConfig, 'dataDir'> & { recordings?: Pick<ServerConfig['recordings'], 'dir'> }, opts: BackendOptions): DirBackend {
  return new DirBackend(config.dataDir, opts, config.recordings?.dir);
}
