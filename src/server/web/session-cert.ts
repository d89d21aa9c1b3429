/**
 * The per-session node certificate of a web terminal: principal = the one
 * login, key id `<user>/session/<session id>`, valid for minutes,
 * `source-address` = the proxy's address toward the node (PROTOCOL.certkeys).
 *
 * SEAM: the `recproxy` branch owns this signing path
 * (`server/auth/issuer.ts issueSessionCertificate(new SessionCertRequest(...))`);
 * this module has the same shape so that, once that branch is merged, it
 * shrinks to a re-export of it and the web terminal does not change.
 */
import { isIP } from 'node:net';
import { AuthError } from '../../errors.js';
import { CertRequest, fingerprintSha256, signCertificate, type Certificate, type PublicKey } from '../../sshcert/index.js';
import type { IssuerDeps } from '../auth/issuer.js';

/** Longest life of a per-session node certificate. */
export const MAX_SESSION_CERT_TTL_SECONDS = 10 * 60;

/** What a per-session certificate is made from; `check()` names the first rule it breaks. */
export class SessionCertRequest {
  readonly user: string;
  readonly login: string;
  readonly sessionId: string;
  readonly publicKey: PublicKey;
  readonly ttlSeconds: number;
  readonly sourceAddresses: string[];
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

  /** @throws AuthError SESSION_CERT_INVALID */
  check(): void {
    const bad = (m: string) => new AuthError('SESSION_CERT_INVALID', `cannot sign a session certificate: ${m}`);
    if (this.user === '') throw bad('no user');
    if (this.login === '') throw bad('no login');
    if (!/^[0-9a-f-]{36}$/.test(this.sessionId)) throw bad(`session id ${JSON.stringify(this.sessionId)} is not a UUID`);
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds <= 0 || this.ttlSeconds > MAX_SESSION_CERT_TTL_SECONDS) throw bad(`TTL ${this.ttlSeconds} s is outside 1..${MAX_SESSION_CERT_TTL_SECONDS} s`);
    if (this.sourceAddresses.length === 0) throw bad('no source address: the certificate must work only from the proxy');
    for (const a of this.sourceAddresses) if (isIP(a) === 0) throw bad(`source address ${JSON.stringify(a)} is not an IP address`);
    for (const e of this.extensions) if (!e.startsWith('permit-')) throw bad(`extension ${JSON.stringify(e)} is not a permit-* flag`);
  }
}

/** Signs a per-session certificate (see the top of this file); `cert.issued` is durable before it resolves. */
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
    via: 'web',
    serial: cert.serial.toString(),
    user: input.user,
    principals: cert.principals,
    valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
    key_fingerprint: fingerprintSha256(input.publicKey.blob),
  });
  return cert;
}
