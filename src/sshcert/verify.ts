import type { Certificate, CertType } from './certificate.js';
import { FOREVER } from './certificate.js';
import { CertError } from './errors.js';
import { DEFAULT_KNOWN_CRITICAL_OPTIONS, OPT_SOURCE_ADDRESS, OPT_VERIFY_REQUIRED } from './extensions.js';
import { checkSourceAddress } from './source-address.js';
import { fingerprintSha256, type PublicKey } from './keys.js';
import { signatureAlgorithmFits, verifySignature } from './signature.js';

/** What a certificate is checked against. */
export interface VerifyOptions {
  trustedCAs: PublicKey[];
  now: Date;
  /** The type the caller expects: a user certificate from a client, a host certificate from a server. */
  type: CertType;
  /** The login (user) or host name (host) being authenticated, if the caller wants it checked here. */
  principal?: string;
  /**
   * Critical options the caller enforces; any other is refused. Default for
   * user certificates: DEFAULT_KNOWN_CRITICAL_OPTIONS (force-command,
   * source-address). Default for host certificates: none, because ssh refuses a
   * host certificate with any critical option.
   */
  knownCriticalOptions?: readonly string[];
  /**
   * The IP address the certificate is presented from (the TCP peer; an
   * IPv4-mapped IPv6 address counts as IPv4). A certificate with
   * source-address is checked against it, and refused when it is not given:
   * an option that cannot be checked is never silently ignored.
   */
  clientAddress?: string;
  /** How a user gets a new certificate, quoted in messages; default `tsh login` (a proxy names its own address). */
  loginCommand?: string;
}

/** A PROTOCOL.certkeys validity time (seconds since the epoch) as "2026-11-21T10:00:00Z"; "forever" for the maximum. */
export function formatCertTime(seconds: bigint): string {
  if (seconds >= FOREVER) return 'forever';
  // Date covers ±8.64e15 ms; beyond that print the raw value rather than "Invalid Date".
  if (seconds > 8_640_000_000_000n) return `${seconds}s after 1970`;
  return new Date(Number(seconds) * 1000).toISOString().replace('.000Z', 'Z');
}

function renewHint(type: CertType, loginCommand = 'tsh login'): string {
  return type === 'user'
    ? `run \`${loginCommand}\` to get a new one`
    : 'have the administrator re-issue it with `tctl auth sign --host=...`';
}

/**
 * Host principals may be wildcard patterns ("*.example.com", "node?"), as in
 * OpenSSH's match_pattern: '*' any run, '?' one character.
 */
function matchPattern(name: string, pattern: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('?')) return name === pattern;
  const re = new RegExp(
    '^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$',
    's',
  );
  return re.test(name);
}

/**
 * Checks a parsed certificate (PROTOCOL.certkeys; sshkey.c
 * sshkey_cert_check_authority and auth-options.c) and throws the first
 * failure as a CertError, in this order: type, trusted CA, signature,
 * validity, critical options (unknown ones refused; source-address against
 * `clientAddress`), principal.
 *
 * Principals: a user login must be listed exactly; a host name may match a
 * wildcard principal. A certificate with no principals is refused, like
 * sshd's TrustedUserCAKeys ("Certificate lacks principal list") and OpenSSH
 * 10; OpenSSH 9.x ssh still took an empty host list as "any host", which is
 * deliberately not copied.
 */
