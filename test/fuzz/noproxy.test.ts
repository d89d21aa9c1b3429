/**
 * NO_PROXY comes from users' shell profiles: parseNoProxy must never throw
 * (a bad entry is a warning), every rule it keeps must match what it names,
 * and matching any destination against any mutant must not throw.
 * FUZZ_SEED / FUZZ_COUNT override the CI size; `npm run fuzz -- --target noproxy` is the long run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzz, fuzzSummary } from '../helpers/fuzz.js';
import { noproxyTarget as t } from './targets.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261201);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 15_000);

test('every NO_PROXY corpus value parses as its table says', () => {
  for (const c of t.corpus()) t.target(c);
});

test(`parses ${COUNT} mutated NO_PROXY values (seed ${SEED}) without throwing`, (ctx) => {
  const stats = fuzz({ corpus: t.corpus(), count: COUNT, seed: SEED, target: t.target, expected: t.expected, mutator: t.mutator });
  ctx.diagnostic(`fuzz noproxy: ${fuzzSummary(stats)}`);
  assert.equal(stats.count, COUNT);
  assert.ok(stats.slowestMs < 1_000, `slowest input (parse and up to 50,000 matches) took ${stats.slowestMs} ms (iteration ${stats.slowestIteration})`);
});
