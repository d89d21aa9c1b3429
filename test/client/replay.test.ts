/**
 * tsh play's replay (client/replay.ts) against a fake clock: the recorded
 * gaps, divided by --speed, long pauses cut to the idle limit; and the text
 * form: output only, escape sequences gone, control characters escaped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { castText, replay } from '../../src/client/replay.js';
import { parseCast } from '../../src/shared/asciicast.js';

const CAST = [
  '{"version":2,"width":80,"height":24,"timestamp":1764489600,"title":"alice@node1"}',
  '[0.5,"o","$ "]',
  '[1.0,"i","l"]',
  '[1.5,"o","ls\\r\\n"]',
  '[1.5,"r","100x30"]',
  '[3601.5,"o","\\u001b[1mbold\\u001b[0m\\r\\n"]',
  '[3601.75,"m","a marker"]',
  '[3602.0,"o","bye\\u0007\\r\\n"]',
  '',
].join('\n');

/** A fake clock: sleep advances it and records each wait. */
function fakeClock() {
  let now = 0;
  const waits: number[] = [];
  const written: Array<[number, string]> = [];
  return {
    io: { write: (t: string) => void written.push([now, t]), sleep: async (ms: number) => void (waits.push(ms), (now += ms)) },
    waits,
    written,
  };
}

test('replays output with the recorded gaps; input, resize and markers are not written', async () => {
  const c = fakeClock();
  const total = await replay(parseCast(CAST), { speed: 1, idleLimitSeconds: 3600 * 2 }, c.io);
  assert.deepEqual(c.waits, [500, 1000, 3_600_000, 500]);
  assert.deepEqual(c.written, [
    [500, '$ '],
    [1500, 'ls\r\n'],
    [3_601_500, '\x1b[1mbold\x1b[0m\r\n'],
    [3_602_000, 'bye\x07\r\n'],
  ]);
  assert.equal(total, 3_602_000);
});

test('--speed divides every wait; a pause longer than the idle limit is cut to it first', async () => {
  const c = fakeClock();
  const total = await replay(parseCast(CAST), { speed: 2, idleLimitSeconds: 2 }, c.io);
  assert.deepEqual(c.waits, [250, 500, 1000, 250]);
  assert.equal(total, 2000);
});

test('text form: output only, escape sequences removed, line ends normalised, other control characters escaped', () => {
  const cast = parseCast(
    [
      '{"version":2,"width":80,"height":24}',
      '[0.1,"o","\\u001b[31mred\\u001b[0m \\u001b]0;title\\u0007x\\r\\n"]',
      '[0.2,"i","secret"]',
      '[0.3,"o","a\\u0008b\\u009bc\\u202ed\\r\\n"]',
    ].join('\n'),
  );
  assert.equal(castText(cast), 'red x\na\\x08b\\u{202e}d\n');
});
