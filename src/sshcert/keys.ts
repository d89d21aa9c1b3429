import { createECDH, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import { WireReader, WireWriter } from '../sshwire/index.js';
import { CertError } from './errors.js';

/** Public key algorithms Jumpgate reads and writes (RFC 8709, RFC 5656, RFC 4253 §6.6). */
export type KeyAlgorithm =
  | 'ssh-ed25519'
  | 'ecdsa-sha2-nistp256'
  | 'ecdsa-sha2-nistp384'
  | 'ecdsa-sha2-nistp521'
  | 'ssh-rsa';

/** Kinds of key `generateKeyPair` makes. */
export type KeyKind = 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384' | 'ecdsa-p521' | 'rsa-3072';

/** A public key in both forms: the SSH wire blob and a node:crypto KeyObject. */
export interface PublicKey {
  type: KeyAlgorithm;
  /** The SSH wire encoding (RFC 4253 §6.6), exactly as it appears in authorized_keys and certificates. */
  blob: Buffer;
  key: KeyObject;
}

/** The NIST curves of RFC 5656 §10.1 with the names each layer uses for them. */
export interface Curve {
  readonly algorithm: 'ecdsa-sha2-nistp256' | 'ecdsa-sha2-nistp384' | 'ecdsa-sha2-nistp521';
  /** The curve identifier inside the SSH blob. */
  readonly ident: 'nistp256' | 'nistp384' | 'nistp521';
  readonly jwkCrv: 'P-256' | 'P-384' | 'P-521';
  /** OpenSSL's name, as node:crypto reports it in asymmetricKeyDetails. */
  readonly nodeCurve: 'prime256v1' | 'secp384r1' | 'secp521r1';
  /** Bytes per field element / scalar. */
  readonly size: number;
  /** The hash RFC 5656 §6.2.1 pairs with the curve. */
  readonly hash: 'sha256' | 'sha384' | 'sha512';
  /** The field prime: coordinates must be below it. */
  readonly p: bigint;
  /** DER SubjectPublicKeyInfo up to the point (RFC 5480): id-ecPublicKey, the curve OID, BIT STRING header. */
  readonly spkiPrefix: Buffer;
}

export const CURVES: readonly Curve[] = [
  {
    algorithm: 'ecdsa-sha2-nistp256',
    ident: 'nistp256',
    jwkCrv: 'P-256',
    nodeCurve: 'prime256v1',
    size: 32,
    hash: 'sha256',
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    spkiPrefix: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'),
  },
  {
    algorithm: 'ecdsa-sha2-nistp384',
    ident: 'nistp384',
    jwkCrv: 'P-384',
    nodeCurve: 'secp384r1',
    size: 48,
    hash: 'sha384',
    p: (1n << 384n) - (1n << 128n) - (1n << 96n) + (1n << 32n) - 1n,
    spkiPrefix: Buffer.from('3076301006072a8648ce3d020106052b81040022036200', 'hex'),
  },
  {
    algorithm: 'ecdsa-sha2-nistp521',
    ident: 'nistp521',
    jwkCrv: 'P-521',
    nodeCurve: 'secp521r1',
    size: 66,
    hash: 'sha512',
    p: (1n << 521n) - 1n,
    spkiPrefix: Buffer.from('30819b301006072a8648ce3d020106052b8104002303818600', 'hex'),
  },
];

/** The curve for an ECDSA algorithm name (RFC 5656 §6.2), or undefined. */
export function curveByAlgorithm(alg: string): Curve | undefined {
  return CURVES.find((c) => c.algorithm === alg);
}

/** The curve (RFC 5656 §10.1) for an OpenSSL curve name, or undefined. */
export function curveByNodeName(name: string | undefined): Curve | undefined {
  return CURVES.find((c) => c.nodeCurve === name);
}

/** True for the public key algorithm names this library supports (RFC 4253 §6.6, RFC 5656, RFC 8709). */
export function isKeyAlgorithm(s: string): s is KeyAlgorithm {
  return s === 'ssh-ed25519' || s === 'ssh-rsa' || curveByAlgorithm(s) !== undefined;
}

/** OpenSSH refuses RSA keys below this (SSH_RSA_MINIMUM_MODULUS_SIZE in OpenSSH 9.x). */
export const RSA_MIN_PARSE_BITS = 1024;
/** Jumpgate certifies and generates nothing weaker than this. */
export const RSA_MIN_NEW_BITS = 2048;
/** OpenSSH's upper bound (OPENSSL_RSA_MAX_MODULUS_BITS): keeps hostile keys from costing seconds per verify. */
export const RSA_MAX_BITS = 16384;

/** Bits in an unsigned big-endian magnitude without leading zeros, as RFC 4251 §5 mpints are returned by WireReader. */
export function bitLength(mag: Buffer): number {
  if (mag.length === 0) return 0;
  return (mag.length - 1) * 8 + (32 - Math.clz32(mag[0]!));
}

const b64u = (b: Buffer): string => b.toString('base64url');

function leftPad(b: Buffer, size: number): Buffer {
  if (b.length === size) return b;
  const out = Buffer.alloc(size);
  b.copy(out, size - b.length);
  return out;
}

function toBigInt(mag: Buffer): bigint {
  return mag.length === 0 ? 0n : BigInt('0x' + mag.toString('hex'));
}

function malformed(message: string, cause?: unknown): CertError {
  return new CertError('KEY_MALFORMED', message, cause === undefined ? {} : { cause });
}

/** Builds the RFC 4253 §6.6 / RFC 5656 §3.1 / RFC 8709 §4 wire blob from JWK components. */
function blobFromJwk(type: KeyAlgorithm, jwk: JsonWebKey): Buffer {
  const w = new WireWriter(type === 'ssh-rsa' ? 600 : 160).string(type);
  if (type === 'ssh-ed25519') {
    w.string(Buffer.from(jwk.x!, 'base64url'));
  } else if (type === 'ssh-rsa') {
    w.mpint(Buffer.from(jwk.e!, 'base64url')).mpint(Buffer.from(jwk.n!, 'base64url'));
  } else {
    const curve = curveByAlgorithm(type)!;
    const point = Buffer.concat([
      Buffer.of(0x04),
      leftPad(Buffer.from(jwk.x!, 'base64url'), curve.size),
      leftPad(Buffer.from(jwk.y!, 'base64url'), curve.size),
    ]);
    w.string(curve.ident).string(point);
  }
  // Copy out of the writer's oversized buffer: public blobs live long (CA keys, caches).
  return Buffer.from(w.finish());
}

/**
 * Parses the fields of an RSA, ECDSA or Ed25519 public key blob after its
 * type string, strictly (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4), and
 * returns the KeyObject. Shared by plain keys and the key inside a certificate.
 */
function keyObjectFromFields(type: KeyAlgorithm, r: WireReader): KeyObject {
  if (type === 'ssh-ed25519') {
    const pk = r.string();
    if (pk.length !== 32) throw malformed(`ssh-ed25519 public key is ${pk.length} bytes, not 32`);
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64u(pk) }, format: 'jwk' });
  }
  if (type === 'ssh-rsa') {
    const e = r.mpint();
    const n = r.mpint();
    const bits = bitLength(n);
    if (bits < RSA_MIN_PARSE_BITS) {
      throw new CertError('KEY_UNSUPPORTED', `RSA key is only ${bits} bits; OpenSSH and Jumpgate need at least ${RSA_MIN_PARSE_BITS} (use ed25519 instead)`);
    }
    if (bits > RSA_MAX_BITS) throw new CertError('KEY_UNSUPPORTED', `RSA key is ${bits} bits, more than the ${RSA_MAX_BITS} supported`);
    if (e.length === 0 || (e[e.length - 1]! & 1) === 0 || (e.length === 1 && e[0]! < 3)) {
      throw malformed('RSA public exponent must be odd and at least 3');
    }
    if (e.length > n.length) throw malformed('RSA public exponent is larger than the modulus');
    if ((n[n.length - 1]! & 1) === 0) throw malformed('RSA modulus is even');
    return createPublicKey({ key: { kty: 'RSA', n: b64u(n), e: b64u(e) }, format: 'jwk' });
  }
  const curve = curveByAlgorithm(type)!;
  const ident = r.utf8(32);
  if (ident !== curve.ident) throw malformed(`${type} key names curve "${ident}", expected "${curve.ident}"`);
  const q = r.string();
  if (q.length !== 1 + 2 * curve.size || q[0] !== 0x04) {
    throw malformed(`${type} public point must be uncompressed (0x04 || X || Y, ${1 + 2 * curve.size} bytes)`);
  }
  const x = q.subarray(1, 1 + curve.size);
  const y = q.subarray(1 + curve.size);
  if (toBigInt(x) >= curve.p || toBigInt(y) >= curve.p) throw malformed(`${type} public point coordinate is out of range`);
  try {
    // OpenSSL checks the point is on the curve here; NIST curves have cofactor 1,
    // so on-curve and not-infinity (no 0x04 encoding exists for it) is enough.
    // DER, not JWK: on Node 20 / OpenSSL 3.0 a P-384 JWK import takes ~0.5 ms and
    // P-521 ~1 ms, against ~0.1-0.16 ms for the same key as SubjectPublicKeyInfo.
    return createPublicKey({ key: Buffer.concat([curve.spkiPrefix, q]), format: 'der', type: 'spki' });
  } catch (err) {
    throw malformed(`${type} public point is not on curve ${curve.ident}`, err);
  }
}

