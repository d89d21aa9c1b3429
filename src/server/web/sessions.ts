/**
 * Web UI sessions (`https://<public_addr>/web`): sign-in through the same
 * OIDC connector as `tsh login`, with this proxy as the redirect target (the
 * usual /v1/login/oidc/callback; the state starts with WEB_STATE_PREFIX and
 * web.ts hands such callbacks here, as it does headless ones).
 *
 * Everything is shared state (`ItemBackend`, kind `web_session`), so a
 * session made through one proxy works on every proxy of a PostgreSQL cluster:
 *
 *   key                  value                                    written by
 *   ───────────────────  ───────────────────────────────────────  ─────────────────────
 *   oidc.<state>         OIDC checks + sha256 of the login cookie  GET /web/login (taken by the callback)
 *   s.<sha256(cookie)>   user, roles, claims, CSRF token, expiry    the callback (deleted by logout)
 *
 * The cookie (`__Host-jumpgate_session`: HttpOnly, Secure, SameSite=Strict,
 * Path=/, no Domain) holds 256 random bits; only their sha256 is stored. A
 * session lives min(auth.cert_ttl, the roles' max_session_ttl) and no longer;
 * its roles are read against the CURRENT config on every request (a role
 * removed since sign-in grants nothing; none left = signed out).
 *
 * Login CSRF (an attacker's callback URL sent to a victim) is refused: the
 * state is bound to a cookie set on the browser that started the sign-in
 * (`__Host-jumpgate_login`, SameSite=Lax so it comes back on the IdP's
 * top-level redirect), and the callback must carry it.
 *
 * Request CSRF: every state-changing request carries the session's CSRF
 * token in `X-CSRF-Token` AND an `Origin` equal to this server
 * (`checkStateChange`), on top of SameSite=Strict.
 */
import { randomBytes } from 'node:crypto';
import { sameSecret, secretDigest } from '../secrets.js';
import type { IncomingMessage } from 'node:http';
import * as v from 'valibot';

import { RateLimiter } from '../limits.js';
import type { ServerRuntime } from '../runtime.js';
import type { ItemBackend } from '../storage/backend.js';
import { ApiRequestError, LOGIN_RATE_LIMIT, type IdpConnector } from '../auth/login.js';
import { OidcConnector, type OidcChecks } from '../auth/oidc.js';
import { certTtlSeconds, mapClaimsToRoles, resolveAccess, type Access } from '../auth/roles.js';
import { lockedMessage } from '../auth/locks.js';

/** OIDC states of web sign-ins start with this: web.ts sends their callbacks here. */
export const WEB_STATE_PREFIX = 'web.';
/** The session cookie (`__Host-`: Secure, Path=/, no Domain, so no other host can set or shadow it). */
export const WEB_SESSION_COOKIE = '__Host-jumpgate_session';
/** Binds a sign-in's OIDC state to the browser that started it (login CSRF). */
export const WEB_LOGIN_COOKIE = '__Host-jumpgate_login';
/** The header that carries the session's CSRF token on state-changing requests. */
export const CSRF_HEADER = 'x-csrf-token';
/** GET /web/login per source: the browser login's numbers. */
export const WEB_LOGIN_RATE_LIMIT = LOGIN_RATE_LIMIT;
/** Sessions one user holds at once (several browsers); a new one evicts the oldest. */
export const MAX_WEB_SESSIONS_PER_USER = 10;
/** Web sign-ins waiting for the IdP, in all; a new one over it is refused (503) until some expire. */
export const MAX_PENDING_WEB_LOGINS = 1_000;
/** Largest set of IdP claims kept in a session (they feed {{external.*}} login templates). */
export const MAX_CLAIMS_BYTES = 32 * 1024;

