import { encodeCertificateLine, encodeOpenSSHPrivateKey, generateKeyPair, type Certificate } from '../../../sshcert/index.js';
import { issueHostCertificate, issueUserCertificate } from '../../../server/auth/issuer.js';
import { clientCertificateFor } from '../../../server/auth/login-answer.js';
import { writeFileAtomic } from '../../../util/atomic-write.js';
import type { Deps } from '../../deps.js';
import type { ServerContext } from '../../server-context.js';

/** Host certificates live long: nodes are re-signed by the admin, not daily. */
export const DEFAULT_HOST_CERT_TTL_SECONDS = 365 * 24 * 3600;

export type AuthSignOptions =
  | { kind: 'host'; names: string[]; out: string; ttlSeconds?: number }
  | { kind: 'user'; user: string; roles: string[]; out: string; ttlSeconds?: number };

/**
 * Makes a new key pair and signs it: writes OUT (private key, 0600) and
 * OUT-cert.pub, the pair that sshd's HostKey/HostCertificate or `ssh -i` want.
 * A user certificate also gets OUT-x509.pem (0600): the X.509 client
 * certificate for the same key and identity that a login gives tsh
 * (x509-ca.ts), for automation that takes the TLS route on the web port
 * (mutual TLS with ALPN jumpgate-ssh/1, as tsh does).
 */
export async function run(opts: AuthSignOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  const { privateKey, publicKey } = generateKeyPair('ed25519');
  let cert: Certificate;
  if (opts.kind === 'host') {
    cert = await issueHostCertificate(
      { names: opts.names, publicKey, ttlSeconds: opts.ttlSeconds ?? DEFAULT_HOST_CERT_TTL_SECONDS, via: 'tctl' },
      ctx,
    );
  } else {
    cert = await issueUserCertificate(
      { username: opts.user, roles: opts.roles, publicKey, requestedTtlSeconds: opts.ttlSeconds, via: 'tctl' },
      ctx,
    );
  }
  const certPath = `${opts.out}-cert.pub`;
  const x509 = opts.kind === 'user' ? clientCertificateFor(ctx.ca, ctx.config.clusterName, cert) : undefined;
  const x509Path = `${opts.out}-x509.pem`;
  writeFileAtomic(opts.out, encodeOpenSSHPrivateKey(privateKey, cert.keyId), 0o600);
  writeFileAtomic(certPath, encodeCertificateLine(cert, cert.keyId) + '\n', 0o644);
  if (x509 !== undefined) writeFileAtomic(x509Path, x509, 0o600);
  const until = new Date(Number(cert.validBefore) * 1000).toISOString();
  const wrote = x509 !== undefined ? `${opts.out}, ${certPath} and ${x509Path} (X.509 client certificate, same key)` : `${opts.out} and ${certPath}`;
  deps.io.stderr.write(`wrote ${wrote}: ${opts.kind} certificate for ${cert.principals.join(', ')}, valid until ${until}\n`);
}
