/**
 * Browser logins on the server side. A login request (tsh's public key, its
 * loopback callback URL, the TTL it wants, its sealing key) waits here, keyed
 * by the OIDC `state`, until the IdP sends the browser back. It is used at
 * most once and lives at most auth.login_timeout (10 minutes). It waits in
 * the state store (`backend.pending`: this process's memory on the dir
 * backend, the database on postgres, so a login started through one proxy
 * can finish through another): serialized to JSON here, and checked against
 * PendingDataSchema when it comes back.
 */
import { randomBytes } from 'node:crypto';
import * as v from 'valibot';
import { isIP } from 'node:net';
import { formatHostPort } from '../../shared/address.js';
import { UserError } from '../../errors.js';
import { fingerprintSha256, formatPublicKeyLine, parsePublicKeyLine, type PublicKey } from '../../sshcert/index.js';
import { seal } from '../../api/envelope.js';
import type { LoginResult, LoginStartResponse } from '../../api/types.js';
import { LoginStartRequestSchema, parseShape } from '../../api/schema.js';
import type { ServerRuntime } from '../runtime.js';
import { issueUser } from './issuer.js';
import { AuditUnavailableError } from './audit.js';
import { OidcConnector, type OidcChecks } from './oidc.js';
import { mapClaimsToRoles, nodeAllowed } from './roles.js';
import { RateLimiter } from '../limits.js';
import { PENDING_LIMITS, type PendingLimits } from './pending-logins.js';
import { StoreUnavailableError, type PendingRecord } from '../storage/backend.js';

/** What LoginService needs from the IdP: OidcConnector in production, a fake in LoginService's unit tests. */
export type IdpConnector = Pick<OidcConnector, 'authorizationUrl' | 'finish'>;

/**
 * POST /v1/login/start per client address: a token bucket holding `burst`
 * starts, refilled at `perMinute`. A person needs one or two; a script
 * filling the pending-login table or hammering the IdP gets 429.
 */
export const LOGIN_RATE_LIMIT = { perMinute: 10, burst: 20 } as const;
/**
 * OIDC callbacks whose `state` names no pending login, per client address: a
 * browser sends one per login; guessing states gets 429. A callback with a
 * pending login's state (a 128-bit secret) is never refused by it.
 */
export const CALLBACK_RATE_LIMIT = { perMinute: 10, burst: 20 } as const;

/** A refusal of an API request: HTTP status + stable code + message for the user. */
export class ApiRequestError extends UserError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    /** For 429 and 503: when to try again (the Retry-After header). */
    readonly retryAfterSeconds?: number,
  ) {
    super(code, message);
  }
}

interface PendingLogin {
  id: string;
  publicKey: PublicKey;
  callbackUrl: URL;
  ttlSeconds: number | undefined;
  clientKey: Buffer;
  clientNonce: string;
  checks: OidcChecks;
  expiresAt: number;
  clientAddr: string;
}

/** The refusal of a login while the state store cannot be reached (HTTP 503, retry in 30 s). */
export function storeUnavailable(): ApiRequestError {
  return new ApiRequestError(503, 'STORE_UNAVAILABLE', "the server's state store is unavailable; try again in a minute", 30);
}

/**
 * A pending login's opaque part as stored (PendingRecord.data, JSON): it
 * comes back from a database, so it is checked against this shape.
 */
const PendingDataSchema = v.strictObject({
  v: v.literal(1),
  public_key: v.pipe(v.string(), v.maxLength(16_384)),
  callback_url: v.pipe(v.string(), v.maxLength(4_096)),
  ttl_seconds: v.optional(v.pipe(v.number(), v.safeInteger(), v.minValue(1))),
  client_key: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,512}$/)),
  client_nonce: v.pipe(v.string(), v.maxLength(1_024)),
  checks: v.strictObject({
    state: v.pipe(v.string(), v.maxLength(1_024)),
    nonce: v.pipe(v.string(), v.maxLength(1_024)),
    code_verifier: v.pipe(v.string(), v.maxLength(1_024)),
  }),
});