const KIND = 'web_session';
const hex64 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/));
const ms = v.pipe(v.number(), v.safeInteger(), v.minValue(0));
// Stored values are checked when they come back: they may come from a database another process wrote.
const PendingSchema = v.strictObject({
  v: v.literal(1),
  state: v.pipe(v.string(), v.maxLength(256)),
  nonce: v.pipe(v.string(), v.maxLength(256)),
  code_verifier: v.pipe(v.string(), v.maxLength(256)),
  binding_sha256: hex64,
});
const SessionSchema = v.strictObject({
  v: v.literal(1),
  user: v.pipe(v.string(), v.minLength(1), v.maxLength(1_024)),
  roles: v.array(v.pipe(v.string(), v.maxLength(256))),
  claims: v.record(v.string(), v.unknown()),
  csrf: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/)),
  client_addr: v.pipe(v.string(), v.maxLength(100)),
  created_at: ms,
  expires_at: ms,
});
type StoredSession = v.InferOutput<typeof SessionSchema>;

/** A signed-in browser, as a request sees it. */
export interface WebSession {
  /** sha256 of the cookie value, hex: the item key's tail (never sent anywhere). */
  digest: string;
  /** The first 16 hex digits of `digest`: names the session in the audit log and in server logs. */
  id: string;
  user: string;
  /** The roles still defined in the config, in sign-in order. */
  roles: string[];
  /** The roles resolved now (logins, label selectors, permits). */
  access: Access;
  csrf: string;
  /** ms since the epoch. */
  expiresAt: number;
}

/** What the HTTPS layer sends the browser at the end of a sign-in. */
export type WebLoginOutcome =
  | { kind: 'redirect'; location: string; setCookies: string[] }
  | { kind: 'page'; status: number; title: string; message: string; setCookies: string[] };


