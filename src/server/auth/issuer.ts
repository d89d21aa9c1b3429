/**
 * The one signing path for certificates: `tctl auth sign` and the login flow
 * both come here, so roles, TTL caps and the audit trail cannot diverge.
 */
import { isIP } from 'node:net';
import { AuthError } from '../../errors.js';
import { CertRequest, fingerprintSha256, signCertificate, type Certificate, type PublicKey } from '../../sshcert/index.js';
// identity.ts is not re-exported by sshcert/index.ts: its valibot schemas would land in tsh's bundle.
import { encodeIdentity, type UserIdentity } from '../../sshcert/identity.js';
import type { ServerConfig } from '../../config/index.js';
import { ROLES_EXTENSION } from '../../shared/wire-names.js';
import type { StateBackend } from '../storage/backend.js';
import type { AuditLog } from './audit.js';
import type { CaKey, CaStore } from './ca.js';
import { activeLocks, findLock, lockedMessage, type Lock } from './locks.js';
import { recordIssued } from './revocation.js';
import { certTtlSeconds, resolveAccess, type Access } from './roles.js';

/** The roles extension (shared/wire-names.ts), re-exported for the issuer's callers. */
export { ROLES_EXTENSION };

export interface IssuerDeps {
  config: ServerConfig;
  ca: CaStore;
  audit: AuditLog;
  clock: () => Date;
  /** The state store: the locks are read from it and every user certificate is recorded in it (auth/revocation.ts). */
  store: StateBackend;
}

/** A login refused by a lock (auth/locks.ts): exit 4, the lock's message for the user. */
export class LockedError extends AuthError {
  constructor(readonly lock: Lock) {
    super('ACCESS_LOCKED', lockedMessage(lock), { hint: 'ask your administrator; `tctl lock ls` shows the locks, `tctl lock rm ID` lifts one' });
  }
}

export interface UserCertInput {
  username: string;
  roles: string[];
  /**
   * The IdP's claims (ID token merged with userinfo), for `{{external.CLAIM}}`
   * login templates; absent for tctl, where such templates grant nothing.
   */
  claims?: Record<string, unknown>;
  publicKey: PublicKey;
  /** What the client asked for; capped by the roles and auth.cert_ttl. */
  requestedTtlSeconds?: number;
  /** Who asked, for the audit log ("tctl", "login"). */
  via: string;
}

/** What one user signing produced: the certificate and the access it was signed from. */
export interface IssuedUserCertificate {
  cert: Certificate;
  /** The one resolution of the roles (with the claims) that chose the principals, extensions and TTL. */
  access: Access;
  /** What the certificate carries, as the proxy will decode it (sshcert/identity.ts). */
  identity: UserIdentity;
}

/**
 * Signs a user certificate: resolves the roles ONCE, with the claims
 * (`resolveAccess`), and that one `Access` gives the principals (the logins),
 * the roles and traits extensions, the permit-* flags and the TTL cap; the
 * caller gets the same `Access` back for anything else it decides (the
 * login's answer, the nodes it lists). Key id = username. Locks
 * (auth/locks.ts) are checked first: a user or role lock refuses, a login
 * lock leaves that login out. The certificate is recorded for the revocation
 * list (`issued_cert`) and `cert.issued` is stored durably in the audit log
 * before the promise resolves.
 * @throws (rejects) LockedError ACCESS_LOCKED; StoreUnavailableError; AuditUnavailableError when it cannot be; UserError ROLE_UNKNOWN, AuthError ACCESS_NO_ROLES / ACCESS_NO_LOGINS /
 *   ROLE_BAD_LOGIN / ROLE_BAD_CLAIM / ACCESS_TOO_MANY_LOGINS (roles.ts), UserError TTL_INVALID.
 */
