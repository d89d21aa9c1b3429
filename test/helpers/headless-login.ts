/**
 * A whole login without a browser: what tsh and a person do, over HTTP.
 * The development IdP (scripts/dev-idp.ts, oidc-provider's dev pages) shows a
 * login form, then a consent form; everything else is redirects. Used by
 * bench/login.ts (issuance rate), the fault tests (logins cut short by a
 * killed server, many logins at once), and every e2e file that needs a real
 * `tsh login` without a browser (startTshLogin, tshLoginOverHttp).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { newEnvelopeKey, open as openEnvelope } from '../../src/api/envelope.js';
import type { LoginResult } from '../../src/api/types.js';
import { formatPublicKeyLine, generateKeyPair, parseCertificateLine, type PublicKey } from '../../src/sshcert/index.js';
import { builtProgram } from './tools.js';

/** Where a headless client pretends its loopback listener is (nothing listens: the walk stops before it). */
export const HEADLESS_CALLBACK = 'http://127.0.0.1:9/cb';

export interface WalkResult {
  /** The URL the walk stopped at (not requested when `stopAt` matched it). */
  url: URL;
  /** Set when the walk ended on a page: its status and text. */
  status?: number;
  text?: string;
}

export interface WalkOptions {
  /** For https:// hops (the proxy's self-signed certificate: an insecure dispatcher). */
  dispatcher: Dispatcher;
  /** What is typed into the IdP's login form. */
  login?: string;
  /** Stops before requesting a URL this returns true for. */
  stopAt?: (url: URL) => boolean;
}

/**
 * Follows redirects and the IdP's forms from `start` until `stopAt` matches
 * the next URL, or a page that is neither a redirect nor a form is reached.
 */
export async function walkLogin(start: string | URL, opts: WalkOptions): Promise<WalkResult> {
  const jar = new Map<string, string>();
  let url = new URL(start);
  let method: 'GET' | 'POST' = 'GET';
  let body: string | undefined;
  for (let hop = 0; hop < 20; hop++) {
    if (opts.stopAt?.(url)) return { url };
    const res = await undiciRequest(url, {
      method,
      dispatcher: url.protocol === 'https:' ? opts.dispatcher : undefined,
      headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; '), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body,
    });
    for (const c of [res.headers['set-cookie'] ?? []].flat()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
    const location = res.headers['location'] as string | undefined;
    const text = await res.body.text();
    if (location) {
      url = new URL(location, url);
      method = 'GET';
      body = undefined;
      continue;
    }
    const action = /<form[^>]*action="([^"]+)"/.exec(text)?.[1];
    if (!action) return { url, status: res.statusCode, text };
    url = new URL(action, url);
    method = 'POST';
    body = /name="login"/.test(text) ? `prompt=login&login=${encodeURIComponent(opts.login ?? 'alice')}&password=x` : 'prompt=consent';
  }
  throw new Error(`headless login: too many hops, last at ${url}`);
}

export interface StartedLogin {
  requestId: string;
  loginUrl: string;
  publicKey: PublicKey;
  /** Opens the sealed answer in a callback URL (throws when the login was refused). */
  finish(callback: URL): LoginResult & { serial: bigint };
}

/** POST /v1/login/start as tsh does, with a fresh key, sealing key and nonce. */
export async function startHeadlessLogin(webPort: number, dispatcher: Dispatcher): Promise<StartedLogin> {
  const { publicKey } = generateKeyPair();
  const env = newEnvelopeKey();
  const start = await undiciRequest(`https://127.0.0.1:${webPort}/v1/login/start`, {
    method: 'POST',
    dispatcher,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      public_key: formatPublicKeyLine(publicKey),
      callback_url: HEADLESS_CALLBACK,
      client_key: env.publicRaw.toString('base64url'),
      client_nonce: 'N'.repeat(43),
    }),
  });
  const json = (await start.body.json()) as { login_url?: string; request_id?: string; error?: { code: string; message: string } };
  if (start.statusCode !== 200 || !json.login_url || !json.request_id) {
    throw new Error(`login start refused: HTTP ${start.statusCode} ${json.error?.code ?? ''} ${json.error?.message ?? ''}`.trim());
  }
  const requestId = json.request_id;
  return {
    requestId,
    loginUrl: json.login_url,
    publicKey,
    finish(callback: URL) {
      const sealed = callback.searchParams.get('response');
      if (!sealed) throw new Error(`login refused: ${callback.searchParams.get('error')}: ${callback.searchParams.get('error_description')}`);
      const result = JSON.parse(openEnvelope(env.privateKey, sealed, Buffer.from(requestId)).toString()) as LoginResult;
      return { ...result, serial: parseCertificateLine(result.certificate).cert.serial };
    },
  };
}

