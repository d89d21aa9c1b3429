/**
 * The `postgres` storage backend: any number of proxies (and tctl) on one
 * PostgreSQL database (node-postgres `pg`).
 *
 *   table            what                                         written by
 *   ───────────────  ───────────────────────────────────────────  ─────────────────────────────
 *   jumpgate_schema  applied migrations (schema.ts)                open(), under an advisory lock
 *   ca, ca_keys      a row per CA (active key, revision), a row   create: insert-if-absent;
 *                    per key (private key sealed, crypto.ts)      update: SELECT … FOR UPDATE
 *   pending_logins   pending logins, sealed, capped               add under an advisory xact lock
 *   audit_events     the cluster's one ordered audit log          INSERT (committed = resolved)
 *   items            (kind, key) → json, expiry, revision         single statements
 *   recording_chunks (name, seq) → bytes: recordings' bytes      INSERT per append (unless recordings.dir is set)
 *
 * Changes: every write other processes must see runs
 * pg_notify('jumpgate_changes', topic) in its transaction. One dedicated
 * client LISTENs; it reconnects with backoff and, on reconnect, reports every
 * CA topic (what happened while it was away is unknown). NOTIFY alone is not
 * enough: a listener whose TCP connection died silently (a NAT or a failover
 * that drops packets instead of resetting) hears nothing and does not know
 * it, so a poll of the CA revisions every POLL_MS bounds staleness below
 * CHANGE_VISIBILITY_MS whatever happens to the listener; NOTIFY keeps the
 * usual case immediate without polling fast.
 *
 * Failures: every query has a client-side deadline (QUERY_TIMEOUT_MS) and the
 * server-side statement/lock timeouts, so a hung database is a
 * StoreUnavailableError, never a hang; pool and listener 'error' events are
 * handled (an unhandled one would crash Node); the pool makes new connections
 * when the database returns and the listener reconnects, so the backend
 * recovers by itself.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { StorageConfig } from '../../../config/index.js';
import { UserError } from '../../../errors.js';
import { prefixKey, sourceKey } from '../../limits.js';
import { printable } from '../../../util/printable.js';
import {
  CA_TYPES,
  checkRecordingName,
  StoreUnavailableError,
  type AuditBackend,
  type AuditQuery,
  type BackendOptions,
  type CaBackend,
  type CaType,
  type ChangeTopic,
  type Item,
  type ItemBackend,
  type ItemKind,
  type PendingBackend,
  type PendingLimits,
  type PendingRecord,
  type RecordingBackend,
  type StateBackend,
  type StoredAuditEvent,
  type StoredCa,
  type StoredCaKey,
} from '../backend.js';
import { loadKeyRing, type KeyRing } from '../crypto.js';
import { DirRecordings } from '../dir/recording-files.js';
import { readConnTarget, scrub, type ConnTarget } from './conn-string.js';
import { migrate } from './schema.js';
import * as R from './rows.js';
import type * as v from 'valibot';

type PostgresStorage = Extract<StorageConfig, { type: 'postgres' }>;

/** Deadline of establishing a connection (and of waiting for a free pooled one). */
export const CONNECT_TIMEOUT_MS = 5_000;
/** Client-side deadline of one query: a database that stopped answering is an error after this. */
export const QUERY_TIMEOUT_MS = 10_000;
/** How often the CA revisions are polled (the safety net under LISTEN/NOTIFY). */
export const POLL_MS = 2_000;
/** The NOTIFY channel. */
export const CHANNEL = 'jumpgate_changes';
/** Largest `limit` an audit query may ask for. */
export const MAX_AUDIT_QUERY = 100_000;
const LISTEN_BACKOFF_MAX_MS = 5_000;
/** Chunks of a recording read per query (a chunk is one flush: about a second of output, up to 256 KiB). */
const RECORDING_PAGE_ROWS = 16;

/**
 * Connects to the database named by `storage`, applies the schema migrations
 * under an advisory lock and starts listening for changes.
 * @throws StoreUnavailableError naming the address (postgres://user@host:port/db, never the
 *   password) when the database cannot be reached within CONNECT_TIMEOUT_MS;
 *   EncryptionKeyError (crypto.ts) for an unusable key file; UserError STORE_SCHEMA_NEWER for a
 *   database written by a newer Jumpgate.
 */
