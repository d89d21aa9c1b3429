/**
 * The web UI's HTTP side on the proxy's HTTPS port (web.ts hands every
 * `/web` path here except the headless pages):
 *
 *   GET  /web                 the page (dist/webui/index.html, a fresh style nonce per response)
 *   GET  /web/assets/<file>   the bundle (dist/webui/assets: hashed names, cached for a year)
 *   GET  /web/login           → the IdP (sessions.ts startLogin)
 *   GET  /web/api/me          who is signed in, their logins and roles, the CSRF token
 *   GET  /web/api/nodes       the nodes the user may reach, with labels (routing.ts reachableNodes: tsh ls's rule)
 *   GET  /web/api/audit       the audit log (roles with review_sessions only): ?limit=&type=&user=
 *   GET  /web/api/recordings  the recordings the user may see (own; all for review_sessions):
 *                             proxy/recordings-web.ts recordingListFor, GET /v1/recordings's rule and code
 *   GET  /web/api/recordings/<session id>  the asciicast for the player (recordings-web.ts sendRecording;
 *                             recording.read audited, via web; another's == unknown: 404)
 *   POST /web/api/logout      deletes the session (CSRF token + Origin)
 *   GET  /web/api/terminal    the WebSocket (terminal.ts; web.ts routes the upgrade)
 *
 * API calls without a session get 401 JSON. The page and its assets get a
 * strict Content-Security-Policy (WEBUI_CSP): scripts and styles from this
 * origin only, no inline script or style; the one exception is the
 * `<style>` elements xterm.js creates at run time for its theme and
 * dimensions, allowed by a nonce made per response (the page hands it to
 * them: src/webui/main.ts).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import * as v from 'valibot';
import { ApiRequestError } from '../auth/login.js';
import { reachableNodes } from '../proxy/routing.js';
import { recordingListFor, sendRecording } from '../proxy/recordings-web.js';
import { inventoryNodes, type ServerRuntime } from '../runtime.js';
import { CSRF_HEADER, notSignedIn, type WebSession, type WebSessions } from './sessions.js';
import { TERMINAL_PATH } from './terminal.js';

/** The page's policy; `{nonce}` is replaced per response. */
export const WEBUI_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; font-src 'self'; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/** The API's answers (JSON) and redirects: nothing to load, never framed. */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'";
/** The web API's path of one recording (the tail is a session id: recordings.ts SESSION_ID). */
export const RECORDING_PATH = /^\/web\/api\/recordings\/([^/]{1,200})$/;
/** Most audit events one request returns. */
export const MAX_AUDIT_EVENTS = 500;

const ASSET_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.woff2': 'font/woff2',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

const AuditQuerySchema = v.strictObject({
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,4}$/), v.transform(Number), v.minValue(1), v.maxValue(MAX_AUDIT_EVENTS))),
  type: v.optional(v.pipe(v.string(), v.regex(/^[a-z_.]{1,64}$/))),
  user: v.optional(v.pipe(v.string(), v.maxLength(1_024))),
});

/** The built front end, read once: index.html and every asset by name. */
interface WebUiFiles {
  index: string;
  assets: Map<string, { type: string; body: Buffer }>;
}

/** Where `npm run build` puts the front end: dist/webui next to the bundled dist/jumpgate.cjs. */
export function defaultWebUiDir(): string {
  return typeof __dirname === 'string' ? join(__dirname, 'webui') : join(process.cwd(), 'dist', 'webui');
}

function loadWebUi(dir: string): WebUiFiles | undefined {
  if (!existsSync(join(dir, 'index.html'))) return undefined;
  const assets = new Map<string, { type: string; body: Buffer }>();
  const assetDir = join(dir, 'assets');
  for (const name of existsSync(assetDir) ? readdirSync(assetDir) : []) {
    const ext = name.slice(name.lastIndexOf('.'));
    const type = ASSET_TYPES[ext];
    if (type) assets.set(name, { type, body: readFileSync(join(assetDir, name)) });
  }
  return { index: readFileSync(join(dir, 'index.html'), 'utf8'), assets };
}

export interface WebAppDeps {
  rt: ServerRuntime;
  sessions: WebSessions;
  /** dist/webui (defaultWebUiDir). */
  webUiDir?: string;
}

/** The /web routes (top of this file). */
export class WebApp {
  private files: WebUiFiles | undefined;

  constructor(private readonly deps: WebAppDeps) {
    this.files = loadWebUi(deps.webUiDir ?? defaultWebUiDir());
  }

  /** Whether web.ts should hand `path` here (every /web path but the headless pages). */
  static owns(path: string): boolean {
    return (path === '/web' || path.startsWith('/web/')) && !(path === '/web/headless' || path.startsWith('/web/headless/'));
  }

