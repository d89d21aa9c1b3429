import { closeSync, openSync, readFileSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { UserError } from '../errors.js';
import { writeError } from './atomic-write.js';

export interface LockOptions {
  /** What is locked, for the error message ("the user CA", "the tsh profile"). */
  what: string;
  /** How long to wait for another holder. */
  waitMs?: number;
  /** A lock older than this was left by a killed process and is taken over. */
  staleMs?: number;
  /**
   * Async holders only: touch the lock file this often (ms) while holding
   * it, so a `staleMs` of a few heartbeats tells a long holder (a browser
   * login: minutes) from a killed one.
   */
  heartbeatMs?: number;
  /**
   * The lock is only ever taken on this machine (a TSH_HOME): a lock whose
   * process id (the file's content) no longer runs was left by a killed
   * process (kill -9) and is taken over at once, without waiting for `staleMs`.
   */
  sameMachine?: boolean;
}

/**
 * Runs `fn` while holding an exclusive lock file (created with O_EXCL, so it
 * works across processes and on every OS). Synchronous on purpose: holders
 * only do short file writes, never network waits.
 */
export function withLockFile<T>(path: string, opts: LockOptions, fn: () => T): T {
  const deadline = Date.now() + (opts.waitMs ?? 10_000);
  while (!tryAcquire(path, opts, deadline)) sleepSync(50);
  try {
    return fn();
  } finally {
    release(path);
  }
}

/** The same lock for holders that await (keychain writes, agent calls). */
export async function withLockFileAsync<T>(path: string, opts: LockOptions, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + (opts.waitMs ?? 10_000);
  while (!tryAcquire(path, opts, deadline)) await new Promise((r) => setTimeout(r, 50));
  const beat = opts.heartbeatMs
    ? setInterval(() => {
        try {
          const now = new Date();
          utimesSync(path, now, now);
        } catch {
          // gone or unwritable: the holder goes on; another process may take the lock over
        }
      }, opts.heartbeatMs)
    : undefined;
  beat?.unref();
  try {
    return await fn();
  } finally {
    if (beat) clearInterval(beat);
    release(path);
  }
}

/** One attempt: true when the lock is ours; throws LOCKED once the deadline has passed. */
function tryAcquire(path: string, opts: LockOptions, deadline: number): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw writeError(path, err);
  }
  if (fd !== undefined) {
    try {
      writeSync(fd, `${process.pid}\n`);
      return true;
    } catch (err) {
      // A full disk creates the file but not its content: do not leave a lock nobody holds.
      release(path);
      throw writeError(path, err);
    } finally {
      closeSync(fd);
    }
  }
  try {
    // Left by a killed process. Same machine: its process is gone (a live holder keeps it, however old: a
    // suspended laptop or a stopped ssh stops the heartbeat, not the holder). Otherwise: too old.
    const holder = opts.sameMachine ? holderState(path) : 'unknown';
    if (holder === 'gone' || (holder === 'unknown' && Date.now() - statSync(path).mtimeMs > (opts.staleMs ?? 30_000))) unlinkSync(path);
  } catch {
    // it went away by itself
  }
  if (Date.now() > deadline) {
    throw new UserError('LOCKED', `${opts.what} is locked by another process (${path})`, {
      hint: 'wait for the other command to finish; if none is running, remove the lock file',
    });
  }
  return false;
}

/** Whether the process the lock file names still runs here: `unknown` when the file is unreadable or half written. */
function holderState(path: string): 'alive' | 'gone' | 'unknown' {
  const pid = lockPid(path);
  if (pid === undefined) return 'unknown';
  if (pid === process.pid) return 'alive';
  try {
    process.kill(pid, 0);
    return 'alive';
  } catch (err) {
    // EPERM: it runs, as another user
    return (err as NodeJS.ErrnoException).code === 'ESRCH' ? 'gone' : 'alive';
  }
}

function lockPid(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Removes the lock only while it is still ours: one taken over by another process (after we looked stale) stays theirs. */
function release(path: string): void {
  const pid = lockPid(path);
  if (pid !== undefined && pid !== process.pid) return;
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