export async function openPostgresBackend(storage: PostgresStorage, opts: BackendOptions, recordingsDir?: string): Promise<PostgresBackend> {
  const keys = loadKeyRing(storage);
  const target = readConnTarget(storage, opts.warn);
  const backend = new PostgresBackend(target, keys, storage.maxConnections, opts, recordingsDir);
  try {
    await backend.start();
  } catch (err) {
    await backend.close();
    throw err;
  }
  return backend;
}

interface CaCache {
  ca: StoredCa;
  /** A change was heard since it was read: re-read, but serve it while the database is away. */
  stale: boolean;
}

/** The postgres StateBackend (see the module comment); `reencryptAll` serves `tctl storage rekey`. */
export class PostgresBackend implements StateBackend {
  readonly kind = 'postgres' as const;
  readonly location: string;
  readonly ca: CaBackend;
  readonly pending: PendingBackend;
  readonly audit: AuditBackend;
  readonly items: ItemBackend;
  /** recording_chunks, or files when `recordings.dir` is set. */
  readonly recordings: RecordingBackend;

  private readonly pool: pg.Pool;
  private ok = true;
  private closed = false;
  private readonly watchers = new Set<(topic: ChangeTopic) => void>();
  private readonly caCache = new Map<CaType, CaCache>();
  /** Bumped on every change heard per CA type (a read that raced a change does not cache). */
  private readonly caGen = new Map<CaType, number>();
  /** Revisions last seen by the poll (or written by this process). */
  private readonly seenRevisions = new Map<CaType, string>();
  private listener: pg.Client | undefined;
  private listenTimer: NodeJS.Timeout | undefined;
  private listenBackoffMs = 250;
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private warnedDown = false;

  constructor(
    private readonly target: ConnTarget,
    private readonly keys: KeyRing,
    maxConnections: number,
    private readonly opts: BackendOptions,
    recordingsDir?: string,
  ) {
    this.location = target.location;
    this.pool = new pg.Pool({
      ...this.clientConfig(),
      // One connection of max_connections is the listener's.
      max: Math.max(1, maxConnections - 1),
      idleTimeoutMillis: 30_000,
    });
    // An idle pooled client whose connection dies emits 'error' on the pool: unhandled, Node exits.
    this.pool.on('error', (err) => this.down('an idle connection', err));
    this.ca = {
      read: (type) => this.readCa(type),
      create: (type, first) => this.createCa(type, first),
      update: (type, change) => this.updateCa(type, change),
    };
    this.pending = {
      add: (record, limits) => this.addPending(record, limits),
      take: (key) => this.takePending(key),
      sweep: (nowMs) => this.sweepPending(nowMs),
      count: async () => Number(this.rows(R.CountRow, await this.query('count pending logins', 'SELECT count(*) AS n FROM pending_logins'), 'pending_logins')[0]!.n),
    };
    this.audit = {
      append: (line, event) => this.appendAudit(line, event),
      lowOnSpace: () => false,
      query: (q) => this.queryAudit(q),
    };
    this.items = {
      create: (kind, key, value, expiresAt) => this.createItem(kind, key, value, expiresAt),
      put: (kind, key, value, expiresAt) => this.putItem(kind, key, value, expiresAt),
      get: (kind, key) => this.getItem(kind, key),
      list: (kind) => this.listItems(kind),
      count: async (kind) =>
        Number(this.rows(R.CountRow, await this.query(`count ${kind} items`, 'SELECT count(*) AS n FROM items WHERE kind = $1 AND (expires_at IS NULL OR expires_at > $2)', [kind, this.now()]), 'items')[0]!.n),
      delete: (kind, key) => this.deleteItem(kind, key),
      take: (kind, key) => this.takeItem(kind, key),
    };
    this.recordings = recordingsDir !== undefined ? new DirRecordings(recordingsDir) : {
      append: (name, data) => this.appendRecording(name, data),
      size: (name) => this.recordingSize(name),
      read: (name, offset) => this.readRecording(name, offset),
      delete: (name) => this.deleteRecording(name),
    };
  }

