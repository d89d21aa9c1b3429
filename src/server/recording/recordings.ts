/**
 * Recordings as the server keeps them: the bytes in `rt.store.recordings`
 * (by name, `<session id>.cast`) and the metadata as `recording` items keyed
 * by session id (the `RecordingInfo` below, checked against its schema when
 * read back: the store is outside this process).
 */
import * as v from 'valibot';
import { checkRecordingName } from '../storage/backend.js';

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
