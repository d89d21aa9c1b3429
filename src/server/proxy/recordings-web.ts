/**
 * The recordings endpoints of the HTTPS API (web.ts routes here):
 *
 *   GET /v1/recordings        RecordingListResponse: the caller's recordings,
 *                             everyone's for a role with review_sessions
 *   GET /v1/recordings/<id>   the asciicast file, streamed from the store
 *                             (application/x-asciicast); audited as recording.read
 *
 * Both authenticated with the user's certificate (request-auth.ts); the web
 * UI's `/web/api/recordings[/<id>]` (web/app.ts) call the same
 * recordingListFor / sendRecording with the web session's user and roles. A
 * recording the caller may not read answers exactly like one that does not
 * exist (404 NOT_FOUND, same message), so session ids of others cannot be
 * probed. The list is capped at MAX_RECORDINGS_LISTED (the newest).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { MAX_RECORDINGS_LISTED } from '../../api/schema.js';
import type { RecordingListResponse } from '../../api/types.js';
import { ApiRequestError } from '../auth/login.js';
import { findRecording, listRecordings, mayReviewAll } from '../recording/recordings.js';
import type { ServerRuntime } from '../runtime.js';
import { authenticateRequest, type NonceCache } from './request-auth.js';

/** Who reads recordings: the verified user and their roles (from a signed request or a web session). */
export interface RecordingReader {
  user: string;
  roles: readonly string[];
}

/**
 * The recordings `reader` may see, newest first, at most MAX_RECORDINGS_LISTED:
 * their own, everyone's for a role with review_sessions. The one rule for
 * `GET /v1/recordings` and the web UI's `GET /web/api/recordings`.
 */
export async function recordingListFor(rt: ServerRuntime, reader: RecordingReader): Promise<RecordingListResponse> {
  const all = mayReviewAll(rt.config, reader.roles);
  const list = (await listRecordings(rt.store, { user: reader.user, all }, rt.log.warn)).slice(0, MAX_RECORDINGS_LISTED);
  return {
    recordings: list.map((r) => ({
      session_id: r.session_id,
      user: r.user,
      login: r.login,
      node: r.node,
      start: r.start,
      ...(r.end !== undefined ? { end: r.end } : {}),
      ...(r.duration_ms !== undefined ? { duration_ms: r.duration_ms } : {}),
      size: r.size,
      truncated: r.truncated,
    })),
  };
}

/**
 * Streams the asciicast of `sessionId` to `res` (application/x-asciicast)
 * when `reader` may read it, after `recording.read` is stored (`via`: api
 * or web). One answer for "no such session" and "not yours".
 * @throws ApiRequestError 404 NOT_FOUND; the audit log's error when it cannot store the event (nothing is sent).
 */
export async function sendRecording(rt: ServerRuntime, res: ServerResponse, sessionId: string, reader: RecordingReader, via: 'api' | 'web', clientAddr: string, headers: Record<string, string> = {}): Promise<void> {
  const info = await findRecording(rt.store, sessionId, { user: reader.user, all: mayReviewAll(rt.config, reader.roles) });
  // One answer for "no such session" and "not yours": nothing tells them apart.
  if (!info) throw new ApiRequestError(404, 'NOT_FOUND', 'no recording of that session that you may read');
  await rt.audit.emit({ event: 'recording.read', session_id: info.session_id, recording: info.name, user: reader.user, owner: info.user, via, client_addr: clientAddr });
  res.writeHead(200, { 'content-type': 'application/x-asciicast', 'content-disposition': `attachment; filename="${info.name}"`, ...headers });
  await pipeline(Readable.from(rt.store.recordings.read(info.name)), res);
}

/** GET /v1/recordings */
export async function handleRecordingList(req: IncomingMessage, res: ServerResponse, rt: ServerRuntime, clientAddr: string, nonces: NonceCache): Promise<void> {
  const caller = authenticateRequest(rt, req, clientAddr, nonces);
  const text = JSON.stringify(await recordingListFor(rt, caller));
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** GET /v1/recordings/<session id> */
export async function handleRecordingFetch(req: IncomingMessage, res: ServerResponse, rt: ServerRuntime, sessionId: string, clientAddr: string, nonces: NonceCache): Promise<void> {
  const caller = authenticateRequest(rt, req, clientAddr, nonces);
  await sendRecording(rt, res, sessionId, caller, 'api', clientAddr);
}
