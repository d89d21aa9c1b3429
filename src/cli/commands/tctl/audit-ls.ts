/**
 * `tctl audit ls [--since=D] [--type=T] [--user=U] [--limit=N] [--format=text|json]`:
 * the cluster's audit log from whichever store holds it (storage.type), oldest first.
 */
import * as v from 'valibot';
import { UsageError } from '../../../errors.js';
import type { AuditEventType } from '../../../server/auth/audit.js';
import type { StateBackend, StoredAuditEvent } from '../../../server/storage/backend.js';
import { printable, terminalJson } from '../../../util/printable.js';
import type { Deps } from '../../deps.js';

/** Every audit event type (auth/audit.ts AuditEvent), for --type's check and help. */
export const AUDIT_EVENT_TYPES = [
  'login.success',
  'login.failure',
  'cert.issued',
  'ca.created',
  'ca.rotated',
  'session.start',
  'session.end',
  'session.exec',
  'session.sftp',
  'session.scp',
  'access.denied',
  'failures.summary',
  'headless.start',
  'headless.approved',
  'headless.denied',
  'headless.failure',
  'token.created',
  'token.removed',
  'node.joined',
  'node.removed',
  'node.failure',
  'web.login',
  'web.logout',
  'lock.created',
  'lock.deleted',
  'lock.expired',
  'recording.truncated',
  'recording.read',
] as const satisfies readonly AuditEventType[];
// The reverse direction: a new event type in the union that is missing here fails to compile.
type Missing = Exclude<AuditEventType, (typeof AUDIT_EVENT_TYPES)[number]>;
const _allListed: Missing extends never ? true : Missing = true;
void _allListed;

/** Default and largest --limit: the newest this many events are printed. */
export const DEFAULT_AUDIT_LIMIT = 1_000;
export const MAX_AUDIT_LIMIT = 100_000;

export interface AuditLsOptions {
  /** Seconds back from now; absent = from the beginning. */
  sinceSeconds?: number;
  type?: string;
  user?: string;
  limit: number;
  format: 'text' | 'json';
}

/** What a stored event must look like before it is printed: it comes from a file or a database. */
const StoredEventSchema = v.looseObject({
  seq: v.pipe(v.number(), v.integer()),
  time: v.pipe(v.string(), v.isoTimestamp()),
  server_id: v.string(),
  event: v.string(),
});

/** Checks --type, --user and --limit; throws UsageError naming the flag. */
export function checkAuditLsOptions(o: AuditLsOptions): AuditLsOptions {
  if (o.type !== undefined && !(AUDIT_EVENT_TYPES as readonly string[]).includes(o.type)) {
    throw new UsageError('USAGE_BAD_EVENT_TYPE', `--type: ${JSON.stringify(printable(o.type, 64))} is not an audit event type; use one of ${AUDIT_EVENT_TYPES.join(', ')}`);
  }
  if (o.user !== undefined && (o.user === '' || o.user.length > 256)) throw new UsageError('USAGE_BAD_USER', '--user: give a user name (1 to 256 characters)');
  if (!Number.isInteger(o.limit) || o.limit < 1 || o.limit > MAX_AUDIT_LIMIT) {
    throw new UsageError('USAGE_BAD_LIMIT', `--limit: must be a whole number from 1 to ${MAX_AUDIT_LIMIT}`);
  }
  return o;
}

/**
 * Prints the events matching `opts`, oldest first: JSON (an array of the
 * stored events) or one line per event (time, server, event, user, the rest
 * as key=value), every field escaped before it reaches the terminal.
 * @throws StoreUnavailableError when the store cannot be read; UserError AUDIT_CORRUPT for an event that is not an event.
 */
export async function run(opts: AuditLsOptions, ctx: { store: StateBackend; clock: () => Date }, deps: Deps): Promise<void> {
  const since = opts.sinceSeconds === undefined ? undefined : new Date(ctx.clock().getTime() - opts.sinceSeconds * 1000);
  const events = await ctx.store.audit.query({
    ...(since ? { since } : {}),
    ...(opts.type !== undefined ? { type: opts.type } : {}),
    ...(opts.user !== undefined ? { user: opts.user } : {}),
    limit: opts.limit,
  });
  for (const e of events) {
    const r = v.safeParse(StoredEventSchema, e);
    if (!r.success) {
      throw new UsageError('AUDIT_CORRUPT', `the audit log in ${ctx.store.location} holds an entry that is not an event (${printable(JSON.stringify(e), 200)})`, {
        hint: 'restore the audit log from a backup or remove the damaged entry',
      });
    }
  }
  if (opts.format === 'json') {
    // C1 (an 8-bit CSI), line separators, bidi overrides and zero-width characters escaped too (terminalJson).
    deps.io.stdout.write(terminalJson(events) + '\n');
    return;
  }
  if (events.length === 0) {
    deps.io.stderr.write(`no audit events${describeFilter(opts)} in ${ctx.store.location}\n`);
    return;
  }
  for (const e of events) deps.io.stdout.write(formatEventLine(e) + '\n');
}

/** `TIME SERVER EVENT USER key=value ...`, each value escaped (util/printable) and cut at 200 characters. */
export function formatEventLine(e: StoredAuditEvent): string {
  const { seq: _seq, time, server_id, event, user, ...rest } = e;
  const fields = Object.entries(rest).map(([k, val]) => `${printable(k, 40)}=${printable(typeof val === 'string' ? val : JSON.stringify(val), 200)}`);
  return [printable(time, 40), printable(server_id || '-', 80), printable(event, 40), printable(typeof user === 'string' ? user : '-', 80), ...fields].join('  ');
}

function describeFilter(o: AuditLsOptions): string {
  const parts = [o.type && `of type ${o.type}`, o.user !== undefined && `for user ${printable(o.user, 80)}`, o.sinceSeconds !== undefined && `in the last ${o.sinceSeconds} s`].filter(Boolean);
  return parts.length ? ` ${parts.join(' ')}` : '';
}
