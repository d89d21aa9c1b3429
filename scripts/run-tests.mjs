// Runs the test suites with Node's own runner: TAP on stdout (what CI reads,
// ending with `# pass N` / `# fail N`), and at the end the per-file wall times
// on stderr (scripts/test-durations-reporter.mjs). Exits 1 when any test fails.
// Usage: node scripts/run-tests.mjs [unit|e2e|all|wine | FILE.test.ts...] [--concurrency=N] [--record]
// test/wine/ (the win-x64 executables under Wine: builds them, so slow) runs
// only when asked for: `npm run test:wine`, which .ci/run calls after npm test.
//
// Order: Node 20's CLI sorts the files by path, so a 100 s file met late
// leaves one core idle at the end. Its programmatic `run()` keeps the order it
// is given: the longest files start first (their last measured time in
// scripts/test-durations.json; a file not in it counts as 60 s in test/e2e/,
// 5 s elsewhere), so the tail is made of short files. `--record` merges this
// run's times into that table (do it on a quiet machine, then commit it).
//
// Concurrency (--concurrency=N overrides): 3 files at a time on a 2-core
// machine that is otherwise idle (load average below the core count), as a
// CI machine of its own is: most of an e2e file's time is spent waiting on other processes (sshd,
// PostgreSQL, Chromium, timers), so a third file uses idle cores. On a
// machine already busy, 2: there a third file only adds contention, and at a
// load average of 20+ even 2 made timing-bound e2e tests (ready within 20 s,
// seen within 5 s) fail (BENCHMARKS.md "Test suite").
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const REPO = join(import.meta.dirname, '..');
const DURATIONS = join(REPO, 'scripts', 'test-durations.json');
const cores = availableParallelism();
const DEFAULT_CONCURRENCY = loadavg()[0] < cores ? cores + 1 : cores;
const UNKNOWN_E2E_SECONDS = 60;
const UNKNOWN_SECONDS = 5;

const argv = process.argv.slice(2);
const positional = argv.filter((a) => !a.startsWith('--'));
const named = positional.filter((a) => a.endsWith('.test.ts'));
const which = named.length > 0 ? 'files' : (positional[0] ?? 'all');
const concurrencyArg = argv.find((a) => a.startsWith('--concurrency='));
const concurrency = concurrencyArg ? Number(concurrencyArg.slice('--concurrency='.length)) : DEFAULT_CONCURRENCY;
const record = argv.includes('--record');
const unknown = argv.filter((a) => a.startsWith('--') && !a.startsWith('--concurrency=') && a !== '--record');
const badWhich = which !== 'files' ? positional.length > 1 || !['unit', 'e2e', 'all', 'wine'].includes(which) : named.length !== positional.length;
if (badWhich || unknown.length > 0 || !(Number.isInteger(concurrency) && concurrency >= 1)) {
  console.error(`usage: node scripts/run-tests.mjs [unit|e2e|all|wine | FILE.test.ts...] [--concurrency=N (N >= 1)] [--record]; got: ${argv.join(' ')}`);
  process.exit(2);
}

// The second stage runs with tsx's loader (see below); `npm test` starts the first.
const underTsx = process.execArgv.some((a, i) => a === '--import=tsx' || (a === 'tsx' && process.execArgv[i - 1] === '--import'));
if (!underTsx) {
  // The real programs the tests run (OpenSSH, Chromium, squid, ...): check them all
  // up front and stop with the install command, instead of failing test by test.
  const deps = spawnSync('sh', [join(import.meta.dirname, 'system-deps.sh'), 'tests'], { stdio: 'inherit' });
  if (deps.status !== 0) process.exit(1);
  // run() gives each test file a process with this one's exec arguments: tsx's loader must be among them.
  const args = argv.map((a) => (named.includes(a) ? resolve(a) : a)); // the child runs in the repo
  // Only this run's --record writes the table (not one inherited by a runner a test starts).
  const env = { ...process.env };
  delete env['JUMPGATE_TEST_DURATIONS'];
  if (record) env['JUMPGATE_TEST_DURATIONS'] = DURATIONS;
  const result = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], { stdio: 'inherit', cwd: REPO, env });
  process.exit(result.status ?? 1);
}

function collect(dir) {
  const out = [];
  for (const entry of readdirSync(dir)) {
    const full = join(dir, entry);
    if (statSync(full).isDirectory()) out.push(...collect(full));
    else if (entry.endsWith('.test.ts')) out.push(full);
  }
  return out;
}

const all = which === 'files' ? named.map((f) => relative(REPO, resolve(f))) : collect('test').sort();
const selected = all.filter((f) => {
  if (which === 'files') return true;
  const isWine = f.startsWith(join('test', 'wine'));
  if (which === 'wine' || isWine) return which === 'wine' && isWine;
  const isE2e = f.startsWith(join('test', 'e2e'));
  return which === 'all' || (which === 'e2e' ? isE2e : !isE2e);
});
if (selected.length === 0) {
  console.error(`no test files found for "${which}"`);
  process.exit(1);
}
let known = {};
try {
  known = JSON.parse(readFileSync(DURATIONS, 'utf8'));
} catch {
  // no table yet: every file counts by its directory
}
const expected = (f) => known[f] ?? (f.startsWith(join('test', 'e2e')) ? UNKNOWN_E2E_SECONDS : UNKNOWN_SECONDS);
const files = selected.sort((a, b) => expected(b) - expected(a) || a.localeCompare(b)).map((f) => join(REPO, f));

const { run } = await import('node:test');
const { tap } = await import('node:test/reporters');
const { default: durations } = await import('./test-durations-reporter.mjs');
console.error(`# run-tests: ${files.length} files, ${concurrency} at a time (load average ${loadavg()[0].toFixed(1)} on ${cores} cores), longest first`);
const stream = run({ files, concurrency });
stream.on('test:fail', () => {
  process.exitCode = 1;
});
stream.compose(tap).pipe(process.stdout);
stream.compose(durations).pipe(process.stderr);
