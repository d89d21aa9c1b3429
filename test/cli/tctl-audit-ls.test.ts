import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../src/cli/commands/tctl/audit-ls.js';
import type { StateBackend } from '../../src/server/storage/backend.js';
import { testDeps } from '../helpers/deps.js';

// The store is faked only for its query answer: the real stores are read by test/e2e/tctl-storage.test.ts.
const stored = [{ seq: 1, time: '2026-11-30T04:00:00.000Z', server_id: 'p1', event: 'login.failure', user: 'u\u009b2J\u202e\u200b', reason: 'x\u2028y' }];
const store = { location: 'test', audit: { query: async () => stored } } as unknown as StateBackend;

test('--format=json escapes what JSON leaves raw: C1 controls, bidi overrides, zero-width and line separators', async () => {
  const deps = testDeps();
  await run({ limit: 10, format: 'json' }, { store, clock: () => new Date() }, deps);
  const out = deps.out();
  assert.doesNotMatch(out, /[\u0080-\u009f\u200b-\u200f\u2028-\u202e]/, 'nothing a terminal would act on');
  assert.deepEqual(JSON.parse(out), stored, 'the same events once parsed');
});
