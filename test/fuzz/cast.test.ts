/**
 * Recordings as tsh play reads them (shared/asciicast.ts parseCast, client/replay.ts castText):
 * a mutated recording is either refused with the line it broke at, or its text form holds no
 * control character but newline. FUZZ_SEED / FUZZ_COUNT override the CI size; `npm run fuzz --
 * --target cast` is the long run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzz, fuzzSummary, HANG_TIMEOUT_MS } from '../helpers/fuzz.js';
import { castTarget as t } from './targets.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261202);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 10_000);

test('the corpus recordings parse and their text is clean', () => {
  for (const c of t.corpus()) t.target(c);
});

test(`${COUNT} mutated recordings (seed ${SEED}): a located parse error or clean text`, { timeout: HANG_TIMEOUT_MS }, (ctx) => {
  const stats = fuzz({ corpus: t.corpus(), count: COUNT, seed: SEED, target: t.target, expected: t.expected, mutator: t.mutator });
  ctx.diagnostic(`fuzz cast: ${fuzzSummary(stats)}`);
  assert.equal(stats.count, COUNT);
});
