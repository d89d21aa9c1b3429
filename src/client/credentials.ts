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
import { formatDuration } from '../shared/duration.js';
import { ProfileStore, type KeystoreKind, type Profile } from './profile.js';
import { openProfileKeyStore } from './keystore.js';
import { nonDefaultTshHome, type TshPaths } from './paths.js';
import { EXAMPLE_PROXY, loginCommand } from './proxy-addr.js';
import type { Env } from '../net/proxy-env.js';

/**
 * How far in this machine's future a certificate's start (valid_after) may
 * be and tsh still uses it: a clock that is behind makes a fresh certificate
 * look "not valid yet" here while the proxy and the nodes, whose clocks are
 * right, accept it. 5 minutes, Kerberos' default skew; TSH_CLOCK_LEEWAY
 * changes it. The proxy also back-dates valid_after by 60 s (sshcert CLOCK_SKEW_SECONDS).
 */
export const DEFAULT_CLOCK_LEEWAY_SECONDS = 5 * 60;

/** A certificate's validity as seen from this machine's clock. */
export type CertValidity =
  | { state: 'valid'; /** Seconds this clock is at least behind (valid_after is in its future, within the leeway); 0 when not seen. */ behindSeconds: number }
  | { state: 'expired'; at: Date }
  | { state: 'not-yet-valid'; from: Date; /** This clock is at least this many seconds behind the signer's. */ behindSeconds: number };

/**
 * Valid, expired (valid_before <= now) or not valid yet (valid_after later
 * than now + leeway: this machine's clock is behind). Times in whole seconds
 * as in the certificate (PROTOCOL.certkeys).
 */
export function certValidity(cert: Pick<Certificate, 'validAfter' | 'validBefore'>, now: Date, leewaySeconds = DEFAULT_CLOCK_LEEWAY_SECONDS): CertValidity {
  const nowSec = Math.floor(now.getTime() / 1000);
  if (cert.validBefore <= BigInt(nowSec)) return { state: 'expired', at: new Date(Number(cert.validBefore) * 1000) };
  const ahead = Number(cert.validAfter) - nowSec;
  if (ahead > leewaySeconds) return { state: 'not-yet-valid', from: new Date(Number(cert.validAfter) * 1000), behindSeconds: ahead };
  return { state: 'valid', behindSeconds: Math.max(0, ahead) };
}

/** "this machine's clock is at least 3m behind" and the fix, for messages about a certificate that starts in the future. */
export function clockBehindText(behindSeconds: number): { message: string; hint: string } {
  return {
    message: `this machine's clock is at least ${formatDuration(behindSeconds)} behind the proxy's`,
    hint: 'set the clock right (e.g. `sudo timedatectl set-ntp true`, or the date settings of your OS), or allow more skew with TSH_CLOCK_LEEWAY=10m',
  };
}

/**
 * The hint when there is no profile to use: the proxy asked for when there
 * is one, else an example that is clearly an example.
 */
export function notLoggedInHint(proxy: string | undefined, program = 'tsh', tshHome?: string): string {
  return proxy
    ? `run \`${loginCommand({ webProxyAddr: proxy, ...(tshHome ? { tshHome } : {}) }, program)}\` first`
    : `run \`${program} login --proxy=PROXY\` first, where PROXY is your Jumpgate proxy's address (e.g. ${EXAMPLE_PROXY})`;
}

/** The exact `tsh login` that renews `profile` (loginCommand): its proxy, remembered --user and --insecure, and TSH_HOME when not the default. */
export function profileLoginCommand(profile: Pick<Profile, 'webProxyAddr' | 'insecure' | 'user'>, paths: Pick<TshPaths, 'penv'>, program = 'tsh'): string {
  const tshHome = nonDefaultTshHome(paths.penv);
  return loginCommand({ webProxyAddr: profile.webProxyAddr, insecure: profile.insecure, ...(profile.user ? { user: profile.user } : {}), ...(tshHome ? { tshHome } : {}) }, program);
}

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
  /** The `tsh login` command that renews this profile, as printed in hints (loginCommand). */
  relogin: string;
  /** The leeway the certificate was checked with; host certificates get the same (hostCertVerifier). */
  clockLeewaySeconds: number;
}

