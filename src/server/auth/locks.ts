/**
 * Locks (Teleport's word): an admin cuts a user, a login, a node or a role
 * off NOW, before the certificates they hold expire. A lock is shared state:
 * a `lock` item in the state store (server/storage), so `tctl lock add`
 * works with or without a running server, on `dir` and on `postgres`, and
 * every proxy sees it within CHANGE_VISIBILITY_MS.
 *
 *   item kind `lock`, key = the lock id (16 hex), value = Lock (LockSchema),
 *   store expiry = the lock's expiry + EXPIRED_LOCK_GRACE_MS (so a proxy can
 *   still claim it to audit `lock.expired` once; then the store drops it)
 *
 * What a lock stops (README "Locks"): new logins (browser, headless, `tctl
 * auth sign --user`: `refuseLocked` in the issuer), new SSH connections and
 * channels at the proxy, and running sessions (LockService → the proxy's
 * ActiveSessions); on nodes reached directly, the certificates it covers are
 * in the revocation list (auth/revocation.ts).
 *
 * Targets:
 *   user=U    every certificate whose key id (the user name) is U
 *   login=L   connections as the Unix login L (other logins keep working)
 *   node=N    connections to the inventory node N
 *   role=R    users whose certificate (or new login) carries role R
 *   cert=S    one certificate, by serial (`tsh logout --revoke`), until it expires
 */
import { randomBytes } from 'node:crypto';
import * as v from 'valibot';
import { UserError } from '../../errors.js';
import { printable } from '../../util/printable.js';
import type { StateBackend } from '../storage/backend.js';
import type { AuditEvent, AuditLog, LockFields } from './audit.js';

/** What a lock can name. */
export const LOCK_TARGETS = ['user', 'login', 'node', 'role', 'cert'] as const;
export type LockTargetKind = (typeof LOCK_TARGETS)[number];

/** How long an expired lock stays in the store for a proxy to claim (audit lock.expired once). */
export const EXPIRED_LOCK_GRACE_MS = 24 * 3600 * 1000;
/** Longest lock message (characters). */
export const MAX_LOCK_MESSAGE_CHARS = 256;
/** Most locks a cluster holds at once (each is checked on every connection). */
export const MAX_LOCKS = 10_000;
/** How often the lock service re-reads every lock whatever the watch says (the safety net under NOTIFY / the dir poll). */
export const LOCK_POLL_MS = 2_000;

const NAME = v.pipe(v.string(), v.minLength(1), v.maxLength(256), v.check((s) => !/[\x00-\x1f\x7f]/.test(s), 'no control characters'));

/** A lock as stored (the `lock` item's value). Parsed, never cast, when read back. */
export const LockSchema = v.strictObject({
  id: v.pipe(v.string(), v.regex(/^[0-9a-f]{16}$/)),
  target: v.picklist(LOCK_TARGETS),
  /** The user, login, node or role; for `cert`, the serial in decimal. */
  value: NAME,
  /** `cert` locks: the signing CA key's SSH wire blob (base64), so the revocation list names the right CA. */
  ca_key: v.optional(v.pipe(v.string(), v.maxLength(4096), v.base64())),
  message: v.pipe(v.string(), v.maxLength(MAX_LOCK_MESSAGE_CHARS * 4)),
  /** ISO 8601. */
  created: v.pipe(v.string(), v.isoTimestamp()),
  /** Who added it: `tctl@<host>`, or `<user> (tsh logout --revoke)`. */
  created_by: v.pipe(v.string(), v.maxLength(512)),
  /** ISO 8601; absent = until `tctl lock rm`. */
  expires: v.optional(v.pipe(v.string(), v.isoTimestamp())),
});
export type Lock = v.InferOutput<typeof LockSchema>;

/** What a lock is checked against: a login about to be issued, a connection, a running session. */
export interface LockSubject {
  user: string;
  roles: readonly string[];
  /** The Unix login of a connection; for a login (certificate) check, every login it would carry. */
  logins?: readonly string[];
  node?: string;
  /** The certificate's serial and signing CA key blob (connections and sessions). */
  serial?: bigint;
}

/** Whether `lock` holds at `now` and applies to `s`. */
export function lockMatches(lock: Lock, s: LockSubject, now: Date): boolean {
  if (lock.expires !== undefined && Date.parse(lock.expires) <= now.getTime()) return false;
  switch (lock.target) {
    case 'user':
      return lock.value === s.user;
    case 'role':
      return s.roles.includes(lock.value);
    case 'login':
      return s.logins?.includes(lock.value) ?? false;
    case 'node':
      return s.node !== undefined && s.node.toLowerCase() === lock.value.toLowerCase();
    case 'cert':
      return s.serial !== undefined && s.serial.toString() === lock.value;
  }
}

/** `user=alice` etc.: how tctl and audit events name a lock's target. */
export function describeTarget(lock: Pick<Lock, 'target' | 'value'>): string {
  return `${lock.target}=${lock.value}`;
}

