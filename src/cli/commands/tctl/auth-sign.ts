import { encodeCertificateLine, encodeOpenSSHPrivateKey, generateKeyPair, type Certificate } from '../../../sshcert/index.js';
import { issueHostCertificate, issueUserCertificate } from '../../../server/auth/issuer.js';
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
  writeFileAtomic(opts.out, encodeOpenSSHPrivateKey(privateKey, cert.keyId), 0o600);
  writeFileAtomic(certPath, encodeCertificateLine(cert, cert.keyId) + '\n', 0o644);
  const until = new Date(Number(cert.validBefore) * 1000).toISOString();
  deps.io.stderr.write(
    `wrote ${opts.out} and ${certPath}: ${opts.kind} certificate for ${cert.principals.join(', ')}, valid until ${until}\n`,
  );
}
