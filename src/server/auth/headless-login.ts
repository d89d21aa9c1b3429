/**
 * Headless logins (`tsh login --headless`): a login for a machine with no
 * browser and no port forwarding, shaped like RFC 8628's device
 * authorization grant.
 *
 *  1. tsh: POST /v1/login/headless/start (its public key, a one-time X25519
 *     key, a nonce) → a request id, a poll secret only tsh knows, the URL
 *     https://<proxy>/web/headless/<id> and a short code (`WDJB-MJHT`).
 *  2. A person opens the URL on any device. The proxy starts an OIDC login
 *     with itself as the redirect target (the usual /v1/login/oidc/callback;
 *     the state starts with HEADLESS_STATE_PREFIX, and the pending OIDC
 *     login records the headless request it belongs to).
 *  3. After the IdP, the approval page names the requesting machine's
 *     address (as the proxy saw it), the key's SHA256 fingerprint, the time,
 *     the code and the signed-in user, with a phishing warning and Approve /
 *     Deny buttons (a form with a token bound to that page view and a cookie
 *     bound to that browser; single use).
 *  4. Approve: a certificate for the user the IdP vouched for (whatever tsh
 *     hinted), sealed to tsh's key exactly like a browser login's answer;
 *     Deny: the poll says so. tsh polls (POST /v1/login/headless/poll) at the
 *     interval the server names; polling early gets `slow_down` (+5 s).
 *
 * Everything pending is shared state (`ItemBackend`, kind `headless_login`),
 * so a login started through one proxy can be approved through another:
 *
 *   key                  value                               written by
 *   ───────────────────  ──────────────────────────────────  ─────────────────────────
 *   req.<id>             the request (key, sealing key, ...)  start; each poll (last poll time)
 *   code.<CODE>          the request id of a code              start (create: codes are unique)
 *   oidc.<state>         OIDC checks + request id              the page (taken by the callback)
 *   view.<sha256(csrf)>  who signed in, for one approval page  the callback (taken by the POST)
 *   result.<id>          issuing | approved+sealed | denied    the POST (create: one decision)
 *
 * Every item expires POLL_GRACE_MS after its request does (a late poll still
 * hears "expired"); the request itself is void after auth.login_timeout.
 * Limits: starts per source (HEADLESS_RATE_LIMIT), pending requests per
 * source / prefix / in all (HEADLESS_LIMITS, evicting like pending browser
 * logins), page views per source, and unknown ids, codes, secrets, states
 * and page tokens per source (HEADLESS_GUESS_LIMIT).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { sameSecret, secretDigest } from '../secrets.js';
import * as v from 'valibot';
import { seal } from '../../api/envelope.js';
import { API, type HeadlessPollResponse, type HeadlessStartResponse, type LoginResult } from '../../api/types.js';
import { HEADLESS_CODE_ALPHABET, HEADLESS_CODE_RE, HeadlessPollRequestSchema, HeadlessStartRequestSchema, parseShape } from '../../api/schema.js';
import { UserError } from '../../errors.js';
import { fingerprintSha256, parsePublicKeyLine, type PublicKey } from '../../sshcert/index.js';
import { escapeHtml } from '../../util/html.js';
import { RateLimiter } from '../limits.js';
import type { ServerRuntime } from '../runtime.js';
import type { ItemBackend } from '../storage/backend.js';
import { AuditUnavailableError, type HeadlessFailureEvent } from './audit.js';
import { issueUser } from './issuer.js';
import { ApiRequestError, LOGIN_RATE_LIMIT, type IdpConnector } from './login.js';
import { loginAnswer } from './login-answer.js';
import { OidcConnector, type OidcChecks } from './oidc.js';
import { PendingLogins, type PendingLimits } from './pending-logins.js';
import { mapClaimsToRoles } from './roles.js';

/** The poll interval the server asks for first (seconds; RFC 8628 §3.2 suggests 5, a person waits for this after approving). */
export const HEADLESS_POLL_INTERVAL_SECONDS = 2;
/** What `slow_down` adds to the interval, for that poll and every later one (RFC 8628 §3.5). */
export const SLOW_DOWN_STEP_SECONDS = 5;
/** A poll this much earlier than the interval is still on time (timer and network jitter). */
export const POLL_EARLY_TOLERANCE_MS = 250;
/** How long the records outlive their request, so a late poll hears "expired" rather than nothing. */
export const POLL_GRACE_MS = 60_000;
/** How long one approval page may wait for its button (it is also void when the request expires). */
export const APPROVAL_PAGE_SECONDS = 300;
/** POST /v1/login/headless/start per source: the browser login's numbers. */
export const HEADLESS_RATE_LIMIT = LOGIN_RATE_LIMIT;
/** Approval page views that start an IdP login, per source. */
export const HEADLESS_PAGE_RATE_LIMIT = { perMinute: 10, burst: 20 } as const;
/**
 * Unknown request ids, codes, poll secrets, OIDC states and page tokens per
 * source: a guesser gets 10 tries, then one every 6 s. A request id is 128
 * random bits and a code about 34.5 bits: with at most HEADLESS_LIMITS.total
 * pending, one source needs on the order of 10^10 minutes per code hit.
 */