/** A pending login as the state store keeps it. */
function toRecord(p: PendingLogin): PendingRecord {
  const data: v.InferOutput<typeof PendingDataSchema> = {
    v: 1,
    public_key: formatPublicKeyLine(p.publicKey, ''),
    callback_url: p.callbackUrl.href,
    ...(p.ttlSeconds !== undefined ? { ttl_seconds: p.ttlSeconds } : {}),
    client_key: p.clientKey.toString('base64url'),
    client_nonce: p.clientNonce,
    checks: { state: p.checks.state, nonce: p.checks.nonce, code_verifier: p.checks.codeVerifier },
  };
  return { key: p.checks.state, requestId: p.id, clientAddr: p.clientAddr, expiresAt: p.expiresAt, data: Buffer.from(JSON.stringify(data)) };
}

/**
 * A stored pending login back, checked. @throws UserError PENDING_CORRUPT
 * naming the request id when the record does not have the declared shape.
 */
function fromRecord(r: PendingRecord): PendingLogin {
  const bad = (why: string) => new UserError('PENDING_CORRUPT', `pending login ${r.requestId} from the state store is not usable: ${why}`);
  let json: unknown;
  try {
    json = JSON.parse(r.data.toString('utf8'));
  } catch {
    throw bad('its data is not JSON');
  }
  const parsed = v.safeParse(PendingDataSchema, json);
  if (!parsed.success) throw bad(`${v.getDotPath(parsed.issues[0]) ?? 'data'}: ${parsed.issues[0].message}`);
  const d = parsed.output;
  let publicKey: PublicKey;
  let callbackUrl: URL;
  try {
    publicKey = parsePublicKeyLine(d.public_key).key;
    callbackUrl = checkLoopbackCallback(d.callback_url);
  } catch (err) {
    throw bad((err as Error).message);
  }
  return {
    id: r.requestId,
    publicKey,
    callbackUrl,
    ttlSeconds: d.ttl_seconds,
    clientKey: Buffer.from(d.client_key, 'base64url'),
    clientNonce: d.client_nonce,
    checks: { state: d.checks.state, nonce: d.checks.nonce, codeVerifier: d.checks.code_verifier },
    expiresAt: r.expiresAt,
    clientAddr: r.clientAddr,
  };
}

/** Runs a state-store call; a StoreUnavailableError becomes the 503 STORE_UNAVAILABLE refusal. */
async function store<T>(rt: ServerRuntime, what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof StoreUnavailableError) {
      rt.log.warn(`login ${what}: ${err.message}`);
      throw storeUnavailable();
    }
    throw err;
  }
}

/** What the HTTPS layer should send the browser after the IdP's redirect. */
export type CallbackOutcome =
  | { kind: 'redirect'; location: string }
  | { kind: 'page'; status: number; title: string; message: string };

export class LoginService {
  private readonly pendingLimits: PendingLimits;
  readonly limiter: RateLimiter;
  readonly callbackLimiter: RateLimiter;

  constructor(
    private readonly rt: ServerRuntime,
    private readonly oidc: IdpConnector | undefined,
    private readonly publicAddrs: () => { web: string; ssh: string },
    rate: { perMinute: number; burst: number } = LOGIN_RATE_LIMIT,
    pendingLimits: PendingLimits = PENDING_LIMITS,
  ) {
    this.limiter = new RateLimiter(rate.perMinute, rate.burst);
    this.callbackLimiter = new RateLimiter(CALLBACK_RATE_LIMIT.perMinute, CALLBACK_RATE_LIMIT.burst);
    this.pendingLimits = pendingLimits;
  }

