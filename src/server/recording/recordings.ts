/**
 * Recordings as the server keeps them: the bytes in `rt.store.recordings`
 * (by name, `<session id>.cast`) and the metadata as `recording` items keyed
 * by session id (the `RecordingInfo` below, checked against its schema when
 * read back: the store is outside this process).
 */
import * as v from 'valibot';
import type { ServerConfig } from '../../config/index.js';
import { checkRecordingName, type StateBackend } from '../storage/backend.js';

/** A session id that can name a recording: letters, digits, "-", "_", 1-100 (a UUID fits). */
export const SESSION_ID = /^[A-Za-z0-9_-]{1,100}$/;

/** The `recording` item's value (snake_case: it is stored and served as JSON). */
export const RecordingInfoSchema = v.object({
  session_id: v.pipe(v.string(), v.regex(SESSION_ID)),
  name: v.string(),
  user: v.string(),
  login: v.string(),
  node: v.string(),
  client_addr: v.string(),
  /** ISO 8601. */
  start: v.string(),
  /** ISO 8601; absent while the session runs, or when the server died during it. */
  end: v.optional(v.string()),
  duration_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  /** Bytes stored (set at the end). */
  size: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** Whether recordings.max_bytes_per_session cut it. */
  truncated: v.boolean(),
  input_recorded: v.boolean(),
  /** The proxy that recorded it. */
  server_id: v.string(),
});
export type RecordingInfo = v.InferOutput<typeof RecordingInfoSchema>;

/**
 * The recording name of a session: `<session id>.cast`.
 * @throws UserError BAD_RECORDING_NAME when the id has characters a name cannot carry.
 */
export function recordingName(sessionId: string): string {
  const name = `${sessionId}.cast`;
  if (!SESSION_ID.test(sessionId)) checkRecordingName('.' + name); // always throws, with the one message
  checkRecordingName(name);
  return name;
}

/** Whether any of `roles` (as the config defines them now) has review_sessions. */
export function mayReviewAll(config: ServerConfig, roles: readonly string[]): boolean {
  return roles.some((r) => config.roles.get(r)?.reviewSessions === true);
}

/**
 * Every stored recording's metadata that `who` may see (all when `who` is
 * undefined: tctl on the server host), newest first. An unfinished one
 * (running, or its proxy died) gets its size from the stored bytes.
 * Items that do not have the RecordingInfo shape are skipped (and logged by `warn`).
 */
export async function listRecordings(store: StateBackend, who: { user: string; all: boolean } | undefined, warn: (line: string) => void = () => {}): Promise<RecordingInfo[]> {
  const out: RecordingInfo[] = [];
  for (const item of await store.items.list<unknown>('recording')) {
    const r = v.safeParse(RecordingInfoSchema, item.value);
    if (!r.success) {
      warn(`recordings: the recording item ${item.key} is not readable (${r.issues[0].message}); skipped`);
      continue;
    }
    if (who && !who.all && r.output.user !== who.user) continue;
    out.push(r.output);
  }
  for (const r of out) if (r.end === undefined) r.size = (await store.recordings.size(r.name)) ?? 0;
  return out.sort((a, b) => (a.start < b.start ? 1 : a.start > b.start ? -1 : 0));
}

/**
 * The recording of `sessionId` if `who` may read it (undefined: tctl, may
 * read all). Unknown and not allowed are the same `undefined`: a caller
 * cannot learn whether another user's session exists.
 */
export async function findRecording(store: StateBackend, sessionId: string, who: { user: string; all: boolean } | undefined): Promise<RecordingInfo | undefined> {
  if (!SESSION_ID.test(sessionId)) return undefined;
  const item = await store.items.get<unknown>('recording', sessionId);
  if (!item) return undefined;
  const r = v.safeParse(RecordingInfoSchema, item.value);
  if (!r.success) return undefined;
  if (who && !who.all && r.output.user !== who.user) return undefined;
  if (r.output.end === undefined) r.output.size = (await store.recordings.size(r.output.name)) ?? 0;
  return r.output;
}