/** Steps over a key's fields after its type string (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4 layouts) without validating them. */
export function skipKeyFields(type: KeyAlgorithm, r: WireReader): void {
  if (type === 'ssh-ed25519') r.string();
  else if (type === 'ssh-rsa') {
    r.string();
    r.string();
  } else {
    r.string();
    r.string();
  }
}

/**
 * Parses an SSH public key blob (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4)
 * strictly: no trailing bytes, Ed25519 keys 32 bytes, EC points uncompressed
 * and on the named curve, RSA moduli 1024..16384 bits with an odd exponent.
 * Certificates and unknown algorithms are KEY_UNSUPPORTED.
 */
export function parsePublicKeyBlob(blob: Buffer): PublicKey {
  try {
    const r = new WireReader(blob);
    const type = r.utf8(64);
    if (!isKeyAlgorithm(type)) {
      if (type.endsWith('-cert-v01@openssh.com')) {
        throw new CertError('KEY_UNSUPPORTED', `expected a plain public key but got a ${type} certificate`);
      }
      throw new CertError('KEY_UNSUPPORTED', `unsupported key type "${type}"; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa`);
    }
    const key = keyObjectFromFields(type, r);
    r.end();
    return { type, blob, key };
  } catch (err) {
    if (err instanceof CertError) throw err;
    throw malformed(`malformed SSH public key: ${(err as Error).message}`, err);
  }
}

