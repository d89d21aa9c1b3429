/**
 * `tsh login --headless`: a login for a machine with no browser and no port
 * forwarding (RFC 8628's device flow shape). tsh opens no listening socket:
 *
 *  1. make an ed25519 key pair (it never leaves this machine), a one-time
 *     X25519 key for sealing the answer, and a nonce;
 *  2. POST /v1/login/headless/start → a URL on the proxy, a short code, a
 *     poll secret, the expiry and the poll interval;
 *  3. print the URL and the code (each on a line of its own, on stderr);
 *  4. poll POST /v1/login/headless/poll at the server's interval (growing it
 *     on `slow_down`, RFC 8628 §3.5) until approved, denied or expired;
 *  5. open the sealed answer and check it exactly as a browser login's
 *     (login.ts checkLoginResult), then the caller stores it the same way.
 */
import { randomBytes } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { AuthError, UserError } from '../errors.js';
import { API, type HeadlessPollResponse, type HeadlessStartResponse, type LoginResult } from '../api/types.js';
import { HeadlessPollResponseSchema, HeadlessStartResponseSchema } from '../api/schema.js';
import { newEnvelopeKey, open as openEnvelope } from '../api/envelope.js';
import { httpRequest, NetError } from '../net/index.js';
import { printable } from '../util/printable.js';
import { encodeOpenSSHPrivateKey, formatPublicKeyLine, generateKeyPair } from '../sshcert/index.js';
import { checkLoginResult, expectJson, type BrowserLoginResult } from './login.js';

/** Polls in a row that may fail to reach the proxy before tsh gives up. */
export const MAX_POLL_FAILURES = 3;

export interface HeadlessLoginOptions {
  proxyAddr: string;
  dispatcher: Dispatcher;
  ttlSeconds?: number;
  /** tsh login --user: a hint for the identity provider on the approving device. */
  user?: string;
  /** Prints a line for people (stderr). */
  say: (line: string) => void;
  /** Shows progress while waiting; returns a stop function. */
  waiting: (text: string) => () => void;
  /** The caller's own checks of a well-formed answer (cluster scope); throws UserError. */
  checkResult?: (result: LoginResult) => void;
  /** The command that starts a new login, for hints (default `tsh login --headless`). */
  retry?: string;
  /** The clock (ms since the epoch); default Date.now. */
  now?: () => number;
  /** Waits `ms` between polls; default a timer. Tests pass their own. */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Runs a headless login and returns the verified result, the same shape
 * browserLogin returns. Never stores anything, never listens on a socket.
 * @throws AuthError LOGIN_DENIED (denied on the approval page), LOGIN_REFUSED (approved but the
 *   proxy issued nothing), checkLoginResult's errors; UserError LOGIN_TIMEOUT (expired:
 *   auth.login_timeout passed), PROXY_BAD_ANSWER, and the proxy's refusals
 */
