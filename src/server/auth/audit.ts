/**
 * The audit log: one JSON object per event, append-only, in the state store
 * (server/storage: the dir backend's <data_dir>/audit.log, one write(2) +
 * fsync per line; the postgres backend's audit table). `emit` resolves only
 * once the event is durable, before the action it records is reported done:
 * a crash can lose an event only for an action that never completed.
 * Never put tokens, keys or secrets in an event.
 *
 * Events are a typed union (`AuditEvent`), one interface per event type, and
 * one name per fact in every event: `user` (a verified identity: the IdP's
 * user name, or the key id of a certificate this cluster signed),
 * `claimed_user` (an identity nobody verified, with `untrusted: true`),
 * `login` (the Unix login), `node`, `client_addr`, `session_id`,
 * `request_id`, `reason`. Every event also carries `time` (ISO 8601, ms) and
 * `server_id` (the writer: a proxy's id, or `tctl@<host>`: BackendOptions.serverId).
 *
 * Two ways in:
 * - `emit`: events of real actions (certificates, logins, sessions). Fails
 *   closed: when the event cannot be stored (a full disk, the database
 *   gone) it rejects with `AuditUnavailableError` and the caller must not
 *   complete the action.
 * - `unauthenticated`: failures anyone can cause without credentials (bad
 *   login starts, unknown callback states, foreign certificates, rate-limit
 *   refusals). Aggregated per source prefix (limits.ts `prefixKey`), event,
 *   stage and code: the first of an interval is written in full, the rest are counted
 *   into one `failures.summary` event when the interval ends. They are best
 *   effort: dropped (and counted in the server log) when the store is low on
 *   space (dir: less than `reserveBytes` free) or the write fails, so a flood
 *   never takes the space real logins need to be audited.
 */
import { UserError } from '../../errors.js';
import { printable, truncate, wellFormed } from '../../util/printable.js';
import { prefixKey } from '../limits.js';
import { StoreUnavailableError, type AuditBackend } from '../storage/backend.js';

/** `login.success`: a browser login ended with a certificate for `user`. */
export interface LoginSuccessEvent {
  event: 'login.success';
  request_id: string;
  user: string;
  roles: string[];
  client_addr: string;
  valid_before: string;
}

/** Why and where a login stopped. */
export type LoginStage = 'start' | 'rate_limit' | 'busy' | 'callback' | 'roles' | 'expired' | 'evicted';

/** `login.failure`: a login refused at `stage`. `user` only once the IdP vouched for it. */
export interface LoginFailureEvent {
  event: 'login.failure';
  stage: LoginStage;
  reason: string;
  client_addr: string;
  request_id?: string;
  user?: string;
}

/**
 * `headless.start`: `tsh login --headless` asked for a login from
 * `client_addr` (the requesting machine, as the proxy saw it) for the key
 * `key_fingerprint`; nobody has approved anything yet.
 */
export interface HeadlessStartEvent {
  event: 'headless.start';
  request_id: string;
  client_addr: string;
  key_fingerprint: string;
  expires_at: string;
}

/** `headless.approved`: `user` (signed in at the IdP from `approver_addr`) approved the request of `client_addr`; the certificate is `user`'s. */
export interface HeadlessApprovedEvent {
  event: 'headless.approved';
  request_id: string;
  user: string;
  client_addr: string;
  approver_addr: string;
  key_fingerprint: string;
  valid_before: string;
}

/** `headless.denied`: `user` (signed in from `approver_addr`) denied the request of `client_addr`; nothing was issued. */
export interface HeadlessDeniedEvent {
  event: 'headless.denied';
  request_id: string;
  user: string;
  client_addr: string;
  approver_addr: string;
}

/** Where a headless login stopped (server/auth/headless-login.ts). */
export type HeadlessStage = 'start' | 'rate_limit' | 'poll' | 'page' | 'callback' | 'roles' | 'approve' | 'expired' | 'evicted';

