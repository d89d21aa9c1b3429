/**
 * asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/) for the
 * player (player.ts): parsing with idle time cut, and the clock. Pure: no
 * DOM, so test/webui/cast.test.ts runs it in Node.
 */
/** Gaps longer than this (seconds) are cut to it when the header sets no idle_time_limit. */
export const IDLE_LIMIT_S = 2;

export interface Cast {
  width: number;
  height: number;
  /** [time in seconds on the cut timeline, code, data], in order. */
  events: Array<[number, string, string]>;
  duration: number;
  markers: string[];
}

export function isDim(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 10_000;
}

/**
 * Parses an asciicast v2 file. Lines that are not `[time, code, string]`
 * are skipped (a torn last line from a session still being written).
 * @throws Error naming what is wrong when the header is not asciicast v2.
 */
export function parseCast(text: string): Cast {
  const lines = text.split('\n');
  let header: { version?: unknown; width?: unknown; height?: unknown; idle_time_limit?: unknown };
  try {
    header = JSON.parse(lines[0] ?? '') as typeof header;
  } catch {
    throw new Error('the recording has no asciicast header');
  }
  if (header.version !== 2 || !isDim(header.width) || !isDim(header.height)) throw new Error('the recording is not asciicast v2 (version 2, width and height)');
  const limit = typeof header.idle_time_limit === 'number' && header.idle_time_limit > 0 ? header.idle_time_limit : IDLE_LIMIT_S;
  const events: Cast['events'] = [];
  const markers: string[] = [];
  let last = 0;
  let cut = 0;
  for (const line of lines.slice(1)) {
    if (!line.trim()) continue;
    let e: unknown;
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    if (!Array.isArray(e) || e.length !== 3 || typeof e[0] !== 'number' || !(e[0] >= 0) || typeof e[1] !== 'string' || typeof e[2] !== 'string') continue;
    const t = Math.max(e[0], last);
    cut += Math.min(t - last, limit);
    last = t;
    if (e[1] === 'm') markers.push(e[2]);
    events.push([cut, e[1], e[2]]);
  }
  return { width: header.width, height: header.height, events, duration: cut, markers };
}

/** `m:ss` of seconds. */
export function clock(s: number): string {
  const whole = Math.floor(s);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, '0')}`;
}