export const HEADLESS_GUESS_LIMIT = { perMinute: 10, burst: 10 } as const;
/** Pending headless requests (a person needs one at a time). Over a cap the oldest goes, as for browser logins (pending-logins.ts). */
export const HEADLESS_LIMITS: Readonly<PendingLimits> = { total: 1_000, perPrefix: 100, perSource: 5, entryBytes: 4 * 1024 };
/** Largest set of IdP claims kept between the callback and the button (they feed {{external.*}} login templates). */
export const MAX_CLAIMS_BYTES = 32 * 1024;
/** OIDC states of headless logins start with this: web.ts sends their callbacks here. */
export const HEADLESS_STATE_PREFIX = 'headless.';
/** The cookie that ties an approval page's form to the browser it was shown in. */
export const APPROVAL_COOKIE = 'jumpgate_headless';

const KIND = 'headless_login';
const id22 = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{22}$/));
const hex64 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/));
const b64url43 = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));
const addr = v.pipe(v.string(), v.maxLength(100));
const ms = v.pipe(v.number(), v.safeInteger(), v.minValue(0));

// Stored values are checked when they come back: they may come from a database another process wrote.
const RequestSchema = v.strictObject({
  v: v.literal(1),
  id: id22,
  code: v.pipe(v.string(), v.regex(HEADLESS_CODE_RE)),
  poll_secret_sha256: hex64,
  public_key: v.pipe(v.string(), v.maxLength(16_384)),
  client_key: b64url43,
  client_nonce: b64url43,
  ttl_seconds: v.optional(v.pipe(v.number(), v.safeInteger(), v.minValue(1))),
  login_hint: v.optional(v.pipe(v.string(), v.maxLength(256))),
  client_addr: addr,
  created_at: ms,
  expires_at: ms,
  last_poll_at: v.optional(ms),
  interval_seconds: v.pipe(v.number(), v.safeInteger(), v.minValue(1), v.maxValue(60)),
});
type StoredRequest = v.InferOutput<typeof RequestSchema>;

const OidcItemSchema = v.strictObject({ v: v.literal(1), id: id22, state: v.pipe(v.string(), v.maxLength(256)), nonce: v.pipe(v.string(), v.maxLength(256)), code_verifier: v.pipe(v.string(), v.maxLength(256)) });
const ViewSchema = v.strictObject({
  v: v.literal(1),
  id: id22,
  user: v.pipe(v.string(), v.minLength(1), v.maxLength(1_024)),
  roles: v.array(v.pipe(v.string(), v.maxLength(256))),
  claims: v.record(v.string(), v.unknown()),
  cookie_sha256: hex64,
  approver_addr: addr,
  expires_at: ms,
});
type View = v.InferOutput<typeof ViewSchema>;
const ResultSchema = v.variant('status', [
  v.strictObject({ status: v.literal('issuing'), user: v.string() }),
  v.strictObject({ status: v.literal('approved'), user: v.string(), response: v.string() }),
  v.strictObject({ status: v.literal('denied'), user: v.string() }),
  v.strictObject({ status: v.literal('failed'), user: v.string(), message: v.pipe(v.string(), v.maxLength(2_000)) }),
]);
type Result = v.InferOutput<typeof ResultSchema>;

/** What the HTTPS layer sends a browser on the /web/headless/ pages and headless OIDC callbacks. */
export type HeadlessPageOutcome =
  | { kind: 'redirect'; location: string }
  | { kind: 'page'; status: number; title: string; message: string }
  /** The approval page: full HTML, and the cookie to set (a `Set-Cookie` value). */
  | { kind: 'html'; status: number; html: string; setCookie?: string };


/** A fresh code: 8 letters of HEADLESS_CODE_ALPHABET, uniformly chosen (crypto.randomInt), as `WDJB-MJHT`. */
export function newHeadlessCode(): string {
  let s = '';
  for (let i = 0; i < 8; i++) s += HEADLESS_CODE_ALPHABET[randomInt(HEADLESS_CODE_ALPHABET.length)];
  return `${s.slice(0, 4)}-${s.slice(4)}`;
}