export async function issueUser(input: UserCertInput, deps: IssuerDeps): Promise<IssuedUserCertificate> {
  const access = resolveAccess(deps.config, input.username, input.roles, input.claims);
  const ttlSeconds = certTtlSeconds(deps.config, access, input.requestedTtlSeconds);
  // Locks are read fresh from the store (tctl has no lock service): a user or role lock refuses, a login lock removes that login.
  const now = deps.clock();
  const locks = await activeLocks(deps.store, now);
  const roles = [...new Set([...input.roles, ...access.roles])];
  const lock = findLock(
    locks.filter((l) => l.target === 'user' || l.target === 'role'),
    { user: input.username, roles },
    now,
  );
  if (lock) throw new LockedError(lock);
  const loginLocks = locks.filter((l) => l.target === 'login');
  const logins = access.logins.filter((p) => !loginLocks.some((l) => l.value === p));
  if (logins.length === 0) throw new LockedError(loginLocks.find((l) => access.logins.includes(l.value))!);
  const identity: UserIdentity = {
    username: input.username,
    principals: logins,
    roles: access.roles,
    traits: access.traits,
    permits: Object.keys(access.extensions).sort(),
  };
  const req = new CertRequest({ publicKey: input.publicKey, type: 'user', ttlSeconds, ...encodeIdentity(identity) });
  const cert = signCertificate(req, deps.ca.get('user').active, deps.clock());
  // Remembered (serial, key id, logins, roles) so a lock can put it in the revocation list.
  await recordIssued(deps.store, cert, access.roles);
  // cert.issued is durable before the certificate leaves (AuditUnavailableError otherwise).
  await deps.audit.emit({
    event: 'cert.issued',
    cert_type: 'user',
    via: input.via,
    serial: cert.serial.toString(),
    user: cert.keyId,
    principals: cert.principals,
    roles: access.roles,
    valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
    key_fingerprint: fingerprintSha256(input.publicKey.blob),
  });
  return { cert, access, identity };
}

/** `issueUser` for callers that need only the certificate (tctl auth sign). */
export async function issueUserCertificate(input: UserCertInput, deps: IssuerDeps): Promise<Certificate> {
  return (await issueUser(input, deps)).cert;
}

/**
 * The principals of a node's host certificate: every name OpenSSH will
 * check. ssh lower-cases the host name before it compares it with the
 * certificate's principals (case-sensitively, sshkey_cert_check_authority),
 * so every principal is lower-cased; and every name that is not an IP
 * address and not already under the cluster's domain also gets its long form
 * `<name>.<cluster>`, the name the ssh_config block's `*.<cluster>` pattern
 * routes. Order kept (the first name is the key id), duplicates dropped.
 * Example: (["WebServer01", "10.0.0.5"], "example.test") →
 * ["webserver01", "webserver01.example.test", "10.0.0.5"].
 */
export function hostCertPrincipals(names: string[], clusterName: string, opts: { longForms?: boolean } = {}): string[] {
  const cluster = clusterName.toLowerCase().replace(/\.$/, '');
  const out: string[] = [];
  const add = (p: string) => {
    if (!out.includes(p)) out.push(p);
  };
  for (const raw of names) {
    const name = raw.trim().toLowerCase().replace(/\.$/, '');
    if (name === '') continue;
    add(name);
    const literal = isIP(name.replace(/^\[(.*)\]$/, '$1')) !== 0;
    const wildcard = /[*?]/.test(name);
    if (opts.longForms !== false && !literal && !wildcard && cluster !== '' && name !== cluster && !name.endsWith(`.${cluster}`)) add(`${name}.${cluster}`);
  }
  return out;
}

export interface HostCertInput {
  /**
   * Host names and addresses clients will type; the first is the key id.
   * Normalised by hostCertPrincipals (lower case, plus `<name>.<cluster>`).
   */
  names: string[];
  publicKey: PublicKey;
  ttlSeconds: number;
  via: string;
  /** The host CA key to sign with; default the active one. */
  signer?: CaKey;
  /** Add `<name>.<cluster>` forms (default true: a node; the proxy's own certificate passes false). */
  longForms?: boolean;
}

/**
 * Signs a host certificate for an OpenSSH node (sshd's HostCertificate):
 * principals = hostCertPrincipals(names, cluster), key id = the first of them.
 * The proxy's own certificate (ssh-proxy.ts) goes through here too, without long forms.
 */
export async function issueHostCertificate(input: HostCertInput, deps: Omit<IssuerDeps, 'store'>): Promise<Certificate> {
  const principals = hostCertPrincipals(input.names, deps.config.clusterName, input.longForms === false ? { longForms: false } : {});
  const req = new CertRequest({
    publicKey: input.publicKey,
    type: 'host',
    keyId: principals[0] ?? '',
    principals,
    ttlSeconds: input.ttlSeconds,
  });
  const cert = signCertificate(req, input.signer ?? deps.ca.get('host').active, deps.clock());
  await deps.audit.emit({
    event: 'cert.issued',
    cert_type: 'host',
    via: input.via,
    serial: cert.serial.toString(),
    host: cert.keyId,
    principals: cert.principals,
    valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
    key_fingerprint: fingerprintSha256(input.publicKey.blob),
  });
  return cert;
}

