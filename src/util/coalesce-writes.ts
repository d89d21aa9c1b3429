/**
 * Fewer, larger writes on a relay: what a stream hands on within one tick
 * leaves in one write. A TLS socket emits every decrypted record (at most
 * 16 KiB, RFC 8446 §5.1) as its own chunk, so one 1 MiB read became 64
 * `write` calls to the next socket or pipe, each a syscall (and on a TLS
 * socket, a TLS flush). Corked for the rest of the tick, they go out as one
 * writev.
 */
import type { Readable, Writable } from 'node:stream';

/**
 * Corks `dst` at the first chunk `src` emits in a tick and uncorks it on the
 * next tick. Use with `src.pipe(dst)` (either order): back-pressure is
 * unchanged (a corked write still returns false past dst's highWaterMark).
 */
export function coalesceWrites(src: Readable | NodeJS.ReadableStream, dst: Writable | NodeJS.WritableStream): void {
  const w = dst as Partial<Writable>;
  if (typeof w.cork !== 'function' || typeof w.uncork !== 'function') return; // a test's stream without cork: plain writes
  src.prependListener('data', () => {
    if ((w.writableCorked ?? 0) > 0 || w.destroyed) return;
    w.cork!();
    process.nextTick(() => w.uncork!());
  });
}