/**
 * `headless.failure`: a headless login refused at `stage` (a bad or guessed
 * request id, code or poll secret, a request that expired unused, an IdP
 * refusal, an approval page used twice). Anyone can cause most of them:
 * they go through the aggregated, best-effort path. `client_addr` is the
 * address that caused it (the poller, or the browser at the approval page).
 */
export interface HeadlessFailureEvent {
  event: 'headless.failure';
  stage: HeadlessStage;
  reason: string;
  client_addr: string;
  request_id?: string;
  user?: string;
}

/** `web.login`: `user` signed in to the web UI (server/web/sessions.ts) through the IdP; the session ends at `expires_at` at the latest. */
export interface WebLoginEvent {
  event: 'web.login';
  user: string;
  roles: string[];
  client_addr: string;
  /** sha256 of the session's cookie value, first 16 hex digits: names the session without being it. */
  web_session: string;
  expires_at: string;
}

/** `web.logout`: `user` signed out of the web UI; the session is deleted from the state store. */
export interface WebLogoutEvent {
  event: 'web.logout';
  user: string;
  client_addr: string;
  web_session: string;
}

/** `cert.issued`: a certificate was signed (before it leaves the server). */
export interface CertIssuedEvent {
  event: 'cert.issued';
  cert_type: 'user' | 'host';
  via: string;
  serial: string;
  /** User certificates: the user (the certificate's key id). */
  user?: string;
  /** Host certificates: the host's first name (the certificate's key id). */
  host?: string;
  principals: string[];
  roles?: string[];
  /** Per-session node certificates (via `session`): the session it was made for. */
  session_id?: string;
  valid_before: string;
  key_fingerprint: string;
}

/** `ca.created`: a CA key was made. */
export interface CaCreatedEvent {
  event: 'ca.created';
  ca_type: 'user' | 'host';
  key: string;
}

/** `ca.rotated`: a new CA key signs from now on; the old one is trusted until `old_trusted_until`. */
export interface CaRotatedEvent {
  event: 'ca.rotated';
  ca_type: 'user' | 'host';
  old_key: string;
  new_key: string;
  old_trusted_until: string;
}

/** `session.start`: the proxy joined a user's channel to a node. */
export interface SessionStartEvent {
  event: 'session.start';
  session_id: string;
  user: string;
  login: string;
  node: string;
  node_addr: string;
  client_addr: string;
  /** How the client reached the proxy: an SSH channel (subsystem, direct-tcpip), the web port's TLS route, or a terminal in the browser (`web`: server/web/terminal.ts, the proxy's own SSH client to the node). */
  via: 'subsystem' | 'direct-tcpip' | 'tls-routing' | 'web';
  /** auth.session_recording: proxy: the proxy ended the user's SSH session itself (recording-proxy.ts). */
  mode?: 'recording';
  /** The recording's name (absent when nothing is recorded). */
  recording?: string;
}

/** `session.end`: that session closed, with its byte counts. */
export interface SessionEndEvent {
  event: 'session.end';
  session_id: string;
  user: string;
  login: string;
  node: string;
  client_addr: string;
  bytes_to_node: number;
  bytes_from_node: number;
  duration_ms: number;
  /** Why the proxy ended it, when it did (`locked`: a lock matched the running session: auth/locks.ts). */
  reason?: 'locked';
  /** The lock that ended it (reason `locked`). */
  lock_id?: string;
  /** The recording's name (absent when nothing was recorded). */
  recording?: string;
}

/** What a lock names (auth/locks.ts LockTarget), as audit events show it: e.g. `user=alice`. */
export interface LockFields {
  lock_id: string;
  /** `user`, `login`, `node`, `role` or `cert` (one certificate, by serial: tsh logout --revoke). */
  target: string;
  /** The user, login, node, role or serial the lock names. */
  target_value: string;
  message: string;
  /** ISO 8601; absent = until removed. */
  expires?: string;
}