/** One cookie's value from the Cookie header, or undefined. */
export function cookieValue(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** `Set-Cookie` value that removes `name`. */
function clearCookie(name: string): string {
  return `${name}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict`;
}

/**
 * Whether a request's `Origin` is this server as the browser reached it
 * (`https://<Host>`). A missing Origin is refused too: every browser sends
 * one on a fetch POST and on a WebSocket handshake.
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  return typeof origin === 'string' && typeof host === 'string' && origin === `https://${host}`;
}

/** The server side of web sessions; one per process, all state in `items`. */
export class WebSessions {
  readonly loginLimiter = new RateLimiter(WEB_LOGIN_RATE_LIMIT.perMinute, WEB_LOGIN_RATE_LIMIT.burst);

  constructor(
    private readonly rt: ServerRuntime,
    private readonly items: ItemBackend,
    private readonly oidc: IdpConnector | undefined,
  ) {}

  /** Whether an OIDC callback's `state` belongs to a web sign-in (web.ts routes it here). */
  static ownsState(state: string | null): boolean {
    return state !== null && state.startsWith(WEB_STATE_PREFIX);
  }

  /**
   * GET /web/login: stores the OIDC checks under `oidc.<state>` until
   * auth.login_timeout and sends the browser to the IdP, with a cookie that
   * binds the state to it. @throws ApiRequestError 429 (rate), 501 (no OIDC), 503 (too many pending)
   */
  async startLogin(clientAddr: string): Promise<{ location: string; setCookies: string[] }> {
    if (!this.oidc) throw new ApiRequestError(501, 'LOGIN_NOT_CONFIGURED', 'this cluster has no auth.oidc section: nobody can sign in to the web UI');
    const over = this.loginLimiter.take(clientAddr, this.now());
    if (over) throw new ApiRequestError(429, 'RATE_LIMITED', `too many sign-ins from your address; try again in ${over.retryAfterSeconds} s`, over.retryAfterSeconds);
    const pendingCount = (await this.items.list(KIND)).filter((i) => i.key.startsWith('oidc.')).length;
    if (pendingCount >= MAX_PENDING_WEB_LOGINS) throw new ApiRequestError(503, 'TOO_MANY_LOGINS', 'too many sign-ins are waiting for the identity provider; try again in a minute', 60);
    const checks = OidcConnector.newChecks();
    checks.state = `${WEB_STATE_PREFIX}${checks.state}`;
    const url = await this.oidc.authorizationUrl(checks);
    const binding = randomBytes(32).toString('base64url');
    const timeout = this.rt.config.auth.loginTimeoutSeconds;
    await this.items.put(KIND, `oidc.${checks.state}`, { v: 1, state: checks.state, nonce: checks.nonce, code_verifier: checks.codeVerifier, binding_sha256: secretDigest(binding) }, this.now() + timeout * 1000);
    return { location: url.toString(), setCookies: [`${WEB_LOGIN_COOKIE}=${binding}; Path=/; Max-Age=${timeout}; Secure; HttpOnly; SameSite=Lax`] };
  }

  /**
   * The IdP's redirect for a web sign-in: takes the pending state (single
   * use), checks the binding cookie, finishes OIDC (PKCE, state, nonce),
   * maps the claims to roles (the same rules as tsh login), stores the
   * session, audits `web.login` (fail closed) and redirects to /web with the
   * session cookie. Refusals are pages that say what to do.
   */
  async callback(url: URL, bindingCookie: string | undefined, clientAddr: string): Promise<WebLoginOutcome> {
    const clear = [clearCookie(WEB_LOGIN_COOKIE)];
    const refuse = (status: number, title: string, message: string): WebLoginOutcome => ({ kind: 'page', status, title, message: `${message} Start again at /web.`, setCookies: clear });
    const state = url.searchParams.get('state') ?? '';
    const item = state.length <= 256 ? await this.items.take(KIND, `oidc.${state}`) : undefined;
    const parsed = item ? v.safeParse(PendingSchema, item.value) : undefined;
    if (!parsed?.success) return refuse(400, 'This sign-in link is no longer valid', 'It is unknown, expired or was already used.');
    const p = parsed.output;
    if (bindingCookie === undefined || !sameSecret(secretDigest(bindingCookie), p.binding_sha256)) {
      this.rt.log.warn(`web: sign-in from ${clientAddr} refused: the callback came to a browser that did not start it`);
      return refuse(403, 'Sign-in refused', 'This browser did not start this sign-in (a link from someone else?).');
    }
    const idpError = url.searchParams.get('error');
    if (idpError) return refuse(403, 'The identity provider refused the sign-in', `${idpError}: ${url.searchParams.get('error_description') ?? ''}`.trim());
    const checks: OidcChecks = { state: p.state, nonce: p.nonce, codeVerifier: p.code_verifier };
    let claims: Record<string, unknown>;
    try {
      claims = await this.oidc!.finish(url, checks);
    } catch (err) {
      return refuse(403, 'Sign-in failed', `${(err as Error).message}.`);
    }
    const cfg = this.rt.config.auth.oidc!;
    const user = claims[cfg.usernameClaim];
    if (typeof user !== 'string' || user === '') return refuse(403, 'Sign-in refused', `Your identity has no "${cfg.usernameClaim}" claim; ask an admin to check auth.oidc.username_claim.`);
    const roles = mapClaimsToRoles(cfg, claims).filter((r) => this.rt.config.roles.has(r));
    if (roles.length === 0) return refuse(403, 'No access', `${user} is not mapped to any Jumpgate role; ask an admin for access.`);
    if (JSON.stringify(claims).length > MAX_CLAIMS_BYTES) return refuse(403, 'Sign-in refused', `the identity provider sent more than ${MAX_CLAIMS_BYTES} bytes of claims; ask an admin.`);
    let access: Access;
    try {
      access = resolveAccess(this.rt.config, user, roles, claims);
    } catch (err) {
      return refuse(403, 'No access', `${(err as Error).message}.`);
    }
    const lock = this.rt.locks.check({ user, roles });
    if (lock) return refuse(403, 'Access locked', `${lockedMessage(lock)}.`);
    const ttl = certTtlSeconds(this.rt.config, access);
    const cookie = randomBytes(32).toString('base64url');
    const d = secretDigest(cookie);
    const now = this.now();
    const session: StoredSession = { v: 1, user, roles, claims, csrf: randomBytes(32).toString('base64url'), client_addr: clientAddr, created_at: now, expires_at: now + ttl * 1000 };
    await this.evictOver(user, MAX_WEB_SESSIONS_PER_USER - 1);
    await this.items.put(KIND, `s.${d}`, session, session.expires_at);
    try {
      await this.rt.audit.emit({ event: 'web.login', user, roles, client_addr: clientAddr, web_session: d.slice(0, 16), expires_at: new Date(session.expires_at).toISOString() });
    } catch (err) {
      await this.items.delete(KIND, `s.${d}`).catch(() => undefined);
      throw err;
    }
    return {
      kind: 'redirect',
      location: '/web',
      setCookies: [...clear, `${WEB_SESSION_COOKIE}=${cookie}; Path=/; Max-Age=${ttl}; Secure; HttpOnly; SameSite=Strict`],
    };
  }

  /**
   * The session a request's cookie names, with its roles resolved against
   * the current config; undefined when there is none (no cookie, unknown,
   * expired, or no role of it is defined any more).
   */
  async authenticate(req: IncomingMessage): Promise<WebSession | undefined> {
    const cookie = cookieValue(req, WEB_SESSION_COOKIE);
    if (cookie === undefined || !/^[A-Za-z0-9_-]{43}$/.test(cookie)) return undefined;
    return this.byDigest(secretDigest(cookie));
  }

  /** A session by the sha256 of its cookie (the lock watcher and the terminal re-check with it). */
  async byDigest(d: string): Promise<WebSession | undefined> {
    const item = await this.items.get(KIND, `s.${d}`);
    const parsed = item ? v.safeParse(SessionSchema, item.value) : undefined;
    if (!parsed?.success) return undefined;
    const s = parsed.output;
    if (this.now() >= s.expires_at) return undefined;
    const roles = s.roles.filter((r) => this.rt.config.roles.has(r));
    if (roles.length === 0) return undefined;
    if (this.rt.locks.check({ user: s.user, roles })) {
      // A lock on the user or a role ends the session for good (the terminals too: they re-check here).
      await this.items.delete(KIND, `s.${d}`);
      return undefined;
    }
    let access: Access;
    try {
      access = resolveAccess(this.rt.config, s.user, roles, s.claims);
    } catch {
      return undefined;
    }
    return { digest: d, id: d.slice(0, 16), user: s.user, roles, access, csrf: s.csrf, expiresAt: s.expires_at };
  }

  /**
   * A state-changing request (POST, the WebSocket's first message) must name
   * this server as its Origin and carry the session's CSRF token.
   * @throws ApiRequestError 403 CROSS_SITE / CSRF_TOKEN
   */
  checkStateChange(req: IncomingMessage, session: WebSession, token: string | undefined): void {
    if (!sameOrigin(req)) throw new ApiRequestError(403, 'CROSS_SITE', 'the request came from another site (its Origin is not this server); nothing was changed');
    if (token === undefined || !sameSecret(token, session.csrf)) throw new ApiRequestError(403, 'CSRF_TOKEN', `the request has no valid ${CSRF_HEADER} header; reload the page`);
  }

  /** POST /web/api/logout: deletes the session (every proxy sees it gone), audits `web.logout`; the cookie to clear. */
  async logout(session: WebSession, clientAddr: string): Promise<string[]> {
    await this.items.delete(KIND, `s.${session.digest}`);
    await this.rt.audit.emit({ event: 'web.logout', user: session.user, client_addr: clientAddr, web_session: session.id });
    return [clearCookie(WEB_SESSION_COOKIE)];
  }

  /** Keeps at most `keep` sessions of `user`: the oldest go first. */
  private async evictOver(user: string, keep: number): Promise<void> {
    const mine = (await this.items.list(KIND))
      .filter((i) => i.key.startsWith('s.'))
      .map((i) => ({ key: i.key, s: v.safeParse(SessionSchema, i.value) }))
      .filter((x) => x.s.success && x.s.output.user === user)
      .sort((a, b) => (a.s.output as StoredSession).created_at - (b.s.output as StoredSession).created_at);
    for (const x of mine.slice(0, Math.max(0, mine.length - keep))) await this.items.delete(KIND, x.key);
  }

  private now(): number {
    return this.rt.clock().getTime();
  }
}

/** The refusal of an API call without a (valid) session. */
export function notSignedIn(): ApiRequestError {
  return new ApiRequestError(401, 'NOT_SIGNED_IN', 'not signed in (or the session ended); sign in at /web');
}

