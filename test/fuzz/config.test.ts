/**
 * The server config is the admin's YAML: parseServerConfig must refuse any
 * mutant of the sample and contract configs with a ConfigError (file, line,
 * key, reason) and nothing else, and never hang (aliases, deep nesting, huge
 * scalars). FUZZ_SEED / FUZZ_COUNT override the CI size; `npm run fuzz --
 * --target config` is the long run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseServerConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { fuzz, fuzzSummary, HANG_TIMEOUT_MS } from '../helpers/fuzz.js';
import { configTarget as t } from './targets.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261202);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 2_000);

test('every corpus config is valid as written', () => {
  for (const c of t.corpus()) parseServerConfig(c.toString(), '/etc/jumpgate/jumpgate.yaml');
});

test(`parses ${COUNT} mutated configs (seed ${SEED}) throwing only ConfigError`, { timeout: HANG_TIMEOUT_MS }, (ctx) => {
  const stats = fuzz({ corpus: t.corpus(), count: COUNT, seed: SEED, target: t.target, expected: t.expected, mutator: t.mutator });
  ctx.diagnostic(`fuzz config: ${fuzzSummary(stats)}`);
  assert.equal(stats.count, COUNT);
  assert.ok(stats.accepted > 0 && stats.rejected > 0, 'the mutants exercise both outcomes');
});

test('an input the fuzzer found: YAML nested thousands deep is a ConfigError, not a stack overflow', () => {
  const deep = `cluster_name: a.test\nnodes:\n  - { name: n, addr: "127.0.0.1:22", labels: ${'s: '.repeat(5000)}}\n`;
  assert.throws(() => parseServerConfig(deep, '/etc/jumpgate/jumpgate.yaml'), (err: Error) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, /jumpgate\.yaml/);
    return true;
  });
});
