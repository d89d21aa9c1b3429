import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { coalesceWrites } from '../../src/util/coalesce-writes.js';

/** A sink that records each call it gets: one entry per write or writev, with the chunk count. */
function sink(): { w: Writable; calls: number[]; bytes: () => string } {
  const calls: number[] = [];
  const got: Buffer[] = [];
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      calls.push(1);
      got.push(chunk);
      cb();
    },
    writev(chunks, cb) {
      calls.push(chunks.length);
      for (const c of chunks) got.push(c.chunk as Buffer);
      cb();
    },
  });
  return { w, calls, bytes: () => Buffer.concat(got).toString() };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('coalesceWrites', () => {
  test('chunks a source emits in one tick reach the sink in one writev, in order', async () => {
    const src = new PassThrough();
    const { w, calls, bytes } = sink();
    coalesceWrites(src, w);
    src.pipe(w);
    src.emit('data', Buffer.from('a'));
    src.emit('data', Buffer.from('b'));
    src.emit('data', Buffer.from('c'));
    await tick();
    assert.deepEqual(calls, [3]);
    src.emit('data', Buffer.from('d'));
    await tick();
    assert.deepEqual(calls, [3, 1]);
    assert.equal(bytes(), 'abcd');
  });

  test('without it, the same chunks are three writes (what it saves)', async () => {
    const src = new PassThrough();
    const { w, calls } = sink();
    src.pipe(w);
    for (const c of ['a', 'b', 'c']) src.emit('data', Buffer.from(c));
    await tick();
    assert.equal(calls.length, 3);
  });
});
