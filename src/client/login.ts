/**
 * `tsh login`: browser single sign-on through a loopback listener.
 *
 *  1. ping the proxy (cluster name, SSH address, host CA);
 *  2. make an ed25519 key pair (it never leaves this machine) and a one-time
 *     X25519 key for sealing the answer;
 *  3. listen on 127.0.0.1:<random> under an unguessable path;
 *  4. POST /v1/login/start (public key, callback URL, TTL, sealing key, nonce);
 *  5. the user opens http://127.0.0.1:<port>/<path>, which redirects to the IdP;
 *  6. the IdP sends the browser to the proxy, the proxy signs a certificate and
 *     sends the browser to <path>/callback with the sealed answer;
 *  7. tsh opens it, checks nonce, request and key, and stores everything.
 */
import { randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Dispatcher } from 'undici';
import { AuthError, UserError } from '../errors.js';
import { API, type LoginResult, type LoginStartResponse, type PingResponse } from '../api/types.js';
import { ApiErrorSchema, LoginResultSchema, LoginStartResponseSchema, parseShape, PingResponseSchema } from '../api/schema.js';
import type * as v from 'valibot';
import { newEnvelopeKey, open as openEnvelope } from '../api/envelope.js';
import { httpRequest, type HttpResponse } from '../net/index.js';
import { printable } from '../util/printable.js';
import { formatHostPort } from '../shared/address.js';
import { htmlPage } from '../util/html.js';
import { encodeOpenSSHPrivateKey, formatPublicKeyLine, generateKeyPair, parseCertificateLine, parsePublicKeyLine, type Certificate, type PublicKey } from '../sshcert/index.js';

/** How long tsh waits for the browser login (the server's own limit is 10 minutes). */
export const LOGIN_WAIT_MS = 3 * 60 * 1000;
/** GET /v1/ping. */
export async function ping(proxyAddr: string, dispatcher: Dispatcher): Promise<PingResponse> {
  return (await pingProxy(proxyAddr, dispatcher)).info;
}

/**
 * GET /v1/ping, with the proxy's clock: its HTTP Date header (RFC 9110
 * §6.6.1, whole seconds), for telling a user whose clock is off.
 */
export async function pingProxy(proxyAddr: string, dispatcher: Dispatcher): Promise<{ info: PingResponse; serverDate: Date | undefined }> {
  const res = await httpRequest(`https://${proxyAddr}${API.ping}`, { dispatcher, headers: { accept: 'application/json' } });
  const info = await expectJson(PingResponseSchema, res, `the proxy at ${proxyAddr}`);
  const date = typeof res.headers['date'] === 'string' ? new Date(res.headers['date']) : undefined;
  return { info, serverDate: date && !Number.isNaN(date.getTime()) ? date : undefined };
}

export interface BrowserLoginOptions {
  proxyAddr: string;
  dispatcher: Dispatcher;
  ttlSeconds?: number;
  /** tsh login --user: a hint for the identity provider. */
  user?: string;
  /** Opens the URL in a browser; undefined with --browser=none. */
  openBrowser?: (url: string) => Promise<void>;
  /** Prints a line for people (stderr). */
  say: (line: string) => void;
  /** Shows progress while waiting; returns a stop function. */
  waiting: (text: string) => () => void;
  waitMs?: number;
  /** The caller's own checks of a well-formed answer (cluster scope), run before the browser is told how it went; throws UserError. */
  checkResult?: (result: LoginResult) => void;
  /**
   * Where the loopback listener binds (--bind-addr): a loopback host as
   * given (127.0.0.1, localhost, ::1) and a port; the callback URL uses
   * exactly this host and port. Default 127.0.0.1 at a random port.
   */
  bindAddr?: { host: string; port: number };
  /** The command that starts a new login, for hints (default `tsh login`). */
  retry?: string;
}

export interface BrowserLoginResult {
  result: LoginResult;
  privateKey: KeyObject;
  publicKey: PublicKey;
  privateKeyPem: string;
  cert: Certificate;
}

