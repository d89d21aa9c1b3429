/**
 * The browser side of headless logins on the proxy's HTTPS port (the logic
 * is server/auth/headless-login.ts):
 *
 *   GET  /web/headless            the form to type a code
 *   POST /web/headless            code=WDJB-MJHT → that request's page
 *   GET  /web/headless/<id>       → the IdP (this proxy is the redirect target)
 *   POST /web/headless/<id>       csrf=…&decision=approve|deny, with the page's cookie
 *
 * Forms are small (MAX_FORM_BYTES) and URL-encoded; a POST whose Origin is
 * not this server is refused (CSRF), on top of the single-use form token and
 * the SameSite=Strict cookie. Pages keep web.ts's security headers; the
 * approval and code pages may submit forms to this origin only.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { API } from '../../api/types.js';
import { htmlPage } from '../../util/html.js';
import { AuditUnavailableError } from '../auth/audit.js';
import { APPROVAL_COOKIE, type HeadlessLoginService, type HeadlessPageOutcome } from '../auth/headless-login.js';
import { ApiRequestError } from '../auth/login.js';
import { readBody } from './body.js';
import { StoreUnavailableError } from '../storage/backend.js';
import type { ServerLog } from '../runtime.js';

/** A headless page form is a token and a word, or a code. */
export const MAX_FORM_BYTES = 4 * 1024;

/** web.ts's policy, except that forms may go to this origin (the approval buttons, the code form). */
const FORM_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'";

/** Whether `path` is one of the pages above. */
export function isHeadlessPath(path: string): boolean {
  return path === API.headlessPage.replace(/\/$/, '') || path.startsWith(API.headlessPage);
}

/** Serves GET/POST on a /web/headless path (isHeadlessPath). Every outcome, refusal included, is a page for a person. */
export async function handleHeadlessPage(req: IncomingMessage, res: ServerResponse, path: string, headless: HeadlessLoginService, clientAddr: string, log: ServerLog): Promise<void> {
  await answer(res, log, async () => {
    const id = path.startsWith(API.headlessPage) ? path.slice(API.headlessPage.length) : undefined;
    if (req.method === 'GET') return id === undefined ? headless.codeEntry(undefined, clientAddr) : headless.page(id, clientAddr);
    if (req.method !== 'POST') throw new ApiRequestError(405, 'METHOD_NOT_ALLOWED', 'only GET and POST are served here');
    checkOrigin(req);
    const form = await readForm(req, res);
    if (id === undefined) return headless.codeEntry(form.get('code') ?? '', clientAddr);
    const cookie = cookieValue(req, APPROVAL_COOKIE);
    return headless.decide(id, { csrf: form.get('csrf') ?? '', decision: form.get('decision') ?? '', ...(cookie !== undefined ? { cookie } : {}) }, clientAddr);
  });
}

/** The IdP's redirect for a headless login (web.ts sends OIDC callbacks whose state HeadlessLoginService.ownsState). */
export async function handleHeadlessCallback(res: ServerResponse, callbackUrl: URL, headless: HeadlessLoginService, clientAddr: string, log: ServerLog): Promise<void> {
  await answer(res, log, () => headless.callback(callbackUrl, clientAddr));
}

async function answer(res: ServerResponse, log: ServerLog, run: () => Promise<HeadlessPageOutcome>): Promise<void> {
  let outcome: HeadlessPageOutcome;
  try {
    outcome = await run();
  } catch (err) {
    if (err instanceof ApiRequestError) {
      if (err.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(err.retryAfterSeconds));
      outcome = { kind: 'page', status: err.status, title: 'Request refused', message: err.message };
    } else if (err instanceof AuditUnavailableError || err instanceof StoreUnavailableError) {
      // Fail closed: nothing is approved that the audit log or the state store does not hold.
      log.warn(`web: headless login refused: ${err.message}`);
      res.setHeader('retry-after', '60');
      outcome = { kind: 'page', status: 503, title: 'Refused: the server cannot record it', message: 'The server cannot write its audit log or reach its state store, so nothing was approved or issued. Try again later, or tell an admin.' };
    } else {
      throw err;
    }
  }
  send(res, outcome);
}

function send(res: ServerResponse, outcome: HeadlessPageOutcome): void {
  if (outcome.kind === 'redirect') {
    res.writeHead(302, { location: outcome.location, 'content-type': 'text/plain' });
    res.end();
    return;
  }
  const html = outcome.kind === 'html' ? outcome.html : htmlPage(outcome.title, outcome.message);
  if (outcome.kind === 'html') {
    res.setHeader('content-security-policy', FORM_CSP);
    // With no-referrer a browser sends `Origin: null` on the form's POST; same-origin lets checkOrigin see this server.
    res.setHeader('referrer-policy', 'same-origin');
    if (outcome.setCookie) res.setHeader('set-cookie', outcome.setCookie);
  }
  res.writeHead(outcome.status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html) });
  res.end(html);
}

/** A cross-site POST is refused (the browser names the page's origin; it must be this server as the browser reached it). */
function checkOrigin(req: IncomingMessage): void {
  const origin = req.headers.origin;
  if (origin === undefined) return;
  if (origin !== `https://${req.headers.host ?? ''}`) {
    throw new ApiRequestError(403, 'CROSS_SITE_FORM', 'this form was sent from another site; nothing was approved. Open the login link yourself.');
  }
}

/** One cookie's value from the Cookie header, or undefined. */
function cookieValue(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** An application/x-www-form-urlencoded body of at most MAX_FORM_BYTES, never buffered past it (body.ts readBody). */
async function readForm(req: IncomingMessage, res: ServerResponse): Promise<URLSearchParams> {
  const body = await readBody(req, res, { type: 'application/x-www-form-urlencoded', maxBytes: MAX_FORM_BYTES, noun: 'form', limitText: 'forms' });
  return new URLSearchParams(body.toString('utf8'));
}
