import { randomBytes, type KeyObject } from 'node:crypto';
import { WireWriter } from '../sshwire/index.js';
import { certAlgorithmFor, writeOptions, type Certificate } from './certificate.js';
import { CertError } from './errors.js';
import { publicKeyFromKeyObject, type PublicKey } from './keys.js';
import type { CertRequest } from './request.js';
import { signWithAlgorithm, type RsaSignatureAlgorithm } from './signature.js';

/**
 * How far back `validAfter` is set: a certificate signed "now" must already be
 * valid on a node whose clock is a little behind ours. Teleport and
 * `ssh-keygen -V` users commonly allow a minute.
 */
export const CLOCK_SKEW_SECONDS = 60;

/** A CA key pair: the private key signs, the public key goes into every certificate. */
export interface CAKeyPair {
  privateKey: KeyObject;
  publicKey: PublicKey;
}

export interface SignOptions {
  /** Default: 32 random bytes (as ssh-keygen). */
  nonce?: Buffer;
  /** Signature algorithm for an RSA CA; default rsa-sha2-512 (RFC 8332). */
  rsaAlgorithm?: RsaSignatureAlgorithm;
}

/*
 * Remembers, per CA private KeyObject, the public blob it was found to belong
 * to, so the pairing check costs one lookup per signature instead of a key
 * export. Keyed weakly by the object itself: nothing outlives the key and
 * nothing is shared between keys.
 */
const checkedPairs = new WeakMap<KeyObject, Buffer>();

/*
 * Nonces and serials are drawn from 4 KiB of randomBytes at a time: each
 * randomBytes call has a fixed cost (about 5 µs here, a fifth of the whole
 * signing time when called per certificate). The values are public (they are
 * in the certificate), every byte is handed out once, and an exhausted pool is
 * replaced by a new buffer, never refilled in place, so no value repeats.
 */
let randomPool = Buffer.alloc(0);
let randomPos = 0;

function takeRandom(n: number): Buffer {
  if (randomPos + n > randomPool.length) {
    randomPool = randomBytes(Math.max(4096, n));
    randomPos = 0;
  }
  const out = randomPool.subarray(randomPos, randomPos + n);
  randomPos += n;
  return out;
}

function checkPair(ca: CAKeyPair): void {
  let blob = checkedPairs.get(ca.privateKey);
  if (blob === undefined) {
    if (ca.privateKey.type !== 'private') throw new RangeError('the CA privateKey is not a private key');
    blob = publicKeyFromKeyObject(ca.privateKey).blob;
    checkedPairs.set(ca.privateKey, blob);
  }
  if (!blob.equals(ca.publicKey.blob)) {
    throw new CertError('CERT_REQUEST_INVALID', 'cannot sign certificate: the CA public key does not belong to the CA private key');
  }
}

/**
 * Signs an OpenSSH certificate (PROTOCOL.certkeys) for a checked request.
 * validAfter = now - 60 s (clock skew), validBefore = now + ttl; options are
 * written sorted, as ssh-keygen does. Any supported CA key type works
 * (Ed25519 fastest; RSA CAs sign with rsa-sha2-512 unless told otherwise).
 */
export function signCertificate(req: CertRequest, ca: CAKeyPair, now: Date, opts: SignOptions = {}): Certificate {
  req.check();
  checkPair(ca);
  const nowSec = Math.floor(now.getTime() / 1000);
  if (!Number.isFinite(nowSec) || nowSec < 0) throw new RangeError('signCertificate needs a valid clock');
  const validAfter = BigInt(Math.max(0, nowSec - CLOCK_SKEW_SECONDS));
  const validBefore = BigInt(nowSec + req.ttlSeconds);

  const rnd = takeRandom(opts.nonce ? 8 : 40);
  const nonce = opts.nonce ?? rnd.subarray(8);
  let serial = req.serial;
  if (serial === undefined) {
    // 63 bits keeps the serial positive in every language's int64; zero is avoided
    // because an OpenSSH KRL cannot revoke serial 0 (krl.c refuses it).
    serial = rnd.readBigUInt64BE(0) & 0x7fffffffffffffffn;
    if (serial === 0n) serial = 1n;
  }

  // ASCII names (checked by req.check) make JS order equal to OpenSSH's strcmp order.
  const critical = req.criticalOptions ? Object.entries(req.criticalOptions).sort(byName) : [];
  const extensions = req.extensions ? Object.entries(req.extensions).sort(byName) : [];

  const keyBlob = req.publicKey.blob;
  // The certified key's fields follow the nonce without the key's own type string.
  const keyFields = keyBlob.subarray(4 + keyBlob.readUInt32BE(0));
  const algorithm = certAlgorithmFor(req.publicKey.type);
  const caBlob = ca.publicKey.blob;

  // Sized for a typical Ed25519 certificate and its signature so the writer rarely grows.
  const w = new WireWriter(512 + keyFields.length + caBlob.length);
  w.string(algorithm).string(nonce).raw(keyFields).u64(serial).u32(req.type === 'user' ? 1 : 2).string(req.keyId);
  const principals = w.openString();
  for (const p of req.principals) w.string(p);
  w.closeString(principals);
  w.u64(validAfter).u64(validBefore);
  writeOptions(w, critical);
  writeOptions(w, extensions);
  w.string(''); // reserved
  w.string(caBlob);
  const signedLen = w.length;
  const signedView = w.finish();
  const signature = signWithAlgorithm(ca.publicKey.type, ca.privateKey, signedView, opts.rsaAlgorithm ?? 'rsa-sha2-512');
  w.string(signature);
  const blob = w.finish();

  return {
    algorithm,
    nonce: blob.subarray(4 + algorithm.length + 4, 4 + algorithm.length + 4 + nonce.length),
    key: req.publicKey,
    serial,
    type: req.type,
    keyId: req.keyId,
    principals: [...req.principals],
    validAfter,
    validBefore,
    criticalOptions: new Map(critical),
    extensions: new Map(extensions),
    signatureKey: ca.publicKey,
    signature: blob.subarray(signedLen + 4),
    signatureAlgorithm: ca.publicKey.type === 'ssh-rsa' ? (opts.rsaAlgorithm ?? 'rsa-sha2-512') : ca.publicKey.type,
    signedBytes: blob.subarray(0, signedLen),
    blob,
  };
}

function byName(a: [string, string], b: [string, string]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}
