/**
 * Session recorder: what the recording proxy (auth.session_recording: proxy)
 * feeds with a session's terminal traffic. One recorder per session channel:
 *
 *   const rec = await startRecording(rt, { sessionId, user, login, node, clientAddr, cols, rows, term, recordInput });
 *   rec.output(chunk)   // every byte the node sends to the user's terminal (stdout and stderr)
 *   rec.input(chunk)    // every byte the user types (recorded only when meta.recordInput)
 *   rec.resize(c, r)    // window-change
 *   await rec.close()   // when the channel closes: last flush, metadata with end/duration/size
 *
 * `output`/`input`/`resize` never throw and never block the relay: lines are
 * encoded (asciicast.ts) into memory and appended to the store
 * (`rt.store.recordings`, recording-files.ts or the database) by a flush
 * every FLUSH_INTERVAL_MS, or sooner once FLUSH_BYTES are waiting: a kill -9
 * of the server loses at most the last second. The metadata are a
 * `recording` item keyed by session id, written at the start (so a session
 * that never ends cleanly is still listed) and at close.
 *
 * Past `recordings.max_bytes_per_session` nothing more is recorded: a marker
 * event says so in the file, a `recording.truncated` audit event says so in
 * the log; the session itself goes on.
 */
import type { ServerRuntime } from '../runtime.js';
import type { CastHeader } from '../../shared/asciicast.js';
import { CastEncoder } from './asciicast.js';
import { recordingName, type RecordingInfo } from './recordings.js';

/** How often buffered events are appended to the store (the most a crash loses). */
export const FLUSH_INTERVAL_MS = 500;
/** Buffered bytes that trigger a flush before the interval ends. */
export const FLUSH_BYTES = 256 * 1024;

/** What the proxy knows about a session when it starts recording it. */
export interface RecordingMeta {
  /** The session's id (as in session.start/session.end): letters, digits, "-", "_" (a UUID). */
  sessionId: string;
  /** The verified user (the certificate's key id). */
  user: string;
  /** The Unix login on the node. */
  login: string;
  /** The node's name as the user typed it. */
  node: string;
  clientAddr: string;
  /** The PTY size the client asked for (80x24 when there is no PTY). */
  cols: number;
  rows: number;
  /** The client's TERM (pty-req). */
  term: string;
  /** Environment the client sent; only SHELL is kept (the header's env holds TERM and SHELL). */
  env?: Record<string, string>;
  /** Whether keystrokes are recorded ("i" events): a role's choice. */
  recordInput: boolean;
}

/** The recorder of one session (see the module comment). */
export interface SessionRecorder {
  /** The recording's name in the store (`<session id>.cast`): what session.start/session.end carry as `recording`. */
  readonly name: string;
  output(data: Buffer): void;
  input(data: Buffer): void;
  resize(cols: number, rows: number): void;
  /** Flushes everything and writes the final metadata; idempotent. Rejects only when the store cannot be written. */
  close(): Promise<void>;
}

/**
 * Starts recording a session: writes the asciicast header and the
 * `recording` item (durable when the promise resolves).
 * @throws UserError BAD_RECORDING_NAME for a session id that cannot name a recording;
 *   StoreUnavailableError / a write error when the store cannot be written (the proxy then refuses the session).
 */
export async function startRecording(rt: ServerRuntime, meta: RecordingMeta): Promise<SessionRecorder> {
  const rec = new Recorder(rt, meta);
  await rec.start();
  return rec;
}

class Recorder implements SessionRecorder {
  readonly name: string;
  private readonly enc: CastEncoder;
  private readonly startMs: number;
  private readonly info: RecordingInfo;
  private timer: NodeJS.Timeout | undefined;
  /** The flush in flight (flushes run one at a time, in order). */
  private flushing: Promise<void> = Promise.resolve();
  private closed: Promise<void> | undefined;
  private stored = 0;
  /** Encoded bytes whose append failed, tried again first by the next flush. */
  private pending: Buffer[] = [];
  private failing = false;
  private earlyFlush = false;
  private auditedTruncation = false;