/**
 * The text a locked-out user sees (ssh's stderr, tsh's error): the admin's
 * message, escaped for a terminal, and the lock id to quote to them.
 */
export function lockedMessage(lock: Lock): string {
  const why = lock.message.trim() === '' ? '' : `: ${printable(lock.message, MAX_LOCK_MESSAGE_CHARS)}`;
  return `access locked (${describeTarget({ target: lock.target, value: printable(lock.value, 64) })}, lock ${lock.id})${why}`;
}

/** The fields every lock.* audit event carries. */
export function lockFields(lock: Lock): LockFields {
  return { lock_id: lock.id, target: lock.target, target_value: lock.value, message: lock.message, ...(lock.expires ? { expires: lock.expires } : {}) };
}

/** The store's expiry of a lock item (ms): the lock's expiry plus the grace for its lock.expired claim. */
function itemExpiry(lock: Lock): number | undefined {
  return lock.expires === undefined ? undefined : Date.parse(lock.expires) + EXPIRED_LOCK_GRACE_MS;
}

export interface NewLock {
  target: LockTargetKind;
  value: string;
  message?: string;
  /** Seconds; absent = until removed. */
  ttlSeconds?: number;
  /** Absolute expiry instead of a TTL (cert locks: the certificate's valid_before). */
  expiresAt?: Date;
  caKey?: Buffer;
  createdBy: string;
  /** The verified user who asked (tsh logout --revoke), for the audit event. */
  user?: string;
}

/**
 * Adds a lock: stored (durable), then audited `lock.created` (durable). The
 * store's watchers bring it to every proxy within CHANGE_VISIBILITY_MS.
 * @throws UserError LOCK_INVALID (an empty or control-character target, a
 *   message too long, a TTL not positive), LOCK_LIMIT (MAX_LOCKS reached);
 *   StoreUnavailableError; AuditUnavailableError.
 */
export async function addLock(deps: { store: StateBackend; audit: AuditLog; clock: () => Date }, input: NewLock): Promise<Lock> {
  const now = deps.clock();
  if (input.ttlSeconds !== undefined && !(input.ttlSeconds > 0)) throw new UserError('LOCK_INVALID', `lock TTL must be positive, got ${input.ttlSeconds} s`, { hint: 'use e.g. --ttl=1h, or leave --ttl out for a lock that holds until `tctl lock rm`' });
  const message = input.message ?? '';
  if (message.length > MAX_LOCK_MESSAGE_CHARS) throw new UserError('LOCK_INVALID', `lock message is ${message.length} characters; at most ${MAX_LOCK_MESSAGE_CHARS}`, { hint: 'shorten --message' });
  const expires = input.expiresAt ?? (input.ttlSeconds !== undefined ? new Date(now.getTime() + input.ttlSeconds * 1000) : undefined);
  const candidate = {
    id: randomBytes(8).toString('hex'),
    target: input.target,
    value: input.value,
    ...(input.caKey ? { ca_key: input.caKey.toString('base64') } : {}),
    message,
    created: now.toISOString(),
    created_by: input.createdBy,
    ...(expires ? { expires: expires.toISOString() } : {}),
  };
  const parsed = v.safeParse(LockSchema, candidate);
  if (!parsed.success) {
    const issue = parsed.issues[0]!;
    const where = issue.path?.map((p) => String(p.key)).join('.') ?? 'lock';
    throw new UserError('LOCK_INVALID', `invalid lock ${where} ${JSON.stringify(printable(String(issue.input), 80))}: ${issue.message}`, {
      hint: `name exactly one of --user, --login, --node or --role with a non-empty value without control characters`,
    });
  }
  const lock = parsed.output;
  if ((await deps.store.items.list('lock')).length >= MAX_LOCKS) {
    throw new UserError('LOCK_LIMIT', `the cluster already holds ${MAX_LOCKS} locks`, { hint: 'remove locks that are no longer needed with `tctl lock rm ID` (`tctl lock ls` lists them)' });
  }
  await deps.store.items.put('lock', lock.id, lock, itemExpiry(lock));
  const event: AuditEvent = { event: 'lock.created', ...lockFields(lock), by: input.createdBy, ...(input.user ? { user: input.user } : {}) };
  await deps.audit.emit(event);
  return lock;
}

/**
 * Every lock in the store that parses (a malformed item is reported through
 * `warn` and skipped), expired ones included, oldest first.
 */
export async function readLocks(store: StateBackend, warn: (line: string) => void = () => {}): Promise<Lock[]> {
  const out: Lock[] = [];
  for (const item of await store.items.list<unknown>('lock')) {
    const parsed = v.safeParse(LockSchema, item.value);
    if (parsed.success) out.push(parsed.output);
    else warn(`locks: ignoring a malformed lock item ${printable(item.key, 40)}: ${parsed.issues[0]?.message ?? 'invalid'}`);
  }
  return out.sort((a, b) => a.created.localeCompare(b.created) || a.id.localeCompare(b.id));
}