/** `lock.created`: an admin (tctl, `by`) or a user (tsh logout --revoke) added a lock. */
export interface LockCreatedEvent extends LockFields {
  event: 'lock.created';
  /** Who added it: `tctl@<host>`, or the user who revoked their own certificate. */
  by: string;
  user?: string;
}

/** `lock.deleted`: `tctl lock rm`. */
export interface LockDeletedEvent extends LockFields {
  event: 'lock.deleted';
  by: string;
}

/** `lock.expired`: the lock's TTL ran out; written once in the cluster (the proxy that claimed it). */
export interface LockExpiredEvent extends LockFields {
  event: 'lock.expired';
}

/** What every event inside a recorded session names (recording-proxy.ts). */
interface InSessionFields {
  session_id: string;
  user: string;
  login: string;
  node: string;
}

/** `session.exec`: a command run on the node inside a recorded session (exec request; before it runs). */
export interface SessionExecEvent extends InSessionFields {
  event: 'session.exec';
  command: string;
  pty: boolean;
}

/**
 * `session.sftp`: one SFTP operation (draft-ietf-secsh-filexfer-02), read by
 * the proxy from the client's requests and the node's answers. A file
 * (`open`) is one event when its handle is closed, with the bytes read and
 * written through it; `remove`, `rename`, `mkdir`, `rmdir`, `setstat`,
 * `symlink` one event each, when requested.
 */
export interface SessionSftpEvent extends InSessionFields {
  event: 'session.sftp';
  action: 'open' | 'remove' | 'rename' | 'mkdir' | 'rmdir' | 'setstat' | 'symlink';
  path: string;
  /** rename, symlink: the second path. */
  target?: string;
  /** open: SSH_FXF_* flags by name (read, write, append, creat, trunc, excl). */
  flags?: string[];
  /** open: bytes the node sent in answer to READ requests on this handle (a download). */
  bytes_read?: number;
  /** open: bytes the client sent in WRITE requests on this handle (an upload). */
  bytes_written?: number;
}

/** `session.scp`: an `scp -t` (upload) or `scp -f` (download) run on the node (legacy scp protocol: the command line is all the proxy reads). */
export interface SessionScpEvent extends InSessionFields {
  event: 'session.scp';
  direction: 'upload' | 'download';
  path: string;
}

/**
 * `recording.truncated`: the session's recording reached
 * recordings.max_bytes_per_session; its output is no longer recorded (the session goes on).
 */
export interface RecordingTruncatedEvent {
  event: 'recording.truncated';
  session_id: string;
  recording: string;
  user: string;
  login: string;
  node: string;
  max_bytes: number;
}

/**
 * `recording.read`: `user` read a recording: replayed or listed through the
 * HTTPS API (`via: api`, from `client_addr`), played in the web UI
 * (`via: web`), or exported by tctl on the server host (`via: tctl`).
 * `owner` is whose session it was.
 */
export interface RecordingReadEvent {
  event: 'recording.read';
  session_id: string;
  recording: string;
  user: string;
  owner: string;
  via: 'api' | 'web' | 'tctl';
  client_addr?: string;
}

/**
 * `access.denied`: the SSH proxy refused. At `authentication` the
 * certificate's key id is `claimed_user` (+ `untrusted: true`) unless the
 * certificate verified against the user CA; at `routing` the user is known.
 */
export interface AccessDeniedEvent {
  event: 'access.denied';
  /** authentication, routing, or `limit` (proxy.limits: server/proxy/session-limits.ts). */
  stage: 'authentication' | 'routing' | 'limit';
  user?: string;
  claimed_user?: string;
  untrusted?: true;
  login: string;
  node?: string;
  client_addr: string;
  code: string;
  reason: string;
  /** stage `limit`: how many refusals this event stands for (aggregated per user, limit and node, at most one event a minute). */
  refused?: number;
}