  /** Migrates, then starts the listener and the poll. */
  async start(): Promise<void> {
    const client = await this.connect('connect');
    const onError = (err: unknown) => this.down('apply the schema migrations', err);
    client.on('error', onError);
    try {
      await migrate(client, this.location);
      client.release();
    } catch (err) {
      client.release(true);
      throw this.fail('apply the schema migrations', err);
    } finally {
      client.removeListener('error', onError);
    }
    // Read (and cache) the CAs now: a wrong encryption key fails the start, not the first login.
    for (const t of CA_TYPES) await this.readCa(t);
    this.ok = true;
    await this.listen();
    this.pollTimer = setInterval(() => void this.poll(), POLL_MS);
    this.pollTimer.unref();
  }

  watch(onChange: (topic: ChangeTopic) => void): () => void {
    this.watchers.add(onChange);
    return () => this.watchers.delete(onChange);
  }

  healthy(): boolean {
    return this.ok;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.listenTimer);
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  /**
   * Rewrites every sealed value (CA private keys, pending logins) that is not
   * sealed with storage.encryption_key_file, in one transaction: after it the
   * previous keys can be removed from previous_encryption_key_files.
   * Resolves to how many rows were rewritten.
   * @throws EncryptionKeyError when a row opens with none of the configured keys (nothing is changed).
   */
  async reencryptAll(): Promise<{ caKeys: number; pending: number }> {
    const n = await this.tx('re-encrypt the state store', async (c) => {
      let caKeys = 0;
      let pending = 0;
      const keys = this.rows(R.CaKeyRow, await c.query('SELECT type, id, created, trusted_until, private_key FROM ca_keys FOR UPDATE'), 'ca_keys');
      for (const r of keys) {
        if (this.keys.isCurrent(r.private_key)) continue;
        const aad = caKeyAad(r.type, r);
        await c.query('UPDATE ca_keys SET private_key = $3 WHERE type = $1 AND id = $2', [r.type, r.id, this.keys.seal(this.keys.open(r.private_key, aad), aad)]);
        caKeys++;
      }
      const rows = this.rows(R.PendingRow, await c.query(`SELECT ${PENDING_COLUMNS} FROM pending_logins FOR UPDATE`), 'pending_logins');
      for (const r of rows) {
        if (this.keys.isCurrent(r.data)) continue;
        const aad = `pending:${r.key_hash}`;
        await c.query('UPDATE pending_logins SET data = $2 WHERE key_hash = $1', [r.key_hash, this.keys.seal(this.keys.open(r.data, aad), aad)]);
        pending++;
      }
      return { caKeys, pending };
    });
    return n;
  }

  // ── CA ────────────────────────────────────────────────────────────────

  /**
   * The cached CA, re-read when a NOTIFY or the poll says its revision
   * changed (the server calls read() on every signing). While the database
   * is unreachable the last snapshot is served: running sessions and
   * signing with an unchanged CA go on; writes fail. Measured here (2 cores,
   * loaded): a cached read 0.003-0.01 ms, a read from the database (one
   * SELECT + AES-GCM open) 1-2.3 ms.
   */
  private async readCa(type: CaType): Promise<StoredCa | undefined> {
    const cached = this.caCache.get(type);
    if (cached && !cached.stale) return cached.ca;
    const gen = this.caGen.get(type) ?? 0;
    let ca: StoredCa | undefined;
    try {
      ca = await this.loadCa(this.pool, type);
      this.up();
    } catch (err) {
      const e = this.fail(`read the ${type} CA`, err);
      // The database is away: the last CA seen keeps serving (certificate checks of running and new
      // SSH sessions); a key mismatch or any other refusal is not papered over.
      if (cached && e instanceof StoreUnavailableError) return cached.ca;
      throw e;
    }
    // A change heard while reading may be newer than what was read: keep the entry stale then. "No
    // CA yet" is not cached: another process may be creating it right now.
    if (ca) this.remember(type, ca, (this.caGen.get(type) ?? 0) !== gen);
    return ca;
  }

  private remember(type: CaType, ca: StoredCa, stale = false): void {
    this.caCache.set(type, { ca, stale });
    if (ca) this.seenRevisions.set(type, ca.revision);
  }

