import { CertError } from './errors.js';
import { CRITICAL_OPTION_SHAPES, EXTENSION_SHAPES } from './extensions.js';
import { bitLength, isKeyAlgorithm, RSA_MIN_NEW_BITS, type PublicKey } from './keys.js';
import { MAX_PRINCIPALS, type CertType } from './certificate.js';
import { WireReader } from '../sshwire/index.js';

/** Longest certificate TTL Jumpgate will sign: ten years. Anything longer is a typo or a unit mistake. */
export const MAX_TTL_SECONDS = 10 * 366 * 24 * 3600;

/** Longest key id accepted; OpenSSH has no limit, but key ids land in logs. */
const MAX_KEY_ID_BYTES = 1024;

/** What `CertRequest` is built from; see the class for the rules. */
export interface CertRequestFields {
  /** The key to certify. */
  publicKey: PublicKey;
  type: CertType;
  /** Shown in sshd's logs; Jumpgate uses the username (user) or the first host name (host). */
  keyId: string;
  /** Logins (user) or host names (host) the certificate is valid for. */
  principals: string[];
  /** Validity length; validity times are derived from it when signing. */
  ttlSeconds: number;
  criticalOptions?: Record<string, string>;
  /** Flags map to ''. */
  extensions?: Record<string, string>;
  /** Random 63-bit value when absent. */
  serial?: bigint;
}

function invalid(message: string): CertError {
  return new CertError('CERT_REQUEST_INVALID', `cannot sign certificate: ${message}`);
}

// Whitespace, control characters and NUL break authorized_principals files, sshd logs and C strings.
const BAD_PRINCIPAL_CHARS = /[\s\p{Cc}\u2028\u2029]/u;
const OPTION_NAME = /^[\x21-\x7e]+$/;

/**
 * A request to sign an OpenSSH certificate (PROTOCOL.certkeys) that checks
 * itself before anything is signed (the shape of Teleport's lib/sshca
 * certificate request). TTL is the input; validity times are derived by
 * `signCertificate` from its clock.
 */
// The class carries exactly the fields of CertRequestFields (declaration merging).
export interface CertRequest extends CertRequestFields {}
export class CertRequest {
  constructor(fields: CertRequestFields) {
    Object.assign(this, fields);
  }

  /** Throws CERT_REQUEST_INVALID naming the first rule the request breaks. */
  check(): void {
    const pk = this.publicKey;
    if (!pk || !Buffer.isBuffer(pk.blob) || !isKeyAlgorithm(pk.type)) throw invalid('no supported public key to certify');
    if (pk.type === 'ssh-rsa') {
      const r = new WireReader(pk.blob);
      r.string();
      r.mpint();
      const bits = bitLength(r.mpint());
      if (bits < RSA_MIN_NEW_BITS) throw invalid(`the RSA key is ${bits} bits; at least ${RSA_MIN_NEW_BITS} are required (better: use ed25519)`);
    }
    if (this.type !== 'user' && this.type !== 'host') throw invalid(`type must be "user" or "host", not "${String(this.type)}"`);

    if (typeof this.keyId !== 'string' || this.keyId.length === 0) throw invalid('the key id is empty');
    if (Buffer.byteLength(this.keyId) > MAX_KEY_ID_BYTES) throw invalid(`the key id is longer than ${MAX_KEY_ID_BYTES} bytes`);
    if (/[\0\r\n]/.test(this.keyId)) throw invalid('the key id contains a NUL or line break');

    if (!Array.isArray(this.principals)) throw invalid('principals must be a list');
    // OpenSSH's sshd refuses user certificates without principals (TrustedUserCAKeys:
    // "Certificate lacks principal list") and an empty host list would mean "any host"
    // to older ssh clients: Jumpgate never issues either.
    if (this.principals.length === 0) throw invalid(`a ${this.type} certificate needs at least one principal`);
    if (this.principals.length > MAX_PRINCIPALS) throw invalid(`more than ${MAX_PRINCIPALS} principals`);
    const seen = new Set<string>();
    for (const p of this.principals) {
      if (typeof p !== 'string' || p.length === 0) throw invalid('a principal is empty');
      if (BAD_PRINCIPAL_CHARS.test(p)) throw invalid(`principal ${JSON.stringify(p)} contains whitespace or a control character`);
      if (seen.has(p)) throw invalid(`principal "${p}" is listed twice`);
      seen.add(p);
    }

    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds <= 0) throw invalid(`the TTL must be a positive whole number of seconds, not ${this.ttlSeconds}`);
    if (this.ttlSeconds > MAX_TTL_SECONDS) throw invalid(`the TTL of ${this.ttlSeconds}s is longer than the ten-year maximum`);

    checkOptions(this.criticalOptions, 'critical option', CRITICAL_OPTION_SHAPES);
    checkOptions(this.extensions, 'extension', EXTENSION_SHAPES);
    // OpenSSH's ssh refuses a host certificate with any critical option (sshconnect.c check_host_cert).
    if (this.type === 'host' && this.criticalOptions && Object.keys(this.criticalOptions).length > 0) {
      throw invalid('host certificates cannot carry critical options (ssh refuses them)');
    }

    if (this.serial !== undefined && (typeof this.serial !== 'bigint' || this.serial < 0n || this.serial > 0xffffffffffffffffn)) {
      throw invalid('the serial must be an unsigned 64-bit bigint');
    }
  }
}

function checkOptions(opts: Record<string, string> | undefined, what: string, shapes: ReadonlyMap<string, 'flag' | 'value'>): void {
  if (opts === undefined) return;
  for (const [name, value] of Object.entries(opts)) {
    // ASCII-only names also make JS string order equal OpenSSH's strcmp order when signing.
    if (!OPTION_NAME.test(name)) throw invalid(`${what} name ${JSON.stringify(name)} must be non-empty printable ASCII`);
    if (typeof value !== 'string') throw invalid(`${what} "${name}" must have a string value ('' for a flag)`);
    if (value.includes('\0')) throw invalid(`${what} "${name}" value contains a NUL byte`);
    const shape = shapes.get(name);
    if (shape === 'flag' && value !== '') throw invalid(`${what} "${name}" is a flag and takes no value`);
    if (shape === 'value' && value === '') throw invalid(`${what} "${name}" needs a value`);
  }
}