  /**
   * The rate limit of POST /v1/login/start, checked before the body is read:
   * 429 with Retry-After when `clientAddr`'s source (limits.ts sourceKey) has
   * used its starts. Refusals are audited in aggregate (AuditLog.unauthenticated).
   */
  admit(clientAddr: string): void {
    const over = this.limiter.take(clientAddr, this.rt.clock().getTime());
    if (!over) return;
    this.rt.audit.unauthenticated(
      {
        event: 'login.failure',
        stage: 'rate_limit',
        reason: `more than ${this.limiter.burst} login starts at once or ${this.limiter.perMinute} a minute from this address`,
        client_addr: clientAddr,
      },
      clientAddr,
    );
    throw new ApiRequestError(
      429,
      'RATE_LIMITED',
      `too many login attempts from your address; try again in ${over.retryAfterSeconds} s`,
      over.retryAfterSeconds,
    );
  }

  /** POST /v1/login/start: validates the request and returns the IdP URL for the browser. */
  async start(body: unknown, clientAddr: string): Promise<LoginStartResponse> {
    const now = this.rt.clock().getTime();
    await this.sweep(now);
    let req: ReturnType<typeof parseStart>;
    try {
      req = parseStart(body);
    } catch (err) {
      this.rt.audit.unauthenticated({ event: 'login.failure', stage: 'start', reason: (err as Error).message, client_addr: clientAddr }, clientAddr);
      throw err;
    }
    if (!this.oidc) {
      throw new ApiRequestError(501, 'LOGIN_NOT_CONFIGURED', 'this cluster has no single sign-on configured (auth.oidc); ask an admin');
    }
    const checks = OidcConnector.newChecks();
    let loginUrl: URL;
    try {
      loginUrl = await this.oidc.authorizationUrl(checks, req.loginHint);
    } catch (err) {
      const e = err as UserError;
      this.rt.audit.unauthenticated({ event: 'login.failure', stage: 'start', reason: e.message, client_addr: clientAddr }, clientAddr);
      this.rt.log.warn(`login start: ${e.message}`);
      throw new ApiRequestError(502, e.code ?? 'IDP_UNREACHABLE', e.message);
    }
    const id = randomBytes(16).toString('base64url');
    const expiresAt = now + this.rt.config.auth.loginTimeoutSeconds * 1000;
    const { loginHint: _hint, ...fields } = req;
    const entry: PendingLogin = { id, ...fields, checks, expiresAt, clientAddr };
    const bytes = pendingBytes(entry);
    if (bytes > this.pendingLimits.entryBytes) {
      throw new ApiRequestError(413, 'LOGIN_REQUEST_TOO_LARGE', `public_key and callback_url take ${bytes} bytes; a pending login may hold at most ${this.pendingLimits.entryBytes}: use a shorter callback_url or an ed25519/ECDSA key`);
    }
    const evicted = await store(this.rt, 'start', () => this.rt.store.pending.add(toRecord(entry), this.pendingLimits));
    for (const gone of evicted) {
      this.rt.audit.unauthenticated({ event: 'login.failure', stage: 'evicted', request_id: gone.requestId, reason: 'pending login evicted: its source or network started too many logins', client_addr: gone.clientAddr }, gone.clientAddr);
    }
    this.rt.log.debug(`login ${id} started from ${clientAddr} for key ${fingerprintSha256(req.publicKey.blob)}`);
    return { request_id: id, login_url: loginUrl.toString(), expires_at: new Date(expiresAt).toISOString() };
  }

