/**
 * The storage interface: every piece of state that must be the same on every
 * `jumpgate start` process of a cluster goes through one `StateBackend`.
 *
 *   backend            where                                  who may share it
 *   ─────────────────  ─────────────────────────────────────  ─────────────────────────────
 *   dir (default)      data_dir: today's files                one server process (+ tctl)
 *   postgres           one PostgreSQL database (storage.*)    any number of proxies (+ tctl)
 *
 * What is stored, by kind (Teleport's architecture lists the same kinds per
 * back-end):
 *   - CA keys and their rotation state (`ca`): read often, written rarely;
 *     private keys encrypted at rest by the postgres backend
 *     (storage.encryption_key_file), 0600 files in the dir backend.
 *   - pending logins (`pending`): single use, short-lived, capped per source,
 *     per prefix and in total (the same caps on every backend).
 *   - the audit log (`audit`): append-only, one order for the whole cluster,
 *     each event stamped with the writer's `server_id`.
 *   - everything else (`items`): join tokens, node heartbeats, locks, web
 *     sessions, headless logins, recording metadata, the user certificates
 *     issued (`issued_cert`: what the revocation list needs, auth/revocation.ts). A keyed item per
 *     (kind, key), a JSON value, an optional expiry; create-if-absent and take
 *     (read + delete at once) give the single-use semantics tokens need.
 *   - session recordings' bytes (`recordings`): append-only byte streams by
 *     name (asciicast files); files under `recordings.dir`, or chunks in the
 *     database with postgres unless `recordings.dir` is set. Their metadata
 *     are `recording` items.
 *
 * Rules every implementation keeps:
 *   - A promise that resolves means the write is durable (fsynced, or the
 *     transaction committed). A write that fails rejects; nothing is reported
 *     done that was not stored.
 *   - Failures to reach the store reject with `StoreUnavailableError` (code
 *     STORE_UNAVAILABLE), naming the store's `location`, never a password.
 *   - Other processes' changes are seen within CHANGE_VISIBILITY_MS (watch()).
 *
 * One contract test suite (test/server/storage/contract.test.ts) runs against
 * both implementations.
 */
import { UserError } from '../../errors.js';

/** How soon a change made by one process (tctl, another proxy) is seen by every other. */
export const CHANGE_VISIBILITY_MS = 5_000;

export type CaType = 'user' | 'host';
export const CA_TYPES: readonly CaType[] = ['user', 'host'];

/** One CA key as stored: the private key as an OpenSSH PEM (decrypted: encryption is the backend's business). */
export interface StoredCaKey {
  /** `<UTC time>-<8 hex>`, e.g. 20261130T043000Z-1a2b3c4d: also the dir backend's file name. */
  id: string;
  /** ISO 8601. */
  created: string;
  /** ISO 8601; set on keys rotated out: trusted (exported, accepted) until then. */
  trustedUntil?: string;
  /** OpenSSH private key text ("-----BEGIN OPENSSH PRIVATE KEY-----"). */
  privateKeyPem: string;
}

/** A CA as stored: which key signs and every key (active included, newest first). */
export interface StoredCa {
  type: CaType;
  /** Id of the key that signs. */
  active: string;
  keys: StoredCaKey[];
  /**
   * Changes whenever the record changes (a cheap change detector: the dir
   * backend's ca.json stat stamp, the postgres row's revision number).
   */
  revision: string;
}

export interface CaBackend {
  /** The CA of `type`, or undefined when none was ever created. Cheap to call on every request (backends cache). */
  read(type: CaType): Promise<StoredCa | undefined>;
  /**
   * Creates the CA with its first key unless one exists (another process may
   * win the race); resolves to the CA that is stored now.
   */
  create(type: CaType, first: StoredCaKey): Promise<StoredCa>;
  /**
   * Rotation: under the backend's lock (a lock file, a row lock) reads the
   * stored CA, applies `change` and stores the result atomically; the new
   * key is durable before the record names it. `change` must be pure (it may
   * run again). Resolves to the stored result.
   */
  update(type: CaType, change: (current: StoredCa) => Omit<StoredCa, 'revision'>): Promise<StoredCa>;
}