  /** One statement (one snapshot): the CA row and its keys can not come from two different commits. */
  private async loadCa(c: pg.PoolClient | pg.Pool, type: CaType): Promise<StoredCa | undefined> {
    const r = await c.query(
      `SELECT c.active, c.revision, k.id, k.created, k.trusted_until, k.private_key
         FROM ca c LEFT JOIN ca_keys k ON k.type = c.type WHERE c.type = $1 ORDER BY k.position`,
      [type],
    );
    const rows = this.rows(R.CaRow, r, 'ca');
    const head = rows[0];
    if (!head) return undefined;
    const keys = rows.flatMap((k) => (k.id !== null && k.created !== null && k.private_key !== null ? [{ ...k, id: k.id, created: k.created, private_key: k.private_key }] : []));
    if (!keys.some((k) => k.id === head.active)) {
      throw new UserError('STORE_CORRUPT', `the ${type} CA in the state store at ${this.location} names active key ${head.active}, which it does not hold`, {
        hint: 'restore the ca and ca_keys tables from a backup; the server will not create a new CA over a broken one',
      });
    }
    return {
      type,
      active: head.active,
      revision: head.revision,
      keys: keys.map((k) => ({
        id: k.id,
        created: k.created,
        ...(k.trusted_until !== null ? { trustedUntil: k.trusted_until } : {}),
        privateKeyPem: this.keys.open(k.private_key, caKeyAad(type, k)).toString('utf8'),
      })),
    };
  }

  private async writeKeys(c: pg.PoolClient, type: CaType, keys: readonly StoredCaKey[]): Promise<void> {
    await c.query('DELETE FROM ca_keys WHERE type = $1', [type]);
    for (const [i, k] of keys.entries()) {
      await c.query('INSERT INTO ca_keys (type, id, position, created, trusted_until, private_key) VALUES ($1, $2, $3, $4, $5, $6)', [
        type,
        k.id,
        i,
        k.created,
        k.trustedUntil ?? null,
        this.keys.seal(Buffer.from(k.privateKeyPem, 'utf8'), caKeyAad(type, { id: k.id, created: k.created, trusted_until: k.trustedUntil ?? null })),
      ]);
    }
  }

  private async createCa(type: CaType, first: StoredCaKey): Promise<StoredCa> {
    const ca = await this.tx(`create the ${type} CA`, async (c) => {
      const won = await c.query('INSERT INTO ca (type, active, revision) VALUES ($1, $2, 1) ON CONFLICT (type) DO NOTHING RETURNING type', [type, first.id]);
      if (won.rowCount === 1) {
        await this.writeKeys(c, type, [first]);
        await c.query('SELECT pg_notify($1, $2)', [CHANNEL, `ca:${type}`]);
      }
      // The loser's INSERT waited for the winner's commit (the primary key): the winner's CA is there.
      return (await this.loadCa(c, type))!;
    });
    this.remember(type, ca);
    return ca;
  }

  private async updateCa(type: CaType, change: (current: StoredCa) => Omit<StoredCa, 'revision'>): Promise<StoredCa> {
    const ca = await this.tx(`update the ${type} CA`, async (c) => {
      // Lock first, then read in a new statement: under READ COMMITTED a SELECT … FOR UPDATE that
      // waited re-reads only the locked row, and keys joined to it would come from the old snapshot
      // (a concurrent rotation's keys lost).
      await c.query('SELECT 1 FROM ca WHERE type = $1 FOR UPDATE', [type]);
      const current = await this.loadCa(c, type);
      if (!current) throw new UserError('CA_MISSING', `the ${type} CA does not exist in the state store at ${this.location}`, { hint: 'start the server once to create it' });
      const next = change(current);
      if (!next.keys.some((k) => k.id === next.active)) throw new UserError('CA_INVALID', `a ${type} CA update names active key ${next.active}, which is not among its keys`);
      const rev = await c.query<{ revision: string }>('UPDATE ca SET active = $2, revision = revision + 1 WHERE type = $1 RETURNING revision', [type, next.active]);
      await this.writeKeys(c, type, next.keys);
      await c.query('SELECT pg_notify($1, $2)', [CHANNEL, `ca:${type}`]);
      return { type, active: next.active, keys: next.keys.map((k) => ({ ...k })), revision: String(rev.rows[0]!.revision) };
    });
    this.remember(type, ca);
    return ca;
  }

  // ── pending logins ────────────────────────────────────────────────────

