/**
 * The one signing path for certificates: `tctl auth sign` and the login flow
 * both come here, so roles, TTL caps and the audit trail cannot diverge.
 */
import { AuthError } from '../../errors.js';
import { CertRequest, fingerprintSha256, signCertificate, type Certificate, type PublicKey } from '../../sshcert/index.js';
import type { ServerConfig } from '../../config/index.js';
import { ROLES_EXTENSION } from '../../shared/wire-names.js';
import type { AuditLog } from './audit.js';
import type { CaKey, CaStore } from './ca.js';
import { certTtlSeconds, resolveAccess } from './roles.js';

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

export interface HostCertInput {
  /** Host names and addresses clients will type; the first is the key id. */
  names: string[];
  publicKey: PublicKey;
  ttlSeconds: number;
  via: string;
  /** The host CA key to sign with; default the active one. */
  signer?: CaKey;
}

/** Signs a host certificate for an OpenSSH node (sshd's HostCertificate). */
export function issueHostCertificate(input: HostCertInput, deps: IssuerDeps): Certificate {
  const req = new CertRequest({
    publicKey: input.publicKey,
    type: 'host',
    keyId: input.names[0] ?? '',
    principals: input.names,
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