const atHeadlessCallback = (u: URL) => u.origin === new URL(HEADLESS_CALLBACK).origin;

/** One whole login: start, IdP login and consent, proxy callback, sealed answer opened. */
export async function headlessLogin(webPort: number, dispatcher: Dispatcher, login = 'alice'): Promise<LoginResult & { serial: bigint }> {
  const started = await startHeadlessLogin(webPort, dispatcher);
  const end = await walkLogin(started.loginUrl, { dispatcher, login, stopAt: atHeadlessCallback });
  if (!atHeadlessCallback(end.url)) throw new Error(`headless login ended on ${end.url} (HTTP ${end.status}): ${end.text?.slice(0, 200)}`);
  return started.finish(end.url);
}

/**
 * The browser's part of a real `tsh login --browser=none`: from the URL tsh
 * printed, through the IdP and the proxy, back to tsh's listener. Returns the
 * page tsh (or the proxy, when it refused) showed last.
 */
export function browserlessLogin(tshUrl: string, dispatcher: Dispatcher, login = 'alice', stopAt?: (u: URL) => boolean): Promise<WalkResult> {
  return walkLogin(tshUrl, { dispatcher, login, ...(stopAt ? { stopAt } : {}) });
}

/**
 * An HTTPS dispatcher for the test proxy (self-signed: no verification) whose
 * connections come from 127.0.0.<n> (all of 127/8 is loopback on Linux). The
 * proxy rate-limits login starts per client address (LOGIN_RATE_LIMIT): many
 * logins from one test spread over several addresses.
 */
export function loopbackDispatcher(n: number): Agent {
  if (!Number.isInteger(n) || n < 1 || n > 254) throw new Error(`loopbackDispatcher: ${n} is not 1..254`);
  return new Agent({ localAddress: `127.0.0.${n}`, connect: { rejectUnauthorized: false } });
}

/** Variables a fresh tsh home must not inherit from the test's environment (proxies, an agent). */
export const TSH_ENV_DROP = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'SSH_AUTH_SOCK'] as const;

/** The environment of a tsh in `home`: HOME and TSH_HOME there, TSH_ENV_DROP removed, then `extra` on top. */
export function tshEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh') };
  for (const k of TSH_ENV_DROP) delete env[k];
  return { ...env, ...extra };
}

/** A running `tsh login --browser=none` (startTshLogin). */
export interface TshLoginRun {
  child: ChildProcess;
  /** The loopback URL tsh printed for the browser (rejects when tsh exits first). */
  url: Promise<string>;
  /** tsh's exit code and everything it wrote to stderr. */
  done: Promise<{ code: number | null; stderr: string }>;
}

/**
 * Starts `tsh login --proxy=PROXY --insecure --browser=none ...args` (the
 * built bin/tsh) with `env`; `url` resolves with the loopback URL it prints.
 */
export function startTshLogin(o: { proxy: string; env: NodeJS.ProcessEnv; args?: string[] }): TshLoginRun {
  const child = spawn(process.execPath, [builtProgram('tsh'), 'login', `--proxy=${o.proxy}`, '--insecure', '--browser=none', ...(o.args ?? [])], { env: o.env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const done = new Promise<{ code: number | null; stderr: string }>((r) => child.on('exit', (code) => r({ code, stderr })));
  const url = new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString();
      const m = /^(http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32})$/m.exec(stderr);
      if (m) resolve(m[1]!);
    });
    void done.then(({ code }) => reject(new Error(`tsh login exited ${code} before printing a URL:\n${stderr}`)));
  });
  url.catch(() => {}); // a caller that only kills tsh need not await it
  return { child, url, done };
}

/**
 * A whole `tsh login --browser=none`: startTshLogin, then the browser's part
 * walked over HTTP as `account` through `dispatcher` (an insecure one for the
 * test proxy); resolves with tsh's exit code and stderr.
 */
export async function tshLoginOverHttp(o: { proxy: string; env: NodeJS.ProcessEnv; args?: string[]; account: string; dispatcher: Dispatcher }): Promise<{ code: number | null; stderr: string }> {
  const run = startTshLogin(o);
  await browserlessLogin(await run.url, o.dispatcher, o.account);
  return run.done;
}
