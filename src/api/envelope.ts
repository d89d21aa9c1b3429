/**
 * The login response travels from the proxy to tsh through the user's browser
 * (a redirect to tsh's loopback listener), so it ends up in browser history.
 * It is sealed to a key only tsh holds: X25519 (RFC 7748) between tsh's
 * one-time key and a fresh server key, HKDF-SHA256 (RFC 5869), AES-256-GCM.
 *
 *   sealed = base64url( server_public[32] || iv[12] || ciphertext || tag[16] )
 *
 * The additional data binds it to one login request, so a sealed response
 * cannot be replayed into another login.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { AuthError } from '../errors.js';

// DER headers around a raw 32-byte X25519 key (RFC 8410). Keys are built from
// random bytes instead of generateKeyPairSync, which can deadlock in Node 20
// when a GC runs during a later export of the generated key.
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const INFO = Buffer.from('jumpgate login response v1');

/** A one-time X25519 key pair; `publicRaw` is what the server needs. */
export function newEnvelopeKey(): { privateKey: KeyObject; publicRaw: Buffer } {
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, randomBytes(32)]), format: 'der', type: 'pkcs8' });
  return { privateKey, publicRaw: rawPublic(createPublicKey(privateKey)) };
}

/** Seals `plaintext` so that only the holder of `recipientRaw`'s private key can open it. */
export function seal(recipientRaw: Buffer, plaintext: Buffer, aad: Buffer): string {
  const recipient = publicFromRaw(recipientRaw);
  const eph = newEnvelopeKey();
  const key = deriveKey(diffieHellman({ privateKey: eph.privateKey, publicKey: recipient }), eph.publicRaw, recipientRaw);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([eph.publicRaw, iv, body, cipher.getAuthTag()]).toString('base64url');
}

/** Opens a sealed response; any change to it (or the wrong request) is LOGIN_RESPONSE_TAMPERED. */
export function open(privateKey: KeyObject, sealed: string, aad: Buffer): Buffer {
  const buf = Buffer.from(sealed, 'base64url');
  if (buf.length < 32 + 12 + 16 || buf.toString('base64url') !== sealed) throw tampered();
  const serverRaw = buf.subarray(0, 32);
  const iv = buf.subarray(32, 44);
  const tag = buf.subarray(buf.length - 16);
  const body = buf.subarray(44, buf.length - 16);
  try {
    const ownRaw = rawPublic(createPublicKey(privateKey));
    const key = deriveKey(diffieHellman({ privateKey, publicKey: publicFromRaw(serverRaw) }), serverRaw, ownRaw);
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch (err) {
    throw tampered(err);
  }
}

/** The raw 32 bytes of an X25519 public key. */
export function rawPublic(key: KeyObject): Buffer {
  return (key.export({ format: 'der', type: 'spki' }) as Buffer).subarray(X25519_SPKI_PREFIX.length);
}

/** An X25519 public key from its raw 32 bytes; throws on any other length. */
export function publicFromRaw(raw: Buffer): KeyObject {
  if (raw.length !== 32) throw new Error(`an X25519 public key is 32 bytes, not ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

function deriveKey(shared: Buffer, senderRaw: Buffer, recipientRaw: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([senderRaw, recipientRaw]), INFO, 32));
}

function tampered(cause?: unknown): AuthError {
  return new AuthError('LOGIN_RESPONSE_TAMPERED', 'the login response that reached tsh was altered or belongs to another login', {
    cause,
    hint: 'run `tsh login` again; if it keeps happening, something between your browser and tsh is changing the redirect',
  });
}
