import { WireError, WireReader, WireWriter } from '../sshwire/index.js';
import { CertError } from './errors.js';
import { CRITICAL_OPTION_SHAPES, EXTENSION_SHAPES } from './extensions.js';
import {
  decodeBase64Strict,
  formatLine,
  isKeyAlgorithm,
  parsePublicKeyBlob,
  skipKeyFields,
  splitKeyLine,
  type KeyAlgorithm,
  type PublicKey,
} from './keys.js';

/** PROTOCOL.certkeys: 1 = user (SSH2_CERT_TYPE_USER), 2 = host. */
export type CertType = 'user' | 'host';

/** An OpenSSH certificate (PROTOCOL.certkeys). Buffers are views into `blob`. */
export interface Certificate {
  /** e.g. ssh-ed25519-cert-v01@openssh.com */
  algorithm: string;
  nonce: Buffer;
  /** The certified key. */
  key: PublicKey;
  serial: bigint;
  type: CertType;
  keyId: string;
  principals: string[];
  /** Seconds since the epoch. */
  validAfter: bigint;
  /** Seconds since the epoch; 0xffffffffffffffffn = forever. */
  validBefore: bigint;
  criticalOptions: Map<string, string>;
  /** Flag extensions map to ''. */
  extensions: Map<string, string>;
  signatureKey: PublicKey;
  /** The signature blob: string algorithm, string signature. */
  signature: Buffer;
  /** The signature's algorithm, e.g. ssh-ed25519 or rsa-sha2-512. */
  signatureAlgorithm: string;
  /** Everything the signature covers: the blob up to the signature field. */
  signedBytes: Buffer;
  /** The whole certificate. */
  blob: Buffer;
}

/** "Valid forever" (PROTOCOL.certkeys). */
export const FOREVER = 0xffffffffffffffffn;

const CERT_SUFFIX = '-cert-v01@openssh.com';

/** OpenSSH's SSHKEY_CERT_MAX_PRINCIPALS: more is a malformed certificate there too. */
export const MAX_PRINCIPALS = 256;

/** The certificate algorithm name for a key type (PROTOCOL.certkeys). */
export function certAlgorithmFor(type: KeyAlgorithm): string {
  return type + CERT_SUFFIX;
}

/** The key type a certificate algorithm name (PROTOCOL.certkeys) certifies, or undefined if it is not one we support. */
export function keyAlgorithmOfCert(algorithm: string): KeyAlgorithm | undefined {
  if (!algorithm.endsWith(CERT_SUFFIX)) return undefined;
  const base = algorithm.slice(0, -CERT_SUFFIX.length);
  return isKeyAlgorithm(base) ? base : undefined;
}

function malformed(message: string, cause?: unknown): CertError {
  return new CertError(
    'CERT_MALFORMED',
    `malformed SSH certificate: ${message}; get a new certificate (\`tsh login\`, or \`tctl auth sign\` for hosts)`,
    cause === undefined ? {} : { cause },
  );
}

/** A C-string field in OpenSSH (sshbuf_get_cstring): UTF-8 here, and no NUL inside. */
function cstring(r: WireReader, what: string): string {
  const s = r.utf8();
  if (s.includes('\0')) throw malformed(`${what} contains a NUL byte`);
  return s;
}

/**
 * Reads a critical-options or extensions section (PROTOCOL.certkeys): a
 * sequence of (string name, string data) where data is empty for a flag and
 * holds one string for a valued option.
 *
 * Order: PROTOCOL.certkeys says names "must be lexically ordered", and
 * `ssh-keygen` writes them sorted, but OpenSSH never checks the order when it
 * reads a certificate (sshkey.c cert_parse only checks the structure;
 * auth-options.c cert_option_list walks the list as it comes), and sshd 9.2
 * was seen accepting a login with unsorted extensions. We match that, so
 * every certificate sshd accepts is accepted here; the signature covers the
 * bytes, so the order carries no security meaning.
 * Duplicates: refused, which is stricter than sshd. sshd 9.2 refuses a
 * duplicated force-command or source-address ("Certificate has multiple ...
 * options") but was seen accepting a duplicated flag extension. A Map cannot
 * hold two values, so accepting duplicates would silently pick one, and no
 * honest issuer (ssh-keygen, Go's x/crypto/ssh, Jumpgate) writes them.
 * Known flags with data and known valued options without one are refused,
 * as sshd does ("Certificate option ... corrupt (extra data)").
 */
function readOptions(section: Buffer, what: string, shapes: ReadonlyMap<string, 'flag' | 'value'>): Map<string, string> {
  const out = new Map<string, string>();
  const r = new WireReader(section);
  while (r.remaining > 0) {
    const name = cstring(r, `${what} name`);
    const data = r.string();
    if (out.has(name)) throw malformed(`${what} "${name}" appears twice`);
    const shape = shapes.get(name);
    let value = '';
    if (data.length > 0) {
      if (shape === 'flag') throw malformed(`${what} "${name}" is a flag but carries data`);
      const inner = new WireReader(data);
      value = cstring(inner, `${what} "${name}" value`);
      inner.end();
    } else if (shape === 'value') {
      throw malformed(`${what} "${name}" needs a value`);
    }
    out.set(name, value);
  }
  return out;
}

