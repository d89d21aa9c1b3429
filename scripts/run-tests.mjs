// Runs the test suites with Node's own runner (TAP on stdout).
// Node 20 cannot discover .ts files itself, so the files are listed here.
// Usage: node scripts/run-tests.mjs [unit|e2e|all|wine] [extra node --test flags]
// test/wine/ (the win-x64 executables under Wine: builds them, so slow) runs
// only when asked for: `npm run test:wine`, which .ci/run calls after npm test.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const which = process.argv[2] ?? 'all';

// The real programs the tests run (OpenSSH, Chromium, squid, ...): check them all
// up front and stop with the install command, instead of failing test by test.
const deps = spawnSync('sh', [join(import.meta.dirname, 'system-deps.sh'), 'tests'], { stdio: 'inherit' });
if (deps.status !== 0) process.exit(1);

function collect(dir) {
  const out = [];
  for (const entry of readdirSync(dir)) {
    const full = join(dir, entry);
    if (statSync(full).isDirectory()) out.push(...collect(full));
    else if (entry.endsWith('.test.ts')) out.push(full);
  }
  return out;
}

const all = collect('test').sort();
const files = all.filter((f) => {
  const isWine = f.startsWith(join('test', 'wine'));
  if (which === 'wine' || isWine) return which === 'wine' && isWine;
  const isE2e = f.startsWith(join('test', 'e2e'));
  return which === 'all' || (which === 'e2e' ? isE2e : !isE2e);
});
if (files.length === 0) {
  console.error(`no test files found for "${which}"`);
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-concurrency=2', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