/** Caps on pending logins (documented in SECURITY.md "Limits"). */
export interface PendingLimits {
  total: number;
  perPrefix: number;
  perSource: number;
  entryBytes: number;
}

/** One pending login as stored: the fields the caps and the audit need in the clear, the rest opaque. */
export interface PendingRecord {
  /** The OIDC `state` (or a headless login's id): the key; a secret. */
  key: string;
  /** The login's request id (audit events name it). */
  requestId: string;
  /** Peer address that started it (limits.ts sourceKey/prefixKey are applied by the backend). */
  clientAddr: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  /** The rest (key, callback URL, OIDC checks): serialized by the login service, encrypted by the postgres backend. */
  data: Buffer;
}

export interface PendingBackend {
  /**
   * Stores `record`; when a cap is reached first evicts (per source, then
   * per prefix, then in total: pending-logins.ts explains the order) and
   * resolves to the evicted records (oldest first) for the caller to audit.
   */
  add(record: PendingRecord, limits: PendingLimits): Promise<PendingRecord[]>;
  /** Removes and returns the record of `key` (single use: of two concurrent takes, one gets it). */
  take(key: string): Promise<PendingRecord | undefined>;
  /** Removes and returns every record whose expiresAt is before `nowMs`. */
  sweep(nowMs: number): Promise<PendingRecord[]>;
  /** How many are pending (tests, metrics). */
  count(): Promise<number>;
}

/** One audit event as stored: the event object (auth/audit.ts AuditEvent) with its time and writer. */
export interface StoredAuditEvent {
  /** Position in the cluster's one order (dir: line number; postgres: a sequence). */
  seq: number;
  /** ISO 8601 with milliseconds. */
  time: string;
  /** The writer: a proxy's `server_id`, or `tctl@<host>`. */
  server_id: string;
  event: string;
  [field: string]: unknown;
}

export interface AuditQuery {
  /** Only events at or after this time. */
  since?: Date;
  /** Only this event type (e.g. session.start). */
  type?: string;
  /** Only events whose `user` is this. */
  user?: string;
  /** At most this many, the newest ones, returned oldest first (default 1000). */
  limit?: number;
}

export interface AuditBackend {
  /**
   * Appends one event (already serialized as a JSON object line, with `time`
   * and `server_id` set): durable when the promise resolves.
   */
  append(line: string, event: { time: string; server_id: string; event: string; user?: string }): Promise<void>;
  /**
   * Whether best-effort (unauthenticated) events should be dropped now to
   * keep room for real ones (dir: free disk below the reserve; postgres: never).
   */
  lowOnSpace(reserveBytes: number): boolean;
  /** Events matching `q`, oldest first. */
  query(q: AuditQuery): Promise<StoredAuditEvent[]>;
}

/** Kinds of items; each later feature adds its own here. */
export const ITEM_KINDS = ['token', 'node', 'lock', 'web_session', 'headless_login', 'recording', 'issued_cert', 'node_heartbeat'] as const;
export type ItemKind = (typeof ITEM_KINDS)[number];

export interface Item<T = unknown> {
  kind: ItemKind;
  key: string;
  value: T;
  /** Milliseconds since the epoch; expired items are never returned. */
  expiresAt?: number;
  /** Changes on every write of the item (compare-and-swap). */
  revision: string;
}