/** The SSH public key for a node:crypto key, public or private (RFC 4253 §6.6, RFC 5656, RFC 8709). */
export function publicKeyFromKeyObject(k: KeyObject): PublicKey {
  const pub = k.type === 'private' ? createPublicKey(k) : k;
  const type = keyAlgorithmOf(pub);
  const blob = blobFromJwk(type, pub.export({ format: 'jwk' }));
  return { type, blob, key: pub };
}

/** The SSH algorithm (RFC 4253 §6.6, RFC 5656, RFC 8709) of a KeyObject; KEY_UNSUPPORTED for anything else (DSA, RSA-PSS, X25519, other curves). */
export function keyAlgorithmOf(k: KeyObject): KeyAlgorithm {
  switch (k.asymmetricKeyType) {
    case 'ed25519':
      return 'ssh-ed25519';
    case 'rsa':
      return 'ssh-rsa';
    case 'ec': {
      const curve = curveByNodeName(k.asymmetricKeyDetails?.namedCurve);
      if (curve) return curve.algorithm;
      throw new CertError('KEY_UNSUPPORTED', `EC curve ${k.asymmetricKeyDetails?.namedCurve ?? '(unknown)'} is not usable with SSH; use P-256, P-384 or P-521`);
    }
    default:
      throw new CertError('KEY_UNSUPPORTED', `${k.asymmetricKeyType ?? k.type} keys are not supported; use ed25519, ECDSA or RSA`);
  }
}

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decodes RFC 4648 §4 base64 strictly, refusing what Buffer.from silently skips (bad characters, missing padding). */
export function decodeBase64Strict(s: string, what: string): Buffer {
  if (s.length === 0 || !STRICT_BASE64.test(s)) throw malformed(`${what} is not valid base64`);
  return Buffer.from(s, 'base64');
}

/** Splits an OpenSSH one-line key/certificate (sshd(8) AUTHORIZED_KEYS FILE FORMAT: "type base64 [comment]") into its three parts. */
export function splitKeyLine(line: string): { type: string; data: string; comment: string } {
  const m = /^[ \t]*(\S+)[ \t]+(\S+)(?:[ \t]+(.*?))?[ \t]*$/.exec(line.replace(/\r?\n$/, ''));
  if (!m || /[\r\n]/.test(line.replace(/\r?\n$/, ''))) {
    throw malformed('expected one line of the form "<type> <base64> [comment]"');
  }
  return { type: m[1]!, data: m[2]!, comment: m[3] ?? '' };
}

