/**
 * The audit log: one JSON object per line in <data_dir>/audit.log, append-only.
 * Each event is one write(2) of a whole line on a file opened O_APPEND, then
 * fsync, before the action it records is reported done: a crash can lose an
 * event only for an action that never completed, and never tears a line.
 * Never put tokens, keys or secrets in an event.
 *
 * Events are a typed union (`AuditEvent`), one interface per event type, and
 * one name per fact in every event: `user` (a verified identity: the IdP's
 * user name, or the key id of a certificate this cluster signed),
 * `claimed_user` (an identity nobody verified, with `untrusted: true`),
 * `login` (the Unix login), `node`, `client_addr`, `session_id`,
 * `request_id`, `reason`.
 *
 * Two ways in:
 * - `emit`: events of real actions (certificates, logins, sessions). Fails
 *   closed: when the line cannot be written (a full disk) it throws
 *   `AuditUnavailableError` and the caller must not complete the action.
 * - `unauthenticated`: failures anyone can cause without credentials (bad
 *   login starts, unknown callback states, foreign certificates, rate-limit
 *   refusals). Aggregated per source prefix (limits.ts `prefixKey`), event,
 *   stage and code: the first of an interval is written in full, the rest are counted
 *   into one `failures.summary` event when the interval ends. They are best
 *   effort: dropped (and counted in the server log) when the disk has less
 *   than `reserveBytes` free or the write fails, so a flood never takes the
 *   space real logins need to be audited.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../errors.js';
import { writeError } from '../../util/atomic-write.js';
import { printable } from '../../util/printable.js';
import { prefixKey } from '../limits.js';

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
  via: 'subsystem' | 'direct-tcpip';
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

export type AuditEvent =
  | LoginSuccessEvent
  | LoginFailureEvent
  | CertIssuedEvent
  | CaCreatedEvent
  | CaRotatedEvent
  | SessionStartEvent
  | SessionEndEvent
  | AccessDeniedEvent
  | FailuresSummaryEvent
  | HeadlessStartEvent
  | HeadlessApprovedEvent
  | HeadlessDeniedEvent
  | HeadlessFailureEvent;

export type AuditEventType = AuditEvent['event'];

/** The events anyone can cause without credentials (they go through `unauthenticated`). */
export type UnauthenticatedEvent = LoginFailureEvent | AccessDeniedEvent | HeadlessFailureEvent;

/** Longest string field written; longer ones are cut with "…" and the event gets `truncated: true`. */
export const MAX_AUDIT_FIELD_CHARS = 1_024;
/** Longest identity nobody verified (`claimed_user`), control characters escaped. */
export const MAX_CLAIMED_CHARS = 128;
/** How long unauthenticated failures of one prefix/event/stage are counted before their summary is written. */
export const SUMMARY_INTERVAL_MS = 60_000;
/** Prefix/event/stage keys counted at once; more prefixes are counted under source `*`. */
export const MAX_SUMMARY_KEYS = 256;
/** Free space (bytes) under the data directory below which unauthenticated events are dropped. */
export const AUDIT_RESERVE_BYTES = 64 * 1024 * 1024;

/** The audit log cannot be written: the action it would record must not happen. */
export class AuditUnavailableError extends UserError {}

export interface AuditLogOptions {
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

/** Appends audit events durably; one file descriptor for the process's lifetime. */
export class AuditLog {
  private fd: number | undefined;
  readonly path: string;
  private readonly reserveBytes: number;
  private readonly warn: (line: string) => void;
  private tallies = new Map<string, Tally>();
  private windowStart = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  private warnedAt = -Infinity;

  constructor(
    private readonly dataDir: string,
    private readonly clock: () => Date,
    opts: AuditLogOptions = {},
  ) {
    this.path = join(dataDir, 'audit.log');
    this.reserveBytes = opts.reserveBytes ?? AUDIT_RESERVE_BYTES;
    this.warn = opts.warn ?? (() => {});
  }

  /**
   * Writes one event as a single line and flushes it to disk. Throws
   * AuditUnavailableError (code AUDIT_UNAVAILABLE, naming the file and the
   * cause) when it cannot: the caller refuses the action instead.
   */
  emit(event: AuditEvent): void {
    try {
      this.write(event);
    } catch (err) {
      const e = writeError(this.path, err);
      throw new AuditUnavailableError('AUDIT_UNAVAILABLE', `cannot write the audit log ${this.path} (${e.message}); the action was refused, nothing was issued`, {
        cause: err,
        hint: e.code === 'DISK_FULL' ? `free space on the file system of ${this.dataDir}` : `check ${this.path}`,
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
      this.warn(`audit: dropped ${this.dropped} unauthenticated failure events: ${this.dataDir} has less than ${this.reserveBytes} bytes free (kept for logins and sessions)`);
      this.dropped = 0;
    }
  }

  close(): void {
    this.flush();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private newTally(key: string, event: UnauthenticatedEvent, source: string, now: Date, count: number): Tally {
    const reason = bounded(event.reason, 200);
    const t: Tally = { of: event.event, stage: event.stage, code: event.event === 'access.denied' ? event.code : '', source, count, firstReason: reason, lastReason: reason, firstTime: now.toISOString(), lastTime: now.toISOString() };
    this.tallies.set(key, t);
    return t;
  }

  private bestEffort(event: AuditEvent): void {
    try {
      const fs = statfsSync(this.dataDir);
      if (fs.bavail * fs.bsize < this.reserveBytes) {
        this.dropped++;
        return;
      }
      this.write(event);
    } catch {
      this.dropped++;
    }
  }

  private write(event: AuditEvent): void {
    const line = Buffer.from(serialize({ time: this.clock().toISOString(), ...event }) + '\n');
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

/** One JSON line: bigints as strings, strings longer than MAX_AUDIT_FIELD_CHARS cut (the event then says `truncated: true`). */
function serialize(event: Record<string, unknown>): string {
  let truncated = false;
  const text = JSON.stringify(event, (_key, value: unknown) => {
    if (typeof value === 'bigint') return value.toString();
    if (typeof value === 'string' && value.length > MAX_AUDIT_FIELD_CHARS) {
      truncated = true;
      return bounded(value, MAX_AUDIT_FIELD_CHARS);
    }
    return value;
  });
  // JSON allows U+2028/U+2029 raw, but readers that split on Unicode line breaks (Python's splitlines) would see two lines.
  const oneLine = text.replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
  return truncated ? `${oneLine.slice(0, -1)},"truncated":true}` : oneLine;
}

function bounded(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
