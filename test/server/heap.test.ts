/**
 * server/heap.ts against the real V8 of this Node: a process that allocates a
 * burst of short-lived objects keeps a small young generation after
 * keepYoungGenerationSmall, and a large one without it (so the check can fail,
 * e.g. after a Node upgrade that stops honouring the flag at run time).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const heapModule = fileURLToPath(new URL('../../src/server/heap.ts', import.meta.url));

/** The young generation's size (MiB) in a fresh Node process after a 3-million-object burst. */
function youngGenerationAfterBurst(call: string, env: NodeJS.ProcessEnv = {}): number {
  const script = `
    const v8 = await import('node:v8');
    const { keepYoungGenerationSmall } = await import(${JSON.stringify(heapModule)});
    ${call};
    const keep = [];
    for (let i = 0; i < 3e6; i++) { const o = { a: i, b: 'x' + i }; if (i % 1000 === 0) keep.push(o); }
    const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    process.stdout.write(String(ns.space_size / 1048576));`;
  const env_ = { ...process.env, NODE_OPTIONS: '', ...env };
  return Number(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: env_, encoding: 'utf8' }));
}

test('jumpgate start keeps V8\'s young generation at its starting size after a burst of allocation; V8 alone grows it', () => {
  const kept = youngGenerationAfterBurst('if (!keepYoungGenerationSmall([], "")) throw new Error("refused")');
  const grown = youngGenerationAfterBurst('');
  assert.ok(kept <= 4, `young generation ${kept} MiB with keepYoungGenerationSmall`);
  assert.ok(grown >= 16, `young generation ${grown} MiB without it (V8's default growth this test relies on)`);
});

test('an operator\'s own semi-space flag (command line or NODE_OPTIONS) wins: nothing is changed', () => {
  assert.equal(youngGenerationAfterBurst('if (keepYoungGenerationSmall(["--max-semi-space-size=64"], "")) throw new Error("changed")') >= 16, true);
  assert.equal(youngGenerationAfterBurst('if (keepYoungGenerationSmall([], "--semi-space-growth-factor=4")) throw new Error("changed")') >= 16, true);
});
