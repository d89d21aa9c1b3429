/**
 * The web player's asciicast parser (src/webui/cast.ts) against files the
 * server's own encoder writes (server/recording/asciicast.ts), torn lines,
 * idle time cut and headers that are not asciicast v2.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CastEncoder } from '../../src/server/recording/asciicast.js';
import { clock, IDLE_LIMIT_S, parseCast } from '../../src/webui/cast.js';

const header = (extra: Record<string, unknown> = {}) => JSON.stringify({ version: 2, width: 80, height: 24, timestamp: 1, ...extra });

describe('the web player reads asciicast v2', () => {
  test('reads what the recorder writes: output, input, resize in order, with their times', () => {
    const enc = new CastEncoder({ version: 2, width: 100, height: 30, timestamp: 1_700_000_000, env: { TERM: 'xterm-256color' }, title: 'root@node1' }, 1_700_000_000_000, 1 << 20);
    enc.output(Buffer.from('hello ✓\r\n'), 1_700_000_000_500);
    enc.input(Buffer.from('ls\r'), 1_700_000_001_000);
    enc.resize(120, 40, 1_700_000_001_500);
    const cast = parseCast(enc.take().toString('utf8'));
    assert.equal(cast.width, 100);
    assert.equal(cast.height, 30);
    assert.deepEqual(cast.events.map((e) => [e[1], e[2]]), [['o', 'hello ✓\r\n'], ['i', 'ls\r'], ['r', '120x40']]);
    assert.ok(Math.abs(cast.events[0]![0] - 0.5) < 1e-6);
    assert.ok(Math.abs(cast.duration - 1.5) < 1e-6);
  });

  test('cuts pauses longer than idle_time_limit (default IDLE_LIMIT_S), so the slider is not mostly silence', () => {
    const text = [header(), '[1.0,"o","a"]', '[61.0,"o","b"]', '[61.5,"o","c"]'].join('\n');
    const cast = parseCast(text);
    assert.deepEqual(cast.events.map((e) => e[0]), [1, 1 + IDLE_LIMIT_S, 1.5 + IDLE_LIMIT_S]);
    assert.equal(parseCast([header({ idle_time_limit: 0.5 }), '[0,"o","a"]', '[10,"o","b"]'].join('\n')).duration, 0.5);
  });

  test('skips a torn last line and lines that are not [time, code, text]; keeps markers', () => {
    const text = [header(), '[0.1,"o","a"]', '{"x":1}', '[0.2,"o"]', '[-1,"o","neg"]', '[0.3,"m","jumpgate: recording truncated at 4096 bytes"]', '[0.4,"o","tor'].join('\n');
    const cast = parseCast(text);
    assert.deepEqual(cast.events.map((e) => e[2]), ['a', 'jumpgate: recording truncated at 4096 bytes']);
    assert.deepEqual(cast.markers, ['jumpgate: recording truncated at 4096 bytes']);
  });

  test('refuses a file that is not asciicast v2, saying so', () => {
    assert.throws(() => parseCast('not json\n'), /no asciicast header/);
    assert.throws(() => parseCast(JSON.stringify({ version: 1, width: 80, height: 24 })), /not asciicast v2/);
    assert.throws(() => parseCast(JSON.stringify({ version: 2, width: 0, height: 24 })), /not asciicast v2/);
  });

  test('shows times as m:ss', () => {
    assert.equal(clock(0), '0:00');
    assert.equal(clock(65.9), '1:05');
    assert.equal(clock(600), '10:00');
  });
});