  /** GET /v1/login/oidc/callback: finishes a login, or explains why not. */
  async callback(url: URL, clientAddr: string): Promise<CallbackOutcome> {
    const now = this.rt.clock().getTime();
    const state = url.searchParams.get('state') ?? '';
    // Single use, whatever happens next. A state nobody could have been given (empty, or longer than any) is not looked up.
    const record = state === '' || state.length > 1_024 ? undefined : await store(this.rt, 'callback', () => this.rt.store.pending.take(state));
    const login = record ? fromRecord(record) : undefined;
    if (!login) {
      const over = this.callbackLimiter.take(clientAddr, now);
      this.rt.audit.unauthenticated({ event: 'login.failure', stage: 'callback', reason: 'unknown, expired or already used login state', client_addr: clientAddr }, clientAddr);
      if (over) {
        throw new ApiRequestError(429, 'RATE_LIMITED', `too many login callbacks with unknown state from your address; try again in ${over.retryAfterSeconds} s`, over.retryAfterSeconds);
      }
      return {
        kind: 'page',
        status: 400,
        title: 'This login link is no longer valid',
        message: 'It is unknown, expired or was already used. Run tsh login again to start a new login.',
      };
    }
    const fail = async (reason: string, code: string, userMessage: string): Promise<CallbackOutcome> => {
      await this.rt.audit.emit({ event: 'login.failure', stage: 'callback', request_id: login.id, reason, client_addr: clientAddr });
      const back = new URL(login.callbackUrl);
      back.searchParams.set('error', code);
      back.searchParams.set('error_description', userMessage);
      return { kind: 'redirect', location: back.toString() };
    };
    if (now > login.expiresAt) {
      return fail('login request expired', 'LOGIN_EXPIRED', 'the login took longer than the server allows; run tsh login again');
    }
    const idpError = url.searchParams.get('error');
    if (idpError) {
      const desc = url.searchParams.get('error_description') ?? '';
      return fail(`identity provider error: ${idpError} ${desc}`.trim(), 'IDP_DENIED', `the identity provider refused the login (${idpError}${desc ? `: ${desc}` : ''})`);
    }
    let claims: Record<string, unknown>;
    try {
      claims = await this.oidc!.finish(url, login.checks);
    } catch (err) {
      return fail((err as Error).message, (err as UserError).code ?? 'IDP_LOGIN_FAILED', (err as Error).message);
    }
    const oidcCfg = this.rt.config.auth.oidc!;
    const username = claims[oidcCfg.usernameClaim];
    if (typeof username !== 'string' || username === '') {
      return fail(`ID token has no ${oidcCfg.usernameClaim} claim`, 'LOGIN_NO_USERNAME', `your identity has no "${oidcCfg.usernameClaim}" claim; ask an admin to check auth.oidc.username_claim`);
    }
    const roles = mapClaimsToRoles(oidcCfg, claims).filter((r) => this.rt.config.roles.has(r));
    if (roles.length === 0) {
      await this.rt.audit.emit({ event: 'login.failure', stage: 'roles', request_id: login.id, user: username, reason: 'no claims_to_roles rule matched', client_addr: clientAddr });
      const back = new URL(login.callbackUrl);
      back.searchParams.set('error', 'ACCESS_DENIED');
      back.searchParams.set('error_description', `${username} is not mapped to any Jumpgate role (no claims_to_roles rule matched); ask an admin for access`);
      return { kind: 'redirect', location: back.toString() };
    }
    let result: LoginResult;
    try {
      // Access is resolved once, with the claims: the same Access signs the
      // certificate ({{external.CLAIM}} logins included) and picks the roles and nodes tsh is told about.
      const { cert, access } = await issueUser(
        { username, roles, claims, publicKey: login.publicKey, requestedTtlSeconds: login.ttlSeconds, via: 'login' },
        this.rt,
      );
      const addrs = this.publicAddrs();
      result = {
        v: 1,
        client_nonce: login.clientNonce,
        certificate: `${cert.algorithm} ${cert.blob.toString('base64')} ${username}`,
        cluster_name: this.rt.config.clusterName,
        username,
        logins: cert.principals,
        roles: access.roles,
        valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
        host_ca: hostCaLines(this.rt),
        ssh_public_addr: addrs.ssh,
        web_public_addr: addrs.web,
        nodes: this.rt.config.nodes.filter((n) => nodeAllowed(access, n)).map((n) => n.name),
        node_addrs: this.rt.config.nodes.filter((n) => nodeAllowed(access, n)).map((n) => formatHostPort(n.addr)),
      };
    } catch (err) {
      if (err instanceof AuditUnavailableError) throw err; // fail closed: web.ts answers 503
      return fail((err as Error).message, (err as UserError).code ?? 'LOGIN_FAILED', (err as Error).message);
    }
    await this.rt.audit.emit({
      event: 'login.success',
      request_id: login.id,
      user: username,
      roles,
      client_addr: clientAddr,
      valid_before: result.valid_before,
    });
    const sealed = seal(login.clientKey, Buffer.from(JSON.stringify(result)), Buffer.from(login.id));
    const back = new URL(login.callbackUrl);
    back.searchParams.set('request_id', login.id);
    back.searchParams.set('response', sealed);
    return { kind: 'redirect', location: back.toString() };
  }

