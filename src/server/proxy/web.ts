/**
 * The proxy's HTTPS API (node:https): discovery (`/v1/ping`), login start,
 * the OIDC callback, recordings (`/v1/recordings`, signed with the user's
 * certificate: recordings-web.ts), and headless logins (`/v1/login/headless/*`, the
 * `/web/headless` pages: headless-web.ts). Small on purpose: bounded bodies and headers, short
 * timeouts, TLS 1.2+, security headers on every response.
 */
import { createServer, type Server } from 'node:https';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { API, type ApiError, type PingResponse } from '../../api/types.js';
import { VERSION } from '../../version.js';
import type { HostPort } from '../../config/index.js';
import { formatHostPort } from '../../shared/address.js';
import { UserError } from '../../errors.js';
import { htmlPage } from '../../util/html.js';
import type { RunningService, ServerLog, ServerRuntime } from '../runtime.js';
import type { TlsMaterial } from '../tls.js';
import { ApiRequestError, hostCaLines, storeUnavailable, type LoginService } from '../auth/login.js';
import { StoreUnavailableError } from '../storage/backend.js';
import { AuditUnavailableError } from '../auth/audit.js';
import { SourceCounter } from '../limits.js';
import { HeadlessLoginService } from '../auth/headless-login.js';
import { handleHeadlessCallback, handleHeadlessPage, isHeadlessPath } from './headless-web.js';
import { acceptProxied, adoptProxiedPeer, refusalReporter } from './proxy-protocol.js';
import { readBody } from './body.js';
import { handleRecordingFetch, handleRecordingList } from './recordings-web.js';
import { NonceCache } from './request-auth.js';
import type { NodeService } from '../nodes/node-service.js';
import { peekAlpn } from './alpn-mux.js';
import type { TlsRoute } from './tls-route.js';
import { TLS_ROUTE_ALPN } from '../../shared/wire-names.js';
import { WebApp } from '../web/app.js';
import { cookieValue as cookieOf, WEB_LOGIN_COOKIE, WebSessions } from '../web/sessions.js';
import { TERMINAL_PATH, type WebTerminals } from '../web/terminal.js';

/** Request bodies are small JSON documents: refuse anything bigger. */
export const MAX_BODY_BYTES = 16 * 1024;

/** Limits against slow, oversized or too many requests (documented in README and SECURITY.md). */
export interface WebLimits {
  /** A TLS handshake must finish within this (before it, no HTTP timeout applies). */
  tlsHandshakeTimeoutMs: number;
  /** The request line and every header must arrive within this (408 otherwise). */
  headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this (408 otherwise). */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** How often Node checks the two request timeouts: they fire up to this much late. */
  timeoutCheckIntervalMs: number;
  /** Request line plus headers; more is a 431. */
  maxHeaderSize: number;
  /** Open connections from one client source (limits.ts sourceKey: an IPv4 address, an IPv6 /64); more are closed at once. */
  maxConnectionsPerAddress: number;
  /** Open connections in total; more are closed at once. */
  maxConnections: number;
}

export const WEB_LIMITS: Readonly<WebLimits> = {
  tlsHandshakeTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  timeoutCheckIntervalMs: 1_000,
  maxHeaderSize: 16 * 1024,
  maxConnectionsPerAddress: 64,
  maxConnections: 4_096,
};

/** Sent with every response, errors from the HTTP parser included. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'strict-transport-security': 'max-age=31536000',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'",
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export interface WebDeps {
  rt: ServerRuntime;
  tls: TlsMaterial;
  login: LoginService;
  /** Headless logins (tsh login --headless): the API, the approval pages and their OIDC callbacks. */
  headless?: HeadlessLoginService;
  /** The web UI (/web: server/web/): its pages and API, sessions and terminals. */
  web?: { app: WebApp; sessions: WebSessions; terminals: WebTerminals };
  /** host:port clients use for HTTPS and SSH (the real ports once bound). */
  publicAddrs: () => { web: string; ssh: string };
  /** The node API (`jumpgate node start`: join, heartbeat, renew; server/nodes/node-service.ts). */
  nodes?: NodeService;
  /** Overrides of WEB_LIMITS (tests use short timeouts). */
  limits?: Partial<WebLimits>;
  /**
   * The SSH route (tls-route.ts): connections whose ClientHello offers
   * TLS_ROUTE_ALPN go there when proxy.tls_routing is on; without it the
   * port is HTTPS only.
   */
  route?: TlsRoute;
}

