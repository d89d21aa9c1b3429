/**
 * The audit log: one JSON object per line in <data_dir>/audit.log, append-only.
 * Each event is one write(2) of a whole line on a file opened O_APPEND, then
 * fsync, before the action it records is reported done: a crash can lose an
 * event only for an action that never completed, and never tears a line.
 * Never put tokens, keys or secrets in an event.
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { writeError } from '../../util/atomic-write.js';

export type AuditEventType =
  | 'login.success'
  | 'login.failure'
  | 'cert.issued'
  | 'ca.created'
  | 'ca.rotated'
  | 'session.start'
  | 'session.end'
  | 'access.denied';

export interface AuditEvent {
  event: AuditEventType;
  [field: string]: unknown;
}

/** Appends audit events durably; one file descriptor for the process's lifetime. */
export class AuditLog {
  private fd: number | undefined;
  readonly path: string;

  constructor(
    dataDir: string,
    private readonly clock: () => Date,
  ) {
    this.path = join(dataDir, 'audit.log');
  }

  /** Writes one event as a single line and flushes it to disk. */
  emit(event: AuditEvent): void {
    const line = Buffer.from(JSON.stringify({ time: this.clock().toISOString(), ...event }, bigintReplacer) + '\n');
    try {
      this.fd ??= openSync(this.path, 'a', 0o600);
      const written = writeSync(this.fd, line);
      if (written !== line.length) throw new Error(`short write (${written} of ${line.length} bytes)`);
      fsyncSync(this.fd);
    } catch (err) {
      throw writeError(this.path, err);
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
