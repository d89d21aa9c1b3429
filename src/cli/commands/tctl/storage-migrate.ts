/**
 * `tctl storage migrate --to=FILE`: copies the cluster state of the store
 * named by --config (usually `type: dir`) into the store named by FILE
 * (usually `type: postgres`): both CAs with every key and its trust window,
 * the items (tokens, locks, ...), the recordings' bytes, and the audit log in its order. Pending
 * logins are not copied: they live minutes and are tied to the old process.
 *
 * Safe to run again: a CA already in the target with the same keys is left
 * as it is; a DIFFERENT CA there is never overwritten (CA_CONFLICT); the
 * audit log is copied only into an empty one (or resumed where a stopped run
 * left off). Run it before the proxies on
 * the new store start taking logins.
 */
import { hostname } from 'node:os';
import { UserError } from '../../../errors.js';
import { fingerprintSha256, parseOpenSSHPrivateKey } from '../../../sshcert/index.js';
import { CA_TYPES, ITEM_KINDS, type CaType, type StateBackend, type StoredCa } from '../../../server/storage/backend.js';
import type { Deps } from '../../deps.js';
import { MAX_AUDIT_QUERY } from '../../../server/storage/postgres/index.js';


export interface MigrateResult {
  cas: { type: CaType; outcome: 'copied' | 'already-there'; fingerprints: { id: string; fingerprint: string; active: boolean; trustedUntil?: string }[] }[];
  items: number;
  /** Recordings whose bytes were copied (or completed, after a stopped run). */
  recordings: number;
  audit: { copied: number; skipped: number };
}

/** The SHA256 fingerprints of a stored CA's keys (active first, as stored). */
export function caFingerprints(ca: StoredCa): MigrateResult['cas'][number]['fingerprints'] {
  return ca.keys.map((k) => ({
    id: k.id,
    fingerprint: fingerprintSha256(parseOpenSSHPrivateKey(k.privateKeyPem).publicKey.blob),
    active: k.id === ca.active,
    ...(k.trustedUntil ? { trustedUntil: k.trustedUntil } : {}),
  }));
}

/**
 * Copies `from` into `to` (see the module comment) and reads the target
 * back: the CA fingerprints must be the same in both, or it throws
 * MIGRATE_VERIFY_FAILED.
 * @throws UserError CA_CONFLICT when the target holds a different CA; StoreUnavailableError from either store.
 */
