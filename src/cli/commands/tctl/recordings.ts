/**
 * `tctl recordings ls [--format=json]` and `tctl recordings export SESSION_ID
 * [--out=FILE]`: session recordings on the server host, read from whichever
 * store holds them (recordings.dir, or the database), whether or not
 * `jumpgate start` runs. An export is audited (`recording.read`, via tctl,
 * naming the OS account that ran it).
 */
import { UsageError, UserError } from '../../../errors.js';
import { findRecording, listRecordings, SESSION_ID } from '../../../server/recording/recordings.js';
import { formatDuration } from '../../../shared/duration.js';
import { writeFileAtomic } from '../../../util/atomic-write.js';
import { printable, terminalJson } from '../../../util/printable.js';
import type { Deps } from '../../deps.js';
import type { ServerContext } from '../../server-context.js';

export interface RecordingsLsOptions {
  format: 'text' | 'json';
}

/** Every recording, newest first. */
export async function runLs(opts: RecordingsLsOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  const list = await listRecordings(ctx.store, undefined, (l) => deps.io.stderr.write(`${printable(l, 500)}\n`));
  if (opts.format === 'json') {
    deps.io.stdout.write(terminalJson(list) + '\n');
    return;
  }
  const rows = [
    ['Session ID', 'User', 'Login', 'Node', 'Start', 'Duration', 'Size'],
    ...list.map((r) =>
      [r.session_id, r.user, r.login, r.node, r.start.replace(/\.\d+Z$/, 'Z'), r.duration_ms !== undefined ? formatDuration(Math.round(r.duration_ms / 1000)) : 'running or cut', `${r.size}${r.truncated ? ' (truncated)' : ''}`].map((c) =>
        printable(c, 200),
      ),
    ),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) deps.io.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
  if (list.length === 0) deps.io.stderr.write('no recordings\n');
}

export interface RecordingsExportOptions {
  sessionId: string;
  /** Absolute; absent: stdout. */
  out?: string;
}

/**
 * Writes the asciicast file as stored to `out` (0600, atomically) or stdout.
 * @throws UsageError for a malformed id; UserError NOT_FOUND for an unknown session.
 */
export async function runExport(opts: RecordingsExportOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  if (!SESSION_ID.test(opts.sessionId)) throw new UsageError('USAGE_BAD_SESSION_ID', `"${printable(opts.sessionId, 100)}" is not a session id`, { hint: 'copy one from `tctl recordings ls`' });
  const info = await findRecording(ctx.store, opts.sessionId, undefined);
  if (!info) throw new UserError('NOT_FOUND', `no recording of session ${opts.sessionId} in ${ctx.store.location}`, { hint: 'list them with `tctl recordings ls`' });
  const admin = deps.env['SUDO_USER'] ?? deps.env['USER'] ?? deps.env['LOGNAME'] ?? 'unknown';
  await ctx.audit.emit({ event: 'recording.read', session_id: info.session_id, recording: info.name, user: `${admin} (tctl)`, owner: info.user, via: 'tctl' });
  if (opts.out === undefined) {
    for await (const chunk of ctx.store.recordings.read(info.name)) {
      if (!deps.io.stdout.write(chunk)) await new Promise((r) => deps.io.stdout.once('drain', r));
    }
    return;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.store.recordings.read(info.name)) chunks.push(chunk);
  writeFileAtomic(opts.out, Buffer.concat(chunks), 0o600);
  deps.io.stderr.write(`wrote ${opts.out} (${chunks.reduce((n, c) => n + c.length, 0)} bytes)\n`);
}
