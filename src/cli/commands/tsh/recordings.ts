/**
 * `tsh recordings ls [--format=json]` and `tsh play SESSION_ID [--speed=N]
 * [--format=cast|text]`: the recordings the user may read (their own; every
 * one with a role's review_sessions), fetched over the proxy's HTTPS API
 * with the user's certificate (client/recordings.ts).
 *
 * What reaches the terminal: `ls` and `--format=text` are escaped
 * (util/printable); `--format=cast` writes the file as stored (JSON: control
 * characters are already \u-escaped inside it); only a replay to a terminal
 * passes the recorded bytes through as the session wrote them, which is the
 * point of a replay.
 */
import { UsageError, UserError } from '../../../errors.js';
import { TshPaths } from '../../../client/paths.js';
import { credentialsFor } from '../../../client/credentials.js';
import { profileNameFor, proxyAddrFor } from '../../../client/proxy-addr.js';
import { fetchRecording, fetchRecordingList, type RecordingsClientOptions } from '../../../client/recordings.js';
import { castText, replay } from '../../../client/replay.js';
import { parseCast, type ParsedCast } from '../../../shared/asciicast.js';
import { formatDuration } from '../../../shared/duration.js';
import { printable, terminalJson } from '../../../util/printable.js';
import type { Deps } from '../../deps.js';
import { credentialOptions } from './client-context.js';

export interface RecordingsLsOptions {
  format: 'text' | 'json';
  proxy?: string;
}

export interface PlayOptions {
  sessionId: string;
  /** > 0; default 1. */
  speed: number;
  format: 'play' | 'cast' | 'text';
  /** Longest replayed pause, seconds (default DEFAULT_IDLE_LIMIT_SECONDS). */
  idleLimitSeconds: number;
  proxy?: string;
}

async function clientOptions(proxy: string | undefined, deps: Deps): Promise<RecordingsClientOptions> {
  const paths = new TshPaths(deps);
  const creds = await credentialsFor(paths, profileNameFor(proxy, deps.env), deps.clock(), { ...credentialOptions(deps), proxyAddr: proxyAddrFor(proxy, deps.env) });
  return { creds, env: deps.env, now: deps.clock, ...(deps.debug ? { log: (l: string) => deps.io.stderr.write(`tsh: ${l}\n`) } : {}) };
}

/** `tsh recordings ls` */
export async function runLs(opts: RecordingsLsOptions, deps: Deps): Promise<void> {
  const list = await fetchRecordingList(await clientOptions(opts.proxy, deps));
  if (opts.format === 'json') {
    deps.io.stdout.write(terminalJson(list) + '\n');
    return;
  }
  const rows = [
    ['Session ID', 'User', 'Login', 'Node', 'Start', 'Duration'],
    ...list.map((r) => [r.session_id, r.user, r.login, r.node, r.start.replace(/\.\d+Z$/, 'Z'), r.duration_ms !== undefined ? formatDuration(Math.round(r.duration_ms / 1000)) : 'running or cut'].map((c) => printable(c, 200))),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  rows.forEach((r, n) => {
    const line = r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
    deps.io.stdout.write((n === 0 ? deps.colors.out.bold(line) : line) + '\n');
  });
  if (list.length === 0) deps.io.stderr.write('no recordings you may read\n');
}

/** `tsh play` */
export async function runPlay(opts: PlayOptions, deps: Deps): Promise<void> {
  if (!(opts.speed > 0 && opts.speed <= 1000)) throw new UsageError('USAGE_BAD_SPEED', `--speed=${opts.speed} is not a speed`, { hint: 'use a number above 0, e.g. --speed=2 (twice as fast)' });
  const bytes = await fetchRecording(await clientOptions(opts.proxy, deps), opts.sessionId);
  if (opts.format === 'cast') {
    deps.io.stdout.write(bytes);
    return;
  }
  let cast: ParsedCast;
  try {
    cast = parseCast(bytes.toString('utf8'));
  } catch (err) {
    throw new UserError('BAD_RECORDING', `the recording of ${printable(opts.sessionId, 100)} is not readable asciicast: ${(err as Error).message}`, {
      hint: '`tsh play --format=cast` writes the file as stored',
    });
  }
  if (cast.torn) deps.io.stderr.write('tsh: the recording ends mid-event (its proxy stopped during the session); replaying what was stored\n');
  if (opts.format === 'text' || !deps.io.stdoutIsTTY) {
    if (opts.format !== 'text') deps.io.stderr.write('tsh: stdout is not a terminal: writing the output as text (--format=text); --format=cast for the file\n');
    const text = castText(cast);
    deps.io.stdout.write(text.endsWith('\n') || text === '' ? text : text + '\n');
    return;
  }
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  deps.io.stderr.write(`tsh: replaying ${printable(cast.header.title ?? opts.sessionId, 200)} (${cast.header.width}x${cast.header.height}) at ${opts.speed}x; pauses longer than ${opts.idleLimitSeconds}s are cut to ${opts.idleLimitSeconds}s\n`);
  await replay(cast, { speed: opts.speed, idleLimitSeconds: opts.idleLimitSeconds }, { write: (t) => deps.io.stdout.write(t), sleep });
  deps.io.stderr.write('\ntsh: end of recording\n');
}


