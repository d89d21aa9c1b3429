/**
 * The shape of every row the postgres backend reads, checked at the boundary
 * (the database is outside this process: a hand edit, another version, a
 * restore of the wrong dump). pg's types: bigint → string of digits, bytea →
 * Buffer, json/jsonb → the parsed value.
 */
import * as v from 'valibot';
import { UserError } from '../../../errors.js';

const digits = v.pipe(v.string(), v.regex(/^\d{1,19}$/));
const bytes = v.instance(Buffer);
const text = v.string();

export const CaRow = v.object({
  active: text,
  revision: digits,
  // LEFT JOIN: a CA row without keys reads as one row of nulls (refused by the caller).
  id: v.nullable(text),
  created: v.nullable(text),
  trusted_until: v.nullable(text),
  private_key: v.nullable(bytes),
});
export const CaKeyRow = v.object({ type: v.picklist(['user', 'host']), id: text, created: text, trusted_until: v.nullable(text), private_key: bytes });
export const CaRevisionRow = v.object({ type: v.picklist(['user', 'host']), revision: digits });
export const PendingRow = v.object({
  key_hash: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  seq: digits,
  request_id: text,
  client_addr: text,
  expires_at: v.pipe(v.string(), v.regex(/^-?\d{1,19}$/)),
  data: bytes,
});
export const ItemRow = v.object({
  kind: text,
  key: text,
  value: v.unknown(),
  expires_at: v.nullable(v.pipe(v.string(), v.regex(/^-?\d{1,19}$/))),
  revision: digits,
});
export const AuditRow = v.object({
  seq: digits,
  data: v.looseObject({ time: v.string(), server_id: v.string(), event: v.string() }),
});
export const CountRow = v.object({ n: digits });

/**
 * Checks rows read from `table` against `schema`.
 * @throws UserError STORE_CORRUPT naming the table, the store and the first bad field.
 */
export function checkRows<S extends v.GenericSchema>(schema: S, rows: readonly unknown[], table: string, location: string): v.InferOutput<S>[] {
  return rows.map((row) => {
    const r = v.safeParse(schema, row);
    if (r.success) return r.output;
    const issue = r.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join('.') ?? '';
    throw new UserError('STORE_CORRUPT', `the state store at ${location} holds a row of ${table} this version cannot read (${path ? `${path}: ` : ''}${issue.message})`, {
      hint: 'restore the table from a backup, or run the Jumpgate version that wrote it',
    });
  });
}

export const RecordingChunkRow = v.object({ seq: digits, data: bytes });
export const RecordingSizeRow = v.object({ n: v.nullable(digits) });