/** Longest life of a per-session node certificate (the recording proxy's hop to the node). */
export const MAX_SESSION_CERT_TTL_SECONDS = 10 * 60;

/**
 * What the recording proxy asks for when it opens its own session to a node
 * for a user (server/proxy/recording-proxy.ts). Checks itself (`check()`):
 * one login, a session id, a TTL of at most MAX_SESSION_CERT_TTL_SECONDS,
 * at least one source address, only permit-* extensions.
 */
export class SessionCertRequest {
  /** The user (the key id of the user's verified certificate). */
  readonly user: string;
  /** The one Unix login of this session (must be a principal of the user's certificate). */
  readonly login: string;
  readonly sessionId: string;
  /** The session's ephemeral key (made for this session, never stored). */
  readonly publicKey: PublicKey;
  readonly ttlSeconds: number;
  /** The proxy's address(es) toward the node: the `source-address` critical option. */
  readonly sourceAddresses: string[];
  /** The permit-* extensions the user's roles allow (flags). */
  readonly extensions: string[];

  constructor(f: { user: string; login: string; sessionId: string; publicKey: PublicKey; ttlSeconds: number; sourceAddresses: string[]; extensions: string[] }) {
    this.user = f.user;
    this.login = f.login;
    this.sessionId = f.sessionId;
    this.publicKey = f.publicKey;
    this.ttlSeconds = f.ttlSeconds;
    this.sourceAddresses = [...f.sourceAddresses];
    this.extensions = [...new Set(f.extensions)].sort();
  }

  /** Throws AuthError SESSION_CERT_INVALID naming the first rule the request breaks. */
  check(): void {
    const bad = (m: string) => new AuthError('SESSION_CERT_INVALID', `cannot sign a session certificate: ${m}`);
    if (this.user === '') throw bad('no user');
    if (this.login === '') throw bad('no login');
    if (!/^[0-9a-f-]{36}$/.test(this.sessionId)) throw bad(`session id ${JSON.stringify(this.sessionId)} is not a UUID`);
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds <= 0 || this.ttlSeconds > MAX_SESSION_CERT_TTL_SECONDS) {
      throw bad(`TTL ${this.ttlSeconds} s is outside 1..${MAX_SESSION_CERT_TTL_SECONDS} s`);
    }
    if (this.sourceAddresses.length === 0) throw bad('no source address: the certificate must work only from the proxy');
    for (const a of this.sourceAddresses) if (isIP(a) === 0) throw bad(`source address ${JSON.stringify(a)} is not an IP address`);
    for (const e of this.extensions) if (!e.startsWith('permit-')) throw bad(`extension ${JSON.stringify(e)} is not a permit-* flag`);
  }
}

/**
 * Signs the per-session certificate the recording proxy presents to a node
 * (PROTOCOL.certkeys user certificate): principal = the session's login only,
 * key id `<user>/session/<session id>` (sshd logs it: "ID ..."), valid for
 * `ttlSeconds` (minutes), critical option `source-address` = the proxy's
 * addresses toward the node, and only the permit-* extensions given (the
 * user's roles allow them). Audited as `cert.issued` (via `session`, with
 * `session_id`), durable before it resolves.
 * @throws AuthError SESSION_CERT_INVALID (a bad request); rejects with AuditUnavailableError when the event cannot be stored.
 */
export async function issueSessionCertificate(input: SessionCertRequest, deps: IssuerDeps): Promise<Certificate> {
  input.check();
  const req = new CertRequest({
    publicKey: input.publicKey,
    type: 'user',
    keyId: `${input.user}/session/${input.sessionId}`,
    principals: [input.login],
    ttlSeconds: input.ttlSeconds,
    criticalOptions: { 'source-address': input.sourceAddresses.join(',') },
    extensions: Object.fromEntries(input.extensions.map((e) => [e, ''])),
  });
  const cert = signCertificate(req, deps.ca.get('user').active, deps.clock());
  await deps.audit.emit({
    event: 'cert.issued',
    cert_type: 'user',
    via: 'session',
    serial: cert.serial.toString(),
    user: input.user,
    principals: cert.principals,
    session_id: input.sessionId,
    valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
    key_fingerprint: fingerprintSha256(input.publicKey.blob),
  });
  return cert;
}