/** `failures.summary`: `count` more unauthenticated failures of `of`/`stage` from `source` (a prefix) than were written in full. */
export interface FailuresSummaryEvent {
  event: 'failures.summary';
  of: UnauthenticatedEvent['event'];
  stage: string;
  /** access.denied: its code (each code is counted apart). */
  code?: string;
  /** The source prefix (limits.ts prefixKey), or `*` for prefixes beyond MAX_SUMMARY_KEYS. */
  source: string;
  count: number;
  first_reason: string;
  last_reason: string;
  first_time: string;
  last_time: string;
}

/** `token.created` / `token.removed`: a join token (tctl tokens); `token` is its id (a prefix of its SHA-256), never the token. */
export interface TokenEvent {
  event: 'token.created' | 'token.removed';
  token: string;
  token_type: 'node';
  reusable: boolean;
  expires_at: string;
  labels: Record<string, string>;
}

/** `node.joined`: a node joined with token `token` (id) from `client_addr`; single-use tokens are used up by it. */
export interface NodeJoinedEvent {
  event: 'node.joined';
  node: string;
  node_addr: string;
  client_addr: string;
  token: string;
  labels: Record<string, string>;
  key_fingerprint: string;
}

/** `node.removed`: `tctl nodes rm`: the node's credential is void, it leaves the inventory. */
export interface NodeRemovedEvent {
  event: 'node.removed';
  node: string;
}

/** `node.failure`: a join, heartbeat or renewal refused (a bad token or credential, a name taken). Anyone can cause it: aggregated. */
export interface NodeFailureEvent {
  event: 'node.failure';
  stage: 'join' | 'heartbeat' | 'renew' | 'rate_limit';
  reason: string;
  client_addr: string;
  /** The name the caller claimed (nobody vouched for it yet). */
  claimed_node?: string;
}

export type AuditEvent =
  | TokenEvent
  | NodeJoinedEvent
  | NodeRemovedEvent
  | NodeFailureEvent
  | LoginSuccessEvent
  | LoginFailureEvent
  | CertIssuedEvent
  | CaCreatedEvent
  | CaRotatedEvent
  | SessionStartEvent
  | SessionEndEvent
  | SessionExecEvent
  | SessionSftpEvent
  | SessionScpEvent
  | AccessDeniedEvent
  | FailuresSummaryEvent
  | HeadlessStartEvent
  | HeadlessApprovedEvent
  | HeadlessDeniedEvent
  | HeadlessFailureEvent
  | WebLoginEvent
  | WebLogoutEvent
  | LockCreatedEvent
  | LockDeletedEvent
  | LockExpiredEvent
  | RecordingTruncatedEvent
  | RecordingReadEvent;

export type AuditEventType = AuditEvent['event'];

/** The events anyone can cause without credentials (they go through `unauthenticated`). */
export type UnauthenticatedEvent = LoginFailureEvent | AccessDeniedEvent | HeadlessFailureEvent | NodeFailureEvent;

/** Longest string field written; longer ones are cut with "…" and the event gets `truncated: true`. */
export const MAX_AUDIT_FIELD_CHARS = 1_024;
/** Longest identity nobody verified (`claimed_user`), control characters escaped. */
export const MAX_CLAIMED_CHARS = 128;
/** How long unauthenticated failures of one prefix/event/stage are counted before their summary is written. */
export const SUMMARY_INTERVAL_MS = 60_000;
/** Prefix/event/stage keys counted at once; more prefixes are counted under source `*`. */
export const MAX_SUMMARY_KEYS = 256;
/** Free space (bytes) in the store (dir: under the data directory) below which unauthenticated events are dropped. */
export const AUDIT_RESERVE_BYTES = 64 * 1024 * 1024;

/** The audit log cannot be written: the action it would record must not happen. */
export class AuditUnavailableError extends UserError {}

export interface AuditLogOptions {
  /** The writer stamped on every event as `server_id` (BackendOptions.serverId). */
  serverId: string;
  /** Where the log is, for messages (dir: the audit.log path; postgres: the database). */
  location: string;
  /** Free bytes kept for real events: unauthenticated ones are dropped below it (default AUDIT_RESERVE_BYTES). */
  reserveBytes?: number;
  /** Where dropped unauthenticated events are reported (at most once per SUMMARY_INTERVAL_MS). */
  warn?: (line: string) => void;
}

