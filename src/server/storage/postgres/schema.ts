/**
 * The postgres backend's schema: numbered migrations, in code, applied at open
 * inside one transaction under an advisory lock (two proxies starting at once
 * apply each migration once) and recorded in `jumpgate_schema`. A database
 * written by a newer Jumpgate (a version this binary does not know) is refused:
 * downgrading the binary must not run on a schema it cannot read.
 *
 * Append only: never edit a released migration; add the next number.
 */
import type { PoolClient } from 'pg';
import { UserError } from '../../../errors.js';

/** pg_advisory_xact_lock key of the migrations ('jgschema' as bytes, arbitrary but fixed). */
export const MIGRATION_LOCK = 0x6a67736368656d61n;
/** pg_advisory_xact_lock key serializing pending-login adds (the caps are checked and applied under it). */
export const PENDING_LOCK = 0x6a6770656e64696en;

export const MIGRATIONS: readonly string[] = [
  // 1: CAs, pending logins, audit events, items.
  `
  CREATE TABLE ca (
    type text PRIMARY KEY CHECK (type IN ('user', 'host')),
    active text NOT NULL,
    revision bigint NOT NULL
  );
  -- created / trusted_until are kept as the ISO 8601 text the server wrote: they round-trip exactly.
  CREATE TABLE ca_keys (
    type text NOT NULL REFERENCES ca(type) ON DELETE CASCADE,
    id text NOT NULL,
    position integer NOT NULL,
    created text NOT NULL,
    trusted_until text,
    private_key bytea NOT NULL, -- sealed (storage/crypto.ts), AAD ca:<type>:<id>:<created>:<trusted_until>
    PRIMARY KEY (type, id)
  );
  -- key_hash = SHA-256 of the OIDC state (a secret): the state itself is only inside the sealed data.
  CREATE TABLE pending_logins (
    key_hash text PRIMARY KEY,
    seq bigserial NOT NULL,
    request_id text NOT NULL,
    client_addr text NOT NULL,
    source text NOT NULL,
    prefix text NOT NULL,
    expires_at bigint NOT NULL,
    data bytea NOT NULL -- sealed, AAD pending:<key_hash>
  );
  CREATE INDEX pending_logins_prefix_source ON pending_logins (prefix, source, seq);
  CREATE INDEX pending_logins_expires ON pending_logins (expires_at);
  -- The caps of auth/pending-logins.ts, checked and applied under one advisory transaction lock, in
  -- one round trip (the lock is held until the commit: the shorter, the more logins a second).
  -- Evicts at most one (per source, else per prefix: the oldest of its heaviest source, else in
  -- total: the oldest of the heaviest prefix's heaviest source), then inserts; returns the evicted
  -- row. A tie between sources or prefixes goes to the one holding the oldest entry; the in-memory
  -- table goes by which appeared first (Map order): the same unless that first entry is gone.
  CREATE FUNCTION jumpgate_pending_add(p_key_hash text, p_request_id text, p_client_addr text, p_source text, p_prefix text,
      p_expires_at bigint, p_data bytea, p_total bigint, p_per_prefix bigint, p_per_source bigint)
    RETURNS SETOF pending_logins LANGUAGE plpgsql AS $fn$
  DECLARE
    v_prefix text := p_prefix;
    v_source text;
    evicted pending_logins;
  BEGIN
    PERFORM pg_advisory_xact_lock(${PENDING_LOCK});
    IF (SELECT count(*) FROM pending_logins WHERE prefix = p_prefix AND source = p_source) >= p_per_source THEN
      v_source := p_source;
    ELSIF (SELECT count(*) FROM pending_logins WHERE prefix = p_prefix) >= p_per_prefix THEN
      v_source := NULL;
    ELSIF (SELECT count(*) FROM pending_logins) >= p_total THEN
      SELECT prefix INTO v_prefix FROM pending_logins GROUP BY prefix ORDER BY count(*) DESC, min(seq) LIMIT 1;
      v_source := NULL;
    ELSE
      v_prefix := NULL;
    END IF;
    IF v_prefix IS NOT NULL THEN
      IF v_source IS NULL THEN
        SELECT source INTO v_source FROM pending_logins WHERE prefix = v_prefix GROUP BY source ORDER BY count(*) DESC, min(seq) LIMIT 1;
      END IF;
      DELETE FROM pending_logins WHERE key_hash = (
        SELECT key_hash FROM pending_logins WHERE prefix = v_prefix AND source = v_source ORDER BY seq LIMIT 1
      ) RETURNING * INTO evicted;
      IF evicted.key_hash IS NOT NULL THEN
        RETURN NEXT evicted;
      END IF;
    END IF;
    INSERT INTO pending_logins (key_hash, request_id, client_addr, source, prefix, expires_at, data)
      VALUES (p_key_hash, p_request_id, p_client_addr, p_source, p_prefix, p_expires_at, p_data)
      ON CONFLICT (key_hash) DO UPDATE SET seq = nextval(pg_get_serial_sequence('pending_logins', 'seq')),
        request_id = EXCLUDED.request_id, client_addr = EXCLUDED.client_addr, source = EXCLUDED.source,
        prefix = EXCLUDED.prefix, expires_at = EXCLUDED.expires_at, data = EXCLUDED.data;
    RETURN;
  END
  $fn$;
  CREATE TABLE audit_events (
    seq bigserial PRIMARY KEY,
    time timestamptz NOT NULL,
    server_id text NOT NULL,
    event text NOT NULL,
    "user" text,
    data jsonb NOT NULL
  );
  CREATE INDEX audit_events_time ON audit_events (time);
  CREATE INDEX audit_events_event ON audit_events (event, seq);
  CREATE INDEX audit_events_user ON audit_events ("user", seq);
  -- value is json, not jsonb: it round-trips exactly and may hold \\u0000, which jsonb refuses.
  CREATE SEQUENCE item_revision;
  CREATE TABLE items (
    kind text NOT NULL,
    key text NOT NULL,
    value json NOT NULL,
    expires_at bigint,
    revision bigint NOT NULL,
    PRIMARY KEY (kind, key)
  );
  CREATE INDEX items_expires ON items (kind, expires_at) WHERE expires_at IS NOT NULL;
  `,
  // 2: session recordings' bytes (without recordings.dir): one row per append (about one a second per
  // session), read back in seq order.
  `
  CREATE TABLE recording_chunks (
    name text NOT NULL,
    seq bigserial NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (name, seq)
  );
  `,
];

/** The newest schema version this binary knows. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings the database to SCHEMA_VERSION: one transaction, under
 * pg_advisory_xact_lock(MIGRATION_LOCK). Resolves to the migrations it applied.
 * @throws UserError STORE_SCHEMA_NEWER when the database is at a version above SCHEMA_VERSION.
 */
export async function migrate(client: PoolClient, location: string): Promise<number[]> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK.toString()]);
    await client.query('CREATE TABLE IF NOT EXISTS jumpgate_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
    const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM jumpgate_schema');
    const at = r.rows[0]?.v ?? 0;
    if (at > SCHEMA_VERSION) {
      throw new UserError('STORE_SCHEMA_NEWER', `the state store at ${location} has schema version ${at}, newer than this Jumpgate knows (${SCHEMA_VERSION})`, {
        hint: 'run the Jumpgate version that wrote it (or a newer one): a downgrade cannot read a newer schema',
      });
    }
    const applied: number[] = [];
    for (let v = at + 1; v <= SCHEMA_VERSION; v++) {
      await client.query(MIGRATIONS[v - 1]!);
      await client.query('INSERT INTO jumpgate_schema (version) VALUES ($1)', [v]);
      applied.push(v);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
