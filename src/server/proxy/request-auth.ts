/**
 * The proxy's side of api/cert-auth.ts: who sent an HTTPS API request,
 * proven with the user's SSH certificate and a signature by its key.
 * Checks, in order (any failure is 401 with the reason; nothing says whether
 * anything the request names exists):
 *   1. the header has the scheme's exact shape;
 *   2. the time is within CERT_AUTH_MAX_SKEW_MS of the server's clock;
 *   3. the certificate verifies (sshcert verifyCertificate): a user
 *      certificate from a trusted user CA, valid now, source-address
 *      against the TCP peer, no unknown critical option;
 *   4. the signature over certAuthPayload verifies with the certified key;
 *   5. the nonce was not seen in the window (NonceCache, per process);
 *   6. no lock (auth/locks.ts) holds for the user, a role or the
 *      certificate's serial: 403 ACCESS_LOCKED with the lock's message.
 * The roles are read from the certificate against the current config
 * (routing.ts certificateSelectors), as the SSH proxy does.
 */
import { CERT_AUTH_MAX_SKEW_MS, certAuthPayload, parseCertAuth } from '../../api/cert-auth.js';
import { CertError, parseCertificate, verifyCertificate, verifySignature, type Certificate } from '../../sshcert/index.js';
import { ApiRequestError } from '../auth/login.js';
import { lockedMessage } from '../auth/locks.js';
import type { ServerRuntime } from '../runtime.js';
import { certificateSelectors } from './routing.js';

/** Nonces remembered at once (a full cache refuses new requests until entries expire: 503, not a hole). */
export const MAX_NONCES = 100_000;
/**
 * Nonces one user may have in the cache at once (about 8 signed requests a
 * second for the whole window): beyond it that user gets 429 and everyone
 * else is still served; without it one user could fill MAX_NONCES and shut
 * the API for all.
 */
export const MAX_NONCES_PER_USER = 1_000;

/** An authenticated API caller. */
export interface ApiCaller {
  /** The certificate's key id: the user name. */
  user: string;
  /** The certificate's roles that the config still defines. */
  roles: string[];
  cert: Certificate;
}

/** Nonces seen within the skew window (a replayed signed header is refused), counted per user. */
export class NonceCache {
  private readonly seen = new Map<string, { until: number; user: string }>();
  private readonly perUser = new Map<string, number>();
  constructor(
    private readonly max = MAX_NONCES,
    private readonly maxPerUser = MAX_NONCES_PER_USER,
  ) {}

  /**
   * Records `nonce` for `user` until `untilMs`; false when it was already there.
   * @throws ApiRequestError 429 RATE_LIMITED (this user's share is full), 503 BUSY (the whole cache is full)
   */
  use(nonce: string, user: string, nowMs: number, untilMs: number): boolean {
    const prev = this.seen.get(nonce);
    if (prev !== undefined && prev.until > nowMs) return false;
    if (prev !== undefined) this.forget(nonce, prev.user);
    if (this.seen.size >= this.max || (this.perUser.get(user) ?? 0) >= this.maxPerUser) this.sweep(nowMs);
    if ((this.perUser.get(user) ?? 0) >= this.maxPerUser) throw new ApiRequestError(429, 'RATE_LIMITED', `too many signed API requests from "${user}" in the last ${CERT_AUTH_MAX_SKEW_MS / 1000}s; try again in a minute`, 60);
    if (this.seen.size >= this.max) throw new ApiRequestError(503, 'BUSY', 'too many API requests right now; try again in a minute', 60);
    this.seen.set(nonce, { until: untilMs, user });
    this.perUser.set(user, (this.perUser.get(user) ?? 0) + 1);
    return true;
  }

  private sweep(nowMs: number): void {
    for (const [k, e] of this.seen) if (e.until <= nowMs) this.forget(k, e.user);
  }

  private forget(nonce: string, user: string): void {
    this.seen.delete(nonce);
    const n = (this.perUser.get(user) ?? 1) - 1;
    if (n <= 0) this.perUser.delete(user);
    else this.perUser.set(user, n);
  }
}

/**
 * Authenticates the request (see the module comment).
 * @throws ApiRequestError 401 NOT_AUTHENTICATED / CERT_* with the reason and `tsh login` as the fix; 403 NO_ROLES, ACCESS_LOCKED.
 */
export function authenticateRequest(
  rt: ServerRuntime,
  req: { method?: string | undefined; url?: string | undefined; headers: { authorization?: string | undefined } },
  clientAddr: string,
  nonces: NonceCache,
): ApiCaller {
  const auth = parseCertAuth(req.headers.authorization);
  const relogin = `log in again with \`tsh login --proxy=${rt.config.proxy.publicAddr.host}:${rt.config.proxy.publicAddr.port}\``;
  if (!auth) throw new ApiRequestError(401, 'NOT_AUTHENTICATED', `this endpoint needs a request signed with your certificate (Authorization: Jumpgate-SSH-Cert); use tsh`);
  const now = rt.clock();
  if (Math.abs(auth.ts - now.getTime()) > CERT_AUTH_MAX_SKEW_MS) {
    throw new ApiRequestError(401, 'CLOCK_SKEW', `the request's time is more than ${CERT_AUTH_MAX_SKEW_MS / 1000}s from the proxy's clock (${now.toISOString()}); set this machine's clock right (NTP)`);
  }
  let cert: Certificate;
  try {
    cert = parseCertificate(auth.cert);
    verifyCertificate(cert, { trustedCAs: rt.ca.get('user').trusted.map((k) => k.publicKey), now, type: 'user', clientAddress: clientAddr });
  } catch (err) {
    if (err instanceof CertError) throw new ApiRequestError(401, err.code, `${err.message}; ${relogin}`);
    throw err;
  }
  const payload = certAuthPayload({ method: req.method ?? '', target: req.url ?? '', ts: auth.ts, nonce: auth.nonce });
  if (!verifySignature(cert.key, payload, auth.sig)) {
    throw new ApiRequestError(401, 'CERT_BAD_SIGNATURE', `the request's signature does not verify with the key certified for "${cert.keyId}"`);
  }
  if (!nonces.use(auth.nonce, cert.keyId, now.getTime(), auth.ts + CERT_AUTH_MAX_SKEW_MS)) {
    throw new ApiRequestError(401, 'REPLAYED', 'this signed request was already used; sign a new one (tsh does)');
  }
  const sel = certificateSelectors(rt.config, cert);
  if ('ok' in sel) throw new ApiRequestError(403, sel.code, sel.message);
  // A lock on the user, a role or this certificate refuses the API as it refuses the SSH port and the TLS route.
  const lock = rt.locks.check({ user: cert.keyId, roles: sel.roles, serial: cert.serial });
  if (lock) throw new ApiRequestError(403, 'ACCESS_LOCKED', lockedMessage(lock));
  return { user: cert.keyId, roles: sel.roles, cert };
}
