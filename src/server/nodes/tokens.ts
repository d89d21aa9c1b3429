/**
 * Join tokens (`tctl tokens add/ls/rm`, used by `jumpgate node start`): items
 * of kind `token` in the state store, so they work on `dir` and `postgres`
 * alike and tctl needs no running server.
 *
 * Only the SHA-256 of a token is stored (the item key), never the token: a
 * copy of the store or `tctl tokens ls` cannot join a node. A token is shown
 * by its id, the first 12 hex digits of that hash. Single-use tokens are taken
 * (`items.take`: of two concurrent joins, one gets it); every token expires
 * (the item's expiry; default 30m, at most 7d).
 */
import { randomBytes } from 'node:crypto';
import { secretDigest } from '../secrets.js';
import { UserError } from '../../errors.js';
import type { AuditLog } from '../auth/audit.js';
import type { ItemBackend } from '../storage/backend.js';

/** Default life of a join token. */
export const DEFAULT_TOKEN_TTL_SECONDS = 30 * 60;
/** Longest life of a join token: it is a bearer secret that makes a node. */
export const MAX_TOKEN_TTL_SECONDS = 7 * 86_400;
/** Most tokens that may exist at once. */
export const MAX_TOKENS = 1_000;

/** A join token as stored (value of the `token` item keyed by sha256(token)). */
export interface StoredToken {
  /** First 12 hex digits of sha256(token): how tctl names it. */
  id: string;
  type: 'node';
  /** Labels every node joining with it gets (they win over the labels the node sends). */
  labels: Record<string, string>;
  reusable: boolean;
  /** ISO 8601. */
  created: string;
  /** ISO 8601. */
  expires_at: string;
}

/** sha256(token) in hex: the item key. */
export function tokenKey(token: string): string {
  return secretDigest(token);
}

/**
 * Makes a join token (24 random bytes, base64url: 32 characters) and stores
 * its hash; resolves to the token, shown once. Audited (`token.created`).
 * @throws UserError TOO_MANY_TOKENS
 */
export async function createToken(
  opts: { ttlSeconds: number; labels: Record<string, string>; reusable: boolean },
  deps: { items: ItemBackend; audit: AuditLog; clock: () => Date },
): Promise<{ token: string; stored: StoredToken }> {
  if ((await deps.items.list('token')).length >= MAX_TOKENS) {
    throw new UserError('TOO_MANY_TOKENS', `there are already ${MAX_TOKENS} join tokens`, { hint: 'remove unused ones with `tctl tokens rm ID` (`tctl tokens ls` lists them)' });
  }
  const token = randomBytes(24).toString('base64url');
  const key = tokenKey(token);
  const now = deps.clock();
  const expiresAt = now.getTime() + opts.ttlSeconds * 1000;
  const stored: StoredToken = { id: key.slice(0, 12), type: 'node', labels: opts.labels, reusable: opts.reusable, created: now.toISOString(), expires_at: new Date(expiresAt).toISOString() };
  await deps.items.create('token', key, stored, expiresAt);
  await deps.audit.emit({ event: 'token.created', token: stored.id, token_type: 'node', reusable: stored.reusable, expires_at: stored.expires_at, labels: stored.labels });
  return { token, stored };
}

/** Every unexpired token, oldest first. */
export async function listTokens(items: ItemBackend): Promise<StoredToken[]> {
  return (await items.list<StoredToken>('token')).map((i) => i.value).sort((a, b) => a.created.localeCompare(b.created));
}

/**
 * Removes a token named by itself or by its id (or an id prefix of at least
 * 6 hex digits that names one token). Audited (`token.removed`).
 * @throws UserError TOKEN_NOT_FOUND, TOKEN_AMBIGUOUS
 */
export async function removeToken(tokenOrId: string, deps: { items: ItemBackend; audit: AuditLog }): Promise<StoredToken> {
  const all = await deps.items.list<StoredToken>('token');
  const byToken = all.find((i) => i.key === tokenKey(tokenOrId));
  const byId = /^[0-9a-f]{6,64}$/.test(tokenOrId) ? all.filter((i) => i.key.startsWith(tokenOrId)) : [];
  if (!byToken && byId.length > 1) throw new UserError('TOKEN_AMBIGUOUS', `${tokenOrId} names ${byId.length} tokens`, { hint: 'give the whole id from `tctl tokens ls`' });
  const item = byToken ?? byId[0];
  if (!item || !(await deps.items.delete('token', item.key))) {
    throw new UserError('TOKEN_NOT_FOUND', `no join token ${tokenOrId.length > 16 ? `${tokenOrId.slice(0, 6)}…` : tokenOrId}`, { hint: '`tctl tokens ls` lists them by id; expired tokens are gone already' });
  }
  const t = item.value;
  await deps.audit.emit({ event: 'token.removed', token: t.id, token_type: 'node', reusable: t.reusable, expires_at: t.expires_at, labels: t.labels });
  return t;
}

/**
 * Uses a token at join: a single-use one is taken (removed at once, so a
 * second join with it fails), a reusable one read. Undefined when it does
 * not exist or expired.
 */
export async function useToken(token: string, items: ItemBackend): Promise<StoredToken | undefined> {
  const key = tokenKey(token);
  const found = await items.get<StoredToken>('token', key);
  if (!found) return undefined;
  if (found.value.reusable) return found.value;
  return (await items.take<StoredToken>('token', key))?.value;
}