/**
 * A code as a person typed it (any case, with or without the dash, spaces
 * around): `WDJB-MJHT`, or undefined when it cannot be one.
 */
export function normalizeHeadlessCode(text: string): string | undefined {
  const bare = text.toUpperCase().replace(/[\s-]/g, '');
  if (bare.length !== 8) return undefined;
  const code = `${bare.slice(0, 4)}-${bare.slice(4)}`;
  return HEADLESS_CODE_RE.test(code) ? code : undefined;
}

/** The server side of headless logins; one per process, all state in `items`. */
export class HeadlessLoginService {
  readonly startLimiter = new RateLimiter(HEADLESS_RATE_LIMIT.perMinute, HEADLESS_RATE_LIMIT.burst);
  readonly pageLimiter = new RateLimiter(HEADLESS_PAGE_RATE_LIMIT.perMinute, HEADLESS_PAGE_RATE_LIMIT.burst);
  readonly guessLimiter = new RateLimiter(HEADLESS_GUESS_LIMIT.perMinute, HEADLESS_GUESS_LIMIT.burst);

  constructor(
    private readonly rt: ServerRuntime,
    private readonly items: ItemBackend,
    private readonly oidc: IdpConnector | undefined,
    private readonly publicAddrs: () => { web: string; ssh: string },
    readonly limits: PendingLimits = HEADLESS_LIMITS,
  ) {}

  /** Whether an OIDC callback's `state` belongs to a headless login (web.ts routes it here). */
  static ownsState(state: string | null): boolean {
    return state !== null && state.startsWith(HEADLESS_STATE_PREFIX);
  }

  /**
   * The start rate limit, checked before the body is read: 429 with
   * Retry-After when `clientAddr`'s source has used its starts (audited in aggregate).
   */
  admit(clientAddr: string): void {
    const over = this.startLimiter.take(clientAddr, this.now());
    if (!over) return;
    this.failed({ stage: 'rate_limit', reason: `more than ${this.startLimiter.burst} headless login starts at once or ${this.startLimiter.perMinute} a minute from this address`, client_addr: clientAddr });
    throw new ApiRequestError(429, 'RATE_LIMITED', `too many login attempts from your address; try again in ${over.retryAfterSeconds} s`, over.retryAfterSeconds);
  }

  /**
   * POST /v1/login/headless/start. Validates the body (api/schema.ts
   * HeadlessStartRequestSchema; the key must parse), makes the id, poll
   * secret and code, stores the request until auth.login_timeout and audits
   * `headless.start` (fail closed).
   * @throws ApiRequestError 400 LOGIN_BAD_REQUEST naming the field, 413 LOGIN_REQUEST_TOO_LARGE,
   *   501 LOGIN_NOT_CONFIGURED; AuditUnavailableError
   */
  async start(body: unknown, clientAddr: string): Promise<HeadlessStartResponse> {
    const now = this.now();
    const bad = (field: string, why: string) => {
      this.failed({ stage: 'start', reason: `${field}: ${why}`, client_addr: clientAddr });
      return new ApiRequestError(400, 'LOGIN_BAD_REQUEST', `${field}: ${why}`);
    };
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('body', 'expected a JSON object');
    const shape = parseShape(HeadlessStartRequestSchema, body);
    if (!shape.ok) throw bad(shape.field, shape.reason);
    const b = shape.value;
    let publicKey: PublicKey;
    try {
      publicKey = parsePublicKeyLine(b.public_key).key;
    } catch (err) {
      throw bad('public_key', (err as Error).message);
    }
    if (!this.oidc) throw new ApiRequestError(501, 'LOGIN_NOT_CONFIGURED', 'this cluster has no single sign-on configured (auth.oidc); ask an admin');
    const id = randomBytes(16).toString('base64url');
    const pollSecret = randomBytes(32).toString('base64url');
    const expiresAt = now + this.rt.config.auth.loginTimeoutSeconds * 1000;
    const request: StoredRequest = {
      v: 1,
      id,
      code: '',
      poll_secret_sha256: secretDigest(pollSecret),
      public_key: b.public_key,
      client_key: b.client_key,
      client_nonce: b.client_nonce,
      ...(b.ttl_seconds !== undefined ? { ttl_seconds: b.ttl_seconds } : {}),
      ...(b.login_hint ? { login_hint: b.login_hint } : {}),
      client_addr: clientAddr,
      created_at: now,
      expires_at: expiresAt,
      interval_seconds: HEADLESS_POLL_INTERVAL_SECONDS,
    };
    const bytes = JSON.stringify(request).length;
    if (bytes > this.limits.entryBytes) {
      throw new ApiRequestError(413, 'LOGIN_REQUEST_TOO_LARGE', `the request takes ${bytes} bytes; a pending headless login may hold at most ${this.limits.entryBytes}: use an ed25519 or ECDSA key`);
    }
    await this.makeRoom(clientAddr);
    const keep = expiresAt + POLL_GRACE_MS;
    // Codes are unique among pending requests (a code typed at /web/headless names one request).
    for (let attempt = 0; ; attempt++) {
      request.code = newHeadlessCode();
      if (await this.items.create(KIND, `code.${request.code}`, { id }, keep)) break;
      if (attempt >= 5) throw new ApiRequestError(503, 'HEADLESS_BUSY', 'could not pick a free code; try again', 5);
    }
    await this.items.put(KIND, `req.${id}`, request, keep);
    const fingerprint = fingerprintSha256(publicKey.blob);
    try {
      await this.rt.audit.emit({ event: 'headless.start', request_id: id, client_addr: clientAddr, key_fingerprint: fingerprint, expires_at: new Date(expiresAt).toISOString() });
    } catch (err) {
      await this.forget(request);
      throw err;
    }
    this.rt.log.debug(`headless login ${id} started from ${clientAddr} for key ${fingerprint}`);
    return {
      request_id: id,
      poll_secret: pollSecret,
      url: `https://${this.publicAddrs().web}${API.headlessPage}${id}`,
      code: request.code,
      expires_at: new Date(expiresAt).toISOString(),
      interval_seconds: request.interval_seconds,
    };
  }

