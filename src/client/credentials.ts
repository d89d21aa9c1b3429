/**
 * What a tsh command needs to act as the user: the profile, the private key
 * (from the keystore the profile names) and the certificate, checked for
 * expiry. Every command that connects goes through `loadCredentials`, so
 * "not logged in" and "expired" read the same everywhere.
 */
import { readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { AuthError } from '../errors.js';
import { parseCertificateLine, parseOpenSSHPrivateKey, type Certificate } from '../sshcert/index.js';
import type { KeystoreKind, Profile, ProfileStore } from './profile.js';
import type { TshPaths } from './paths.js';

/** The part of a keystore credentials need (keystore.ts implements it). */
export interface PrivateKeyStore {
  load(profile: string, user: string): Promise<string | undefined>;
}

export interface Credentials {
  profile: Profile;
  privateKey: KeyObject;
  /** The certificate as one OpenSSH line, and parsed. */
  certLine: string;
  cert: Certificate;
}

export interface LoadCredentialsOptions {
  store: ProfileStore;
  /** Opens the keystore a profile was saved with. */
  keystore: (kind: KeystoreKind) => Promise<PrivateKeyStore>;
  now: Date;
  /** A profile name (proxy host); default: the current profile. */
  profile?: string;
}

/** A profile's stored certificate, or undefined when the file is missing or unreadable (no keystore access). */
export function readProfileCertificate(paths: TshPaths, profile: Profile): { line: string; cert: Certificate } | undefined {
  try {
    const line = readFileSync(paths.certificate(profile.name, profile.username), 'utf8').trim();
    return { line, cert: parseCertificateLine(line).cert };
  } catch {
    return undefined;
  }
}

/** Loads the user's key and certificate; AuthError (exit 4) when missing or expired, naming `tsh login`. */
export async function loadCredentials(opts: LoadCredentialsOptions): Promise<Credentials> {
  const profile = opts.store.load(opts.profile);
  if (!profile) {
    const which = opts.profile ? ` for ${opts.profile}` : '';
    throw new AuthError('NOT_LOGGED_IN', `not logged in${which}`, { hint: 'run `tsh login --proxy=HOST` first' });
  }
  const stored = readProfileCertificate(opts.store.paths, profile);
  if (!stored) {
    const certPath = opts.store.paths.certificate(profile.name, profile.username);
    throw new AuthError('CERT_MISSING', `the certificate for ${profile.username}@${profile.name} is missing or unreadable (${certPath})`, {
      hint: `run \`tsh login --proxy=${profile.webProxyAddr}\``,
    });
  }
  const { line: certLine, cert } = stored;
  const nowSec = BigInt(Math.floor(opts.now.getTime() / 1000));
  if (cert.validBefore <= nowSec) {
    const at = new Date(Number(cert.validBefore) * 1000).toISOString();
    throw new AuthError('CERT_EXPIRED', `your certificate for ${profile.name} expired at ${at}`, {
      hint: `run \`tsh login --proxy=${profile.webProxyAddr}\` to get a new one`,
    });
  }
  const pem = await (await opts.keystore(profile.keystore)).load(profile.name, profile.username);
  if (!pem) {
    throw new AuthError('KEY_MISSING', `the private key for ${profile.username}@${profile.name} is not in the ${profile.keystore} keystore`, {
      hint: `run \`tsh login --proxy=${profile.webProxyAddr}\``,
    });
  }
  const { privateKey, publicKey } = parseOpenSSHPrivateKey(pem);
  if (!publicKey.blob.equals(cert.key.blob)) {
    throw new AuthError('CERT_KEY_MISMATCH', `the stored certificate for ${profile.name} is for a different key than the stored private key`, {
      hint: `run \`tsh login --proxy=${profile.webProxyAddr}\``,
    });
  }
  return { profile, privateKey, certLine, cert };
}