/** Runs the browser login and returns the verified result. Never stores anything. */
export async function browserLogin(opts: BrowserLoginOptions): Promise<BrowserLoginResult> {
  const { privateKey, publicKey } = generateKeyPair('ed25519');
  const envelope = newEnvelopeKey();
  const clientNonce = randomBytes(32).toString('base64url');
  const secretPath = `/${randomBytes(16).toString('hex')}`;
  const retry = opts.retry ?? 'tsh login';
  const listener = await LoopbackListener.start(secretPath, opts.bindAddr ?? { host: '127.0.0.1', port: 0 }, retry);
  try {
    const start = await startLogin(opts, {
      public_key: formatPublicKeyLine(publicKey),
      callback_url: `${listener.origin}${secretPath}/callback`,
      ...(opts.ttlSeconds !== undefined ? { ttl_seconds: opts.ttlSeconds } : {}),
      client_key: envelope.publicRaw.toString('base64url'),
      client_nonce: clientNonce,
      ...(opts.user ? { login_hint: opts.user } : {}),
    });
    listener.setLoginUrl(start.login_url);
    const localUrl = `${listener.origin}${secretPath}`;
    opts.say('Open this URL in a browser to log in (it works only on this machine):');
    opts.say(localUrl);
    if (opts.openBrowser) {
      await opts.openBrowser(localUrl).catch((err: unknown) => opts.say(`could not open a browser (${(err as Error).message}); open the URL above yourself`));
    }
    const stop = opts.waiting('Waiting for the browser login...');
    let callback: URL;
    try {
      callback = await listener.waitForCallback(opts.waitMs ?? LOGIN_WAIT_MS);
    } finally {
      stop();
    }
    let outcome = readCallback(callback, start.request_id, envelope.privateKey, clientNonce, publicKey, retry);
    if (!(outcome instanceof Error) && opts.checkResult) {
      try {
        opts.checkResult(outcome.result);
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        outcome = err;
      }
    }
    listener.finish(outcome);
    if (outcome instanceof Error) throw outcome;
    return { result: outcome.result, cert: outcome.cert, privateKey, publicKey, privateKeyPem: encodeOpenSSHPrivateKey(privateKey, outcome.result.username) };
  } finally {
    await listener.close();
  }
}

async function startLogin(opts: BrowserLoginOptions, body: Record<string, unknown>): Promise<LoginStartResponse> {
  const res = await httpRequest(`https://${opts.proxyAddr}${API.loginStart}`, {
    dispatcher: opts.dispatcher,
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  });
  return expectJson(LoginStartResponseSchema, res, `the proxy at ${opts.proxyAddr}`);
}

/** Checks the callback: an error from the server, or a sealed result for this request, this nonce and this key. */
function readCallback(url: URL, requestId: string, envelopeKey: KeyObject, clientNonce: string, publicKey: PublicKey, retry: string): UserError | { result: LoginResult; cert: Certificate } {
  const error = url.searchParams.get('error');
  if (error) {
    const description = printable(url.searchParams.get('error_description') ?? '', 400);
    return new AuthError(printable(error, 40), `login refused: ${description || printable(error, 40)}`);
  }
  const response = url.searchParams.get('response');
  if (url.searchParams.get('request_id') !== requestId || !response) {
    return new AuthError('LOGIN_RESPONSE_TAMPERED', 'the login response that reached tsh belongs to another login or is incomplete', {
      hint: `run \`${retry}\` again`,
    });
  }
  let body: unknown;
  try {
    body = JSON.parse(openEnvelope(envelopeKey, response, Buffer.from(requestId)).toString('utf8'));
  } catch (err) {
    return err instanceof UserError ? err : new AuthError('LOGIN_RESPONSE_TAMPERED', 'the login response is not valid JSON', { cause: err });
  }
  return checkLoginResult(body, clientNonce, publicKey, retry);
}

/**
 * Checks an opened login answer before anything is stored: the declared
 * shape (api/schema.ts LoginResultSchema: every field's type, characters and
 * size), this login's nonce, a certificate that parses and is a user
 * certificate for `publicKey`, and host CA lines that are real public keys.
 * Pure; the scope of the names against other profiles is cluster-scope.ts.
 * @returns the result and its parsed certificate, or the AuthError to show (LOGIN_BAD_ANSWER,
 *          LOGIN_RESPONSE_TAMPERED, LOGIN_BAD_CERTIFICATE), its text escaped
 */
export function checkLoginResult(body: unknown, clientNonce: string, publicKey: PublicKey, retry = 'tsh login'): UserError | { result: LoginResult; cert: Certificate } {
  const shape = parseShape(LoginResultSchema, body);
  if (!shape.ok) return badAnswer(`${shape.field}: ${shape.reason}`);
  const result = shape.value;
  const nonceOk =
    typeof result.client_nonce === 'string' &&
    result.client_nonce.length === clientNonce.length &&
    timingSafeEqual(Buffer.from(result.client_nonce), Buffer.from(clientNonce));
  if (result.v !== 1 || !nonceOk) {
    return new AuthError('LOGIN_RESPONSE_TAMPERED', 'the login response was not made for this login (nonce mismatch)', { hint: `run \`${retry}\` again` });
  }
  let cert: Certificate;
  try {
    cert = parseCertificateLine(result.certificate).cert;
  } catch (err) {
    return new AuthError('LOGIN_BAD_CERTIFICATE', `the proxy sent a certificate tsh cannot read: ${printable((err as Error).message)}`, { cause: err });
  }
  if (cert.type !== 'user' || !cert.key.blob.equals(publicKey.blob)) {
    return new AuthError('LOGIN_BAD_CERTIFICATE', 'the proxy sent a certificate that is not a user certificate for the key tsh made');
  }
  for (const [i, line] of result.host_ca.entries()) {
    try {
      parsePublicKeyLine(line);
    } catch (err) {
      return badAnswer(`host_ca[${i}]: not an OpenSSH public key (${(err as Error).message})`);
    }
  }
  return { result, cert };
}