export async function migrateStore(from: StateBackend, to: StateBackend, progress: (line: string) => void): Promise<MigrateResult> {
  const result: MigrateResult = { cas: [], items: 0, recordings: 0, audit: { copied: 0, skipped: 0 } };
  for (const type of CA_TYPES) {
    const src = await from.ca.read(type);
    if (!src) {
      progress(`${type} CA: none in ${from.location} (it is created on first use); nothing to copy`);
      continue;
    }
    const want = caFingerprints(src);
    const existing = await to.ca.read(type);
    let outcome: 'copied' | 'already-there';
    if (existing) {
      const have = caFingerprints(existing);
      if (!sameKeys(want, have) || existing.active !== src.active) {
        throw new UserError('CA_CONFLICT', `${to.location} already holds a different ${type} CA (keys ${have.map((k) => k.fingerprint).join(', ')}); nothing was overwritten`, {
          hint: 'migrate into an empty database; a CA that nodes and clients trust is never replaced',
        });
      }
      outcome = 'already-there';
    } else {
      const active = src.keys.find((k) => k.id === src.active)!;
      await to.ca.create(type, active);
      await to.ca.update(type, () => ({ type, active: src.active, keys: src.keys }));
      outcome = 'copied';
    }
    const after = await to.ca.read(type);
    if (!after || !sameKeys(want, caFingerprints(after)) || after.active !== src.active || !sameWindows(src, after)) {
      throw new UserError('MIGRATE_VERIFY_FAILED', `the ${type} CA read back from ${to.location} differs from ${from.location}`, { hint: 'run the migration again; report it if it repeats' });
    }
    result.cas.push({ type, outcome, fingerprints: want });
    progress(`${type} CA: ${outcome === 'copied' ? 'copied' : 'already there, the same keys'} (${want.length} key${want.length === 1 ? '' : 's'})`);
  }

  for (const kind of ITEM_KINDS) {
    for (const item of await from.items.list(kind)) {
      if (await to.items.create(kind, item.key, item.value, item.expiresAt)) result.items++;
    }
  }
  progress(`items (tokens, locks, nodes, ...): ${result.items} copied`);

  // The bytes behind the recording items: copied unless the target has them (the same recordings.dir, or an
  // earlier run); a target that holds a shorter prefix (a stopped run) is completed from where it stopped.
  for (const item of await from.items.list<{ name?: unknown }>('recording')) {
    const name = item.value?.name;
    if (typeof name !== 'string') continue;
    const have = (await to.recordings.size(name)) ?? 0;
    const want = (await from.recordings.size(name)) ?? 0;
    if (have >= want) continue;
    for await (const chunk of from.recordings.read(name, have)) await to.recordings.append(name, chunk);
    result.recordings++;
  }
  progress(`recordings: ${result.recordings} copied`);

  const events = await from.audit.query({ limit: Number.MAX_SAFE_INTEGER });
  if (from.kind === 'postgres' && events.length >= MAX_AUDIT_QUERY) {
    throw new UserError('MIGRATE_AUDIT_TOO_LARGE', `the audit log in ${from.location} has ${MAX_AUDIT_QUERY} events or more; tctl storage migrate copies at most ${MAX_AUDIT_QUERY} from a database (nothing of the audit log was copied)`, {
      hint: 'copy the audit_events table with pg_dump --table=audit_events instead',
    });
  }
  // Resumable: a run that stopped part way left a prefix of the log in the target; copy from where it stopped.
  const already = await to.audit.query({ limit: Number.MAX_SAFE_INTEGER });
  const same = (a: Record<string, unknown>, b: Record<string, unknown>) => a['event'] === b['event'] && new Date(String(a['time'])).getTime() === new Date(String(b['time'])).getTime();
  const isPrefix = already.length <= events.length && already.every((e, i) => same(e, events[i]!));
  if (!isPrefix) {
    result.audit.skipped = events.length;
    progress(`audit log: ${to.location} already holds other events; ${events.length} events NOT copied (the audit log is copied only into an empty one, or one a stopped migration began)`);
  } else {
    if (already.length > 0) progress(`audit log: ${already.length} events already copied by an earlier run; going on from there`);
    const fallbackId = `migrated:${hostname()}`;
    for (const e of events.slice(already.length)) {
      const { seq: _seq, ...event } = e;
      const stamped: Record<string, unknown> & { time: string; server_id: string; event: string } = { ...event, server_id: typeof event.server_id === 'string' && event.server_id !== '' ? event.server_id : fallbackId };
      await to.audit.append(JSON.stringify(stamped), {
        time: stamped.time,
        server_id: stamped.server_id,
        event: stamped.event,
        ...(typeof stamped['user'] === 'string' ? { user: stamped['user'] } : {}),
      });
      result.audit.copied++;
    }
    result.audit.skipped = 0;
    progress(`audit log: ${result.audit.copied} events copied in order${already.length ? ` (${already.length + result.audit.copied} in all)` : ''}`);
  }
  return result;
}

function sameKeys(a: { id: string; fingerprint: string }[], b: { id: string; fingerprint: string }[]): boolean {
  const key = (x: { id: string; fingerprint: string }[]) => x.map((k) => `${k.id} ${k.fingerprint}`).sort().join('\n');
  return key(a) === key(b);
}

function sameWindows(a: StoredCa, b: StoredCa): boolean {
  const w = (c: StoredCa) => c.keys.map((k) => `${k.id} ${k.created} ${k.trustedUntil ?? ''}`).sort().join('\n');
  const norm = (c: StoredCa) => ({ ...c, keys: c.keys.map((k) => ({ ...k, created: iso(k.created), ...(k.trustedUntil ? { trustedUntil: iso(k.trustedUntil) } : {}) })) });
  return w(norm(a)) === w(norm(b));
}

/** Times compared as instants: a database may give them back in another ISO spelling. */
function iso(t: string): string {
  return new Date(t).toISOString();
}

/** Prints the result: one line per CA key with its fingerprint (stdout: what an admin compares), the summary on stderr. */
export function printMigrateResult(r: MigrateResult, to: StateBackend, deps: Deps): void {
  for (const ca of r.cas) {
    for (const k of ca.fingerprints) {
      deps.io.stdout.write(`${ca.type}\t${k.fingerprint}\t${k.active ? 'active' : `trusted until ${k.trustedUntil ?? '?'}`}\n`);
    }
  }
  deps.io.stderr.write(`migrated into ${to.location}: CA fingerprints verified the same in both stores.\n`);
}
