/**
 * The revocation list: which certificates the locks cover, as an OpenSSH KRL
 * (sshcert/krl.ts, PROTOCOL.krl) for sshd's `RevokedKeys` on nodes reached
 * directly. `tctl auth export --type=krl` writes it; the node agent serves it
 * (`currentKrl`), and nodes refresh `revoked.krl` from it.
 *
 * The server remembers what it issued: one `issued_cert` item per user
 * certificate (`recordIssued`, called by the issuer before the certificate
 * leaves), keyed by serial, expiring with the certificate (the store drops
 * it then), holding only what a lock is matched against: serial, key id,
 * principals, roles, validity, the signing CA key and the key's fingerprint.
 *
 * The records are capped at MAX_ISSUED_CERTS live ones in the cluster
 * (otherwise bounded only by login rate x cert_ttl): when full, expired
 * records are removed first; if it is still full the certificate is NOT
 * issued (IssuedCertsFullError, audited as the login's failure). A record is
 * never silently dropped: a certificate not recorded is one a role, login or
 * cert lock cannot revoke by serial (user locks still can: KEY_ID).
 * So that one user logging in in a loop cannot fill the cap and lock everyone
 * else out, once the cluster holds half the cap a user who already holds
 * MAX_ISSUED_CERTS_PER_USER live certificates is refused
 * (IssuedCertsUserFullError); below half nobody is short of room, so the
 * records are not read per user there.
 *
 * What each lock puts in the KRL:
 *   user=U   KEY_ID U in a section of every trusted user CA key (covers
 *            certificates another proxy or tctl issued, even unrecorded ones),
 *            and the serials of U's recorded certificates
 *   role=R   the serials of recorded certificates carrying role R
 *   login=L  the serials of recorded certificates issued BEFORE the lock whose
 *            principals include L. A KRL revokes whole certificates, never one
 *            principal, so such a certificate loses direct access to every
 *            login; a new login while the lock holds gets a certificate
 *            without L (issuer: `lockedLogins`), which the KRL leaves alone.
 *   cert=S   serial S under its CA key
 *   node=N   nothing: a KRL cannot say "not on this node"; node locks hold at
 *            the proxy only (README "Locks").
 */
import * as v from 'valibot';
import { UserError } from '../../errors.js';
import { printable } from '../../util/printable.js';
import { encodeKrl, fingerprintSha256, type Certificate, type KrlCertificates } from '../../sshcert/index.js';
import type { StateBackend } from '../storage/backend.js';
import type { CaStore } from './ca.js';
import { activeLocks, type Lock } from './locks.js';

/** What is kept of an issued user certificate (`issued_cert` item value). */
export const IssuedCertSchema = v.strictObject({
  serial: v.pipe(v.string(), v.regex(/^[0-9]{1,20}$/)),
  key_id: v.string(),
  principals: v.array(v.string()),
  roles: v.array(v.string()),
  /** Seconds since the epoch. */
  valid_after: v.number(),
  valid_before: v.number(),
  /** The signing CA key's SSH wire blob, base64. */
  ca_key: v.pipe(v.string(), v.base64()),
  key_fingerprint: v.string(),
});
export type IssuedCert = v.InferOutput<typeof IssuedCertSchema>;

/** Live `issued_cert` records the cluster keeps at most (about 300 bytes each: some 30 MB at the cap). */
export const MAX_ISSUED_CERTS = 100_000;

/**
 * Live certificates one user (key id) may hold once the cluster holds half of
 * MAX_ISSUED_CERTS: a person with a few devices holds a handful; 1,000 leaves
 * room for a bot logging in every minute with a 15-minute TTL, and one user can
 * then take at most half the cap (the other half needs 50 such users).
 */
export const MAX_ISSUED_CERTS_PER_USER = 1_000;

/** One user holds MAX_ISSUED_CERTS_PER_USER live certificates while the cluster is past half its cap. */
export class IssuedCertsUserFullError extends UserError {
  constructor(user: string, held: number, perUser: number, half: number) {
    super(
      'ISSUED_CERTS_USER_FULL',
      `${printable(user)} holds ${held} unexpired certificates (at most ${perUser} each once the cluster holds ${half}), so no certificate was issued`,
      { hint: 'records leave as their certificates expire; look for a client of this user logging in in a loop (tctl audit ls --type=cert.issued), or lower auth.cert_ttl' },
    );
  }
}

/** The issued-certificate records are at their cap: no certificate is issued until some expire. */
export class IssuedCertsFullError extends UserError {
  constructor(max: number) {
    super('ISSUED_CERTS_FULL', `the cluster holds ${max} unexpired certificate records (the cap), so no certificate was issued`, {
      hint: 'records leave as their certificates expire; lower auth.cert_ttl, or look for a client logging in in a loop (tctl audit ls --type=cert.issued)',
    });
  }
}

/**
 * Records an issued user certificate (durable when it resolves) so locks can
 * revoke it by serial. Expires from the store with the certificate. At `max`
 * live records (MAX_ISSUED_CERTS) expired ones are removed first (`list`);
 * still full, it refuses rather than drop a record. From half of `max` on, the
 * certificate's key id may hold at most `perUser` live records
 * (MAX_ISSUED_CERTS_PER_USER), so one user cannot take the whole cap.
 * @throws IssuedCertsFullError; IssuedCertsUserFullError; StoreUnavailableError.
 */
