import { verify as cryptoVerify } from 'node:crypto';
import type { PublicKeyAuthContext } from 'ssh2';
import {
  CertError,
  curveByAlgorithm,
  fingerprintSha256,
  parseCertificate,
  verifyCertificate,
  type Certificate,
  type PublicKey,
} from '../sshcert/index.js';
import { assertSsh2Patched } from './patch.js';

/** What `hostCertVerifier` checks a server's host key against. */
export interface HostCertVerifierOptions {
  /** The host CAs trusted now; read on every key exchange, so a CA rotation applies to the next connection. */
  trustedHostCAs: () => PublicKey[];
  /** The name the user connects to: it must be among the certificate's principals (wildcards allowed, as in OpenSSH). */
  hostname: string;
  now: () => Date;
  /**
   * Seconds a certificate may start in this machine's future and still be
   * accepted (a client clock that is behind; tsh's TSH_CLOCK_LEEWAY). Expiry
   * is never stretched. Default 0.
   */
  notBeforeLeewaySeconds?: number;
}

/**
 * An ssh2 `hostVerifier` that remembers why it refused. ssh2 reports only
 * "Host denied (verification failed)"; print `error.message` instead.
 */
export interface HostCertVerifier {
  (key: Buffer): boolean;
  /** Why the last host key was refused (undefined while none was). */
  readonly error: CertError | undefined;
  /** The host certificate accepted in the first key exchange. */
  readonly certificate: Certificate | undefined;
}

/**
 * Builds the `hostVerifier` for one ssh2 Client connection: accepts only a
 * host certificate (PROTOCOL.certkeys) signed by a trusted host CA, valid
 * now, whose principals include `hostname`; refuses plain keys (no
 * trust-on-first-use). Every later key exchange (re-keying) must present
 * the same certified key, so one verifier belongs to one connection. Use with `algorithms.serverHostKey: clientHostKeyAlgorithms()`
 * so the server is asked for its certificate.
 */
export function hostCertVerifier(opts: HostCertVerifierOptions): HostCertVerifier {
  assertSsh2Patched();
  let error: CertError | undefined;
  let certificate: Certificate | undefined;
  const check = (key: Buffer): Certificate => {
    let cert: Certificate;
    try {
      cert = parseCertificate(key);
    } catch (err) {
      if (err instanceof CertError && err.code === 'CERT_MALFORMED' && !/-cert-v01@openssh\.com/.test(keyType(key))) {
        throw new CertError(
          'CERT_UNTRUSTED_CA',
          `${opts.hostname} presented a plain ${keyType(key)} host key (${fingerprintSha256(key)}), not a host certificate; ` +
            'Jumpgate trusts hosts only through the cluster host CA: have the administrator configure a host certificate (`tctl auth sign --host=...`)',
          { cause: err },
        );
      }
      throw err;
    }
    const now = opts.now();
    const nowSec = BigInt(Math.floor(now.getTime() / 1000));
    const leeway = BigInt(opts.notBeforeLeewaySeconds ?? 0);
    // Within the leeway a certificate that starts "later" is checked as of its start; its end is checked as usual.
    const at = cert.validAfter > nowSec && cert.validAfter <= nowSec + leeway && cert.validAfter < cert.validBefore ? new Date(Number(cert.validAfter) * 1000) : now;
    verifyCertificate(cert, { trustedCAs: opts.trustedHostCAs(), now: at, type: 'host', principal: opts.hostname });
    if (certificate && !certificate.key.blob.equals(cert.key.blob)) {
      throw new CertError('CERT_UNTRUSTED_CA', `${opts.hostname} changed its host key during re-keying; the connection is not trusted`);
    }
    return cert;
  };
  const verifier = (key: Buffer): boolean => {
    try {
      const cert = check(key);
      certificate ??= cert;
      error = undefined;
      return true;
    } catch (err) {
      error = err instanceof CertError ? err : new CertError('CERT_MALFORMED', `cannot check the host key: ${(err as Error).message}`, { cause: err });
      return false;
    }
  };
  Object.defineProperties(verifier, {
    error: { get: () => error, enumerable: true },
    certificate: { get: () => certificate, enumerable: true },
  });
  return verifier as HostCertVerifier;
}

function keyType(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const len = blob.readUInt32BE(0);
  return len <= 64 && blob.length >= 4 + len ? blob.toString('latin1', 4, 4 + len) : 'unknown';
}

