import { test } from 'node:test';
import assert from 'node:assert/strict';
import { printable } from '../../src/util/printable.js';

test('control characters, line separators, bidi controls, zero-width characters and lone surrogates are escaped; ordinary text is kept', () => {
  const cases: Array<[string, string]> = [
    ['plain text, é, 日本, 😀', 'plain text, é, 日本, 😀'],
    ['a\nb\r\x1b[2J\x07\x9b', 'a\\x0ab\\x0d\\x1b[2J\\x07\\x9b'],
    ['ok \u202eexe.txt', 'ok \\u{202e}exe.txt'],
    ['one\u2028two\u2029', 'one\\u{2028}two\\u{2029}'],
    ['\u2066x\u2069 \u200e\u200f\u061c', '\\u{2066}x\\u{2069} \\u{200e}\\u{200f}\\u{61c}'],
    ['zero\u200bwidth\u200d\ufeff\u2060', 'zero\\u{200b}width\\u{200d}\\u{feff}\\u{2060}'],
    ['lone \ud800 and \udc00', 'lone \\u{d800} and \\u{dc00}'],
  ];
  for (const [input, want] of cases) assert.equal(printable(input), want, JSON.stringify(input));
});

test('the cap applies after escaping', () => {
  assert.equal(printable('\n'.repeat(10), 8), '\\x0a\\x0a…');
  assert.equal(printable('abc', 3), 'abc');
});

test('a cut never splits a surrogate pair, and lone surrogates become U+FFFD (valid Unicode for jsonb and terminals)', async () => {
  const { truncate, wellFormed } = await import('../../src/util/printable.js');
  const emoji = '\u{1F600}'; // two UTF-16 units
  assert.equal(truncate(`a${emoji.repeat(3)}`, 2), 'a…', 'the pair at the cut is dropped whole');
  assert.equal(truncate(`a${emoji.repeat(3)}`, 3), `a${emoji}…`);
  assert.equal(truncate('abc', 3), 'abc');
  assert.equal(wellFormed(`x\uD83Dy\uDE00z${emoji}`), `x\uFFFDy\uFFFDz${emoji}`);
  const cut = printable(`a${emoji.repeat(100)}`, 10);
  assert.equal(wellFormed(cut), cut, 'printable cuts on whole characters');
});