  /**
   * POST /v1/login/headless/poll. An unknown id or a wrong poll secret is
   * `expired` (and counts as a guess: 429 beyond HEADLESS_GUESS_LIMIT); a
   * poll earlier than the interval is `slow_down` with the interval raised
   * by SLOW_DOWN_STEP_SECONDS; an approved answer is handed out once.
   * @throws ApiRequestError 400 LOGIN_BAD_REQUEST, 429 RATE_LIMITED
   */
  async poll(body: unknown, clientAddr: string): Promise<HeadlessPollResponse> {
    const now = this.now();
    const shape = parseShape(HeadlessPollRequestSchema, body);
    if (!shape.ok) {
      this.failed({ stage: 'poll', reason: `${shape.field}: ${shape.reason}`, client_addr: clientAddr });
      throw new ApiRequestError(400, 'LOGIN_BAD_REQUEST', `${shape.field}: ${shape.reason}`);
    }
    const { request_id: id, poll_secret: secret } = shape.value;
    const req = await this.request(id);
    if (!req || !sameSecret(req.poll_secret_sha256, secretDigest(secret))) {
      this.guess(clientAddr, 'poll', req ? 'wrong poll secret' : 'unknown, expired or finished request id', id);
      return { status: 'expired' };
    }
    if (now > req.expires_at) {
      await this.forget(req);
      this.failed({ stage: 'expired', request_id: id, reason: 'headless login request expired without a decision', client_addr: req.client_addr });
      return { status: 'expired' };
    }
    if (req.last_poll_at !== undefined && now - req.last_poll_at < req.interval_seconds * 1000 - POLL_EARLY_TOLERANCE_MS) {
      req.interval_seconds = Math.min(60, req.interval_seconds + SLOW_DOWN_STEP_SECONDS);
      req.last_poll_at = now;
      await this.items.put(KIND, `req.${id}`, req, req.expires_at + POLL_GRACE_MS);
      return { status: 'slow_down', interval_seconds: req.interval_seconds };
    }
    const result = await this.result(id);
    if (!result || result.status === 'issuing') {
      req.last_poll_at = now;
      await this.items.put(KIND, `req.${id}`, req, req.expires_at + POLL_GRACE_MS);
      return { status: 'pending', interval_seconds: req.interval_seconds };
    }
    // Handed out once: of two concurrent polls one takes it, the other hears "expired".
    const taken = await this.items.take(KIND, `result.${id}`);
    if (!taken) return { status: 'expired' };
    await this.forget(req);
    if (result.status === 'approved') return { status: 'approved', response: result.response };
    if (result.status === 'denied') return { status: 'denied' };
    return { status: 'failed', message: result.message };
  }

