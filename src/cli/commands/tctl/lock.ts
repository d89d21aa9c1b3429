/**
 * `tctl lock add (--user=U | --login=L | --node=N | --role=R) [--ttl=D] [--message=M]`,
 * `tctl lock ls [--format=text|json]`, `tctl lock rm ID`: locks in the
 * cluster's state store (server/auth/locks.ts), whether or not a server
 * runs; every proxy applies a change within 5 s.
 */
import { hostname } from 'node:os';
import { UsageError } from '../../../errors.js';
import { addLock, describeTarget, readLocks, removeLock, type Lock, type LockTargetKind } from '../../../server/auth/locks.js';
import { printable } from '../../../util/printable.js';
import type { Deps } from '../../deps.js';
import type { ServerContext } from '../../server-context.js';

export interface LockAddOptions {
  user?: string;
  login?: string;
  node?: string;
  role?: string;
  ttlSeconds?: number;
  message?: string;
}

/** The one target the flags name. @throws UsageError USAGE_LOCK_TARGET unless exactly one of --user, --login, --node, --role is given. */
export function lockTarget(o: LockAddOptions): { target: LockTargetKind; value: string } {
  const given = (['user', 'login', 'node', 'role'] as const).filter((k) => o[k] !== undefined);
  if (given.length !== 1) throw new UsageError('USAGE_LOCK_TARGET', 'give exactly one of --user=U, --login=L, --node=N or --role=R');
  const target = given[0]!;
  return { target, value: o[target]! };
}

/** Adds the lock; prints its id on stdout (data) and what it does on stderr. */
export async function add(o: LockAddOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  const t = lockTarget(o);
  const lock = await addLock(
    { store: ctx.store, audit: ctx.audit, clock: ctx.clock },
    { ...t, createdBy: `tctl@${hostname()}`, ...(o.message !== undefined ? { message: o.message } : {}), ...(o.ttlSeconds !== undefined ? { ttlSeconds: o.ttlSeconds } : {}) },
  );
  deps.io.stdout.write(`${lock.id}\n`);
  deps.io.stderr.write(
    `locked ${printable(describeTarget(lock))}${lock.expires ? ` until ${lock.expires}` : ' until `tctl lock rm ' + lock.id + '`'}: every proxy refuses new logins and connections and ends running sessions within 5 s\n`,
  );
}

export interface LockLsOptions {
  format: 'text' | 'json';
}

/** Lists the locks in force (expired ones not yet cleaned up are left out). */
export async function ls(o: LockLsOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  const now = ctx.clock().getTime();
  const locks = (await readLocks(ctx.store, (l) => deps.io.stderr.write(`${l}\n`))).filter((l) => l.expires === undefined || Date.parse(l.expires) > now);
  if (o.format === 'json') {
    // JSON escapes C0 controls itself; printable also escapes the rest (bidi, C1) as audit ls does.
    deps.io.stdout.write(JSON.stringify(locks.map(jsonLock), null, 2) + '\n');
    return;
  }
  const rows = [['ID', 'Target', 'Expires', 'Message'], ...locks.map((l) => [l.id, printable(describeTarget(l), 80), l.expires ?? 'never', printable(l.message, 80)])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) deps.io.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
}

function jsonLock(l: Lock): Record<string, string> {
  return {
    id: l.id,
    target: l.target,
    value: printable(l.value, 256),
    message: printable(l.message, 1024),
    created: l.created,
    created_by: printable(l.created_by, 256),
    ...(l.expires ? { expires: l.expires } : {}),
  };
}

/** Removes the lock `id`. @throws UserError LOCK_NOT_FOUND. */
export async function rm(id: string, ctx: ServerContext, deps: Deps): Promise<void> {
  const lock = await removeLock({ store: ctx.store, audit: ctx.audit }, id, `tctl@${hostname()}`);
  deps.io.stderr.write(`removed lock ${lock.id} (${printable(describeTarget(lock))}); access returns on every proxy within 5 s\n`);
}
