/**
 * The dir backend's audit log: one JSON object per line in
 * <data_dir>/audit.log, append-only. Each event is one write(2) of a whole
 * line on a file opened O_APPEND, then fsync, before `append` resolves: a
 * crash can lose an event only for an action that never completed, and never
 * tears a line (a short write is cut off again).
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../../errors.js';
import { writeError } from '../../../util/atomic-write.js';
import type { AuditBackend, AuditQuery, StoredAuditEvent } from '../backend.js';

/** Default of `AuditQuery.limit`. */
const DEFAULT_QUERY_LIMIT = 1_000;

export class DirAuditFile implements AuditBackend {
  private fd: number | undefined;
  readonly path: string;

  constructor(private readonly dataDir: string) {
    this.path = join(dataDir, 'audit.log');
  }

  /**
   * One write(2) + fsync. Rejects with the UserError of util/atomic-write
   * writeError (DISK_FULL, WRITE_DENIED, WRITE_FAILED) naming audit.log.
   */
  async append(line: string): Promise<void> {
    try {
      this.write(Buffer.from(line.endsWith('\n') ? line : `${line}\n`));
    } catch (err) {
      throw writeError(this.path, err);
    }
  }

  /** Free space under the data directory below `reserveBytes` (or statfs failing). */
  lowOnSpace(reserveBytes: number): boolean {
    try {
      const fs = statfsSync(this.dataDir);
      return fs.bavail * fs.bsize < reserveBytes;
    } catch {
      return true;
    }
  }

  /**
   * Reads audit.log: `seq` is the line number (1-based). A line that is not
   * a JSON object is an error naming the file and the line, never skipped.
   * @throws UserError AUDIT_LOG_CORRUPT, or AUDIT_LOG_UNREADABLE.
   */
  async query(q: AuditQuery): Promise<StoredAuditEvent[]> {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new UserError('AUDIT_LOG_UNREADABLE', `cannot read the audit log ${this.path}: ${(err as Error).message}`, { cause: err, hint: `check ${this.path} and its owner` });
    }
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    const since = q.since?.getTime();
    const out: StoredAuditEvent[] = [];
    lines.forEach((line, i) => {
      let ev: unknown;
      try {
        ev = JSON.parse(line);
      } catch {
        ev = undefined;
      }
      if (ev === null || typeof ev !== 'object' || Array.isArray(ev) || typeof (ev as { event?: unknown }).event !== 'string') {
        throw new UserError('AUDIT_LOG_CORRUPT', `${this.path} line ${i + 1} is not an audit event (a JSON object with "event")`, {
          hint: `look at line ${i + 1} of ${this.path}; move the file away to start a new log (keep it: it is the record)`,
        });
      }
      const e = ev as Record<string, unknown>;
      if (q.type !== undefined && e['event'] !== q.type) return;
      if (q.user !== undefined && e['user'] !== q.user) return;
      if (since !== undefined && !(typeof e['time'] === 'string' && Date.parse(e['time']) >= since)) return;
      out.push({ ...e, seq: i + 1, time: String(e['time'] ?? ''), server_id: String(e['server_id'] ?? ''), event: e['event'] as string });
    });
    const limit = Math.max(0, q.limit ?? DEFAULT_QUERY_LIMIT);
    return out.slice(Math.max(0, out.length - limit));
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private write(line: Buffer): void {
    this.fd ??= openSync(this.path, 'a', 0o600);
    const before = fstatSync(this.fd).size;
    let written = 0;
    try {
      written = writeSync(this.fd, line);
    } finally {
      // A short write (a disk filling up) would leave half a line for the next event to run into: cut it off, unless someone else appended since.
      if (written !== line.length && fstatSync(this.fd).size === before + written) ftruncateSync(this.fd, before);
    }
    if (written !== line.length) throw Object.assign(new Error(`short write (${written} of ${line.length} bytes)`), { code: 'ENOSPC' });
    fsyncSync(this.fd);
  }
}