  constructor(
    private readonly rt: ServerRuntime,
    private readonly meta: RecordingMeta,
  ) {
    this.name = recordingName(meta.sessionId);
    const start = rt.clock();
    this.startMs = start.getTime();
    const shell = meta.env?.SHELL;
    const header: CastHeader = {
      version: 2,
      width: clampSize(meta.cols, 80),
      height: clampSize(meta.rows, 24),
      timestamp: Math.floor(this.startMs / 1000),
      env: { TERM: meta.term.slice(0, 64), ...(shell !== undefined ? { SHELL: shell.slice(0, 256) } : {}) },
      title: `${meta.user}@${meta.node}`.slice(0, 256),
    };
    this.enc = new CastEncoder(header, this.startMs, rt.config.recordings.maxBytesPerSession);
    this.info = {
      session_id: meta.sessionId,
      name: this.name,
      user: meta.user,
      login: meta.login,
      node: meta.node,
      client_addr: meta.clientAddr,
      start: start.toISOString(),
      size: 0,
      truncated: false,
      input_recorded: meta.recordInput,
      server_id: rt.serverId,
    };
  }

  async start(): Promise<void> {
    await this.rt.store.items.put('recording', this.meta.sessionId, this.info);
    await this.flush();
    this.timer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  output(data: Buffer): void {
    if (this.closed) return;
    this.enc.output(data, this.rt.clock().getTime());
    this.after();
  }

  input(data: Buffer): void {
    if (this.closed || !this.meta.recordInput) return;
    this.enc.input(data, this.rt.clock().getTime());
    this.after();
  }

  resize(cols: number, rows: number): void {
    if (this.closed) return;
    this.enc.resize(clampSize(cols, 80), clampSize(rows, 24), this.rt.clock().getTime());
    this.after();
  }

  close(): Promise<void> {
    this.closed ??= this.finish();
    return this.closed;
  }

  private async finish(): Promise<void> {
    clearInterval(this.timer);
    const end = this.rt.clock();
    this.enc.end(end.getTime());
    this.after();
    await this.flush();
    if (this.failing) throw new Error(`the recording ${this.name} could not be stored completely (see the server log)`);
    this.info.end = end.toISOString();
    this.info.duration_ms = Math.max(0, end.getTime() - this.startMs);
    this.info.size = this.stored;
    this.info.truncated = this.enc.truncated;
    await this.rt.store.items.put('recording', this.meta.sessionId, this.info);
  }

  private after(): void {
    if (this.enc.truncated && !this.auditedTruncation) {
      this.auditedTruncation = true;
      this.rt.audit
        .emit({
          event: 'recording.truncated',
          session_id: this.meta.sessionId,
          recording: this.name,
          user: this.meta.user,
          login: this.meta.login,
          node: this.meta.node,
          max_bytes: this.rt.config.recordings.maxBytesPerSession,
        })
        .catch((err: unknown) => this.rt.log.warn(`recording ${this.name}: the truncation could not be audited: ${(err as Error).message}`));
    }
    // One early flush at a time: while it runs, what arrives goes into the next one.
    if (!this.earlyFlush && this.enc.bytes - this.stored >= FLUSH_BYTES) {
      this.earlyFlush = true;
      void this.flush().finally(() => (this.earlyFlush = false));
    }
  }

  /** Queues a flush after the one in flight; never rejects (failures are logged and retried by the next flush). */
  private flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.appendPending());
    return this.flushing;
  }

  private async appendPending(): Promise<void> {
    const fresh = this.enc.take();
    if (fresh.length > 0) this.pending.push(fresh);
    if (this.pending.length === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    try {
      await this.rt.store.recordings.append(this.name, data);
      this.pending = [];
      this.stored += data.length;
      if (this.failing) this.rt.log.info(`recording ${this.name}: storing again`);
      this.failing = false;
    } catch (err) {
      // Kept in memory (bounded by the cap) and tried again at the next flush.
      this.pending = [data];
      if (!this.failing) this.rt.log.warn(`recording ${this.name}: cannot store (will retry): ${(err as Error).message}`);
      this.failing = true;
    }
  }
}

/** A terminal dimension as asciicast wants it: a whole number 1..10000, else `fallback`. */
function clampSize(n: number, fallback: number): number {
  return Number.isInteger(n) && n >= 1 && n <= 10_000 ? n : fallback;
}