  /**
   * GET /web/headless/<id>: sends the browser to the IdP (this proxy is the
   * redirect target), or a page saying why not. Unknown ids count as guesses.
   */
  async page(id: string, clientAddr: string): Promise<HeadlessPageOutcome> {
    const req = /^[A-Za-z0-9_-]{22}$/.test(id) ? await this.request(id) : undefined;
    if (!req || this.now() > req.expires_at) {
      this.guess(clientAddr, 'page', req ? 'expired request' : 'unknown request id', req?.id);
      return invalidLink();
    }
    if (await this.result(id)) return alreadyDecided();
    const over = this.pageLimiter.take(clientAddr, this.now());
    if (over) {
      this.failed({ stage: 'rate_limit', request_id: id, reason: 'too many approval page views from this address', client_addr: clientAddr });
      throw new ApiRequestError(429, 'RATE_LIMITED', `too many login pages opened from your address; try again in ${over.retryAfterSeconds} s`, over.retryAfterSeconds);
    }
    const checks = OidcConnector.newChecks();
    checks.state = `${HEADLESS_STATE_PREFIX}${checks.state}`;
    let loginUrl: URL;
    try {
      loginUrl = await this.oidc!.authorizationUrl(checks, req.login_hint);
    } catch (err) {
      this.rt.log.warn(`headless login page: ${(err as Error).message}`);
      return { kind: 'page', status: 502, title: 'The identity provider cannot be reached', message: `${(err as Error).message}. Try again in a moment.` };
    }
    await this.items.put(KIND, `oidc.${checks.state}`, { v: 1, id, state: checks.state, nonce: checks.nonce, code_verifier: checks.codeVerifier }, req.expires_at + POLL_GRACE_MS);
    return { kind: 'redirect', location: loginUrl.toString() };
  }

  /**
   * GET /web/headless (and POST with a `code` field): a person who typed the
   * short code instead of the whole URL. A known code leads to its request's
   * page; unknown codes count as guesses.
   */
  async codeEntry(code: string | undefined, clientAddr: string): Promise<HeadlessPageOutcome> {
    if (code === undefined) return { kind: 'html', status: 200, html: codeForm('') };
    const normal = normalizeHeadlessCode(code);
    const found = normal ? await this.items.get<{ id: string }>(KIND, `code.${normal}`) : undefined;
    const id = found && typeof found.value?.id === 'string' ? found.value.id : undefined;
    if (!id) {
      this.guess(clientAddr, 'page', 'unknown code');
      return { kind: 'html', status: 404, html: codeForm('No pending login has that code. Check it against your terminal; codes are void after a few minutes.') };
    }
    return { kind: 'redirect', location: `${API.headlessPage}${id}` };
  }

  /**
   * The IdP's redirect for a headless login (state HEADLESS_STATE_PREFIX…):
   * finishes the OIDC login and shows the approval page for the signed-in
   * user, with a form token (single use) and a cookie bound to this browser.
   */
  async callback(url: URL, clientAddr: string): Promise<HeadlessPageOutcome> {
    const state = url.searchParams.get('state') ?? '';
    const item = state.length <= 256 ? await this.items.take(KIND, `oidc.${state}`) : undefined;
    const pending = item ? v.safeParse(OidcItemSchema, item.value) : undefined;
    if (!pending?.success) {
      this.guess(clientAddr, 'callback', 'unknown, expired or already used login state');
      return invalidLink();
    }
    const o = pending.output;
    const checks: OidcChecks = { state: o.state, nonce: o.nonce, codeVerifier: o.code_verifier };
    const req = await this.request(o.id);
    if (!req || this.now() > req.expires_at) return invalidLink();
    if (await this.result(o.id)) return alreadyDecided();
    const refuse = (reason: string, title: string, message: string, user?: string): HeadlessPageOutcome => {
      this.failed({ stage: user ? 'roles' : 'callback', request_id: o.id, reason, client_addr: clientAddr, ...(user ? { user } : {}) });
      return { kind: 'page', status: 403, title, message };
    };
    const idpError = url.searchParams.get('error');
    if (idpError) {
      const desc = url.searchParams.get('error_description') ?? '';
      return refuse(`identity provider error: ${idpError} ${desc}`.trim(), 'The identity provider refused the sign-in', `${idpError}${desc ? `: ${desc}` : ''}. Nothing was approved.`);
    }
    let claims: Record<string, unknown>;
    try {
      claims = await this.oidc!.finish(url, checks);
    } catch (err) {
      return refuse((err as Error).message, 'Sign-in failed', `${(err as Error).message}. Nothing was approved.`);
    }
    const who = identityOf(this.rt, claims);
    if ('refusal' in who) return refuse(who.refusal, 'You cannot approve logins', `${who.message} Nothing was approved.`, who.user);
    if (JSON.stringify(claims).length > MAX_CLAIMS_BYTES) {
      return refuse('identity provider claims too large', 'Sign-in failed', `the identity provider sent more than ${MAX_CLAIMS_BYTES} bytes of claims; ask an admin. Nothing was approved.`, who.username);
    }
    const csrf = randomBytes(32).toString('base64url');
    const cookie = randomBytes(32).toString('base64url');
    const viewExpires = Math.min(req.expires_at, this.now() + APPROVAL_PAGE_SECONDS * 1000);
    const view: View = { v: 1, id: o.id, user: who.username, roles: who.roles, claims, cookie_sha256: secretDigest(cookie), approver_addr: clientAddr, expires_at: viewExpires };
    await this.items.put(KIND, `view.${secretDigest(csrf)}`, view, req.expires_at + POLL_GRACE_MS);
    return {
      kind: 'html',
      status: 200,
      html: approvalPage(req, who.username, csrf, this.rt.config.clusterName, this.now()),
      setCookie: `${APPROVAL_COOKIE}=${cookie}; Path=${API.headlessPage}${o.id}; Max-Age=${APPROVAL_PAGE_SECONDS}; Secure; HttpOnly; SameSite=Strict`,
    };
  }

