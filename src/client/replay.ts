/**
 * `tsh play`: replaying an asciicast v2 recording (shared/asciicast.ts).
 *
 * - `replay`: writes each output ("o") event's data to the terminal as the
 *   recorded session wrote it, waiting the recorded time between events,
 *   divided by `speed`; a gap longer than `idleLimitSeconds` is cut to it
 *   (asciinema's idle_time_limit: a session left idle for an hour replays
 *   without the hour). Input, resize and marker events are not written.
 *   Time comes from the injected `sleep`, so tests replay against a fake clock.
 * - `castText`: the output only, as text safe for any terminal or file:
 *   escape sequences (colours, cursor moves, window titles) removed, line
 *   ends normalised, every other control character escaped (util/printable).
 */
import type { ParsedCast } from '../shared/asciicast.js';
import { printable } from '../util/printable.js';

/** Default longest wait between two events, seconds (asciinema play's -i / idle_time_limit). */
export const DEFAULT_IDLE_LIMIT_SECONDS = 2;

export interface ReplayOptions {
  /** Playback speed factor (2 = twice as fast); > 0. */
  speed: number;
  /** Longest wait between two events before `speed` is applied, seconds. */
  idleLimitSeconds: number;
}

export interface ReplayIo {
  write(text: string): void;
  /** Waits `ms` milliseconds. */
  sleep(ms: number): Promise<void>;
  /** Stops the replay early (Ctrl-C) when it returns true, checked before each wait. */
  stopped?: () => boolean;
}

/**
 * Replays `cast` through `io` with its timing (see the module comment).
 * Resolves to the total time waited, ms.
 */
export async function replay(cast: ParsedCast, opts: ReplayOptions, io: ReplayIo): Promise<number> {
  let last = 0;
  let waited = 0;
  for (const [time, code, data] of cast.events) {
    if (code !== 'o') continue;
    const gap = Math.min(Math.max(0, time - last), opts.idleLimitSeconds);
    last = time;
    const ms = Math.round((gap * 1000) / opts.speed);
    if (io.stopped?.()) break;
    if (ms > 0) {
      await io.sleep(ms);
      waited += ms;
    }
    io.write(data);
  }
  return waited;
}

// CSI (ESC [ … final), OSC (ESC ] … BEL or ST), DCS/PM/APC/SOS strings, and two-byte ESC sequences; C1 CSI/OSC too.
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[\s\S]*?(?:\x07|\x1b\\|\x9c|$)|\x1b[ -/]*[0-~]?/g;

/** The recording's output as plain, escaped text (see the module comment). */
export function castText(cast: ParsedCast): string {
  const raw = cast.events
    .filter(([, code]) => code === 'o')
    .map(([, , data]) => data)
    .join('');
  const lines = raw.replace(ESCAPES, '').replace(/\r*\n/g, '\n').replace(/\r/g, '\n').split('\n');
  return lines.map((l) => printable(l, Number.MAX_SAFE_INTEGER)).join('\n');
}