export async function headlessLogin(opts: HeadlessLoginOptions): Promise<BrowserLoginResult> {
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const retry = opts.retry ?? 'tsh login --headless';
  const { privateKey, publicKey } = generateKeyPair('ed25519');
  const envelope = newEnvelopeKey();
  const clientNonce = randomBytes(32).toString('base64url');
  const who = `the proxy at ${opts.proxyAddr}`;
  const start = await post(opts, API.headlessStart, {
    public_key: formatPublicKeyLine(publicKey),
    ...(opts.ttlSeconds !== undefined ? { ttl_seconds: opts.ttlSeconds } : {}),
    client_key: envelope.publicRaw.toString('base64url'),
    client_nonce: clientNonce,
    ...(opts.user ? { login_hint: opts.user } : {}),
  }).then((res) => expectJson(HeadlessStartResponseSchema, res, who));
  showInstructions(start, opts.say);
  const expiresAt = Date.parse(start.expires_at);
  let interval = start.interval_seconds;
  let failures = 0;
  const stop = opts.waiting(`Waiting for the login to be approved (until ${start.expires_at})...`);
  let answer: HeadlessPollResponse;
  try {
    for (;;) {
      await sleep(interval * 1000);
      try {
        answer = await post(opts, API.headlessPoll, { request_id: start.request_id, poll_secret: start.poll_secret }).then((res) => expectJson(HeadlessPollResponseSchema, res, who));
        failures = 0;
      } catch (err) {
        // A network blip (a proxy restarting, Wi-Fi) must not lose a login the person is approving: try again, a few times.
        if (!transient(err)) throw err;
        const why = printable((err as Error).message, 200);
        if (++failures > MAX_POLL_FAILURES || now() > expiresAt) {
          throw err instanceof UserError ? err : new UserError('PROXY_UNREACHABLE', `lost the connection to the proxy at ${opts.proxyAddr} while waiting for the approval: ${why}`, { cause: err, hint: `check the network, then run \`${retry}\` again` });
        }
        opts.say(`(the proxy did not answer: ${why}; trying again)`);
        continue;
      }
      if (answer.status === 'pending' || answer.status === 'slow_down') {
        // slow_down: the server raised the interval for this and every later poll (RFC 8628 §3.5).
        interval = answer.interval_seconds;
        if (now() > expiresAt + interval * 1000) throw timeout(start, retry);
        continue;
      }
      break;
    }
  } finally {
    stop();
  }
  if (answer.status === 'expired') throw timeout(start, retry);
  if (answer.status === 'denied') {
    throw new AuthError('LOGIN_DENIED', 'the login was denied on the approval page; nothing was issued', {
      hint: `if you did not deny it yourself, someone else opened the link: run \`${retry}\` again and open the new link only on your own device`,
    });
  }
  if (answer.status === 'failed') {
    throw new AuthError('LOGIN_REFUSED', `the login was approved, but the proxy issued no certificate: ${printable(answer.message, 400)}`, { hint: 'ask an admin about your roles' });
  }
  let body: unknown;
  try {
    body = JSON.parse(openEnvelope(envelope.privateKey, answer.response, Buffer.from(start.request_id)).toString('utf8'));
  } catch (err) {
    throw err instanceof UserError ? err : new AuthError('LOGIN_RESPONSE_TAMPERED', 'the login response is not valid JSON', { cause: err });
  }
  const checked = checkLoginResult(body, clientNonce, publicKey, retry);
  if (checked instanceof Error) throw checked;
  opts.checkResult?.(checked.result);
  return { result: checked.result, cert: checked.cert, privateKey, publicKey, privateKeyPem: encodeOpenSSHPrivateKey(privateKey, checked.result.username) };
}

/** What the person at the terminal reads: the URL and the code each on a line of their own (easy to copy), and what to check. */
function showInstructions(start: HeadlessStartResponse, say: (line: string) => void): void {
  say('Open this URL on any device with a browser, sign in, and approve the login:');
  say(printable(start.url, 2_000));
  say('Check that the approval page shows this code:');
  say(printable(start.code, 20));
  say(`(Or open ${printable(new URL(start.url).origin, 300)}${API.headlessPage.replace(/\/$/, '')} and type the code.) Approve only a login you started yourself.`);
}

/** A connection failure worth another poll: tsh's network errors, or undici's socket errors (a connection cut mid-answer). */
function transient(err: unknown): boolean {
  if (err instanceof NetError) return err.code !== 'NET_HTTP_PROTOCOL';
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && (code.startsWith('UND_ERR_') || code === 'ECONNRESET' || code === 'ECONNREFUSED' || code === 'EPIPE');
}

function timeout(start: HeadlessStartResponse, retry: string): UserError {
  return new UserError('LOGIN_TIMEOUT', `the headless login was not approved before it expired (${start.expires_at})`, {
    hint: `run \`${retry}\` again and approve it in time`,
  });
}

function post(opts: HeadlessLoginOptions, path: string, body: Record<string, unknown>) {
  return httpRequest(`https://${opts.proxyAddr}${path}`, {
    dispatcher: opts.dispatcher,
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  });
}