  /**
   * POST /web/headless/<id> from the approval page: `csrf` (the form's
   * token, single use), `cookie` (the browser's), `decision` approve|deny.
   * Approve issues the certificate for the signed-in user (issueUser, audited
   * `cert.issued`), seals the answer to tsh's key and audits
   * `headless.approved`; deny audits `headless.denied`. One decision per
   * request: a second form, a reused page or URL issues nothing.
   */
  async decide(id: string, form: { csrf?: string; decision?: string; cookie?: string }, clientAddr: string): Promise<HeadlessPageOutcome> {
    const now = this.now();
    const csrf = form.csrf ?? '';
    const taken = /^[A-Za-z0-9_-]{43}$/.test(csrf) ? await this.items.take(KIND, `view.${secretDigest(csrf)}`) : undefined;
    const parsed = taken ? v.safeParse(ViewSchema, taken.value) : undefined;
    if (!parsed?.success || parsed.output.id !== id) {
      this.guess(clientAddr, 'approve', 'unknown or already used approval page token', /^[A-Za-z0-9_-]{22}$/.test(id) ? id : undefined);
      return { kind: 'page', status: 400, title: 'This approval page was already used', message: 'Each approval page works once. Nothing more was approved. If you still mean to approve, open the login link again.' };
    }
    const view = parsed.output;
    if (!form.cookie || !sameSecret(secretDigest(form.cookie), view.cookie_sha256)) {
      this.failed({ stage: 'approve', request_id: id, user: view.user, reason: 'approval form sent without the cookie of the browser it was shown in', client_addr: clientAddr });
      return { kind: 'page', status: 400, title: 'Approval refused', message: 'The form was sent from another browser than the one that signed in. Nothing was approved; open the login link again.' };
    }
    const req = await this.request(id);
    if (!req || now > req.expires_at || now > view.expires_at) {
      this.failed({ stage: 'expired', request_id: id, user: view.user, reason: 'approval came after the request or its page expired', client_addr: clientAddr });
      return { kind: 'page', status: 410, title: 'This login has expired', message: 'Nothing was approved. Run tsh login --headless again on the other machine.' };
    }
    const keep = req.expires_at + POLL_GRACE_MS;
    if (form.decision === 'deny') {
      if (!(await this.items.create<Result>(KIND, `result.${id}`, { status: 'denied', user: view.user }, keep))) return alreadyDecided();
      await this.rt.audit.emit({ event: 'headless.denied', request_id: id, user: view.user, client_addr: req.client_addr, approver_addr: clientAddr });
      return { kind: 'page', status: 200, title: 'Login denied', message: `Nothing was issued; tsh on ${req.client_addr} is told the login was denied. You can close this tab.` };
    }
    if (form.decision !== 'approve') return { kind: 'page', status: 400, title: 'Nothing was decided', message: 'Use the Approve or Deny button of the approval page.' };
    // One decision per request, claimed before anything is signed.
    if (!(await this.items.create<Result>(KIND, `result.${id}`, { status: 'issuing', user: view.user }, keep))) return alreadyDecided();
    let sealed: string;
    let validBefore: string;
    const publicKey = parsePublicKeyLine(req.public_key).key;
    try {
      const result = await this.loginResult(req, view, publicKey);
      validBefore = result.valid_before;
      sealed = seal(Buffer.from(req.client_key, 'base64url'), Buffer.from(JSON.stringify(result)), Buffer.from(id));
      await this.rt.audit.emit({
        event: 'headless.approved',
        request_id: id,
        user: view.user,
        client_addr: req.client_addr,
        approver_addr: clientAddr,
        key_fingerprint: fingerprintSha256(publicKey.blob),
        valid_before: validBefore,
      });
    } catch (err) {
      const message = err instanceof UserError ? err.message : 'internal error; see the server log';
      await this.items.put<Result>(KIND, `result.${id}`, { status: 'failed', user: view.user, message }, keep);
      if (err instanceof AuditUnavailableError || !(err instanceof UserError)) throw err;
      this.failed({ stage: 'approve', request_id: id, user: view.user, reason: err.message, client_addr: clientAddr });
      return { kind: 'page', status: 403, title: 'No certificate was issued', message: `${err.message}. tsh on ${req.client_addr} is told so.` };
    }
    await this.items.put<Result>(KIND, `result.${id}`, { status: 'approved', user: view.user, response: sealed }, keep);
    return { kind: 'page', status: 200, title: 'Login approved', message: `A certificate for ${view.user} (valid until ${validBefore}) goes to tsh on ${req.client_addr}. You can close this tab.` };
  }

