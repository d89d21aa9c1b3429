/**
 * scripts/run-tests.mjs, the one command behind `npm test`: TAP on stdout
 * (what CI reads, ending with `# pass N` / `# fail N`), the per-file times on
 * stderr only, and exit 1 when any test fails, whatever order it ran the files in.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, run, tempDir } from '../helpers/tools.js';

describe('scripts/run-tests.mjs', () => {
  const tmp = tempDir('run-tests');
  after(() => tmp.cleanup());
  const file = (name: string, body: string) => {
    const f = join(tmp.dir, name);
    writeFileSync(f, `import { test } from 'node:test';\nimport assert from 'node:assert/strict';\n${body}\n`);
    return f;
  };

  test('a failing test fails the run (exit 1); TAP with the totals on stdout, every file with its time on stderr', async () => {
    const files = [
      file('passes.test.ts', "test('one', () => assert.equal(1, 1));\ntest('two', () => assert.equal(2, 2));"),
      file('fails.test.ts', "test('wrong', () => assert.equal(1, 2));"),
    ];
    // Not as a child of this test run: node:test's NODE_TEST_CONTEXT would make the inner run report to us.
    const env = { ...process.env };
    delete env['NODE_TEST_CONTEXT'];
    const r = await run(process.execPath, [join(REPO, 'scripts', 'run-tests.mjs'), ...files, '--concurrency=2'], { cwd: tmp.dir, env, timeoutMs: 120_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^TAP version 13$/m);
    assert.match(r.stdout, /^# pass 2$/m);
    assert.match(r.stdout, /^# fail 1$/m);
    assert.doesNotMatch(r.stdout, /# durations/, 'the table never mixes into the TAP');
    assert.match(r.stderr, /^# durations: 2 files, [\d.]+ s wall/m);
    assert.match(r.stderr, /^# +[\d.]+ s {2}\S*fails\.test\.ts {2}\(failed\)$/m);
    assert.match(r.stderr, /^# +[\d.]+ s {2}\S*passes\.test\.ts$/m);
  });

  test('an unknown argument is a usage error naming it', async () => {
    const r = await run(process.execPath, [join(REPO, 'scripts', 'run-tests.mjs'), 'everything'], { cwd: tmp.dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /usage: node scripts\/run-tests\.mjs \[unit\|e2e\|all\|wine \| FILE\.test\.ts\.\.\.\].*got: everything/);
  });
});
