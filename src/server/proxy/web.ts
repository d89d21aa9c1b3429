/**
 * The proxy's HTTPS API (node:https): discovery (`/v1/ping`), login start and
 * the OIDC callback. Small on purpose: bounded bodies and headers, short
 * timeouts, TLS 1.2+, security headers on every response.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { API, type ApiError, type PingResponse } from '../../api/types.js';
import { VERSION } from '../../version.js';
import type { HostPort } from '../../config/index.js';
import { formatHostPort } from '../../config/address.js';
import { UserError } from '../../errors.js';
import type { RunningService, ServerRuntime } from '../runtime.js';
import type { TlsMaterial } from '../tls.js';
import { ApiRequestError, hostCaLines, type LoginService } from '../auth/login.js';

/** Request bodies are small JSON documents: refuse anything bigger. */
export const MAX_BODY_BYTES = 16 * 1024;
/** Limits against slow or oversized requests (documented in README). */
export const WEB_LIMITS = { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000, maxHeaderSize: 16 * 1024 };

const SECURITY_HEADERS: Record<string, string> = {
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
  /** host:port clients use for HTTPS and SSH (the real ports once bound). */
  publicAddrs: () => { web: string; ssh: string };
}

/** Starts the HTTPS API on `listen` (port 0 = any free port). */
export async function startWebApi(listen: HostPort, deps: WebDeps): Promise<RunningService & { server: Server }> {
  const server = createServer(
    {
      cert: deps.tls.cert,
      key: deps.tls.key,
      minVersion: 'TLSv1.2',
      maxHeaderSize: WEB_LIMITS.maxHeaderSize,
      requestTimeout: WEB_LIMITS.requestTimeoutMs,
      headersTimeout: WEB_LIMITS.headersTimeoutMs,
      keepAliveTimeout: WEB_LIMITS.keepAliveTimeoutMs,
    },
    (req, res) => {
      handle(req, res, deps).catch((err: unknown) => {
        deps.rt.log.warn(`web: ${req.method} ${pathOf(req)} failed: ${(err as Error)?.stack ?? String(err)}`);
        if (!res.headersSent) sendJson(res, 500, { error: { code: 'INTERNAL', message: 'internal error; see the server log' } });
        else res.destroy();
      });
    },
  );
  server.on('tlsClientError', (err) => deps.rt.log.debug(`web: TLS handshake failed: ${err.message}`));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(listenError('proxy.web_listen_addr', listen, err)));
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: WebDeps): Promise<void> {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
  const url = new URL(req.url ?? '/', 'https://proxy.invalid');
  const clientAddr = req.socket.remoteAddress ?? 'unknown';
  const route = `${req.method} ${url.pathname}`;
  try {
    switch (route) {
      case `GET ${API.ping}`:
        return sendJson(res, 200, ping(deps));
      case `POST ${API.loginStart}`: {
        const body = await readJson(req);
        return sendJson(res, 200, await deps.login.start(body, clientAddr));
      }
      case `GET ${API.oidcCallback}`: {
        const callbackUrl = new URL(`https://${deps.publicAddrs().web}${req.url ?? ''}`);
        const outcome = await deps.login.callback(callbackUrl, clientAddr);
        if (outcome.kind === 'redirect') {
          res.writeHead(302, { location: outcome.location, 'content-type': 'text/plain' });
          res.end();
          return;
        }
        return sendPage(res, outcome.status, outcome.title, outcome.message);
      }
      default:
        if (url.pathname === API.ping || url.pathname === API.loginStart || url.pathname === API.oidcCallback) {
          return sendJson(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: `${req.method} is not allowed on ${url.pathname}` } });
        }
        return sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no such endpoint: ${url.pathname.slice(0, 100)}` } });
    }
  } catch (err) {
    if (err instanceof ApiRequestError) return sendJson(res, err.status, { error: { code: err.code, message: err.message } });
    throw err;
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
  };
}

/** Reads a JSON body of at most MAX_BODY_BYTES; anything else is a 4xx with a reason. */
function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      reject(new ApiRequestError(415, 'BAD_CONTENT_TYPE', 'send the body as application/json'));
      req.resume();
      return;
    }
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > MAX_BODY_BYTES) {
      reject(new ApiRequestError(413, 'BODY_TOO_LARGE', `request bodies are limited to ${MAX_BODY_BYTES} bytes`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new ApiRequestError(413, 'BODY_TOO_LARGE', `request bodies are limited to ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new ApiRequestError(400, 'BAD_JSON', 'the body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A minimal HTML page for the browser; every piece of text is escaped. */
export function sendPage(res: ServerResponse, status: number, title: string, message: string): void {
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}</style></head>
<body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>`;
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html) });
  res.end(html);
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?')[0]!.slice(0, 100);
}

export type { ApiError };
