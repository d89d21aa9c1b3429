/**
 * NO_PROXY comes from users' shell profiles: parseNoProxy must never throw
 * (a bad entry is a warning), every rule it keeps must match what it names,
 * and matching any destination against any mutant must not throw.
 * FUZZ_SEED / FUZZ_COUNT override the CI size; `npm run fuzz -- --target noproxy` is the long run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchesNoProxy, parseNoProxy } from '../../src/net/no-proxy.js';
import { fuzz, fuzzSummary, HANG_TIMEOUT_MS } from '../helpers/fuzz.js';
import { noproxyTarget as t } from './targets.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261201);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 15_000);

test('every NO_PROXY corpus value parses as its table says', () => {
  for (const c of t.corpus()) t.target(c);
});

test(`parses ${COUNT} mutated NO_PROXY values (seed ${SEED}) without throwing`, { timeout: HANG_TIMEOUT_MS }, (ctx) => {
  const stats = fuzz({ corpus: t.corpus(), count: COUNT, seed: SEED, target: t.target, expected: t.expected, mutator: t.mutator });
  ctx.diagnostic(`fuzz noproxy: ${fuzzSummary(stats)}`);
  assert.equal(stats.count, COUNT);
});

test('inputs the fuzzer found: a name the URL parser refuses is a warning; an IDNA spelling of an IP is that IP', () => {
  for (const value of ['ü%', 'a\u0000ü', 'ü[', 'x,ü%:22']) {
    const { warnings } = parseNoProxy(value);
    assert.ok(warnings.some((w) => /not a host name/.test(w)), `${JSON.stringify(value)}: ${warnings.join(' | ')}`);
    assert.equal(matchesNoProxy([], value, 22), false, 'matching a host the URL parser refuses does not throw');
  }
  const zwsp = parseNoProxy('127.0\u200b.0.1:22,10\uff0e0\uff0e0\uff0e1');
  assert.deepEqual(zwsp.rules.map((r) => r.kind), ['ip', 'ip']);
  assert.equal(matchesNoProxy(zwsp.rules, '127.0.0.1', 22), true);
  assert.equal(matchesNoProxy(zwsp.rules, '10.0.0.1', 3023), true);
});
