/**
 * OpenSSH key revocation lists (KRL): the binary file sshd's `RevokedKeys`
 * and `ssh-keygen -Q` read. Encoder and parser per OpenSSH's PROTOCOL.krl
 * (https://github.com/openssh/openssh-portable/blob/master/PROTOCOL.krl).
 * Pure: no I/O, no clock (the caller passes the generation time).
 *
 * What the encoder writes, always in one canonical order so the same
 * revocations give the same bytes:
 *
 *   header          magic "SSHKRL\n\0", format 1, krl_version, generated_date, flags 0, reserved "", comment
 *   per CA key      KRL_SECTION_CERTIFICATES: ca_key (empty = any CA), reserved "",
 *                     KRL_SECTION_CERT_SERIAL_LIST (serials, ascending) and
 *                     KRL_SECTION_CERT_KEY_ID (key ids, sorted), each only when non-empty
 *   plain keys      KRL_SECTION_EXPLICIT_KEY (key blobs), KRL_SECTION_FINGERPRINT_SHA256 (ascending)
 *
 * No signature section: OpenSSH >= 9.4 refuses KRLs that carry one, and the
 * file reaches nodes over the node agent's authenticated channel anyway.
 * The parser also reads serial ranges and bitmaps (what `ssh-keygen -k`
 * writes for dense serial sets) and SHA-1 fingerprints, so a KRL made by
 * OpenSSH can be read back for tests and for `isRevoked`.
 */
import { createHash } from 'node:crypto';
import { WireError, WireReader, WireWriter } from '../sshwire/index.js';
import type { Certificate } from './certificate.js';
import { CertError } from './errors.js';

/** "SSHKRL\n\0" (PROTOCOL.krl §1). */
export const KRL_MAGIC = 0x5353484b524c0a00n;
export const KRL_FORMAT_VERSION = 1;

const SECTION_CERTIFICATES = 1;
const SECTION_EXPLICIT_KEY = 2;
const SECTION_FINGERPRINT_SHA1 = 3;
const SECTION_SIGNATURE = 4;
const SECTION_FINGERPRINT_SHA256 = 5;
const SECTION_EXTENSION = 255;
const CERT_SERIAL_LIST = 0x20;
const CERT_SERIAL_RANGE = 0x21;
const CERT_SERIAL_BITMAP = 0x22;
const CERT_KEY_ID = 0x23;
const CERT_EXTENSION = 0x39;

/** The largest bitmap the parser expands (bits): a hostile KRL cannot make it allocate more. */
const MAX_BITMAP_BITS = 1 << 20;

/** Revocations of certificates signed by one CA key (or by any CA, when `caKey` is undefined). */
export interface KrlCertificates {
  /** The CA public key's SSH wire blob; undefined = every CA (PROTOCOL.krl §2: an empty ca_key). */
  caKey?: Buffer;
  /** Revoked serials (non-zero: OpenSSH cannot revoke serial 0 by serial). */
  serials: bigint[];
  /** Inclusive ranges [lo, hi]; the parser keeps what the file had, the encoder writes lists only. */
  ranges?: Array<[bigint, bigint]>;
  /** Revoked key ids (exact match against a certificate's key id). */
  keyIds: string[];
}

/** One KRL (PROTOCOL.krl), decoded. */
export interface Krl {
  /** Increases whenever the list changes (sshd does not check it; tools compare it). */
  version: bigint;
  /** Seconds since the epoch. */
  generatedDate: bigint;
  comment: string;
  certificates: KrlCertificates[];
  /** Plain public keys revoked outright (SSH wire blobs, never certificates). */
  explicitKeys: Buffer[];
  /** SHA-256 digests (32 bytes) of revoked plain public key blobs. */
  sha256: Buffer[];
  /** SHA-1 digests (20 bytes): parsed, never written (OpenSSH's own tools write them only on request). */
  sha1?: Buffer[];
}

function malformed(message: string, cause?: unknown): CertError {
  return new CertError('KEY_MALFORMED', `malformed key revocation list: ${message}; export it again with \`tctl auth export --type=krl\``, cause === undefined ? {} : { cause });
}

const compareBig = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Encodes `krl` as an OpenSSH KRL (PROTOCOL.krl). Serials, key ids and
 * digests are sorted and de-duplicated; empty subsections are left out; `ranges` are expanded into the serial list only when small (≤ 65,536 serials), else written as ranges.
 * @throws RangeError for serial 0 (OpenSSH refuses to revoke it by serial), a key id with a NUL byte
 *   (OpenSSH reads key ids as C strings) or a SHA-256 digest that is not 32 bytes.
 */
