/**
 * A hostile proxy's login answer, fuzzed on the client side: tsh's checks
 * (checkLoginResult, claimClusterScope) and the ssh_config / known_hosts
 * renderers either refuse with a UserError or write only patterns within the
 * cluster's own names (test/fuzz/login-answer.ts). FUZZ_SEED / FUZZ_COUNT
 * override the CI size; `npm run fuzz -- --target login-answer` is the long run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzz, fuzzSummary, HANG_TIMEOUT_MS } from '../helpers/fuzz.js';
import { loginAnswerTarget as t } from './login-answer.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261130);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 3_000);

test('the honest corpus answer is accepted and each hostile one is refused', () => {
  const [honest, ...hostile] = t.corpus();
  t.target(honest!);
  for (const h of hostile) {
    try {
      t.target(h);
    } catch (err) {
      assert.ok(t.expected(err), String(err));
      continue;
    }
    // The second corpus entry is accepted with node1 and shared dropped (another profile routes them).
    assert.match(h.toString(), /"mine"/, `accepted: ${h.toString().slice(0, 200)}`);
  }
});

test(`${COUNT} mutated login answers (seed ${SEED}): a UserError or output scoped to the cluster`, { timeout: HANG_TIMEOUT_MS }, (ctx) => {
  const stats = fuzz({ corpus: t.corpus(), count: COUNT, seed: SEED, target: t.target, expected: t.expected, mutator: t.mutator });
  ctx.diagnostic(`fuzz login-answer: ${fuzzSummary(stats)}`);
  assert.equal(stats.count, COUNT);
  assert.ok(stats.accepted > 0 && stats.rejected > 0, 'the mutants exercise both outcomes');
});