  /** How many logins are waiting (for tests and metrics). */
  pendingCount(): Promise<number> {
    return this.rt.store.pending.count();
  }

  private async sweep(now: number): Promise<void> {
    for (const p of await store(this.rt, 'start', () => this.rt.store.pending.sweep(now))) {
      this.rt.audit.unauthenticated({ event: 'login.failure', stage: 'expired', request_id: p.requestId, reason: 'login request expired unused', client_addr: p.clientAddr }, p.clientAddr);
    }
  }
}

/** What a pending login holds, in bytes (the PendingLimits.entryBytes bound): key, callback URL, sealing key, nonce, OIDC checks. */
function pendingBytes(p: PendingLogin): number {
  return p.publicKey.blob.length + p.callbackUrl.href.length + p.clientKey.length + p.clientNonce.length + JSON.stringify(p.checks).length + p.id.length + p.clientAddr.length;
}

/** Every trusted host CA key as an OpenSSH public key line (clients scope them in known_hosts). */
export function hostCaLines(rt: ServerRuntime): string[] {
  return rt.ca.get('host').trusted.map((k) => formatPublicKeyLine(k.publicKey, `jumpgate host CA ${rt.config.clusterName}`));
}

/** Validates POST /v1/login/start's JSON against the API's declared shape (api/schema.ts); every refusal names the field. */
function parseStart(body: unknown): Pick<PendingLogin, 'publicKey' | 'callbackUrl' | 'ttlSeconds' | 'clientKey' | 'clientNonce'> & { loginHint?: string } {
  const bad = (field: string, why: string) => new ApiRequestError(400, 'LOGIN_BAD_REQUEST', `${field}: ${why}`);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('body', 'expected a JSON object');
  const shape = parseShape(LoginStartRequestSchema, body);
  if (!shape.ok) throw bad(shape.field, shape.reason);
  const b = shape.value;
  let publicKey: PublicKey;
  try {
    publicKey = parsePublicKeyLine(b.public_key).key;
  } catch (err) {
    throw bad('public_key', (err as Error).message);
  }
  const callbackUrl = checkLoopbackCallback(b.callback_url);
  return {
    publicKey,
    callbackUrl,
    ttlSeconds: b.ttl_seconds,
    clientKey: Buffer.from(b.client_key, 'base64url'),
    clientNonce: b.client_nonce,
    ...(b.login_hint ? { loginHint: b.login_hint } : {}),
  };
}

/**
 * Only http://127.0.0.1, localhost or [::1] with an explicit port: the
 * certificate goes back through the browser to a listener on the user's own
 * machine, never to another host (RFC 8252 §7.3 loopback redirection).
 */
export function checkLoopbackCallback(text: string): URL {
  const refuse = (why: string) => new ApiRequestError(400, 'LOGIN_BAD_CALLBACK', `callback_url ${JSON.stringify(text.slice(0, 200))} ${why}`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw refuse('is not a URL');
  }
  if (url.protocol !== 'http:') throw refuse('must use http:// (a loopback listener)');
  if (url.username || url.password) throw refuse('must not carry credentials');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '127.0.0.1' || (isIP(host) === 6 && host === '::1');
  if (!loopback) throw refuse('must point at 127.0.0.1, localhost or [::1]');
  if (!url.port) throw refuse('must name a port');
  if (url.hash) throw refuse('must not have a fragment');
  return url;
}
