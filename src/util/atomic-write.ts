import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../errors.js';

/** How a staged file reaches the disk. */
export interface AtomicWriteOptions {
  /**
   * false: no fsync of the file or its directory. A reader still sees the old
   * file or the new one, never a torn mix; after a crash the file may be the
   * old one or empty. For hints that cost time on a hot path (tsh's
   * `+last-route`), never for state. Default true.
   */
  durable?: boolean;
}

/**
 * Replaces `path` with `data` so that a crash or a full disk leaves either the
 * old file or the new one, never a torn mix: write a temp file beside it,
 * fsync, rename over, fsync the directory (no fsync with `durable: false`).
 * The temp file is removed on failure.
 */
export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600, opts: AtomicWriteOptions = {}): void {
  stageFile(path, data, mode, opts).commit();
}

/** A file written and fsynced beside its target, not yet in place. */
export interface StagedFile {
  /** Renames it over the target (needs no disk space) and flushes the directory. */
  commit(): void;
  /** Links it in place only if the target does not exist (two processes racing: one wins); false when it existed. Removes the temp file either way. */
  commitIfAbsent(): boolean;
  /** Removes the temp file; the target is untouched. */
  abort(): void;
}

/**
 * The first half of writeFileAtomic: lets several files be written (where a
 * full disk would fail) before any of them replaces its target, so a set of
 * files that belong together changes all at once or not at all.
 */
export function stageFile(path: string, data: string | Buffer, mode = 0o600, opts: AtomicWriteOptions = {}): StagedFile {
  const durable = opts.durable ?? true;
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const remove = () => {
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file may never have been created
    }
  };
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', mode);
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    if (durable) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    remove();
    throw writeError(path, err);
  }
  return {
    commit: () => {
      try {
        renameSync(tmp, path);
      } catch (err) {
        remove();
        throw writeError(path, err);
      }
      if (durable) fsyncDir(dirname(path));
    },
    commitIfAbsent: () => {
      try {
        linkSync(tmp, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw writeError(path, err);
      } finally {
        remove();
      }
      if (durable) fsyncDir(dirname(path));
      return true;
    },
    abort: remove,
  };
}

/** Flushes a directory entry (a rename or a new file) to disk where the OS allows it. */
export function fsyncDir(dir: string): void {
  if (process.platform === 'win32') return; // directories cannot be opened for fsync there
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // best effort: some file systems refuse fsync on directories
  }
}

/** Turns a low-level write failure into an error that names the file and the fix. */
export function writeError(path: string, err: unknown): UserError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new UserError('DISK_FULL', `cannot write ${path}: the disk is full; the previous file is unchanged`, {
      cause: err,
      hint: 'free some space and run the command again',
    });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new UserError('WRITE_DENIED', `cannot write ${path}: permission denied (${code})`, {
      cause: err,
      hint: `check the owner and permissions of ${dirname(path)}`,
    });
  }
  return new UserError('WRITE_FAILED', `cannot write ${path}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