  /** Signs for the approving user and builds the same answer a browser login seals (login-answer.ts). */
  private async loginResult(req: StoredRequest, view: View, publicKey: PublicKey): Promise<LoginResult> {
    const issued = await issueUser(
      { username: view.user, roles: view.roles, claims: view.claims, publicKey, ...(req.ttl_seconds !== undefined ? { requestedTtlSeconds: req.ttl_seconds } : {}), via: 'headless' },
      this.rt,
    );
    return loginAnswer(this.rt, this.publicAddrs(), issued, view.user, req.client_nonce);
  }

  /** Evicts pending requests over HEADLESS_LIMITS for one more from `clientAddr` (pending-logins.ts decides which). */
  private async makeRoom(clientAddr: string): Promise<void> {
    const now = this.now();
    const table = new PendingLogins<{ expiresAt: number; req?: StoredRequest }>(this.limits);
    const live = (await this.items.list<unknown>(KIND))
      .filter((i) => i.key.startsWith('req.'))
      .map((i) => v.safeParse(RequestSchema, i.value))
      .flatMap((r) => (r.success && r.output.expires_at >= now ? [r.output] : []))
      .sort((a, b) => a.created_at - b.created_at);
    for (const req of live) table.add(req.id, { expiresAt: req.expires_at, req }, req.client_addr);
    for (const { req: gone } of table.add('', { expiresAt: now }, clientAddr)) {
      if (!gone) continue;
      await this.forget(gone);
      this.failed({ stage: 'evicted', request_id: gone.id, reason: 'pending headless login evicted: its source or network started too many', client_addr: gone.client_addr });
    }
  }

  private async request(id: string): Promise<StoredRequest | undefined> {
    const item = await this.items.get(KIND, `req.${id}`);
    if (!item) return undefined;
    const r = v.safeParse(RequestSchema, item.value);
    if (!r.success || r.output.id !== id) {
      this.rt.log.warn(`headless login ${id}: the stored request is not usable (${r.success ? 'wrong id' : r.issues[0].message}); treated as unknown`);
      return undefined;
    }
    return r.output;
  }

  private async result(id: string): Promise<Result | undefined> {
    const item = await this.items.get(KIND, `result.${id}`);
    if (!item) return undefined;
    const r = v.safeParse(ResultSchema, item.value);
    return r.success ? r.output : undefined;
  }

  /** Removes a request and its code (its other items expire with it). */
  private async forget(req: StoredRequest): Promise<void> {
    await this.items.delete(KIND, `req.${req.id}`);
    if (req.code) await this.items.delete(KIND, `code.${req.code}`);
  }

  /** An unknown id, code, secret, state or token: audited in aggregate; 429 once the source has used its guesses. */
  private guess(clientAddr: string, stage: HeadlessFailureEvent['stage'], reason: string, requestId?: string): void {
    this.failed({ stage, reason, client_addr: clientAddr, ...(requestId ? { request_id: requestId } : {}) });
    const over = this.guessLimiter.take(clientAddr, this.now());
    if (over) {
      throw new ApiRequestError(429, 'RATE_LIMITED', `too many unknown or expired headless logins asked for from your address; try again in ${over.retryAfterSeconds} s`, over.retryAfterSeconds);
    }
  }

  private failed(e: Omit<HeadlessFailureEvent, 'event'>): void {
    this.rt.audit.unauthenticated({ event: 'headless.failure', ...e }, e.client_addr);
  }