/**
 * Parses an OpenSSH certificate blob (PROTOCOL.certkeys) strictly: every
 * length bounded, no trailing bytes anywhere (also inside option values and
 * the signature), type 1 or 2, the algorithm name matching the embedded key,
 * valid UTF-8 without NUL in text fields, no duplicated options, and a
 * signature key that is a plain key, not a certificate. Does not verify the
 * signature: that is `verifyCertificate`.
 */
export function parseCertificate(blob: Buffer): Certificate {
  try {
    return parseCertificateInner(blob);
  } catch (err) {
    if (err instanceof CertError) {
      if (err.code.startsWith('CERT_')) throw err;
      if (err.code === 'KEY_UNSUPPORTED') {
        throw new CertError('CERT_UNSUPPORTED_ALGORITHM', `unsupported SSH certificate: ${err.message}`, { cause: err });
      }
      throw malformed(err.message, err);
    }
    if (err instanceof WireError) throw malformed(err.message, err);
    throw err;
  }
}

function parseCertificateInner(blob: Buffer): Certificate {
  const r = new WireReader(blob);
  const algorithm = r.utf8(64);
  const keyType = keyAlgorithmOfCert(algorithm);
  if (!keyType) {
    if (algorithm.endsWith(CERT_SUFFIX)) {
      throw new CertError(
        'CERT_UNSUPPORTED_ALGORITHM',
        `unsupported certificate type "${algorithm}"; Jumpgate accepts ed25519, ECDSA and RSA certificates`,
      );
    }
    throw malformed(isKeyAlgorithm(algorithm) ? `this is a plain ${algorithm} key, not a certificate` : `unknown type "${algorithm}"`);
  }
  const nonce = r.string();

  // The certified key's fields follow the nonce without their own type string;
  // rebuild the plain key blob so the one strict key parser checks them.
  const keyStart = r.offset;
  skipKeyFields(keyType, r);
  const keyFields = blob.subarray(keyStart, r.offset);
  const plain = new WireWriter(keyFields.length + 4 + keyType.length).string(keyType).raw(keyFields).finish();
  const key = parsePublicKeyBlob(plain);

  const serial = r.u64();
  const typeNum = r.u32();
  if (typeNum !== 1 && typeNum !== 2) throw malformed(`certificate type is ${typeNum}, expected 1 (user) or 2 (host)`);
  const keyId = cstring(r, 'key id');

  const principals: string[] = [];
  const pr = new WireReader(r.string());
  while (pr.remaining > 0) {
    if (principals.length >= MAX_PRINCIPALS) throw malformed(`more than ${MAX_PRINCIPALS} principals`);
    principals.push(cstring(pr, 'principal'));
  }

  const validAfter = r.u64();
  const validBefore = r.u64();
  const criticalOptions = readOptions(r.string(), 'critical option', CRITICAL_OPTION_SHAPES);
  const extensions = readOptions(r.string(), 'extension', EXTENSION_SHAPES);
  // Reserved: PROTOCOL.certkeys says it is ignored, and OpenSSH ignores its contents; so do we.
  r.string();

  const caBlob = r.string();
  const caType = new WireReader(caBlob).utf8(64);
  if (caType.endsWith(CERT_SUFFIX)) throw malformed('the signature key is itself a certificate');
  const signatureKey = parsePublicKeyBlob(caBlob);

  const signedBytes = blob.subarray(0, r.offset);
  const signature = r.string();
  r.end();
  const sr = new WireReader(signature);
  const signatureAlgorithm = sr.utf8(64);
  sr.string();
  sr.end();

  return {
    algorithm,
    nonce,
    key,
    serial,
    type: typeNum === 1 ? 'user' : 'host',
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    extensions,
    signatureKey,
    signature,
    signatureAlgorithm,
    signedBytes,
    blob,
  };
}

/** Parses a `*-cert.pub` line ("type base64 [comment]", PROTOCOL.certkeys blob); the type word must match the blob. */
export function parseCertificateLine(text: string): { cert: Certificate; comment: string } {
  let parts: { type: string; data: string; comment: string };
  let blob: Buffer;
  try {
    parts = splitKeyLine(text.trim());
    blob = decodeBase64Strict(parts.data, 'certificate');
  } catch (err) {
    throw malformed((err as Error).message, err);
  }
  if (!parts.type.endsWith(CERT_SUFFIX)) {
    throw malformed(`the line starts with "${parts.type}", not a certificate type`);
  }
  const cert = parseCertificate(blob);
  if (cert.algorithm !== parts.type) throw malformed(`the line says ${parts.type} but the certificate is ${cert.algorithm}`);
  return { cert, comment: parts.comment };
}

/** Formats a certificate as one `*-cert.pub` line (PROTOCOL.certkeys encoding, base64; no trailing newline). */
export function encodeCertificateLine(cert: Certificate, comment?: string): string {
  return formatLine(cert.algorithm, cert.blob, comment);
}

/** Writes a PROTOCOL.certkeys options section from entries already sorted by name: flags empty, values as a string in a string. */
export function writeOptions(w: WireWriter, entries: ReadonlyArray<readonly [string, string]>): void {
  const section = w.openString();
  for (const [name, value] of entries) {
    w.string(name);
    if (value === '') w.u32(0);
    else {
      const data = w.openString();
      w.string(value);
      w.closeString(data);
    }
  }
  w.closeString(section);
}