/** Starts the HTTPS API on `listen` (port 0 = any free port). */
export async function startWebApi(listen: HostPort, deps: WebDeps): Promise<RunningService & { server: Server; limits: WebLimits }> {
  const limits: WebLimits = { ...WEB_LIMITS, ...deps.limits };
  const nonces = new NonceCache();
  const server = createServer(
    {
      cert: deps.tls.cert,
      key: deps.tls.key,
      minVersion: 'TLSv1.2',
      handshakeTimeout: limits.tlsHandshakeTimeoutMs,
      maxHeaderSize: limits.maxHeaderSize,
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: limits.timeoutCheckIntervalMs,
      // Node's own 400 for a missing Host would go out without the security headers: handle() refuses it instead.
      requireHostHeader: false,
    },
    (req, res) => {
      handle(req, res, deps, nonces).catch((err: unknown) => {
        if (err instanceof AuditUnavailableError) {
          // Fail closed: nothing is issued that the audit log does not hold.
          deps.rt.log.warn(`web: ${req.method} ${pathOf(req)} refused: ${err.message}`);
          if (!res.headersSent) {
            res.setHeader('retry-after', '60');
            if (pathOf(req) === API.oidcCallback) return sendPage(res, 503, 'Login refused: the server cannot record it', 'The server cannot write its audit log (is its disk full?), so it issued no certificate. Try tsh login again later, or tell an admin.');
            return sendJson(res, 503, { error: { code: err.code, message: 'the server cannot write its audit log; nothing was issued. Try again later or tell an admin.' } });
          }
          return void res.destroy();
        }
        deps.rt.log.warn(`web: ${req.method} ${pathOf(req)} failed: ${(err as Error)?.stack ?? String(err)}`);
        if (!res.headersSent) sendJson(res, 500, { error: { code: 'INTERNAL', message: 'internal error; see the server log' } });
        else res.destroy();
      });
    },
  );
  server.maxConnections = limits.maxConnections;
  limitConnectionsPerAddress(server, limits.maxConnectionsPerAddress, deps.rt.log);
  server.on('tlsClientError', (err) => deps.rt.log.debug(`web: TLS handshake failed: ${err.message}`));
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => answerClientError(err, socket, limits, deps.rt.log));
  // A plain TCP listener in front: a PROXY protocol header (proxy.proxy_protocol_from, proxy-protocol.ts) is read off
  // before TLS starts; the https server then gets the socket as its 'connection', reporting the real client.
  const refusedHeader = refusalReporter(deps.rt.log, 'web');
  const peekingPerSource = new SourceCounter(limits.maxConnectionsPerAddress);
  // TLS routing: the ClientHello is peeked (alpn-mux.ts) and the socket goes to the HTTPS server or the SSH route,
  // so only the route ever asks for a client certificate. Counted per source while it is read, like the PROXY header.
  const route = deps.rt.config.proxy.tlsRouting ? deps.route : undefined;
  const dispatch = (socket: Socket) => {
    if (!route) return void server.emit('connection', socket);
    const source = socket.remoteAddress ?? 'unknown';
    const release = peekingPerSource.acquire(source);
    if (!release) {
      deps.rt.log.debug(`web: refused a connection from ${source}: it already has ${limits.maxConnectionsPerAddress} that sent no ClientHello yet`);
      return void socket.destroy();
    }
    peekAlpn(socket, limits.tlsHandshakeTimeoutMs, (alpn) => {
      release();
      if (alpn?.includes(TLS_ROUTE_ALPN)) route.accept(socket);
      else server.emit('connection', socket);
    });
    socket.once('close', release);
  };
  const front = createNetServer((raw) =>
    acceptProxied(raw, { trusted: deps.rt.config.proxy.proxyProtocolFrom, untrusted: 'peek', peekingPerSource }, dispatch, refusedHeader),
  );
  front.maxConnections = limits.maxConnections;
  server.on('secureConnection', adoptProxiedPeer);
  // WebSocket upgrades: only the web terminal's path (server/web/terminal.ts checks Origin, session and caps).
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = pathOf(req);
    if (!deps.web || path !== TERMINAL_PATH) return void socket.destroy();
    deps.web.terminals.handleUpgrade(req, socket, head).catch((err: Error) => {
      deps.rt.log.warn(`web: terminal upgrade failed: ${err.message}`);
      socket.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', (err: NodeJS.ErrnoException) => reject(listenError('proxy.web_listen_addr', listen, err)));
    front.listen(listen.port, listen.host, () => {
      front.off('error', reject);
      // node:http starts its request/headers timeout checker and its connection list on the server's own 'listening'
      // (setupConnectionsTracking); this server never listens itself, so tell it the front does.
      server.emit('listening');
      resolve();
    });
  });
  const port = (front.address() as AddressInfo).port;
  return {
    port,
    server,
    limits,
    close: () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve());
        route?.close();
        server.close();
        server.closeAllConnections();
      }),
  };
}

