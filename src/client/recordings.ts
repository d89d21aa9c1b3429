/**
 * tsh's side of the recordings API (server/proxy/recordings-web.ts): every
 * request signed with the user's certificate key (api/cert-auth.ts), every
 * answer parsed with its schema (api/schema.ts) before use.
 */
import { randomBytes } from 'node:crypto';
import { certAuthPayload, formatCertAuth } from '../api/cert-auth.js';
import { ApiErrorSchema, parseShape, RecordingListResponseSchema, SESSION_ID_PATTERN } from '../api/schema.js';
import { API, type RecordingSummary } from '../api/types.js';
import { AuthError, UsageError, UserError } from '../errors.js';
import { createHttpDispatcher, httpRequest, type Env, type HttpResponse } from '../net/index.js';
import { signData } from '../sshcert/index.js';
import { printable } from '../util/printable.js';
import type { Credentials } from './credentials.js';

/** Largest recording tsh downloads (the server's default cap per session is 64 MiB). */
export const MAX_RECORDING_DOWNLOAD_BYTES = 1024 * 1024 * 1024;

export interface RecordingsClientOptions {
  creds: Credentials;
  env: Env;
  now: () => Date;
  log?: (line: string) => void;
}

/** The Authorization header for one request (api/cert-auth.ts). */
export function signRequest(creds: Pick<Credentials, 'privateKey' | 'cert'>, method: string, target: string, now: Date): string {
  const ts = now.getTime();
  const nonce = randomBytes(16).toString('hex');
  const sig = signData(creds.privateKey, certAuthPayload({ method, target, ts, nonce }));
  return formatCertAuth({ cert: creds.cert.blob, ts, nonce, sig });
}

/** The recordings the certificate may see, newest first. */
export async function fetchRecordingList(opts: RecordingsClientOptions): Promise<RecordingSummary[]> {
  const res = await signedGet(opts, API.recordings, 32 * 1024 * 1024);
  const parsed = parseShape(RecordingListResponseSchema, res.json());
  if (!parsed.ok) throw new UserError('PROXY_BAD_ANSWER', `the proxy's recording list is not valid: ${parsed.field}: ${parsed.reason}`);
  return parsed.value.recordings;
}

/**
 * The asciicast file of `sessionId` as stored.
 * @throws UsageError for an id that cannot be a session id; UserError NOT_FOUND when there is
 *   no such recording or it is another user's (the proxy does not say which).
 */
export async function fetchRecording(opts: RecordingsClientOptions, sessionId: string): Promise<Buffer> {
  if (!SESSION_ID_PATTERN.test(sessionId)) {
    throw new UsageError('USAGE_BAD_SESSION_ID', `"${printable(sessionId, 100)}" is not a session id`, { hint: 'copy one from `tsh recordings ls`' });
  }
  return (await signedGet(opts, `${API.recording}${sessionId}`, MAX_RECORDING_DOWNLOAD_BYTES)).body;
}

async function signedGet(opts: RecordingsClientOptions, target: string, maxBodyBytes: number): Promise<HttpResponse> {
  const { creds } = opts;
  const dispatcher = createHttpDispatcher({ env: opts.env, insecureSkipVerify: creds.profile.insecure, ...(opts.log ? { log: opts.log } : {}) });
  const res = await httpRequest(`https://${creds.profile.webProxyAddr}${target}`, {
    dispatcher,
    headers: { accept: 'application/json, application/x-asciicast', authorization: signRequest(creds, 'GET', target, opts.now()) },
    maxBodyBytes,
  });
  if (res.status === 200) return res;
  let code = `HTTP_${res.status}`;
  let message = `the proxy answered ${res.status}`;
  try {
    const e = parseShape(ApiErrorSchema, res.json());
    if (e.ok) {
      code = e.value.error.code;
      message = printable(e.value.error.message, 500);
    }
  } catch {
    // not JSON: keep the status
  }
  if (res.status === 401) throw new AuthError(code, `the proxy refused your certificate: ${message}`, { hint: `run \`${creds.relogin}\`` });
  if (res.status === 403 && code === 'ACCESS_LOCKED') throw new AuthError(code, message, { hint: 'ask your administrator about the lock (quote its id)' });
  if (res.status === 404 && code === 'NOT_FOUND') throw new UserError('NOT_FOUND', message, { hint: 'list the recordings you may read with `tsh recordings ls`' });
  if (res.status === 404) throw new UserError('PROXY_TOO_OLD', `the proxy at ${creds.profile.webProxyAddr} has no recordings API (${message})`, { hint: 'upgrade the proxy' });
  throw new UserError(code, `the proxy refused: ${message}`);
}

