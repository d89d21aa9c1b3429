/**
 * Feeds at least 50,000 mutated agent byte streams to the reply reader
 * (AgentFrameDecoder, then parseAgentReply on every message it yields).
 * Every failure must be an AgentError or a WireError; anything else fails
 * with the seed, the iteration and the input in hex. FUZZ_SEED and
 * FUZZ_COUNT override the defaults.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentFrameDecoder } from '../../src/client/agent.js';
import { fuzz, HANG_TIMEOUT_MS } from '../helpers/fuzz.js';
import { agentCorpus, agentFuzzTarget as target, isExpectedAgentError as expected } from '../fuzz/agent-corpus.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261122);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 50_000);

const seeds = agentCorpus();

test('every corpus stream decodes unmutated, also when fed one byte at a time', () => {
  for (const s of seeds) {
    target(s);
    const dec = new AgentFrameDecoder();
    let n = 0;
    for (const b of s) n += dec.push(Buffer.of(b)).length;
    assert.ok(n >= 1);
    assert.equal(dec.pending, 0);
  }
});

test(`reads ${COUNT} mutated agent replies (seed ${SEED}) throwing only AgentError or WireError`, { timeout: HANG_TIMEOUT_MS }, (t) => {
  const stats = fuzz({ corpus: seeds, count: COUNT, seed: SEED, target, expected });
  const top = Object.entries(stats.codes).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  t.diagnostic(
    `fuzz: ${stats.count} inputs in ${(stats.elapsedMs / 1000).toFixed(1)} s; ${stats.accepted} accepted, ${stats.rejected} rejected (${top}); ` +
      `slowest ${stats.slowestMs.toFixed(2)} ms at iteration ${stats.slowestIteration}`,
  );
  assert.equal(stats.count, COUNT);
  assert.ok(stats.accepted > 0 && stats.rejected > 0, 'the mutants exercise both outcomes');
});
