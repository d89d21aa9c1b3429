import { sign, verify, type KeyObject } from 'node:crypto';
import { WireReader, WireWriter } from '../sshwire/index.js';
import { curveByAlgorithm, keyAlgorithmOf, type KeyAlgorithm, type PublicKey } from './keys.js';

/** RSA signature algorithms of RFC 8332; SHA-1 `ssh-rsa` is never produced. */
export type RsaSignatureAlgorithm = 'rsa-sha2-256' | 'rsa-sha2-512';

/** Hash node:crypto needs for an RSA signature algorithm. */
function rsaHash(alg: string): 'sha256' | 'sha512' | undefined {
  return alg === 'rsa-sha2-256' ? 'sha256' : alg === 'rsa-sha2-512' ? 'sha512' : undefined;
}

/** Strips leading zero bytes so the value can be written as a minimal mpint. */
function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/**
 * Signs `data` with a key whose SSH algorithm is already known, and returns
 * the SSH signature blob. The certificate signer calls this with the CA's
 * algorithm so the hot path never re-inspects the KeyObject.
 */
export function signWithAlgorithm(
  type: KeyAlgorithm,
  privateKey: KeyObject,
  data: Buffer,
  rsaAlgorithm: RsaSignatureAlgorithm = 'rsa-sha2-512',
): Buffer {
  if (type === 'ssh-ed25519') {
    // RFC 8709 §6: string "ssh-ed25519", string signature (64 bytes). Built by hand: 4+11+4+64 bytes.
    const sig = sign(null, data, privateKey);
    const out = Buffer.allocUnsafe(83);
    out.writeUInt32BE(11, 0);
    out.write('ssh-ed25519', 4, 'latin1');
    out.writeUInt32BE(64, 15);
    sig.copy(out, 19);
    return out;
  }
  if (type === 'ssh-rsa') {
    const hash = rsaHash(rsaAlgorithm);
    if (!hash) throw new RangeError(`unsupported RSA signature algorithm ${String(rsaAlgorithm)}`);
    // RFC 8332 §3: string "rsa-sha2-512", string s (PKCS#1 v1.5, full modulus length).
    const sig = sign(hash, data, privateKey);
    return Buffer.from(new WireWriter(sig.length + 32).string(rsaAlgorithm).string(sig).finish());
  }
  const curve = curveByAlgorithm(type)!;
  // RFC 5656 §3.1.2: string "ecdsa-sha2-*", string (mpint r, mpint s).
  const p1363 = sign(curve.hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  const inner = new WireWriter(2 * curve.size + 16)
    .mpint(stripZeros(p1363.subarray(0, curve.size)))
    .mpint(stripZeros(p1363.subarray(curve.size)))
    .finish();
  return Buffer.from(new WireWriter(inner.length + 32).string(type).string(inner).finish());
}

/**
 * Signs `data` and returns the SSH signature blob: RFC 8709 (Ed25519),
 * RFC 5656 §3.1.2 (ECDSA, mpint r and s), RFC 8332 (RSA, SHA-2 only).
 */
export function signData(
  privateKey: KeyObject,
  data: Buffer,
  rsaAlgorithm: RsaSignatureAlgorithm = 'rsa-sha2-512',
): Buffer {
  if (privateKey.type !== 'private') throw new RangeError('signData needs a private key');
  return signWithAlgorithm(keyAlgorithmOf(privateKey), privateKey, data, rsaAlgorithm);
}

/** The algorithm name at the front of an SSH signature blob (RFC 4253 §6.6), or undefined if it has none. */
export function signatureAlgorithm(signatureBlob: Buffer): string | undefined {
  try {
    return new WireReader(signatureBlob).utf8(64);
  } catch {
    return undefined;
  }
}

/** True when a signature algorithm is one a key of `type` may use (RFC 8332 §3: not SHA-1 `ssh-rsa`). */
export function signatureAlgorithmFits(type: KeyAlgorithm, alg: string): boolean {
  if (type === 'ssh-rsa') return rsaHash(alg) !== undefined;
  return alg === type;
}

/** Left-pads to `size` bytes; undefined when the value does not fit. */
function fit(b: Buffer, size: number): Buffer | undefined {
  if (b.length > size) return undefined;
  if (b.length === size) return b;
  const out = Buffer.alloc(size);
  b.copy(out, size - b.length);
  return out;
}

/**
 * Verifies an SSH signature blob over `data` (RFC 8709, RFC 5656 §3.1.2,
 * RFC 8332). Strict: the algorithm must fit the key (legacy SHA-1 `ssh-rsa`
 * is refused), the blob must have no trailing bytes and ECDSA's r and s must
 * be minimal mpints. Malformed input is simply `false`.
 */
export function verifySignature(pub: PublicKey, data: Buffer, signatureBlob: Buffer): boolean {
  let alg: string;
  let sig: Buffer;
  try {
    const r = new WireReader(signatureBlob);
    alg = r.utf8(64);
    sig = r.string();
    r.end();
  } catch {
    return false;
  }
  if (!signatureAlgorithmFits(pub.type, alg)) return false;
  try {
    if (pub.type === 'ssh-ed25519') {
      return sig.length === 64 && verify(null, data, pub.key, sig);
    }
    if (pub.type === 'ssh-rsa') {
      // OpenSSH accepts signatures shorter than the modulus (some signers drop
      // leading zeros) and pads them; OpenSSL wants the exact length.
      const modBytes = Math.ceil((pub.key.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
      const padded = fit(sig, modBytes);
      return padded !== undefined && verify(rsaHash(alg)!, data, pub.key, padded);
    }
    const curve = curveByAlgorithm(pub.type)!;
    const r = new WireReader(sig);
    const rr = fit(r.mpint(), curve.size);
    const ss = fit(r.mpint(), curve.size);
    r.end();
    if (!rr || !ss) return false;
    return verify(curve.hash, data, { key: pub.key, dsaEncoding: 'ieee-p1363' }, Buffer.concat([rr, ss]));
  } catch {
    // Malformed inner encodings (ECDSA mpints) and keys OpenSSL refuses are "does not verify".
    return false;
  }
}
