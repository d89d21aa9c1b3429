/**
 * The recordings endpoints of the HTTPS API (web.ts routes here):
 *
 *   GET /v1/recordings        RecordingListResponse: the caller's recordings,
 *                             everyone's for a role with review_sessions
 *   GET /v1/recordings/<id>   the asciicast file, streamed from the store
 *                             (application/x-asciicast); audited as recording.read
 *
 * Both authenticated with the user's certificate (request-auth.ts). A
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

/** GET /v1/recordings */
export async function handleRecordingList(req: IncomingMessage, res: ServerResponse, rt: ServerRuntime, clientAddr: string, nonces: NonceCache): Promise<void> {
  const caller = authenticateRequest(rt, req, clientAddr, nonces);
  const all = mayReviewAll(rt.config, caller.roles);
  const list = (await listRecordings(rt.store, { user: caller.user, all }, rt.log.warn)).slice(0, MAX_RECORDINGS_LISTED);
  const body: RecordingListResponse = {
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
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** GET /v1/recordings/<session id> */
export async function handleRecordingFetch(req: IncomingMessage, res: ServerResponse, rt: ServerRuntime, sessionId: string, clientAddr: string, nonces: NonceCache): Promise<void> {
  const caller = authenticateRequest(rt, req, clientAddr, nonces);
  const info = await findRecording(rt.store, sessionId, { user: caller.user, all: mayReviewAll(rt.config, caller.roles) });
  // One answer for "no such session" and "not yours": nothing tells them apart.
  if (!info) throw new ApiRequestError(404, 'NOT_FOUND', 'no recording of that session that you may read');
  await rt.audit.emit({ event: 'recording.read', session_id: info.session_id, recording: info.name, user: caller.user, owner: info.user, via: 'api', client_addr: clientAddr });
  res.writeHead(200, { 'content-type': 'application/x-asciicast', 'content-disposition': `attachment; filename="${info.name}"` });
  await pipeline(Readable.from(rt.store.recordings.read(info.name)), res);
}