export function encodeKrl(krl: Krl): Buffer {
  const w = new WireWriter(512);
  w.u64(KRL_MAGIC).u32(KRL_FORMAT_VERSION).u64(krl.version).u64(krl.generatedDate).u64(0n).string('').string(krl.comment);
  for (const c of krl.certificates) {
    const serials = [...new Set(c.serials)].sort(compareBig);
    if (serials.some((s) => s <= 0n || s > 0xffffffffffffffffn)) throw new RangeError('KRL serials must be between 1 and 2^64-1 (OpenSSH cannot revoke serial 0)');
    const keyIds = [...new Set(c.keyIds)].sort();
    if (keyIds.some((k) => k.includes('\0'))) throw new RangeError('KRL key ids must not contain a NUL byte');
    const ranges = (c.ranges ?? []).map(([lo, hi]) => [lo, hi] as [bigint, bigint]).sort((a, b) => compareBig(a[0], b[0]));
    if (ranges.some(([lo, hi]) => lo <= 0n || hi < lo || hi > 0xffffffffffffffffn)) throw new RangeError('KRL serial ranges must satisfy 1 <= lo <= hi < 2^64');
    if (serials.length === 0 && keyIds.length === 0 && ranges.length === 0) continue;
    w.u8(SECTION_CERTIFICATES);
    const section = w.openString();
    w.string(c.caKey ?? Buffer.alloc(0)).string('');
    if (serials.length > 0) {
      w.u8(CERT_SERIAL_LIST);
      const m = w.openString();
      for (const s of serials) w.u64(s);
      w.closeString(m);
    }
    for (const [lo, hi] of ranges) {
      w.u8(CERT_SERIAL_RANGE);
      const m = w.openString();
      w.u64(lo).u64(hi);
      w.closeString(m);
    }
    if (keyIds.length > 0) {
      w.u8(CERT_KEY_ID);
      const m = w.openString();
      for (const k of keyIds) w.string(k);
      w.closeString(m);
    }
    w.closeString(section);
  }
  const explicit = uniqueSorted(krl.explicitKeys);
  if (explicit.length > 0) {
    w.u8(SECTION_EXPLICIT_KEY);
    const m = w.openString();
    for (const k of explicit) w.string(k);
    w.closeString(m);
  }
  const sha256 = uniqueSorted(krl.sha256);
  if (sha256.some((d) => d.length !== 32)) throw new RangeError('KRL SHA-256 fingerprints must be 32 bytes');
  if (sha256.length > 0) {
    w.u8(SECTION_FINGERPRINT_SHA256);
    const m = w.openString();
    // PROTOCOL.krl §4: in numeric order, each hash a big-endian integer (= byte order for equal lengths).
    for (const d of sha256) w.string(d);
    w.closeString(m);
  }
  return Buffer.from(w.finish());
}

function uniqueSorted(list: Buffer[]): Buffer[] {
  const seen = new Map<string, Buffer>();
  for (const b of list) seen.set(b.toString('hex'), b);
  return [...seen.values()].sort(Buffer.compare);
}

/**
 * Parses an OpenSSH KRL (PROTOCOL.krl): lists, ranges and bitmaps of serials,
 * key ids, explicit keys and fingerprints. Non-critical extensions are skipped.
 * @throws CertError KEY_MALFORMED for a bad magic or version, a truncated
 *   section, an unknown section or critical extension, or a signature section
 *   (OpenSSH >= 9.4 refuses those too).
 */
export function parseKrl(buf: Buffer): Krl {
  try {
    return parse(buf);
  } catch (err) {
    if (err instanceof WireError) throw malformed(err.message, err);
    throw err;
  }
}

function parse(buf: Buffer): Krl {
  const r = new WireReader(buf);
  if (r.remaining < 12 || r.u64() !== KRL_MAGIC) throw malformed('it does not start with "SSHKRL\\n\\0"');
  const format = r.u32();
  if (format !== KRL_FORMAT_VERSION) throw malformed(`format version ${format} is not ${KRL_FORMAT_VERSION}`);
  const krl: Krl = { version: r.u64(), generatedDate: r.u64(), comment: '', certificates: [], explicitKeys: [], sha256: [], sha1: [] };
  r.u64(); // flags: none defined
  r.string(); // reserved
  krl.comment = r.utf8();
  while (r.remaining > 0) {
    const type = r.u8();
    const data = new WireReader(r.string());
    switch (type) {
      case SECTION_CERTIFICATES:
        krl.certificates.push(parseCertSection(data));
        break;
      case SECTION_EXPLICIT_KEY:
        while (data.remaining > 0) krl.explicitKeys.push(Buffer.from(data.string()));
        break;
      case SECTION_FINGERPRINT_SHA1:
      case SECTION_FINGERPRINT_SHA256: {
        const len = type === SECTION_FINGERPRINT_SHA1 ? 20 : 32;
        while (data.remaining > 0) {
          const d = data.string();
          if (d.length !== len) throw malformed(`a fingerprint of ${d.length} bytes in a section of ${len}-byte hashes`);
          (type === SECTION_FINGERPRINT_SHA1 ? krl.sha1! : krl.sha256).push(Buffer.from(d));
        }
        break;
      }
      case SECTION_SIGNATURE:
        throw malformed('it carries a signature section (OpenSSH 9.4 and later refuse those)');
      case SECTION_EXTENSION:
        skipExtension(data, 'KRL');
        break;
      default:
        throw malformed(`unknown section type ${type}`);
    }
  }
  return krl;
}