/** The locks in force at `now` (not expired), oldest first. */
export async function activeLocks(store: StateBackend, now: Date, warn?: (line: string) => void): Promise<Lock[]> {
  return (await readLocks(store, warn)).filter((l) => l.expires === undefined || Date.parse(l.expires) > now.getTime());
}

/**
 * Removes the lock `id` and audits `lock.deleted`.
 * @throws UserError LOCK_NOT_FOUND when there is none; StoreUnavailableError; AuditUnavailableError.
 */
export async function removeLock(deps: { store: StateBackend; audit: AuditLog }, id: string, by: string): Promise<Lock> {
  const item = /^[0-9a-f]{16}$/.test(id) ? await deps.store.items.take<unknown>('lock', id) : undefined;
  const parsed = item ? v.safeParse(LockSchema, item.value) : undefined;
  if (!item || !parsed?.success) {
    throw new UserError('LOCK_NOT_FOUND', `no lock "${printable(id, 40)}"`, { hint: '`tctl lock ls` lists the lock ids' });
  }
  await deps.audit.emit({ event: 'lock.deleted', ...lockFields(parsed.output), by });
  return parsed.output;
}

/**
 * The first lock in `locks` that holds at `now` for `subject`, or undefined.
 * Used where no LockService runs (tctl, the issuer on a fresh read).
 */
export function findLock(locks: readonly Lock[], subject: LockSubject, now: Date): Lock | undefined {
  return locks.find((l) => lockMatches(l, subject, now));
}

/**
 * The running server's view of the locks: every lock in memory, so the SSH
 * proxy checks each connection without a store round trip. Refreshed when the
 * store reports `item:lock` (dir: within 500 ms; postgres: NOTIFY) and every
 * LOCK_POLL_MS whatever happens, so a change is applied within
 * CHANGE_VISIBILITY_MS (5 s). On every refresh that brings a lock, the
 * listeners run (the proxy ends matching running sessions). TTL'd locks are
 * expired here: the first proxy whose `take` gets the item audits
 * `lock.expired`, once for the cluster.
 */
export class LockService {
  private locks: Lock[] = [];
  private readonly listeners = new Set<(locks: readonly Lock[]) => void>();
  private timer: NodeJS.Timeout | undefined;
  private unwatch = () => {};
  private refreshing: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(
    private readonly deps: { store: StateBackend; audit: AuditLog; clock: () => Date; warn: (line: string) => void },
    private readonly pollMs = LOCK_POLL_MS,
  ) {}

  /** Reads the locks once (the server does not serve before it knows them), then follows the store. */
  async start(): Promise<void> {
    await this.refresh();
    this.unwatch = this.deps.store.watch((topic) => {
      if (topic === 'item:lock') void this.refresh();
    });
    this.timer = setInterval(() => void this.refresh(), this.pollMs).unref();
  }

  /** The locks in force now. */
  current(): readonly Lock[] {
    const now = this.deps.clock();
    return this.locks.filter((l) => l.expires === undefined || Date.parse(l.expires) > now.getTime());
  }

  /** The lock that holds for `subject` now, or undefined. */
  check(subject: LockSubject): Lock | undefined {
    return findLock(this.locks, subject, this.deps.clock());
  }

  /** Runs `fn` with the locks in force after every refresh; returns the unsubscribe function. */
  onChange(fn: (locks: readonly Lock[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Re-reads the store now (also what the watch and the timer call); concurrent calls share one read and one more after it. */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = this.read().finally(() => {
      this.refreshing = undefined;
      if (this.again && !this.closed) {
        this.again = false;
        void this.refresh();
      }
    });
    return this.refreshing;
  }

  private async read(): Promise<void> {
    if (this.closed) return;
    let all: Lock[];
    try {
      all = await readLocks(this.deps.store, this.deps.warn);
    } catch (err) {
      // Keep the last known locks (fail closed for what is known); the next poll retries.
      this.deps.warn(`locks: cannot read the locks: ${(err as Error).message}`);
      return;
    }
    const now = this.deps.clock();
    const expired = all.filter((l) => l.expires !== undefined && Date.parse(l.expires) <= now.getTime());
    this.locks = all.filter((l) => !expired.includes(l));
    for (const l of expired) await this.claimExpiry(l);
    const current = this.current();
    for (const fn of [...this.listeners]) {
      try {
        fn(current);
      } catch (err) {
        this.deps.warn(`locks: a lock listener failed: ${(err as Error).message}`);
      }
    }
  }

  /** The one proxy whose take gets the expired item writes lock.expired. */
  private async claimExpiry(lock: Lock): Promise<void> {
    try {
      const taken = await this.deps.store.items.take('lock', lock.id);
      if (taken) await this.deps.audit.emit({ event: 'lock.expired', ...lockFields(lock) });
    } catch (err) {
      this.deps.warn(`locks: cannot expire lock ${lock.id}: ${(err as Error).message}`);
    }
  }

  close(): void {
    this.closed = true;
    this.unwatch();
    if (this.timer) clearInterval(this.timer);
    this.listeners.clear();
  }
}