export function verifyCertificate(cert: Certificate, opts: VerifyOptions): void {
  if (cert.type !== opts.type) {
    const fix =
      opts.type === 'user'
        ? 'log in with `tsh login` and use the user certificate it writes'
        : 'configure the server with a host certificate from `tctl auth sign --host=...`';
    throw new CertError('CERT_WRONG_TYPE', `this is a ${cert.type} certificate, not a ${opts.type} certificate; ${fix}`);
  }

  const caBlob = cert.signatureKey.blob;
  if (!opts.trustedCAs.some((ca) => ca.blob.equals(caBlob))) {
    const trusted = opts.trustedCAs.map((ca) => fingerprintSha256(ca.blob)).join(', ') || 'none';
    throw new CertError(
      'CERT_UNTRUSTED_CA',
      `the ${cert.type} certificate is signed by CA ${fingerprintSha256(caBlob)}, which is not trusted here (trusted: ${trusted}); ` +
        (cert.type === 'user'
          ? `if the cluster CA was rotated, run \`${opts.loginCommand ?? 'tsh login'}\` again`
          : 'check the host CA with `tctl auth export --type=host`'),
    );
  }

  if (!signatureAlgorithmFits(cert.signatureKey.type, cert.signatureAlgorithm)) {
    const sha1 = cert.signatureAlgorithm === 'ssh-rsa';
    throw new CertError(
      'CERT_UNSUPPORTED_ALGORITHM',
      sha1
        ? 'the certificate is signed with SHA-1 (ssh-rsa), which OpenSSH 8.8+ and Jumpgate refuse; re-sign it with rsa-sha2-512 (`ssh-keygen -s CA -t rsa-sha2-512`)'
        : `the certificate signature algorithm ${cert.signatureAlgorithm} does not fit its ${cert.signatureKey.type} CA key; get a new certificate`,
    );
  }
  if (!verifySignature(cert.signatureKey, cert.signedBytes, cert.signature)) {
    throw new CertError(
      'CERT_BAD_SIGNATURE',
      `the ${cert.type} certificate's signature does not verify (it was altered after signing, or is corrupt); ${renewHint(cert.type, opts.loginCommand)}`,
    );
  }

  const nowMs = opts.now.getTime();
  if (!Number.isFinite(nowMs)) throw new RangeError('verifyCertificate needs a valid clock');
  // OpenSSH compares whole seconds: valid when valid_after <= now < valid_before.
  const now = BigInt(Math.floor(nowMs / 1000));
  const nowText = formatCertTime(now);
  if (now < cert.validAfter) {
    throw new CertError(
      'CERT_NOT_YET_VALID',
      `certificate is not valid until ${formatCertTime(cert.validAfter)} (now ${nowText}); check this machine's clock, or wait`,
    );
  }
  if (now >= cert.validBefore) {
    throw new CertError(
      'CERT_EXPIRED',
      `certificate expired at ${formatCertTime(cert.validBefore)} (now ${nowText}); ${renewHint(cert.type, opts.loginCommand)}`,
    );
  }

  const known = opts.knownCriticalOptions ?? (cert.type === 'user' ? DEFAULT_KNOWN_CRITICAL_OPTIONS : []);
  for (const name of cert.criticalOptions.keys()) {
    if (name === OPT_VERIFY_REQUIRED && !known.includes(name)) {
      throw new CertError(
        'CERT_UNKNOWN_CRITICAL_OPTION',
        `the ${cert.type} certificate has critical option "${name}" (FIDO user verification), which needs a security key (sk-*) that Jumpgate does not support, so it cannot be used; get a certificate without it`,
      );
    }
    if (!known.includes(name)) {
      throw new CertError(
        'CERT_UNKNOWN_CRITICAL_OPTION',
        `the ${cert.type} certificate has critical option "${name}", which is not supported here, so it cannot be used; get a certificate without it`,
      );
    }
  }

  const sources = cert.criticalOptions.get(OPT_SOURCE_ADDRESS);
  if (sources !== undefined) {
    if (opts.clientAddress === undefined) {
      throw new CertError('CERT_UNKNOWN_CRITICAL_OPTION', `the ${cert.type} certificate has critical option "${OPT_SOURCE_ADDRESS}", which cannot be checked here, so it cannot be used; get a certificate without it`);
    }
    checkSourceAddress(sources, opts.clientAddress);
  }

  if (cert.principals.length === 0) {
    throw new CertError(
      'CERT_PRINCIPAL_MISMATCH',
      `the ${cert.type} certificate lists no principals, which is refused (OpenSSH refuses it too); ${renewHint(cert.type, opts.loginCommand)}`,
    );
  }
  if (opts.principal !== undefined) {
    const want = opts.principal;
    const ok = cert.type === 'host' ? cert.principals.some((p) => matchPattern(want, p)) : cert.principals.includes(want);
    if (!ok) {
      const what = cert.type === 'user' ? 'login' : 'host name';
      const fix =
        cert.type === 'user'
          ? `ask an administrator for a role that grants this login, then run \`${opts.loginCommand ?? 'tsh login'}\` again`
          : 'connect with one of those names, or re-issue the host certificate with this name';
      throw new CertError(
        'CERT_PRINCIPAL_MISMATCH',
        `${what} "${want}" is not allowed by this certificate (allowed: ${cert.principals.join(', ')}); ${fix}`,
      );
    }
  }
}