/**
 * Parses an authorized_keys / `.pub` line ("type base64 comment", sshd(8)
 * AUTHORIZED_KEYS FILE FORMAT without options). The type word must equal the
 * type inside the blob, as sshd requires.
 */
export function parsePublicKeyLine(line: string): { key: PublicKey; comment: string } {
  const { type, data, comment } = splitKeyLine(line);
  if (type.endsWith('-cert-v01@openssh.com')) {
    throw new CertError('KEY_UNSUPPORTED', `this is a ${type} certificate, not a public key; read it with parseCertificateLine`);
  }
  if (!isKeyAlgorithm(type)) {
    throw new CertError('KEY_UNSUPPORTED', `unsupported key type "${type}"; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa`);
  }
  const key = parsePublicKeyBlob(decodeBase64Strict(data, 'public key'));
  if (key.type !== type) throw malformed(`key line says ${type} but the key inside is ${key.type}`);
  return { key, comment };
}

/** Formats a public key as one authorized_keys / `.pub` line (no trailing newline). */
export function formatPublicKeyLine(pk: PublicKey, comment?: string): string {
  return formatLine(pk.type, pk.blob, comment);
}

/** Formats "type base64 [comment]" (sshd(8) AUTHORIZED_KEYS FILE FORMAT); a comment with a line break would split the line, so it is refused. */
export function formatLine(type: string, blob: Buffer, comment?: string): string {
  if (comment !== undefined && /[\r\n]/.test(comment)) throw new RangeError('key comment must not contain line breaks');
  const base = `${type} ${blob.toString('base64')}`;
  return comment ? `${base} ${comment}` : base;
}

/** The SHA-256 fingerprint exactly as `ssh-keygen -l` prints it: "SHA256:" + unpadded base64 (PROTOCOL.key has none; this is OpenSSH's format). */
export function fingerprintSha256(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

// DER header of a PKCS#8 Ed25519 private key around its 32-byte seed (RFC 8410).
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

const EC_CURVES = { 'ecdsa-p256': ['prime256v1', 'P-256'], 'ecdsa-p384': ['secp384r1', 'P-384'], 'ecdsa-p521': ['secp521r1', 'P-521'] } as const;

/**
 * A new key pair of the given kind (RFC 8709 Ed25519 by default; RFC 5656 ECDSA; RFC 8332 RSA).
 *
 * Ed25519 and ECDSA keys are made from random bytes and imported, not with
 * generateKeyPairSync: in Node 20 a KeyObject from generateKeyPairSync shares
 * a mutex with the key-generation job, and a GC that finalises the job while
 * a JWK export of the key holds that mutex deadlocks the process (seen here:
 * `tctl auth sign` hanging in ExportJWKEdKey -> GC -> ~KeyGenJob).
 */
export function generateKeyPair(kind: KeyKind = 'ed25519'): { privateKey: KeyObject; publicKey: PublicKey } {
  let privateKey: KeyObject;
  switch (kind) {
    case 'ed25519':
      privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, randomBytes(32)]), format: 'der', type: 'pkcs8' });
      break;
    case 'ecdsa-p256':
    case 'ecdsa-p384':
    case 'ecdsa-p521': {
      const [opensslName, jwkCrv] = EC_CURVES[kind];
      const ecdh = createECDH(opensslName);
      ecdh.generateKeys();
      const point = ecdh.getPublicKey(); // 04 || X || Y
      const size = (point.length - 1) / 2;
      privateKey = createPrivateKey({
        key: {
          kty: 'EC',
          crv: jwkCrv,
          d: ecdh.getPrivateKey().toString('base64url'),
          x: point.subarray(1, 1 + size).toString('base64url'),
          y: point.subarray(1 + size).toString('base64url'),
        },
        format: 'jwk',
      });
      break;
    }
    case 'rsa-3072': {
      // No KeyGenJob-free RSA generator exists in node:crypto; re-importing the
      // DER right away detaches the key we hand out from the job's mutex.
      const pair = generateKeyPairSync('rsa', { modulusLength: 3072, publicExponent: 65537 });
      privateKey = createPrivateKey({ key: pair.privateKey.export({ format: 'der', type: 'pkcs8' }), format: 'der', type: 'pkcs8' });
      break;
    }
    default:
      throw new RangeError(`unknown key kind ${String(kind)}`);
  }
  return { privateKey, publicKey: publicKeyFromKeyObject(createPublicKey(privateKey)) };
}
