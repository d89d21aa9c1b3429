/**
 * The asciicast v2 format (asciinema's; https://docs.asciinema.org/manual/asciicast/v2/):
 * newline-delimited JSON, first a header object, then one event per line:
 *
 *   {"version": 2, "width": 80, "height": 24, "timestamp": 1764488400, "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"}, "title": "alice@node1"}
 *   [0.248848, "o", "alice@node1:~$ "]
 *   [1.001376, "i", "l"]
 *   [5.202134, "r", "100x40"]
 *   [9.4, "m", "jumpgate: recording truncated at 67108864 bytes; output is no longer recorded"]
 *
 * Event time: seconds since the header's timestamp, as a float (microsecond
 * precision); codes: "o" output, "i" input, "r" resize ("COLSxROWS"),
 * "m" marker. Event data is UTF-8 text: `CastEncoder` decodes each direction
 * with its own streaming decoder (node:string_decoder), so a multi-byte
 * character cut between two chunks is joined, not turned into U+FFFD; bytes
 * that are not UTF-8 at all become U+FFFD (the format cannot carry them).
 *
 * Pure: no I/O and no clock; the caller passes the time of each event.
 * The format's types and its parser are in shared/asciicast.ts (tsh reads it too).
 */
import { StringDecoder } from 'node:string_decoder';
import type { CastEventCode, CastHeader } from '../../shared/asciicast.js';

/** Bytes kept free under the cap for the truncation marker (its line is shorter than this). */
export const MARKER_RESERVE_BYTES = 256;

/** Encodes a session as asciicast v2 lines, counting bytes against `maxBytes`. */
export class CastEncoder {
  private readonly out = new StringDecoder('utf8');
  private readonly in = new StringDecoder('utf8');
  private readonly startMs: number;
  /** Bytes of everything `take`n so far (header included). */
  bytes = 0;
  /** Set once the cap was reached: nothing but the marker was written after it. */
  truncated = false;
  private pending: string[] = [];

  /**
   * @param header the header object (written at once as the first line)
   * @param startMs the start, ms since the epoch (event times are relative to it)
   * @param maxBytes the cap (recordings.max_bytes_per_session), at least MARKER_RESERVE_BYTES + the header
   */
  constructor(
    header: CastHeader,
    startMs: number,
    private readonly maxBytes: number,
  ) {
    this.startMs = startMs;
    this.push(JSON.stringify(header) + '\n', true);
  }

  /** Terminal output from the node. */
  output(data: Buffer, nowMs: number): void {
    if (this.truncated) return; // past the cap: not even decoded (a bulk copy after the cap costs nothing here)
    this.event(nowMs, 'o', this.out.write(data));
  }

  /** Keystrokes from the user (only when the role asks for input recording). */
  input(data: Buffer, nowMs: number): void {
    if (this.truncated) return;
    this.event(nowMs, 'i', this.in.write(data));
  }

  /** A window change. */
  resize(cols: number, rows: number, nowMs: number): void {
    this.event(nowMs, 'r', `${cols}x${rows}`);
  }

  /** Writes what the decoders still hold (an incomplete character at the very end becomes U+FFFD). */
  end(nowMs: number): void {
    this.event(nowMs, 'o', this.out.end());
    this.event(nowMs, 'i', this.in.end());
  }

  /** The lines encoded since the last call, as UTF-8 (empty when none). */
  take(): Buffer {
    if (this.pending.length === 0) return Buffer.alloc(0);
    const b = Buffer.from(this.pending.join(''), 'utf8');
    this.pending = [];
    return b;
  }

  private event(nowMs: number, code: CastEventCode, data: string): void {
    if (data === '' || this.truncated) return;
    const line = JSON.stringify([seconds(nowMs - this.startMs), code, data]) + '\n';
    if (!this.push(line)) {
      this.truncated = true;
      this.push(JSON.stringify([seconds(nowMs - this.startMs), 'm', `jumpgate: recording truncated at ${this.maxBytes} bytes; output is no longer recorded`]) + '\n', true);
    }
  }

  /** Adds `line` unless it would pass the cap (less the marker's reserve); `force` for the header and the marker. */
  private push(line: string, force = false): boolean {
    const n = Buffer.byteLength(line, 'utf8');
    if (!force && this.bytes + n > this.maxBytes - MARKER_RESERVE_BYTES) return false;
    this.bytes += n;
    this.pending.push(line);
    return true;
  }
}

/** Milliseconds → seconds with microsecond precision, never negative (a clock step back). */
function seconds(ms: number): number {
  return Math.max(0, Math.round(ms * 1000) / 1e6);
}

