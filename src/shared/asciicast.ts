/**
 * The asciicast v2 format (asciinema's; https://docs.asciinema.org/manual/asciicast/v2/),
 * as both the recorder (server/recording/asciicast.ts writes it) and tsh
 * (`tsh play` reads it) speak it: newline-delimited JSON, a header object,
 * then `[time, code, data]` events; time in seconds since the start, codes
 * "o" output, "i" input, "r" resize ("COLSxROWS"), "m" marker.
 */
import * as v from 'valibot';

/** The header line's object (the fields Jumpgate writes; readers ignore unknown ones). */
export interface CastHeader {
  version: 2;
  /** Terminal columns and rows at the start. */
  width: number;
  height: number;
  /** Unix time of the start, seconds. */
  timestamp: number;
  /** Only TERM and SHELL, as the spec suggests (other variables may hold secrets). */
  env?: { TERM?: string; SHELL?: string };
  title?: string;
}

export type CastEventCode = 'o' | 'i' | 'r' | 'm';

/** One event: seconds since the start, code, data. */
export type CastEvent = [number, CastEventCode, string];

const HeaderSchema = v.looseObject({
  version: v.literal(2),
  width: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000)),
  height: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000)),
  timestamp: v.optional(v.number()),
  title: v.optional(v.string()),
});
const EventSchema = v.tuple([v.pipe(v.number(), v.minValue(0)), v.string(), v.string()]);

/** A parsed recording: the header and the events; `torn` when the last line was cut (a crash mid-write). */
export interface ParsedCast {
  header: v.InferOutput<typeof HeaderSchema>;
  events: CastEvent[];
  torn: boolean;
}

/**
 * Parses asciicast v2 text. A last line that is not complete JSON (the
 * writer was killed mid-write) is dropped and reported as `torn`; any other
 * bad line is an error naming its line number. Unknown event codes are kept
 * (players skip them).
 * @throws Error "line N: ..." for a bad header or a bad event before the last line.
 */
export function parseCast(text: string): ParsedCast {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  let torn = false;
  const json = (line: string, i: number): unknown => {
    try {
      return JSON.parse(line);
    } catch {
      if (i === lines.length - 1 && i > 0) {
        torn = true;
        return undefined;
      }
      throw new Error(`line ${i + 1}: not JSON`);
    }
  };
  if (lines.length === 0) throw new Error('line 1: empty recording (no asciicast header)');
  const h = v.safeParse(HeaderSchema, json(lines[0]!, 0));
  if (!h.success) throw new Error(`line 1: not an asciicast v2 header (${h.issues[0].message})`);
  const events: CastEvent[] = [];
  for (let i = 1; i < lines.length; i++) {
    const raw = json(lines[i]!, i);
    if (raw === undefined) break;
    const e = v.safeParse(EventSchema, raw);
    if (!e.success) throw new Error(`line ${i + 1}: not an asciicast event [time, code, data]`);
    events.push(e.output as CastEvent);
  }
  return { header: h.output, events, torn };
}