/** A sealed answer that does not have the declared shape: refused before anything is stored. */
function badAnswer(problem: string): AuthError {
  return new AuthError('LOGIN_BAD_ANSWER', `the proxy's login answer is not valid: ${printable(problem, 300)}`, {
    hint: 'nothing was saved; the proxy is misconfigured or not the one you meant (check --proxy, and avoid --insecure outside development)',
  });
}

/**
 * The loopback listener: 127.0.0.1 only, random port, an unguessable path,
 * one callback. Everything else gets a 404, and nothing from the browser is
 * echoed without escaping.
 */
class LoopbackListener {
  private loginUrl: string | undefined;
  private resolveCallback: ((url: URL) => void) | undefined;
  private pendingResponse: ServerResponse | undefined;
  private used = false;

  private constructor(
    private readonly server: Server,
    readonly origin: string,
    private readonly secretPath: string,
    private readonly retry: string,
  ) {}

  static async start(secretPath: string, bind: { host: string; port: number }, retry: string): Promise<LoopbackListener> {
    let self: LoopbackListener | undefined;
    const server = createServer((req, res) => self!.handle(req, res));
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    const where = formatHostPort(bind);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const inUse = err.code === 'EADDRINUSE';
        reject(
          new UserError('LOGIN_LISTEN_FAILED', `cannot listen on ${where} for the browser login: ${inUse ? 'the address is in use' : err.message}`, {
            cause: err,
            hint: bind.port !== 0 ? `pick a free port with --bind-addr=${formatHostPort({ host: bind.host, port: bind.port + 1 })}, or leave --bind-addr out for a random one` : 'check that this machine has a loopback interface (127.0.0.1)',
          }),
        );
      });
      server.listen(bind.port, bind.host, () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    self = new LoopbackListener(server, `http://${formatHostPort({ host: bind.host, port })}`, secretPath, retry);
    return self;
  }

  setLoginUrl(url: string): void {
    this.loginUrl = url;
  }

  waitForCallback(timeoutMs: number): Promise<URL> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new AuthError('LOGIN_TIMEOUT', `no browser login completed within ${Math.round(timeoutMs / 60000) || 1} minutes`, {
            hint: `run \`${this.retry}\` again and open the URL it prints in a browser on this machine`,
          }),
        );
      }, timeoutMs);
      this.resolveCallback = (url) => {
        clearTimeout(timer);
        resolve(url);
      };
    });
  }

  /** Answers the browser's callback request with a page saying how it went. */
  finish(outcome: UserError | { result: LoginResult }): void {
    const res = this.pendingResponse;
    if (!res) return;
    if (outcome instanceof Error) {
      page(res, 400, 'Login failed', `${outcome.message}. You can close this tab and run tsh login again.`);
    } else {
      const r = outcome.result;
      page(res, 200, 'You are logged in', `Logged in to ${r.cluster_name} as ${r.username}. You can close this tab and go back to the terminal.`);
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.origin);
    if (req.method !== 'GET') return page(res, 405, 'Not allowed', 'Only GET is served here.');
    if (url.pathname === this.secretPath && this.loginUrl && !this.used) {
      res.writeHead(302, { location: this.loginUrl, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
      res.end();
      return;
    }
    if (url.pathname === `${this.secretPath}/callback` && !this.used && this.resolveCallback) {
      this.used = true; // single use: a replayed callback gets the 404 below
      this.pendingResponse = res;
      this.resolveCallback(url);
      return;
    }
    page(res, 404, 'Not found', 'This address belongs to a tsh login that has finished or never existed.');
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function page(res: ServerResponse, status: number, title: string, message: string): void {
  const html = htmlPage(title, message);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
  });
  res.end(html);
}

/**
 * An answer of the proxy's API parsed with its declared shape: 2xx must match
 * `schema`, anything else is read as an ApiError. Every text that came from
 * the server is escaped (util/printable) before it can reach a terminal.
 * @throws UserError PROXY_BAD_ANSWER (not JSON, or not the shape), AuthError on 401/403, UserError otherwise
 */
export async function expectJson<S extends v.GenericSchema>(schema: S, res: HttpResponse, who: string): Promise<v.InferOutput<S>> {
  let body: unknown;
  try {
    body = res.json();
  } catch {
    throw new UserError('PROXY_BAD_ANSWER', `${who} answered HTTP ${res.status} with something that is not JSON`, { hint: 'check --proxy: is that a Jumpgate proxy?' });
  }
  if (res.status >= 200 && res.status < 300) {
    const shape = parseShape(schema, body);
    if (shape.ok) return shape.value;
    throw new UserError('PROXY_BAD_ANSWER', `${who} sent an answer tsh refuses: ${printable(`${shape.field}: ${shape.reason}`, 300)}`, {
      hint: 'nothing was saved; check --proxy: is that the Jumpgate proxy you meant (and is it up to date)?',
    });
  }
  const err = parseShape(ApiErrorSchema, body);
  const code = err.ok ? printable(err.value.error.code, 64) : `HTTP_${res.status}`;
  const message = err.ok ? printable(err.value.error.message, 400) : `HTTP ${res.status}`;
  throw res.status === 401 || res.status === 403 ? new AuthError(code, `${who} refused: ${message}`) : new UserError(code, `${who} refused: ${message}`);
}