export interface ItemBackend {
  /** Creates the item unless it exists; false when it does. */
  create<T>(kind: ItemKind, key: string, value: T, expiresAt?: number): Promise<boolean>;
  /** Creates or replaces. */
  put<T>(kind: ItemKind, key: string, value: T, expiresAt?: number): Promise<void>;
  get<T>(kind: ItemKind, key: string): Promise<Item<T> | undefined>;
  /** Every unexpired item of `kind`, ordered by key. */
  list<T>(kind: ItemKind): Promise<Item<T>[]>;
  /**
   * How many items of `kind` are stored, without reading them: at least the
   * unexpired ones (postgres: exactly those; dir: also expired files not yet
   * removed, which `list` removes). For caps: when it says full, `list` and count.
   */
  count(kind: ItemKind): Promise<number>;
  /** Removes; false when it was not there. */
  delete(kind: ItemKind, key: string): Promise<boolean>;
  /** Removes and returns (single use: of two concurrent takes, one gets it). */
  take<T>(kind: ItemKind, key: string): Promise<Item<T> | undefined>;
}

/**
 * A recording's name: what `recordings.dir` names a file by and the database a
 * row by: letters, digits, `.`, `_`, `-`, at most 128, not starting with a dot
 * (never a path).
 */
export const RECORDING_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** Throws a UserError BAD_RECORDING_NAME unless `name` matches RECORDING_NAME (checked by every backend). */
export function checkRecordingName(name: string): void {
  if (!RECORDING_NAME.test(name)) {
    throw new UserError('BAD_RECORDING_NAME', `${JSON.stringify(name.slice(0, 140))} is not a recording name`, {
      hint: 'a recording name is letters, digits, ".", "_" and "-" (at most 128), e.g. 6f1c…-….cast',
    });
  }
}

/**
 * Recordings' bytes: append-only streams by name. One writer per name at a
 * time (the proxy that runs the session); readers may read while it writes
 * and see a prefix (possibly a torn last line).
 */
export interface RecordingBackend {
  /** Appends `data` to recording `name`, creating it: durable when the promise resolves. */
  append(name: string, data: Buffer): Promise<void>;
  /** Stored bytes of `name`; undefined when there is no such recording. */
  size(name: string): Promise<number | undefined>;
  /**
   * The bytes of `name` from `offset` (default 0), in chunks of at most
   * about 1 MiB, in order; nothing when there is no such recording.
   */
  read(name: string, offset?: number): AsyncIterable<Buffer>;
  /** Removes the bytes; false when there were none. */
  delete(name: string): Promise<boolean>;
}

/** What changed, for watchers: a CA type, or an item kind. */
export type ChangeTopic = `ca:${CaType}` | `item:${ItemKind}`;

export interface StateBackend {
  readonly kind: 'dir' | 'postgres';
  /** Where the state is, for messages: the data directory, or postgres://user@host:port/db (never a password). */
  readonly location: string;
  readonly ca: CaBackend;
  readonly pending: PendingBackend;
  readonly audit: AuditBackend;
  readonly items: ItemBackend;
  /** Recordings' bytes (the metadata are `recording` items). */
  readonly recordings: RecordingBackend;
  /**
   * Calls `onChange` when another process changed `topic`, within
   * CHANGE_VISIBILITY_MS (postgres: LISTEN/NOTIFY with a polling safety net;
   * dir: the CA is re-checked on every read, so nothing is pushed). Returns
   * the unsubscribe function.
   */
  watch(onChange: (topic: ChangeTopic) => void): () => void;
  /** Whether the store answered its last request (false while a database is unreachable). */
  healthy(): boolean;
  close(): Promise<void>;
}

/** What a backend needs from the process that opens it. */
export interface BackendOptions {
  /** The writer's id stamped on audit events: a proxy's server_id, or tctl@<host>. */
  serverId: string;
  clock: () => Date;
  /** Warnings an admin must see (server log / tctl stderr). */
  warn: (line: string) => void;
}

/** The state store cannot be reached or refused the request: the action is refused, nothing was stored. */
export class StoreUnavailableError extends UserError {
  constructor(location: string, what: string, cause?: unknown) {
    super('STORE_UNAVAILABLE', `state store unavailable: ${what} at ${location} failed (${cause instanceof Error ? cause.message : String(cause ?? 'no answer')})`, {
      cause,
      hint: `check that the database at ${location} is running and reachable from this host; the server retries by itself and recovers when it returns`,
    });
  }
}