  /**
   * The same caps and eviction order as auth/pending-logins.ts, atomic across
   * processes: schema.ts jumpgate_pending_add checks and applies them under
   * pg_advisory_xact_lock(PENDING_LOCK), in one round trip. "Oldest" is
   * insertion order (seq).
   */
  private async addPending(record: PendingRecord, limits: PendingLimits): Promise<PendingRecord[]> {
    const hash = keyHash(record.key);
    const r = await this.query(
      'store a pending login',
      `SELECT ${PENDING_COLUMNS} FROM jumpgate_pending_add($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [
        hash,
        record.requestId,
        record.clientAddr,
        sourceKey(record.clientAddr),
        prefixKey(record.clientAddr),
        record.expiresAt,
        this.sealPending(hash, record),
        limits.total,
        limits.perPrefix,
        limits.perSource,
      ],
    );
    return this.rows(R.PendingRow, r, 'pending_logins').map((row) => this.pendingOf(row));
  }

  private async takePending(key: string): Promise<PendingRecord | undefined> {
    const r = await this.query('take a pending login', `DELETE FROM pending_logins WHERE key_hash = $1 RETURNING ${PENDING_COLUMNS}`, [keyHash(key)]);
    const [row] = this.rows(R.PendingRow, r, 'pending_logins');
    return row ? this.pendingOf(row) : undefined;
  }

  private async sweepPending(nowMs: number): Promise<PendingRecord[]> {
    const r = await this.query('sweep pending logins', `DELETE FROM pending_logins WHERE expires_at < $1 RETURNING ${PENDING_COLUMNS}`, [nowMs]);
    return this.rows(R.PendingRow, r, 'pending_logins')
      .sort((a, b) => Number(a.seq) - Number(b.seq))
      .map((row) => this.pendingOf(row));
  }

  /** The key and the data, sealed together: the key (the OIDC state, a secret) is not in the clear in the table. */
  private sealPending(hash: string, record: PendingRecord): Buffer {
    const key = Buffer.from(record.key, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(key.length);
    return this.keys.seal(Buffer.concat([len, key, record.data]), `pending:${hash}`);
  }

  private pendingOf(r: v.InferOutput<typeof R.PendingRow>): PendingRecord {
    const plain = this.keys.open(r.data, `pending:${r.key_hash}`);
    const n = plain.length >= 4 ? plain.readUInt32BE(0) : Infinity;
    if (4 + n > plain.length) throw new UserError('STORE_CORRUPT', `a pending login in the state store at ${this.location} is malformed`, { hint: 'the login must be started again' });
    return {
      key: plain.subarray(4, 4 + n).toString('utf8'),
      requestId: r.request_id,
      clientAddr: r.client_addr,
      expiresAt: Number(r.expires_at),
      data: Buffer.from(plain.subarray(4 + n)),
    };
  }

  // ── audit ─────────────────────────────────────────────────────────────

  private async appendAudit(line: string, event: { time: string; server_id: string; event: string; user?: string }): Promise<void> {
    // jsonb refuses \u0000 in strings: NUL (only ever in text that came from outside) is kept
    // visible as \x00, the way util/printable writes control characters, instead of failing the write.
    const data = JSON.stringify(JSON.parse(line, (_k, v: unknown) => (typeof v === 'string' ? v.replace(/\0/g, '\\x00') : v)));
    await this.query('append an audit event', 'INSERT INTO audit_events (time, server_id, event, "user", data) VALUES ($1, $2, $3, $4, $5::jsonb)', [
      event.time,
      event.server_id.replace(/\0/g, '\\x00'),
      event.event.replace(/\0/g, '\\x00'),
      event.user?.replace(/\0/g, '\\x00') ?? null,
      data,
    ]);
  }

  private async queryAudit(q: AuditQuery): Promise<StoredAuditEvent[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.since) where.push(`time >= $${params.push(q.since.toISOString())}`);
    if (q.type !== undefined) where.push(`event = $${params.push(q.type)}`);
    if (q.user !== undefined) where.push(`"user" = $${params.push(q.user)}`);
    const limit = Math.max(0, Math.min(MAX_AUDIT_QUERY, Math.floor(q.limit ?? 1000)));
    const r = await this.query<{ seq: string; data: Record<string, unknown> }>(
      'query the audit log',
      `SELECT seq, data FROM audit_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ${limit}`,
      params,
    );
    return this.rows(R.AuditRow, r, 'audit_events')
      .reverse()
      .map((row) => ({ ...row.data, seq: Number(row.seq) }) as StoredAuditEvent);
  }

  // ── recordings ────────────────────────────────────────────────────────

  private async appendRecording(name: string, data: Buffer): Promise<void> {
    checkRecordingName(name);
    if (data.length === 0) return;
    await this.query('append to a recording', 'INSERT INTO recording_chunks (name, data) VALUES ($1, $2)', [name, data]);
  }

  private async recordingSize(name: string): Promise<number | undefined> {
    checkRecordingName(name);
    const r = await this.query('read a recording\'s size', 'SELECT sum(length(data))::bigint::text AS n FROM recording_chunks WHERE name = $1', [name]);
    const n = this.rows(R.RecordingSizeRow, r, 'recording_chunks')[0]?.n;
    return n === null || n === undefined ? undefined : Number(n);
  }

  /** Pages through the chunks in seq order, RECORDING_PAGE_ROWS at a time (bounded memory). */
  private async *readRecording(name: string, offset = 0): AsyncIterable<Buffer> {
    checkRecordingName(name);
    let after = '0';
    let skip = offset;
    for (;;) {
      const r = await this.query('read a recording', `SELECT seq, data FROM recording_chunks WHERE name = $1 AND seq > $2 ORDER BY seq LIMIT ${RECORDING_PAGE_ROWS}`, [name, after]);
      const rows = this.rows(R.RecordingChunkRow, r, 'recording_chunks');
      for (const row of rows) {
        after = row.seq;
        if (skip >= row.data.length) {
          skip -= row.data.length;
          continue;
        }
        yield skip > 0 ? row.data.subarray(skip) : row.data;
        skip = 0;
      }
      if (rows.length < RECORDING_PAGE_ROWS) return;
    }
  }

  private async deleteRecording(name: string): Promise<boolean> {
    checkRecordingName(name);
    const r = await this.query('delete a recording', 'DELETE FROM recording_chunks WHERE name = $1', [name]);
    return (r.rowCount ?? 0) > 0;
  }

  // ── items ─────────────────────────────────────────────────────────────

  private now(): number {
    return this.opts.clock().getTime();
  }

  private async createItem<T>(kind: ItemKind, key: string, value: T, expiresAt?: number): Promise<boolean> {
    // Insert, or take over an expired item of the same key (expired items do not exist).
    const r = await this.query(
      `create a ${kind} item`,
      `WITH w AS (
         INSERT INTO items (kind, key, value, expires_at, revision) VALUES ($1, $2, $3, $4, nextval('item_revision'))
         ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, revision = EXCLUDED.revision
           WHERE items.expires_at IS NOT NULL AND items.expires_at <= $5
         RETURNING 1)
       SELECT pg_notify($6, $7) FROM w`,
      [kind, key, jsonOf(value), expiresAt ?? null, this.now(), CHANNEL, `item:${kind}`],
    );
    return r.rowCount === 1;
  }

  private async putItem<T>(kind: ItemKind, key: string, value: T, expiresAt?: number): Promise<void> {
    await this.query(
      `store a ${kind} item`,
      `WITH w AS (
         INSERT INTO items (kind, key, value, expires_at, revision) VALUES ($1, $2, $3, $4, nextval('item_revision'))
         ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, revision = EXCLUDED.revision
         RETURNING 1)
       SELECT pg_notify($5, $6) FROM w`,
      [kind, key, jsonOf(value), expiresAt ?? null, CHANNEL, `item:${kind}`],
    );
  }

  private async getItem<T>(kind: ItemKind, key: string): Promise<Item<T> | undefined> {
    const r = await this.query(`read a ${kind} item`, 'SELECT kind, key, value, expires_at, revision FROM items WHERE kind = $1 AND key = $2', [kind, key]);
    const [row] = this.rows(R.ItemRow, r, 'items');
    if (!row) return undefined;
    if (row.expires_at !== null && Number(row.expires_at) <= this.now()) {
      await this.query(`delete an expired ${kind} item`, 'DELETE FROM items WHERE kind = $1 AND key = $2 AND revision = $3', [kind, key, row.revision]);
      return undefined;
    }
    return itemOf<T>(row);
  }

  private async listItems<T>(kind: ItemKind): Promise<Item<T>[]> {
    const now = this.now();
    await this.query(`delete expired ${kind} items`, 'DELETE FROM items WHERE kind = $1 AND expires_at IS NOT NULL AND expires_at <= $2', [kind, now]);
    // COLLATE "C": code-point order, the same whatever the database's locale (and the dir backend's sort).
    const r = await this.query(
      `list ${kind} items`,
      'SELECT kind, key, value, expires_at, revision FROM items WHERE kind = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY key COLLATE "C"',
      [kind, now],
    );
    return this.rows(R.ItemRow, r, 'items').map((row) => itemOf<T>(row));
  }

  private async deleteItem(kind: ItemKind, key: string): Promise<boolean> {
    const r = await this.query(
      `delete a ${kind} item`,
      `WITH w AS (DELETE FROM items WHERE kind = $1 AND key = $2 RETURNING expires_at)
       SELECT pg_notify($3, $4) FROM w WHERE w.expires_at IS NULL OR w.expires_at > $5`,
      [kind, key, CHANNEL, `item:${kind}`, this.now()],
    );
    return r.rowCount === 1;
  }

  private async takeItem<T>(kind: ItemKind, key: string): Promise<Item<T> | undefined> {
    const r = await this.query(
      `take a ${kind} item`,
      `WITH w AS (DELETE FROM items WHERE kind = $1 AND key = $2 RETURNING kind, key, value, expires_at, revision)
       SELECT w.*, pg_notify($3, $4) FROM w`,
      [kind, key, CHANNEL, `item:${kind}`],
    );
    const [row] = this.rows(R.ItemRow, r, 'items');
    if (!row || (row.expires_at !== null && Number(row.expires_at) <= this.now())) return undefined;
    return itemOf<T>(row);
  }

  // ── changes ───────────────────────────────────────────────────────────

  private emit(topic: ChangeTopic): void {
    if (topic.startsWith('ca:')) {
      const type = topic.slice(3) as CaType;
      const cached = this.caCache.get(type);
      if (cached) cached.stale = true;
      this.caGen.set(type, (this.caGen.get(type) ?? 0) + 1);
    }
    for (const w of this.watchers) {
      try {
        w(topic);
      } catch (err) {
        this.opts.warn(`state store: a change watcher failed: ${printable(String(err))}`);
      }
    }
  }

  /** Connects the LISTEN client; on failure or loss, retries with backoff (and reports every CA topic when back). */
  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client(this.clientConfig());
    let lost = false;
    const onLost = (err?: unknown) => {
      if (lost) return;
      lost = true;
      if (this.listener === client) this.listener = undefined;
      client.end().catch(() => undefined);
      if (this.closed) return;
      if (err) this.down('the change listener', err);
      this.listenTimer = setTimeout(() => void this.listen(), this.listenBackoffMs);
      this.listenTimer.unref();
      this.listenBackoffMs = Math.min(LISTEN_BACKOFF_MAX_MS, this.listenBackoffMs * 2);
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (n) => {
      if (n.channel === CHANNEL && n.payload && /^(ca:(user|host)|item:[a-z_]+)$/.test(n.payload)) this.emit(n.payload as ChangeTopic);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      onLost(err);
      return;
    }
    if (this.closed || lost) {
      client.end().catch(() => undefined);
      return;
    }
    const reconnect = this.listenBackoffMs > 250;
    this.listener = client;
    this.listenBackoffMs = 250;
    // Changes made while we were not listening were not heard: everyone re-reads the CAs.
    if (reconnect) for (const t of CA_TYPES) this.emit(`ca:${t}`);
  }

  /** The safety net: compares the CA revisions with what this process last saw. */
  private async poll(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      const r = await this.query<{ type: CaType; revision: string }>('poll the CA revisions', 'SELECT type, revision FROM ca');
      for (const row of this.rows(R.CaRevisionRow, r, 'ca')) {
        const rev = String(row.revision);
        const prev = this.seenRevisions.get(row.type);
        this.seenRevisions.set(row.type, rev);
        // Report a change of what this process has seen or cached (also "absent" → created).
        if (prev !== rev && prev !== undefined) this.emit(`ca:${row.type}`);
      }
    } catch {
      // query() marked the store down; the next poll tries again.
    } finally {
      this.polling = false;
    }
  }

  // ── plumbing ──────────────────────────────────────────────────────────

  /** The rows of `r`, checked against `schema` (rows.ts): STORE_CORRUPT naming `table` otherwise. */
  private rows<S extends v.GenericSchema>(schema: S, r: pg.QueryResult, table: string): v.InferOutput<S>[] {
    return R.checkRows(schema, r.rows, table, this.location);
  }

  private clientConfig(): pg.ClientConfig {
    return {
      connectionString: this.target.connString,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      query_timeout: QUERY_TIMEOUT_MS,
      statement_timeout: QUERY_TIMEOUT_MS - 1_000,
      lock_timeout: QUERY_TIMEOUT_MS - 2_000,
      idle_in_transaction_session_timeout: 30_000,
      keepAlive: true,
      // A write reported done is committed and flushed, whatever the role's or database's default says.
      options: '-c synchronous_commit=on',
      application_name: `jumpgate ${this.opts.serverId}`.slice(0, 63),
    };
  }

  private down(what: string, err: unknown): void {
    this.ok = false;
    if (!this.warnedDown) {
      this.warnedDown = true;
      this.opts.warn(`state store at ${this.location}: ${what} failed: ${printable(scrub(errText(err), this.target.secrets))}`);
    }
  }

  private up(): void {
    if (!this.ok && this.warnedDown) this.opts.warn(`state store at ${this.location}: reachable again`);
    this.ok = true;
    this.warnedDown = false;
  }

  /** The error a caller sees: a UserError of ours as is, anything from pg/the network as StoreUnavailableError. */
  private fail(what: string, err: unknown): Error {
    if (err instanceof UserError) return err;
    this.down(what, err);
    return new StoreUnavailableError(this.location, what, new Error(scrub(errText(err), this.target.secrets)));
  }

  private async connect(what: string): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      throw this.fail(what, err);
    }
  }

  private async query<R extends pg.QueryResultRow = pg.QueryResultRow>(what: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    if (this.closed) throw new StoreUnavailableError(this.location, what, new Error('the backend was closed'));
    try {
      const r = await this.pool.query<R>(sql, params);
      this.up();
      return r;
    } catch (err) {
      throw this.fail(what, err);
    }
  }

  /** Runs `fn` in a transaction on one pooled client; a client that failed is discarded, not reused. */
  private async tx<T>(what: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreUnavailableError(this.location, what, new Error('the backend was closed'));
    const c = await this.connect(what);
    // A checked-out client has no 'error' listener of the pool's: a connection lost between two of
    // our queries would emit an unhandled 'error' and crash the process.
    const onError = (err: unknown) => this.down(what, err);
    c.on('error', onError);
    let broken: unknown;
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      this.up();
      return out;
    } catch (err) {
      broken = err;
      await c.query('ROLLBACK').catch(() => undefined);
      throw this.fail(what, err);
    } finally {
      c.removeListener('error', onError);
      // A query error inside SQL leaves a usable connection; anything else (timeouts, lost
      // connections) may not: discard it.
      c.release(broken !== undefined && !(broken instanceof UserError) && !isSqlError(broken) ? true : undefined);
    }
  }
}


/**
 * Where a CA key is stored, as the sealed key's additional data: its type and id, and also its dates,
 * which are in the clear: whoever can write the database but lacks the encryption key cannot move a
 * key to the other CA or stretch a rotated-out key's trust window (the key would no longer open).
 */
function caKeyAad(type: CaType, k: { id: string; created: string; trusted_until: string | null }): string {
  return `ca:${type}:${k.id}:${k.created}:${k.trusted_until ?? ''}`;
}

const PENDING_COLUMNS = 'key_hash, seq, request_id, client_addr, expires_at, data';

function itemOf<T>(r: v.InferOutput<typeof R.ItemRow>): Item<T> {
  return {
    kind: r.kind as ItemKind,
    key: r.key,
    value: r.value as T,
    ...(r.expires_at !== null ? { expiresAt: Number(r.expires_at) } : {}),
    revision: String(r.revision),
  };
}

function jsonOf(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('an item value must be JSON (got undefined or a function)');
  return text;
}

function keyHash(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** An error PostgreSQL answered (an SQLSTATE), as opposed to a lost connection or a timeout. */
function isSqlError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !/^(08|57P|53)/.test(code);
}

function errText(err: unknown): string {
  if (err instanceof AggregateError) return err.errors.map(errText).join('; ') || err.message;
  if (err instanceof Error) return err.message || (err as { code?: string }).code || err.name;
  return String(err);
}