  private now(): number {
    return this.rt.clock().getTime();
  }
}

/** The IdP's user name and roles (the same rules as a browser login), or why this person may not approve. */
function identityOf(rt: ServerRuntime, claims: Record<string, unknown>): { username: string; roles: string[] } | { refusal: string; message: string; user?: string } {
  const cfg = rt.config.auth.oidc!;
  const username = claims[cfg.usernameClaim];
  if (typeof username !== 'string' || username === '') {
    return { refusal: `ID token has no ${cfg.usernameClaim} claim`, message: `Your identity has no "${cfg.usernameClaim}" claim; ask an admin to check auth.oidc.username_claim.` };
  }
  const roles = mapClaimsToRoles(cfg, claims).filter((r) => rt.config.roles.has(r));
  if (roles.length === 0) return { refusal: 'no claims_to_roles rule matched', message: `${username} is not mapped to any Jumpgate role; ask an admin for access.`, user: username };
  return { username, roles };
}

function invalidLink(): HeadlessPageOutcome {
  return { kind: 'page', status: 404, title: 'This login link is no longer valid', message: 'It is unknown, expired or was already used. Nothing was approved. Run tsh login --headless again on the machine that needs the login.' };
}

function alreadyDecided(): HeadlessPageOutcome {
  return { kind: 'page', status: 409, title: 'This login was already decided', message: 'Someone already approved or denied it; nothing more was issued. Run tsh login --headless again if you need a new login.' };
}

const PAGE_STYLE =
  'body{font-family:system-ui,sans-serif;max-width:42em;margin:3em auto;padding:0 1em;color:#222}h1{font-size:1.4em}' +
  '.warn{border:2px solid #b00;background:#fff4f4;padding:.8em 1em;margin:1em 0}th{text-align:left;padding:.3em 1em .3em 0;vertical-align:top}' +
  'td{font-family:ui-monospace,monospace}.code{font-size:1.6em;letter-spacing:.15em;font-weight:bold}button{font-size:1.1em;padding:.5em 1.4em;margin-right:1em}';

/** The approval page: who asks, from where, when, for which key, and the code to compare; every text escaped. */
function approvalPage(req: StoredRequest, user: string, csrf: string, cluster: string, now: number): string {
  const e = escapeHtml;
  let fingerprint = '(unreadable key)';
  try {
    fingerprint = fingerprintSha256(parsePublicKeyLine(req.public_key).key.blob);
  } catch {
    // the key parsed at start; a stored one that does not is shown as such
  }
  const row = (k: string, val: string, cls = '') => `<tr><th>${e(k)}</th><td${cls ? ` class="${cls}"` : ''}>${e(val)}</td></tr>`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>Approve a login to ${e(cluster)}?</title><style>${PAGE_STYLE}</style></head>
<body><h1>Approve a login to ${e(cluster)} from another machine?</h1>
<p class="warn"><strong>Only approve if you started this login yourself, just now</strong> (by running <code>tsh login --headless</code>) and the code below is the one your terminal shows.
Approving gives the machine below a certificate for <strong>your</strong> account (${e(user)}). If someone sent you this link, or you are not sure, press Deny.</p>
<table>
${row('Code', req.code, 'code')}
${row('Requested from', req.client_addr)}
${row('Requested at', `${new Date(req.created_at).toISOString()} (${ago(now - req.created_at)})`)}
${row('Key fingerprint', fingerprint)}
${row('Signed in as', user)}
${row('Expires at', new Date(req.expires_at).toISOString())}
</table>
<p>Compare the code with the one in your terminal before you approve.</p>
<form method="post" action="${e(API.headlessPage + req.id)}">
<input type="hidden" name="csrf" value="${e(csrf)}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>`;
}

/** `42 s ago`, `3 min ago`: how long ago a request was made, for the "just now" check. */
function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

/** The page where a person types the code their terminal shows (RFC 8628's verification_uri). */
function codeForm(problem: string): string {
  const e = escapeHtml;
  return `<!doctype html><html><head><meta charset="utf-8"><title>Headless login</title><style>${PAGE_STYLE}</style></head>
<body><h1>Log in a machine without a browser</h1>
${problem ? `<p class="warn">${e(problem)}</p>` : ''}
<p>Type the code that <code>tsh login --headless</code> printed in your terminal. Only continue with a code from your own terminal.</p>
<form method="post" action="${e(API.headlessPage.replace(/\/$/, ''))}">
<input name="code" autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="16" placeholder="WDJB-MJHT">
<button type="submit">Continue</button>
</form></body></html>`;
}