interface Tally {
  of: UnauthenticatedEvent['event'];
  stage: string;
  code: string;
  source: string;
  count: number;
  firstReason: string;
  lastReason: string;
  firstTime: string;
  lastTime: string;
}

/** An identity nobody verified, made safe to store: control characters escaped, at most MAX_CLAIMED_CHARS. */
export function claimedIdentity(text: string): string {
  return printable(text, MAX_CLAIMED_CHARS);
}

/** Appends audit events durably through the state store's `AuditBackend`. */
export class AuditLog {
  private readonly reserveBytes: number;
  private readonly warn: (line: string) => void;
  private readonly serverId: string;
  /** Where the log is, for messages. */
  readonly location: string;
  private tallies = new Map<string, Tally>();
  private windowStart = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  private warnedAt = -Infinity;
  /** Best-effort appends still in flight (close() waits for them). */
  private readonly inflight = new Set<Promise<void>>();

  constructor(
    private readonly backend: AuditBackend,
    private readonly clock: () => Date,
    opts: AuditLogOptions,
  ) {
    this.reserveBytes = opts.reserveBytes ?? AUDIT_RESERVE_BYTES;
    this.warn = opts.warn ?? (() => {});
    this.serverId = opts.serverId;
    this.location = opts.location;
  }

  /**
   * Stores one event (with `time` and `server_id`), resolving once it is
   * durable. Rejects with AuditUnavailableError (code AUDIT_UNAVAILABLE,
   * naming the log and the cause; for a StoreUnavailableError cause, saying
   * the state store is unavailable) when it cannot: the caller refuses the
   * action instead.
   */
  async emit(event: AuditEvent): Promise<void> {
    const { line, meta } = this.encode(event);
    try {
      await this.backend.append(line, meta);
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        throw new AuditUnavailableError('AUDIT_UNAVAILABLE', `the state store is unavailable, so the audit log cannot be written (${err.message}); the action was refused, nothing was issued`, {
          cause: err,
          hint: err.hint ?? 'try again in a minute',
        });
      }
      const e = err as UserError;
      throw new AuditUnavailableError('AUDIT_UNAVAILABLE', `cannot write the audit log ${this.location} (${e.message}); the action was refused, nothing was issued`, {
        cause: err,
        hint: e.code === 'DISK_FULL' ? `free space on the file system of ${this.location}` : `check ${this.location}`,
      });
    }
  }

  /**
   * Records a failure anyone could cause without credentials, from peer
   * address `source`: aggregated and best effort (see the module comment).
   * Never throws.
   */
  unauthenticated(event: UnauthenticatedEvent, source: string): void {
    const now = this.clock();
    if (now.getTime() - this.windowStart >= SUMMARY_INTERVAL_MS) this.flush();
    if (this.windowStart === -Infinity) this.windowStart = now.getTime();
    this.timer ??= setInterval(() => this.flush(), SUMMARY_INTERVAL_MS).unref();
    const prefix = prefixKey(source);
    const code = event.event === 'access.denied' ? event.code : '';
    let key = `${prefix} ${event.event} ${event.stage} ${code}`;
    let tally = this.tallies.get(key);
    if (!tally && this.tallies.size >= MAX_SUMMARY_KEYS) {
      key = `* ${event.event} ${event.stage} ${code}`;
      tally = this.tallies.get(key);
      // The first of a new prefix beyond the table is counted, not written: a wide flood writes at most MAX_SUMMARY_KEYS full events.
      tally ??= this.newTally(key, event, '*', now, 0);
    }
    if (!tally) {
      this.newTally(key, event, prefix, now, 0);
      this.bestEffort(event);
      return;
    }
    tally.count++;
    tally.lastReason = bounded(event.reason, 200);
    tally.lastTime = now.toISOString();
  }

  /** Writes the summaries of the interval that ended (and starts a new one). Called by a timer, by `unauthenticated` and by `close`. */
  flush(): void {
    const tallies = this.tallies;
    this.tallies = new Map();
    this.windowStart = -Infinity;
    for (const t of tallies.values()) {
      if (t.count === 0) continue;
      this.bestEffort({
        event: 'failures.summary',
        of: t.of,
        stage: t.stage,
        ...(t.code ? { code: t.code } : {}),
        source: t.source,
        count: t.count,
        first_reason: t.firstReason,
        last_reason: t.lastReason,
        first_time: t.firstTime,
        last_time: t.lastTime,
      });
    }
    if (this.dropped > 0 && this.clock().getTime() - this.warnedAt >= SUMMARY_INTERVAL_MS) {
      this.warnedAt = this.clock().getTime();
      this.warn(`audit: dropped ${this.dropped} unauthenticated failure events: ${this.location} has less than ${this.reserveBytes} bytes free or could not be written (the room is kept for logins and sessions)`);
      this.dropped = 0;
    }
  }

  /** Writes the pending summaries, stops the timer and waits for best-effort writes in flight. The store itself is closed by its owner. */
  async close(): Promise<void> {
    this.flush();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.inflight]);
  }

  private newTally(key: string, event: UnauthenticatedEvent, source: string, now: Date, count: number): Tally {
    const reason = bounded(event.reason, 200);
    const t: Tally = { of: event.event, stage: event.stage, code: event.event === 'access.denied' ? event.code : '', source, count, firstReason: reason, lastReason: reason, firstTime: now.toISOString(), lastTime: now.toISOString() };
    this.tallies.set(key, t);
    return t;
  }

  private bestEffort(event: AuditEvent): void {
    let lineMeta: ReturnType<AuditLog['encode']>;
    try {
      if (this.backend.lowOnSpace(this.reserveBytes)) {
        this.dropped++;
        return;
      }
      lineMeta = this.encode(event);
    } catch {
      this.dropped++;
      return;
    }
    // Fire and forget, never an unhandled rejection: a failed append is counted as dropped.
    const p = this.backend.append(lineMeta.line, lineMeta.meta).catch(() => {
      this.dropped++;
    });
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** The event as stored: one JSON line with `time` and `server_id` first. */
  private encode(event: AuditEvent): { line: string; meta: { time: string; server_id: string; event: string; user?: string } } {
    const time = this.clock().toISOString();
    const line = serialize({ time, server_id: this.serverId, ...event });
    const user = 'user' in event && typeof event.user === 'string' ? event.user : undefined;
    return { line, meta: { time, server_id: this.serverId, event: event.event, ...(user !== undefined ? { user: bounded(user, MAX_AUDIT_FIELD_CHARS) } : {}) } };
  }
}

/** One JSON line: bigints as strings, strings longer than MAX_AUDIT_FIELD_CHARS cut (the event then says `truncated: true`). */
function serialize(event: Record<string, unknown>): string {
  let truncated = false;
  const text = JSON.stringify(event, (_key, value: unknown) => {
    if (typeof value === 'bigint') return value.toString();
    if (typeof value !== 'string') return value;
    // Valid Unicode only: a lone surrogate (from a peer, or a cut elsewhere) would make the event unstorable in PostgreSQL's jsonb.
    const text = wellFormed(value);
    if (text.length > MAX_AUDIT_FIELD_CHARS) {
      truncated = true;
      return bounded(text, MAX_AUDIT_FIELD_CHARS);
    }
    return text;
  });
  // JSON allows U+2028/U+2029 raw, but readers that split on Unicode line breaks (Python's splitlines) would see two lines.
  const oneLine = text.replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
  return truncated ? `${oneLine.slice(0, -1)},"truncated":true}` : oneLine;
}

function bounded(text: string, max: number): string {
  return truncate(text, max);
}