  /** Serves one request on a path `owns` accepted; API refusals are thrown as ApiRequestError (web.ts answers them as JSON). */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, clientAddr: string): Promise<void> {
    const method = req.method ?? '';
    // Not a page (the page and its assets set their own): nothing on these answers may load or frame anything.
    res.setHeader('content-security-policy', API_CSP);
    if (path === '/web' || path === '/web/') {
      if (method !== 'GET' && method !== 'HEAD') throw new ApiRequestError(405, 'METHOD_NOT_ALLOWED', 'only GET is served here');
      return this.page(res);
    }
    if (path.startsWith('/web/assets/')) return this.asset(res, path.slice('/web/assets/'.length));
    if (path === '/web/login') {
      if (method !== 'GET') throw new ApiRequestError(405, 'METHOD_NOT_ALLOWED', 'only GET is served here');
      const out = await this.deps.sessions.startLogin(clientAddr);
      res.setHeader('set-cookie', out.setCookies);
      res.writeHead(302, { location: out.location, 'content-type': 'text/plain' });
      return void res.end();
    }
    if (!path.startsWith('/web/api/')) throw new ApiRequestError(404, 'NOT_FOUND', `no such page: ${path.slice(0, 100)}`);
    const session = await this.deps.sessions.authenticate(req);
    if (!session) throw notSignedIn();
    switch (`${method} ${path}`) {
      case 'GET /web/api/me':
        return sendJson(res, 200, {
          user: session.user,
          roles: session.roles,
          logins: session.access.logins,
          csrf_token: session.csrf,
          expires_at: new Date(session.expiresAt).toISOString(),
          review_sessions: this.reviewer(session),
          cluster_name: this.deps.rt.config.clusterName,
        });
      case 'GET /web/api/nodes':
        return sendJson(res, 200, {
          nodes: reachableNodes(this.deps.rt.config, session.access.nodeLabelSets, inventoryNodes(this.deps.rt)).map((n) => ({ name: n.name, labels: n.labels })),
          logins: session.access.logins,
        });
      case 'GET /web/api/audit': {
        if (!this.reviewer(session)) throw new ApiRequestError(403, 'NOT_A_REVIEWER', 'the audit log is for roles with review_sessions: true; ask an admin');
        const url = new URL(req.url ?? '/', 'https://proxy.invalid');
        const q = v.safeParse(AuditQuerySchema, Object.fromEntries(url.searchParams));
        if (!q.success) throw new ApiRequestError(400, 'BAD_QUERY', `${v.getDotPath(q.issues[0]) ?? 'query'}: ${q.issues[0].message} (limit 1..${MAX_AUDIT_EVENTS}, type like session.start)`);
        const events = await this.deps.rt.store.audit.query({ limit: q.output.limit ?? 200, ...(q.output.type ? { type: q.output.type } : {}), ...(q.output.user ? { user: q.output.user } : {}) });
        return sendJson(res, 200, { events });
      }
      case 'GET /web/api/recordings':
        return sendJson(res, 200, await recordingListFor(this.deps.rt, session));
      case 'POST /web/api/logout': {
        this.deps.sessions.checkStateChange(req, session, headerValue(req, CSRF_HEADER));
        res.setHeader('set-cookie', await this.deps.sessions.logout(session, clientAddr));
        return sendJson(res, 200, { signed_out: true });
      }
      default: {
        const rec = method === 'GET' ? RECORDING_PATH.exec(path) : null;
        if (rec) return sendRecording(this.deps.rt, res, rec[1]!, session, 'web', clientAddr, { 'cache-control': 'no-store' });
        if (path === TERMINAL_PATH) throw new ApiRequestError(426, 'UPGRADE_REQUIRED', 'this is a WebSocket endpoint');
        throw new ApiRequestError(404, 'NOT_FOUND', `no such endpoint: ${method.slice(0, 10)} ${path.slice(0, 100)}`);
      }
    }
  }

  /** Whether one of the session's roles (as the config says now) has `review_sessions: true`: every recording, the audit log. */
  reviewer(session: WebSession): boolean {
    return session.roles.some((r) => this.deps.rt.config.roles.get(r)?.reviewSessions === true);
  }

  private page(res: ServerResponse): void {
    if (!this.files) {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' });
      return void res.end('The web UI is not built into this installation (dist/webui is missing): run npm run build.\n');
    }
    const nonce = randomBytes(16).toString('base64');
    const html = this.files.index.replaceAll('{{NONCE}}', nonce);
    res.setHeader('content-security-policy', WEBUI_CSP.replace('{nonce}', nonce));
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html) });
    res.end(html);
  }

  private asset(res: ServerResponse, name: string): void {
    const file = /^[A-Za-z0-9._-]{1,200}$/.test(name) ? this.files?.assets.get(name) : undefined;
    if (!file) throw new ApiRequestError(404, 'NOT_FOUND', 'no such asset');
    res.setHeader('content-security-policy', WEBUI_CSP.replace(" 'nonce-{nonce}'", ''));
    // Hashed names: a new build is a new name, so a year of caching is safe.
    res.setHeader('cache-control', 'public, max-age=31536000, immutable');
    res.writeHead(200, { 'content-type': file.type, 'content-length': file.body.length });
    res.end(file.body);
  }
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const h = req.headers[name];
  return typeof h === 'string' ? h : undefined;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