export interface LoadCredentialsOptions {
  store: ProfileStore;
  /** Opens the keystore a profile was saved with. */
  keystore: (kind: KeystoreKind) => Promise<PrivateKeyStore>;
  now: Date;
  /** A profile name (proxy host); default: the current profile. */
  profile?: string;
  /** The web address (host:port) the profile was asked for (--proxy, TSH_PROXY): the not-logged-in hint names it, port included. */
  proxyAddr?: string;
  /** How to run tsh in hints (cli/ui.ts tshProgram). Default `tsh`. */
  program?: string;
  /** See DEFAULT_CLOCK_LEEWAY_SECONDS (TSH_CLOCK_LEEWAY). */
  leewaySeconds?: number;
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

/**
 * Loads the user's key and certificate; AuthError (exit 4) when missing,
 * expired or not valid yet (a clock behind by more than the leeway), each
 * hint naming the exact `tsh login` command that renews the profile.
 */
export async function loadCredentials(opts: LoadCredentialsOptions): Promise<Credentials> {
  const program = opts.program ?? 'tsh';
  const tshHome = nonDefaultTshHome(opts.store.paths.penv);
  const profile = opts.store.load(opts.profile);
  if (!profile) {
    const which = opts.profile ? ` for ${opts.profile}` : '';
    throw new AuthError('NOT_LOGGED_IN', `not logged in${which}`, { hint: notLoggedInHint(opts.proxyAddr ?? opts.profile, program, tshHome) });
  }
  const relogin = profileLoginCommand(profile, opts.store.paths, program);
  const stored = readProfileCertificate(opts.store.paths, profile);
  if (!stored) {
    const certPath = opts.store.paths.certificate(profile.name, profile.username);
    throw new AuthError('CERT_MISSING', `the certificate for ${profile.username}@${profile.name} is missing or unreadable (${certPath})`, {
      hint: `run \`${relogin}\``,
    });
  }
  const { line: certLine, cert } = stored;
  const v = certValidity(cert, opts.now, opts.leewaySeconds);
  if (v.state === 'expired') {
    throw new AuthError('CERT_EXPIRED', `your certificate for ${profile.name} expired at ${v.at.toISOString()}`, {
      hint: `run \`${relogin}\` to get a new one`,
    });
  }
  if (v.state === 'not-yet-valid') {
    const clock = clockBehindText(v.behindSeconds);
    throw new AuthError('CERT_NOT_YET_VALID', `your certificate for ${profile.name} is not valid yet (from ${v.from.toISOString()}): ${clock.message}`, {
      hint: clock.hint,
    });
  }
  const pem = await (await opts.keystore(profile.keystore)).load(profile.name, profile.username);
  if (!pem) {
    throw new AuthError('KEY_MISSING', `the private key for ${profile.username}@${profile.name} is not in the ${profile.keystore} keystore`, {
      hint: `run \`${relogin}\``,
    });
  }
  const { privateKey, publicKey } = parseOpenSSHPrivateKey(pem);
  if (!publicKey.blob.equals(cert.key.blob)) {
    throw new AuthError('CERT_KEY_MISMATCH', `the stored certificate for ${profile.name} is for a different key than the stored private key`, {
      hint: `run \`${relogin}\``,
    });
  }
  return { profile, privateKey, certLine, cert, relogin, clockLeewaySeconds: opts.leewaySeconds ?? DEFAULT_CLOCK_LEEWAY_SECONDS };
}

/**
 * Loads the user's credentials for a profile (AuthError naming the exact
 * `tsh login` when missing or expired, the clock when not valid yet).
 * `how`: how hints run tsh, and the clock leeway (credentials.ts).
 */
export function credentialsFor(
  paths: TshPaths,
  profile: string | undefined,
  now: Date,
  how: { program?: string; leewaySeconds?: number; proxyAddr?: string | undefined } = {},
): Promise<Credentials> {
  const { proxyAddr, ...rest } = how;
  return loadCredentials({ store: new ProfileStore(paths), keystore: (kind) => openProfileKeyStore(kind, { paths }), now, ...(profile ? { profile } : {}), ...(proxyAddr ? { proxyAddr } : {}), ...rest });
}

/**
 * Refuses, before any connection, a login the certificate does not carry:
 * the proxy would refuse it too, but only with "Permission denied".
 */
export function checkLogin(creds: Credentials, login: string): void {
  if (creds.cert.principals.includes(login)) return;
  throw new AuthError('LOGIN_NOT_ALLOWED', `your roles do not grant the login "${login}" (your logins: ${creds.cert.principals.join(', ')})`, {
    hint: `use one of your logins (ssh USER@host or -l USER), or ask for a role that grants it and run \`${creds.relogin}\` again`,
  });
}

/** The default node login: the local user name when the certificate carries it, else the certificate's first login. */
export function defaultLogin(creds: Credentials, env: Env): string {
  const local = env['USER'] ?? env['LOGNAME'] ?? env['USERNAME'];
  return local && creds.cert.principals.includes(local) ? local : creds.cert.principals[0]!;
}
