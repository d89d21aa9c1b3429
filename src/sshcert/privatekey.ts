import { createECDH, createPrivateKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { WireError, WireReader, WireWriter } from '../sshwire/index.js';
import { CertError } from './errors.js';
import {
  curveByAlgorithm,
  decodeBase64Strict,
  isKeyAlgorithm,
  keyAlgorithmOf,
  parsePublicKeyBlob,
  publicKeyFromKeyObject,
  type PublicKey,
} from './keys.js';

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';
/** Cipher block size for "none" (PROTOCOL.key; sshkey_private_to_blob2 pads to 8). */
const BLOCK = 8;

const b64u = (b: Buffer): string => b.toString('base64url');

function leftPad(b: Buffer, size: number): Buffer {
  if (b.length >= size) return b;
  const out = Buffer.alloc(size);
  b.copy(out, size - b.length);
  return out;
}

function big(mag: Buffer): bigint {
  return mag.length === 0 ? 0n : BigInt('0x' + mag.toString('hex'));
}

function bigToBuf(n: bigint): Buffer {
  let hex = n.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  return Buffer.from(hex, 'hex');
}

function malformed(message: string, cause?: unknown): CertError {
  return new CertError(
    'KEY_MALFORMED',
    `${message}; the file is not a usable OpenSSH private key (regenerate it with \`ssh-keygen -t ed25519\`)`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * Encodes a private key in OpenSSH's "openssh-key-v1" format (PROTOCOL.key),
 * unencrypted, as the PEM-style text `ssh-keygen` writes: random check ints,
 * padding 1,2,3,... to 8 bytes, base64 in 70-column lines.
 */
export function encodeOpenSSHPrivateKey(privateKey: KeyObject, comment = ''): string {
  if (privateKey.type !== 'private') throw new RangeError('encodeOpenSSHPrivateKey needs a private key');
  const pub = publicKeyFromKeyObject(privateKey);
  const jwk = privateKey.export({ format: 'jwk' });
  const priv = new WireWriter(pub.type === 'ssh-rsa' ? 2048 : 256);
  const check = randomBytes(4);
  priv.raw(check).raw(check).string(pub.type);
  if (pub.type === 'ssh-ed25519') {
    // PROTOCOL.key / sshkey.c: string pk (32), string sk = seed || pk (64).
    const pk = Buffer.from(jwk.x!, 'base64url');
    priv.string(pk).string(Buffer.concat([Buffer.from(jwk.d!, 'base64url'), pk]));
  } else if (pub.type === 'ssh-rsa') {
    // string "ssh-rsa", mpint n, e, d, iqmp, p, q (sshkey.c ssh_rsa_serialize_private).
    for (const f of [jwk.n, jwk.e, jwk.d, jwk.qi, jwk.p, jwk.q]) priv.mpint(Buffer.from(f!, 'base64url'));
  } else {
    // string curve, string Q, mpint d (RFC 5656 naming).
    const curve = curveByAlgorithm(pub.type)!;
    const q = new WireReader(pub.blob);
    q.string();
    q.string();
    priv.string(curve.ident).string(q.string()).mpint(Buffer.from(jwk.d!, 'base64url'));
  }
  priv.string(comment);
  for (let i = 1; priv.length % BLOCK !== 0; i++) priv.u8(i);

  const privBytes = priv.finish();
  const out = new WireWriter(privBytes.length + pub.blob.length + 64)
    .raw(MAGIC)
    .string('none') // cipher
    .string('none') // kdf
    .string('') // kdf options
    .u32(1) // number of keys
    .string(pub.blob)
    .string(privBytes)
    .finish();
  const b64 = out.toString('base64');
  // The buffers held secret key material: wipe them before they are collected.
  privBytes.fill(0);
  out.fill(0);
  const lines = [BEGIN];
  for (let i = 0; i < b64.length; i += 70) lines.push(b64.slice(i, i + 70));
  lines.push(END, '');
  return lines.join('\n');
}

/**
 * Parses an unencrypted "openssh-key-v1" private key (PROTOCOL.key) holding
 * one Ed25519, ECDSA or RSA key. Passphrase-protected keys are KEY_ENCRYPTED;
 * anything inconsistent (check ints, public part vs private part, padding) is
 * KEY_MALFORMED.
 */
export function parseOpenSSHPrivateKey(text: string): { privateKey: KeyObject; publicKey: PublicKey; comment: string } {
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin < 0 || end < begin) {
    if (text.includes('-----BEGIN ') && text.includes('PRIVATE KEY-----')) {
      throw new CertError(
        'KEY_UNSUPPORTED',
        'this is a PEM/PKCS#8 private key, not an OpenSSH one; convert it with `ssh-keygen -p -N "" -f FILE` (rewrites it in OpenSSH format)',
      );
    }
    throw malformed(`no "${BEGIN}" block found`);
  }
  const body = text.slice(begin + BEGIN.length, end).replace(/[\r\n\t ]+/g, '');
  const raw = decodeBase64Strict(body, 'private key body');
  try {
    return parseRaw(raw);
  } catch (err) {
    if (err instanceof WireError) throw malformed(`truncated or corrupt private key (${err.message})`, err);
    throw err;
  } finally {
    raw.fill(0);
  }
}

function parseRaw(raw: Buffer): { privateKey: KeyObject; publicKey: PublicKey; comment: string } {
  if (raw.length < MAGIC.length || !raw.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw malformed('missing the "openssh-key-v1" header');
  }
  const r = new WireReader(raw.subarray(MAGIC.length));
  const cipher = r.utf8(64);
  const kdf = r.utf8(64);
  r.string(); // kdf options
  if (cipher !== 'none' || kdf !== 'none') {
    throw new CertError(
      'KEY_ENCRYPTED',
      `this private key is protected by a passphrase (cipher ${cipher}, kdf ${kdf}); Jumpgate needs an unencrypted key: remove the passphrase with \`ssh-keygen -p -N "" -f FILE\` or generate a new key`,
    );
  }
  const nkeys = r.u32();
  if (nkeys !== 1) throw new CertError('KEY_UNSUPPORTED', `the file holds ${nkeys} keys; exactly one is supported`);
  const pubBlob = r.string();
  const privSection = r.string();
  r.end();

  let publicKey: PublicKey;
  try {
    // Copy: the caller's buffer is wiped after parsing, the public blob lives on.
    publicKey = parsePublicKeyBlob(Buffer.from(pubBlob));
  } catch (err) {
    if (err instanceof CertError && err.code === 'KEY_UNSUPPORTED') throw err;
    throw malformed('the public key part is invalid', err);
  }
  if (privSection.length % BLOCK !== 0) throw malformed('the private section is not padded to 8 bytes');
  const p = new WireReader(privSection);
  const check1 = p.u32();
  const check2 = p.u32();
  if (check1 !== check2) throw malformed('the check integers differ (corrupt key, or a wrong passphrase was used)');
  const type = p.utf8(64);
  if (!isKeyAlgorithm(type)) throw new CertError('KEY_UNSUPPORTED', `unsupported private key type "${type}"; use ed25519, ECDSA or RSA`);
  if (type !== publicKey.type) throw malformed(`the private part is ${type} but the public part is ${publicKey.type}`);

  let privateKey: KeyObject;
  if (type === 'ssh-ed25519') {
    const pk = p.string();
    const sk = p.string();
    if (pk.length !== 32 || sk.length !== 64) throw malformed('ssh-ed25519 key parts have the wrong length');
    if (!timingSafeEqual(sk.subarray(32), pk)) throw malformed('ssh-ed25519 private key does not contain its public key');
    privateKey = createPrivateKey({
      key: { kty: 'OKP', crv: 'Ed25519', d: b64u(sk.subarray(0, 32)), x: b64u(pk) },
      format: 'jwk',
    });
  } else if (type === 'ssh-rsa') {
    const [n, e, d, iqmp, pp, q] = [p.mpint(), p.mpint(), p.mpint(), p.mpint(), p.mpint(), p.mpint()];
    const N = big(n);
    const P = big(pp);
    const Q = big(q);
    const D = big(d);
    const E = big(e);
    if (P < 2n || Q < 2n || P * Q !== N) throw malformed('RSA primes do not multiply to the modulus');
    if ((big(iqmp) * Q) % P !== 1n) throw malformed('RSA CRT coefficient is wrong');
    const lambda = lcm(P - 1n, Q - 1n);
    if ((E * D) % lambda !== 1n) throw malformed('RSA private exponent does not match the public exponent');
    privateKey = createPrivateKey({
      key: {
        kty: 'RSA',
        n: b64u(n),
        e: b64u(e),
        d: b64u(d),
        p: b64u(pp),
        q: b64u(q),
        dp: b64u(bigToBuf(D % (P - 1n))),
        dq: b64u(bigToBuf(D % (Q - 1n))),
        qi: b64u(iqmp),
      },
      format: 'jwk',
    });
  } else {
    const curve = curveByAlgorithm(type)!;
    const ident = p.utf8(32);
    const point = p.string();
    const d = p.mpint();
    if (ident !== curve.ident) throw malformed(`${type} private key names curve "${ident}"`);
    if (d.length === 0 || d.length > curve.size) throw malformed(`${type} private scalar is out of range`);
    let derived: Buffer;
    try {
      const ecdh = createECDH(curve.nodeCurve);
      ecdh.setPrivateKey(leftPad(d, curve.size));
      derived = ecdh.getPublicKey();
    } catch (err) {
      throw malformed(`${type} private scalar is invalid`, err);
    }
    if (!derived.equals(point)) throw malformed(`${type} private scalar does not match its public point`);
    privateKey = createPrivateKey({
      key: {
        kty: 'EC',
        crv: curve.jwkCrv,
        d: b64u(leftPad(d, curve.size)),
        x: b64u(point.subarray(1, 1 + curve.size)),
        y: b64u(point.subarray(1 + curve.size)),
      },
      format: 'jwk',
    });
  }
  const comment = p.utf8();
  // Padding is 1, 2, 3, ... up to the block size (PROTOCOL.key); anything else is corruption.
  for (let i = 1; p.remaining > 0; i++) {
    if (p.u8() !== i || i >= BLOCK) throw malformed('the private section padding is wrong');
  }
  // The public part must be the public half of this private key, not a different key.
  const derivedPub = publicKeyFromKeyObject(privateKey);
  if (!derivedPub.blob.equals(publicKey.blob) || keyAlgorithmOf(privateKey) !== publicKey.type) {
    throw malformed('the public key does not match the private key');
  }
  return { privateKey, publicKey, comment };
}

function gcd(a: bigint, b: bigint): bigint {
  while (b) [a, b] = [b, a % b];
  return a;
}

function lcm(a: bigint, b: bigint): bigint {
  return (a / gcd(a, b)) * b;
}