/**
 * Closes a new TCP connection at once when its source (limits.ts sourceKey)
 * already holds `max` open ones: one client cannot use up the server's
 * sockets (slow-loris from one address, or from many addresses of one IPv6
 * /64). Counted before TLS, so handshakes count too.
 */
function limitConnectionsPerAddress(server: Server, max: number, log: ServerLog): void {
  const open = new SourceCounter(max);
  server.on('connection', (socket: Socket) => {
    const addr = socket.remoteAddress ?? 'unknown';
    const release = open.acquire(addr);
    if (!release) {
      log.debug(`web: refused a connection from ${addr}: its source already has ${max} open`);
      socket.destroy();
      return;
    }
    socket.once('close', release);
  });
}

/** Sockets answerClientError has answered: later reports for them are ignored (the answer is on its way). */
const answered = new WeakSet<Duplex>();

/**
 * Answers what Node's HTTP parser refused (malformed requests, headers too
 * large, request timeouts) with the same security headers and JSON error
 * shape as every other response, then closes the connection.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, limits: WebLimits, log: ServerLog): void {
  // Node's HTTP server reports a parse error again for every later chunk the client sends (its parser stays in the
  // error state and the socket keeps reading, which also drains what the client still sends so the close is a FIN,
  // not a reset). By the second report the socket is no longer writable because of our own end(), yet the answer may
  // still sit in the TLS layer: several chunks decrypted in one native read all fail before it flushes. That is the
  // normal case once the ClientHello was read in JavaScript (alpn-mux.ts, proxy-protocol.ts: TLSSocket then takes
  // the peeked bytes plus larger native reads). Destroying the socket there dropped the 431 and reset the connection.
  if (answered.has(socket)) return;
  log.debug(`web: bad request from ${(socket as Socket).remoteAddress ?? 'unknown'}: ${err.code ?? ''} ${err.message}`);
  // https.Server also reports TLS failures (a handshake timeout, say) here: those get no HTTP answer.
  const fromHttpParser = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || (err.code ?? '').startsWith('HPE_');
  const started = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  if (!fromHttpParser || !socket.writable || started) {
    socket.destroy();
    return;
  }
  const [status, code, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'HEADERS_TOO_LARGE', `the request line and headers are limited to ${limits.maxHeaderSize} bytes`]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'REQUEST_TIMEOUT', 'the request took too long to arrive']
        : [400, 'BAD_REQUEST', 'the request is not valid HTTP/1.1'];
  const body = JSON.stringify({ error: { code, message } });
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    ...Object.entries(SECURITY_HEADERS).map(([k, v]) => `${k}: ${v}`),
    'content-type: application/json; charset=utf-8',
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
  ];
  answered.add(socket);
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  // A client that stops reading must not keep the socket.
  setTimeout(() => socket.destroy(), 1_000).unref();
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: WebDeps, nonces: NonceCache): Promise<void> {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
  const clientAddr = req.socket.remoteAddress ?? 'unknown';
  try {
    if (req.httpVersion === '1.1' && req.headers.host === undefined) {
      throw new ApiRequestError(400, 'MISSING_HOST', 'an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)');
    }
    const target = requestTarget(req);
    const path = target.pathname;
    switch (`${req.method} ${path}`) {
      case `GET ${API.ping}`:
        return sendJson(res, 200, ping(deps));
      case `POST ${API.loginStart}`: {
        deps.login.admit(clientAddr); // before the body is read: a refusal costs nothing
        const body = await readJson(req, res);
        return sendJson(res, 200, await deps.login.start(body, clientAddr));
      }
      case `GET ${API.oidcCallback}`: {
        // The redirect URI the IdP was given, with the query it sent back (code, state, iss or error).
        const callbackUrl = new URL(`https://${deps.publicAddrs().web}${API.oidcCallback}${target.search}`);
        if (deps.headless && HeadlessLoginService.ownsState(target.searchParams.get('state'))) {
          return handleHeadlessCallback(res, callbackUrl, deps.headless, clientAddr, deps.rt.log);
        }
        if (deps.web && WebSessions.ownsState(target.searchParams.get('state'))) {
          const outcome = await deps.web.sessions.callback(callbackUrl, cookieOf(req, WEB_LOGIN_COOKIE), clientAddr);
          res.setHeader('set-cookie', outcome.setCookies);
          if (outcome.kind === 'redirect') {
            res.writeHead(302, { location: outcome.location, 'content-type': 'text/plain' });
            return void res.end();
          }
          return sendPage(res, outcome.status, outcome.title, outcome.message);
        }
        const outcome = await deps.login.callback(callbackUrl, clientAddr);
        if (outcome.kind === 'redirect') {
          res.writeHead(302, { location: outcome.location, 'content-type': 'text/plain' });
          res.end();
          return;
        }
        return sendPage(res, outcome.status, outcome.title, outcome.message);
      }
      case `POST ${API.headlessStart}`: {
        if (!deps.headless) break;
        deps.headless.admit(clientAddr); // before the body is read
        const body = await readJson(req, res);
        return sendJson(res, 200, await deps.headless.start(body, clientAddr));
      }
      case `POST ${API.headlessPoll}`: {
        if (!deps.headless) break;
        const body = await readJson(req, res);
        return sendJson(res, 200, await deps.headless.poll(body, clientAddr));
      }
      case `GET ${API.recordings}`:
        return await handleRecordingList(req, res, deps.rt, clientAddr, nonces);
      case `POST ${API.nodeJoin}`: {
        if (!deps.nodes) break;
        deps.nodes.admit(clientAddr); // before the body is read
        const body = await readJson(req, res);
        return sendJson(res, 200, await deps.nodes.join(body, clientAddr));
      }
      case `POST ${API.nodeHeartbeat}`: {
        if (!deps.nodes) break;
        const body = await readJson(req, res);
        // A node that hangs up ends its hold at once (node-service.ts heartbeat); it may do so before the hold starts.
        let gone = false;
        let release: (() => void) | undefined;
        res.once('close', () => {
          gone = true;
          release?.();
        });
        const answer = await deps.nodes.heartbeat(body, req.headers.authorization, clientAddr, (r) => (gone ? r() : (release = r)));
        return sendJson(res, 200, answer);
      }
      case `POST ${API.nodeRenew}`: {
        if (!deps.nodes) break;
        const body = await readJson(req, res);
        return sendJson(res, 200, await deps.nodes.renew(body, req.headers.authorization, clientAddr));
      }
      default:
        if (req.method === 'GET' && path.startsWith(API.recording)) return await handleRecordingFetch(req, res, deps.rt, path.slice(API.recording.length), clientAddr, nonces);
        if (deps.headless && isHeadlessPath(path)) return handleHeadlessPage(req, res, path, deps.headless, clientAddr, deps.rt.log);
        if (deps.web && WebApp.owns(path)) return await deps.web.app.handle(req, res, path, clientAddr);
        if (path === API.ping || path === API.loginStart || path === API.oidcCallback) {
          return sendJson(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: `${(req.method ?? '').slice(0, 20)} is not allowed on ${path.slice(0, 100)}` } });
        }
        return sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no such endpoint: ${path.slice(0, 100)}` } });
    }
    return sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no such endpoint: ${path.slice(0, 100)}` } });
  } catch (err) {
    if (err instanceof StoreUnavailableError) {
      // A state-store call outside the login service's own mapping: the same refusal.
      deps.rt.log.warn(`web: ${req.method} ${pathOf(req)} refused: ${err.message}`);
      err = storeUnavailable();
    }
    if (err instanceof ApiRequestError) {
      if (err.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(err.retryAfterSeconds));
      if (err.code === 'STORE_UNAVAILABLE' && pathOf(req) === API.oidcCallback) {
        // A browser, not tsh: a page. Nothing was issued.
        return sendPage(res, 503, 'Login refused: the server cannot reach its state store', 'The server cannot reach its state store (its database), so it could not finish the login and issued no certificate. Run tsh login again in a minute, or tell an admin.');
      }
      return sendJson(res, err.status, { error: { code: err.code, message: err.message } });
    }
    throw err;
  }
}

/**
 * The request target as a URL. Node passes origin-form (`/a?b`),
 * absolute-form (`https://host/a`) and `*` through; anything that is not a
 * valid URL relative to this server (`//`, for one) is a 400, not a crash.
 */
