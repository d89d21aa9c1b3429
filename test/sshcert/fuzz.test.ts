/**
 * Feeds at least 100,000 mutated certificates to parseCertificate (and
 * verifyCertificate for those that still parse). Every failure must be a
 * CertError or WireError; anything else fails with the seed, the iteration
 * and the input in hex. FUZZ_SEED and FUZZ_COUNT override the defaults;
 * `npm run fuzz` is the long run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzz, mutate, Rng, HANG_TIMEOUT_MS } from '../helpers/fuzz.js';
import { certCorpus, certFuzzTarget as target, isExpectedCertError as expected } from './fuzz-corpus.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261121);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 100_000);

const corpus = certCorpus();

test('every corpus certificate parses and verifies unmutated', () => {
  for (const blob of corpus) target(blob);
});

test('the mutator is deterministic for a seed and never changes its input', () => {
  const a = new Rng(5);
  const b = new Rng(5);
  const before = Buffer.from(corpus[0]!);
  for (let i = 0; i < 200; i++) assert.deepEqual(mutate(corpus[0]!, a), mutate(corpus[0]!, b));
  assert.deepEqual(corpus[0], before);
});

test(`parses ${COUNT} mutated certificates (seed ${SEED}) throwing only CertError or WireError`, { timeout: HANG_TIMEOUT_MS }, (t) => {
  const stats = fuzz({ corpus, count: COUNT, seed: SEED, target, expected });
  const top = Object.entries(stats.codes).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  t.diagnostic(
    `fuzz: ${stats.count} inputs in ${(stats.elapsedMs / 1000).toFixed(1)} s; ${stats.accepted} verified, ${stats.rejected} rejected (${top}); ` +
      `slowest ${stats.slowestMs.toFixed(2)} ms at iteration ${stats.slowestIteration}`,
  );
  assert.equal(stats.count, COUNT);
});