export async function recordIssued(store: StateBackend, cert: Certificate, roles: readonly string[], max = MAX_ISSUED_CERTS, perUser = MAX_ISSUED_CERTS_PER_USER): Promise<void> {
  // count() reads no record (it may include expired ones); only past half the cap are the records listed, which removes the expired.
  const half = Math.ceil(max / 2);
  if ((await store.items.count('issued_cert')) >= half) {
    const live = await store.items.list<{ key_id?: unknown }>('issued_cert');
    if (live.length >= max) throw new IssuedCertsFullError(max);
    if (live.length >= half) {
      const held = live.filter((i) => i.value?.key_id === cert.keyId).length;
      if (held >= perUser) throw new IssuedCertsUserFullError(cert.keyId, held, perUser, half);
    }
  }
  const record: IssuedCert = {
    serial: cert.serial.toString(),
    key_id: cert.keyId,
    principals: [...cert.principals],
    roles: [...roles],
    valid_after: Number(cert.validAfter),
    valid_before: Number(cert.validBefore),
    ca_key: cert.signatureKey.blob.toString('base64'),
    key_fingerprint: fingerprintSha256(cert.key.blob),
  };
  await store.items.put('issued_cert', record.serial, record, Number(cert.validBefore) * 1000);
}

/** The recorded, unexpired user certificates (malformed items skipped). */
export async function issuedCerts(store: StateBackend): Promise<IssuedCert[]> {
  const out: IssuedCert[] = [];
  for (const item of await store.items.list<unknown>('issued_cert')) {
    const parsed = v.safeParse(IssuedCertSchema, item.value);
    if (parsed.success) out.push(parsed.output);
  }
  return out;
}

/** Whether `lock` covers the recorded certificate `c` (the rules at the top of this file). */
export function lockCoversCert(lock: Lock, c: IssuedCert): boolean {
  switch (lock.target) {
    case 'user':
      return c.key_id === lock.value;
    case 'role':
      return c.roles.includes(lock.value);
    case 'login':
      return c.principals.includes(lock.value) && c.valid_after * 1000 <= Date.parse(lock.created);
    case 'cert':
      return c.serial === lock.value;
    case 'node':
      return false;
  }
}

/**
 * The KRL of the locks in force at `now` (PROTOCOL.krl): per CA key the
 * serials of the covered certificates (unexpired), plus KEY_ID entries for
 * user locks under every trusted user CA key. `version` is the generation
 * time in milliseconds (it only grows), `generated_date` in seconds.
 * @throws StoreUnavailableError.
 */
export async function buildKrl(deps: { store: StateBackend; ca: CaStore; now: Date; warn?: (line: string) => void }): Promise<Buffer> {
  const locks = await activeLocks(deps.store, deps.now, deps.warn);
  const sections = new Map<string, KrlCertificates>();
  const section = (caKeyB64: string): KrlCertificates => {
    let s = sections.get(caKeyB64);
    if (!s) sections.set(caKeyB64, (s = { caKey: Buffer.from(caKeyB64, 'base64'), serials: [], keyIds: [] }));
    return s;
  };
  const userLocks = locks.filter((l) => l.target === 'user');
  if (userLocks.length > 0) {
    for (const k of deps.ca.get('user').trusted) {
      const s = section(k.publicKey.blob.toString('base64'));
      for (const l of userLocks) s.keyIds.push(l.value);
    }
  }
  const nowSec = deps.now.getTime() / 1000;
  const covering = locks.filter((l) => l.target !== 'node');
  if (covering.length > 0) {
    for (const c of await issuedCerts(deps.store)) {
      if (c.valid_before <= nowSec) continue;
      if (covering.some((l) => lockCoversCert(l, c))) section(c.ca_key).serials.push(BigInt(c.serial));
    }
  }
  // A cert lock for a certificate not recorded here (issued before this version): its serial under the CA it named.
  for (const l of locks) {
    if (l.target === 'cert' && l.ca_key && BigInt(l.value) > 0n) section(l.ca_key).serials.push(BigInt(l.value));
  }
  return encodeKrl({
    version: BigInt(deps.now.getTime()),
    generatedDate: BigInt(Math.floor(nowSec)),
    comment: 'jumpgate locks',
    certificates: [...sections.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, s]) => s),
    explicitKeys: [],
    sha256: [],
  });
}

/**
 * The cluster's current KRL, for the node agent's endpoint and `tctl auth
 * export --type=krl`: `buildKrl` with the runtime's store, CAs and clock.
 */
export function currentKrl(rt: { store: StateBackend; ca: CaStore; clock: () => Date; log?: { warn(line: string): void } }): Promise<Uint8Array> {
  return buildKrl({ store: rt.store, ca: rt.ca, now: rt.clock(), ...(rt.log ? { warn: (l: string) => rt.log!.warn(l) } : {}) });
}