/** What `verifyUserCertAuth` checks a client's certificate against. */
export interface UserCertAuthOptions {
  /** The user CAs trusted now (during a rotation: the new and the old one). */
  trustedUserCAs: PublicKey[];
  now: Date;
  /** The login that must be among the principals; default: the SSH username of the request (as sshd checks). */
  principal?: string;
  /**
   * Skip the principal check entirely: for a proxy that authenticates the
   * person and leaves the login to the node. Loud on purpose.
   */
  allowAnyPrincipal?: boolean;
  /**
   * The client's IP address (the TCP peer, as the server sees it): a
   * certificate's source-address is checked against it; without it such a
   * certificate is refused.
   */
  clientAddress?: string;
  /** How the user gets a new certificate, quoted in messages (e.g. `tsh login --proxy=jump.example.com:3080`). */
  loginCommand?: string;
}

/**
 * Checks a `publickey` authentication attempt on an ssh2 Server carrying a
 * user certificate: the key must be a certificate (PROTOCOL.certkeys) from a
 * trusted user CA, valid now, listing the login, with only critical options
 * that are enforced (source-address against `clientAddress`, force-command
 * left to the node's sshd; anything else refused); with a signature present,
 * the signature must verify over `ctx.blob` with the certified key
 * (RFC 4252 §7; RFC 8332 for RSA, SHA-1 refused). Returns the certificate,
 * or throws a CertError whose `code` says why (CERT_UNTRUSTED_CA,
 * CERT_EXPIRED, CERT_BAD_SIGNATURE, ...).
 *
 * Without a signature (ssh's "query" step) only the certificate is checked;
 * `ctx.accept()` then merely answers "key acceptable" (SSH_MSG_USERAUTH_PK_OK),
 * and the client comes back with a signed request.
 */
export function verifyUserCertAuth(ctx: Pick<PublicKeyAuthContext, 'key' | 'signature' | 'blob' | 'hashAlgo' | 'username'>, opts: UserCertAuthOptions): Certificate {
  // The signature checks below rely on the patched ssh2 having stripped the
  // signature's algorithm header; unpatched it would only fail closed.
  assertSsh2Patched();
  const cert = parseCertificate(ctx.key.data);
  if (ctx.key.algo !== cert.algorithm) {
    throw new CertError('CERT_MALFORMED', `the client named the key ${ctx.key.algo} but sent a ${cert.algorithm} certificate`);
  }
  verifyCertificate(cert, {
    trustedCAs: opts.trustedUserCAs,
    now: opts.now,
    type: 'user',
    ...(opts.allowAnyPrincipal ? {} : { principal: opts.principal ?? ctx.username }),
    ...(opts.clientAddress === undefined ? {} : { clientAddress: opts.clientAddress }),
    ...(opts.loginCommand === undefined ? {} : { loginCommand: opts.loginCommand }),
  });
  if (ctx.signature === undefined) return cert;
  if (ctx.blob === undefined || !signatureVerifies(cert.key, ctx.blob, ctx.signature, ctx.hashAlgo)) {
    throw new CertError(
      'CERT_BAD_SIGNATURE',
      `the client's signature does not verify with the key certified for "${cert.keyId}" (${fingerprintSha256(cert.key.blob)})`,
    );
  }
  return cert;
}

/**
 * Verifies a userauth signature in the form the patched ssh2 hands over:
 * the algorithm header removed; Ed25519 raw (RFC 8709), ECDSA as DER
 * (ssh2 converts RFC 5656's mpint pair), RSA raw with `hashAlgo`
 * (sha256/sha512 from rsa-sha2-*-cert-v01; SHA-1 refused, as OpenSSH 8.8+ does).
 */
function signatureVerifies(key: PublicKey, data: Buffer, sig: Buffer, hashAlgo: string | undefined): boolean {
  try {
    if (key.type === 'ssh-ed25519') return sig.length === 64 && cryptoVerify(null, data, key.key, sig);
    if (key.type === 'ssh-rsa') {
      if (hashAlgo !== 'sha256' && hashAlgo !== 'sha512') return false;
      const modBytes = Math.ceil((key.key.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
      if (sig.length > modBytes) return false;
      // Some signers drop leading zero bytes; OpenSSH pads them back, OpenSSL wants the full length.
      const padded = sig.length === modBytes ? sig : Buffer.concat([Buffer.alloc(modBytes - sig.length), sig]);
      return cryptoVerify(hashAlgo, data, key.key, padded);
    }
    const curve = curveByAlgorithm(key.type);
    return curve !== undefined && cryptoVerify(curve.hash, data, { key: key.key, dsaEncoding: 'der' }, sig);
  } catch {
    return false;
  }
}