function requestTarget(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'https://proxy.invalid');
  } catch {
    throw new ApiRequestError(400, 'BAD_REQUEST_TARGET', 'the request target is not a valid path');
  }
}

/** A listen failure that names the config key and the fix. */
export function listenError(key: string, listen: HostPort, err: NodeJS.ErrnoException): UserError {
  const where = formatHostPort(listen);
  const why =
    err.code === 'EADDRINUSE' ? 'the address is already in use (another jumpgate, or another program?)' :
    err.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' :
    err.code === 'EADDRNOTAVAIL' ? 'no interface of this machine has that address' : err.message;
  return new UserError('LISTEN_FAILED', `cannot listen on ${where} (${key}): ${why}`, { cause: err, hint: `change ${key} in the config, or stop what uses ${where}` });
}

function ping(deps: WebDeps): PingResponse {
  const addrs = deps.publicAddrs();
  const oidc = deps.rt.config.auth.oidc;
  return {
    cluster_name: deps.rt.config.clusterName,
    server_version: VERSION,
    proxy: { web_public_addr: addrs.web, ssh_public_addr: addrs.ssh },
    host_ca: hostCaLines(deps.rt),
    auth: oidc ? { type: 'oidc', issuer: oidc.issuer } : { type: 'none' },
    tls_routing: deps.rt.config.proxy.tlsRouting,
  };
}

/** Reads a JSON body of at most MAX_BODY_BYTES (body.ts readBody); not JSON is 400 BAD_JSON. */
async function readJson(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
  const body = await readBody(req, res, { type: 'application/json', maxBytes: MAX_BODY_BYTES, noun: 'body', limitText: 'request bodies' });
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new ApiRequestError(400, 'BAD_JSON', 'the body is not valid JSON');
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return; // a held heartbeat whose node went away
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A page for the browser (security headers are already set for every response). */
function sendPage(res: ServerResponse, status: number, title: string, message: string): void {
  const html = htmlPage(title, message);
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html) });
  res.end(html);
}

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?')[0]!.slice(0, 100);
}

export type { ApiError };
