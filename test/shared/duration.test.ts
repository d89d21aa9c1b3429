import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DurationError, formatDuration, parseDuration } from '../../src/shared/duration.js';

const valid: [string, number][] = [
  ['24h', 86_400],
  ['90m', 5_400],
  ['1h30m', 5_400],
  ['45s', 45],
  ['7d', 604_800],
  ['1d12h', 129_600],
  ['2h0m5s', 7_205],
  ['1s', 1],
  [' 8h ', 28_800],
  ['0h5m', 300],
];
for (const [text, seconds] of valid) {
  test(`parses ${JSON.stringify(text)} as ${seconds} seconds`, () => {
    assert.equal(parseDuration(text, '--ttl'), seconds);
  });
}

const invalid: [string, RegExp][] = [
  ['25x', /^"25x" is not a duration; use a number with a unit, e.g. 24h, 90m or 1h30m/],
  ['3600', /^"3600" has no unit; write 3600s for seconds/],
  ['', /is not a duration/],
  ['h', /is not a duration/],
  ['1.5h', /is not a duration/],
  ['-1h', /is not a duration/],
  ['1h30', /is not a duration/],
  ['1H', /is not a duration/],
  ['1h 30m', /is not a duration/],
  ['30m1h', /largest first/],
  ['1h1h', /once each/],
  ['0s', /must be longer than zero/],
  ['0h0m', /must be longer than zero/],
  ['99999999999999999999d', /too long/],
];
for (const [text, message] of invalid) {
  test(`refuses ${JSON.stringify(text)} with a message that shows valid examples`, () => {
    assert.throws(
      () => parseDuration(text, '--ttl'),
      (err: unknown) => {
        assert.ok(err instanceof DurationError);
        assert.match(err.message, message);
        assert.equal(err.what, '--ttl');
        assert.equal(err.text, text);
        return true;
      },
    );
  });
}

test('a DurationError message does not repeat the subject, so callers can prefix it once', () => {
  assert.throws(() => parseDuration('soon', '--ttl'), (err: Error) => !err.message.includes('--ttl'));
});

const formatted: [number, string][] = [
  [86_400, '24h'],
  [5_400, '1h30m'],
  [45, '45s'],
  [604_800, '168h'],
  [3_661, '1h1m1s'],
  [60, '1m'],
  [0, '0s'],
  [-90, '-1m30s'],
  [44.6, '45s'],
];
for (const [seconds, text] of formatted) {
  test(`formats ${seconds} seconds as ${text}`, () => {
    assert.equal(formatDuration(seconds), text);
  });
}

test('formatDuration output parses back to the same number of seconds', () => {
  for (const s of [1, 59, 60, 61, 3_599, 3_600, 86_399, 86_400, 90_061, 31_536_000]) {
    assert.equal(parseDuration(formatDuration(s), 'round trip'), s);
  }
});

test('formatDuration refuses infinity and NaN', () => {
  assert.throws(() => formatDuration(Infinity), RangeError);
  assert.throws(() => formatDuration(NaN), RangeError);
});