function parseCertSection(r: WireReader): KrlCertificates {
  const ca = r.string();
  r.string(); // reserved
  const out: KrlCertificates = { serials: [], ranges: [], keyIds: [], ...(ca.length > 0 ? { caKey: Buffer.from(ca) } : {}) };
  while (r.remaining > 0) {
    const type = r.u8();
    const d = new WireReader(r.string());
    switch (type) {
      case CERT_SERIAL_LIST:
        while (d.remaining > 0) out.serials.push(d.u64());
        break;
      case CERT_SERIAL_RANGE: {
        const lo = d.u64();
        const hi = d.u64();
        if (lo === 0n || hi < lo) throw malformed(`serial range ${lo}-${hi} is empty or starts at 0`);
        out.ranges!.push([lo, hi]);
        break;
      }
      case CERT_SERIAL_BITMAP: {
        const offset = d.u64();
        const bits = d.mpint(); // big-endian: bit 0 is the least significant bit of the last byte
        if (bits.length * 8 > MAX_BITMAP_BITS) throw malformed(`a serial bitmap of ${bits.length * 8} bits (at most ${MAX_BITMAP_BITS} read)`);
        for (let i = 0; i < bits.length * 8; i++) {
          const byte = bits[bits.length - 1 - (i >> 3)]!;
          if (byte & (1 << (i & 7))) {
            const s = offset + BigInt(i);
            if (s > 0xffffffffffffffffn) throw malformed('a serial bitmap wraps past 2^64');
            out.serials.push(s);
          }
        }
        break;
      }
      case CERT_KEY_ID:
        while (d.remaining > 0) out.keyIds.push(d.utf8());
        break;
      case CERT_EXTENSION:
        skipExtension(d, 'certificate');
        break;
      default:
        throw malformed(`unknown certificate subsection type 0x${type.toString(16)}`);
    }
    if (d.remaining > 0) throw malformed(`certificate subsection 0x${type.toString(16)} has ${d.remaining} unparsed bytes`);
  }
  return out;
}

function skipExtension(r: WireReader, where: string): void {
  const name = r.utf8();
  const critical = r.bool();
  r.string();
  if (critical) throw malformed(`unsupported critical ${where} extension "${name}"`);
}

/**
 * Whether `krl` revokes `cert`, with OpenSSH's rules (krl.c
 * ssh_krl_check_key): the certified key itself explicitly or by fingerprint,
 * or the certificate by serial (≠ 0) or key id, in a section of the CA key
 * that signed it or of any CA.
 */
export function isRevoked(krl: Krl, cert: Certificate): boolean {
  if (isKeyRevoked(krl, cert.key.blob) || isKeyRevoked(krl, cert.signatureKey.blob)) return true;
  for (const c of krl.certificates) {
    if (c.caKey && !c.caKey.equals(cert.signatureKey.blob)) continue;
    if (c.keyIds.includes(cert.keyId)) return true;
    if (cert.serial === 0n) continue;
    if (c.serials.includes(cert.serial)) return true;
    if ((c.ranges ?? []).some(([lo, hi]) => cert.serial >= lo && cert.serial <= hi)) return true;
  }
  return false;
}

/** Whether a plain public key blob is revoked explicitly or by its SHA-256 / SHA-1 digest. */
export function isKeyRevoked(krl: Krl, keyBlob: Buffer): boolean {
  if (krl.explicitKeys.some((k) => k.equals(keyBlob))) return true;
  const s256 = createHash('sha256').update(keyBlob).digest();
  if (krl.sha256.some((d) => d.equals(s256))) return true;
  if (krl.sha1 && krl.sha1.length > 0) {
    const s1 = createHash('sha1').update(keyBlob).digest();
    if (krl.sha1.some((d) => d.equals(s1))) return true;
  }
  return false;
}
