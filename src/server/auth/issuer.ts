/**
 * The one signing path for certificates: `tctl auth sign` and the login flow
 * both come here, so roles, TTL caps and the audit trail cannot diverge.
 */
import { isIP } from 'node:net';
import { AuthError } from '../../errors.js';
import { CertRequest, fingerprintSha256, signCertificate, type Certificate, type PublicKey } from '../../sshcert/index.js';
import type { ServerConfig } from '../../config/index.js';
import type { AuditLog } from './audit.js';
import type { CaKey, CaStore } from './ca.js';
import { certTtlSeconds, resolveAccess } from './roles.js';

/** The extension that carries a user's roles, comma-separated (PROTOCOL.certkeys: custom names are name@domain). */
export const ROLES_EXTENSION = 'roles@jumpgate.dev';

export interface IssuerDeps {
  config: ServerConfig;
  ca: CaStore;
  audit: AuditLog;
  clock: () => Date;
}

export interface UserCertInput {
  username: string;
  roles: string[];
  publicKey: PublicKey;
  /** What the client asked for; capped by the roles and auth.cert_ttl. */
  requestedTtlSeconds?: number;
  /** Who asked, for the audit log ("tctl", "login"). */
  via: string;
}

/** Signs a user certificate: principals = the logins the roles grant, key id = username. */
export function issueUserCertificate(input: UserCertInput, deps: IssuerDeps): Certificate {
  const access = resolveAccess(deps.config, input.username, input.roles);
  if (access.logins.length === 0) {
    throw new AuthError('ACCESS_NO_LOGINS', `the roles ${input.roles.join(', ')} grant ${input.username} no logins`, {
      hint: 'add logins to one of these roles in the server configuration',
    });
  }
  const ttlSeconds = certTtlSeconds(deps.config, access, input.requestedTtlSeconds);
  const req = new CertRequest({
    publicKey: input.publicKey,
    type: 'user',
    keyId: input.username,
    principals: access.logins,
    ttlSeconds,
    extensions: { ...access.extensions, [ROLES_EXTENSION]: access.roles.join(',') },
  });
  const cert = signCertificate(req, deps.ca.get('user').active, deps.clock());
  deps.audit.emit({
    event: 'cert.issued',
    cert_type: 'user',
    via: input.via,
    serial: cert.serial.toString(),
    key_id: cert.keyId,
    principals: cert.principals,
    roles: access.roles,
    valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
    key_fingerprint: fingerprintSha256(input.publicKey.blob),
  });
  return cert;
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
export function issueHostCertificate(input: HostCertInput, deps: IssuerDeps): Certificate {
  const principals = hostCertPrincipals(input.names, deps.config.clusterName, input.longForms === false ? { longForms: false } : {});
  const req = new CertRequest({
    publicKey: input.publicKey,
    type: 'host',
    keyId: principals[0] ?? '',
    principals,
    ttlSeconds: input.ttlSeconds,
  });
  const cert = signCertificate(req, input.signer ?? deps.ca.get('host').active, deps.clock());
  deps.audit.emit({
    event: 'cert.issued',
    cert_type: 'host',
    via: input.via,
    serial: cert.serial.toString(),
    key_id: cert.keyId,
    principals: cert.principals,
    valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
    key_fingerprint: fingerprintSha256(input.publicKey.blob),
  });
  return cert;
}
