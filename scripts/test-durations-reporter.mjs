// A node:test reporter (scripts/run-tests.mjs runs it beside TAP, to stderr):
// at the end, every test file with its wall time (from its process starting
// to its end, what `--test-concurrency` schedules), longest first, and the
// slowest single tests, so the next engineer sees where the time goes.
// With JUMPGATE_TEST_DURATIONS=<file> set by the runner's --record flag it
// also merges this run's { "<file relative to the repo>": seconds } into that
// table (the order the next runs start files in).
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { relative } from 'node:path';

const TOP_FILES = 25;
const TOP_TESTS = 10;

/** @param {AsyncIterable<{ type: string, data: any }>} source */
export default async function* durations(source) {
  const started = Date.now();
  /** @type {Map<string, { seconds: number, failed: boolean }>} */
  const files = new Map();
  /** @type {{ file: string, name: string, seconds: number }[]} */
  const tests = [];
  for await (const { type, data } of source) {
    if (type !== 'test:complete' || !data || data.nesting !== 0 || typeof data.file !== 'string') continue;
    const seconds = (data.details?.duration_ms ?? 0) / 1000;
    const file = relative(process.cwd(), data.file);
    // Node 20 reports each file as a top-level test named by its path, then (buffered) its own tests.
    if (data.name === data.file) files.set(file, { seconds, failed: data.details?.passed === false });
    else tests.push({ file, name: data.name, seconds });
  }
  const wall = (Date.now() - started) / 1000;
  const sorted = [...files].sort((a, b) => b[1].seconds - a[1].seconds);
  const sum = sorted.reduce((s, [, f]) => s + f.seconds, 0);
  const out = [''];
  out.push(`# durations: ${files.size} files, ${wall.toFixed(1)} s wall, ${sum.toFixed(1)} s summed over files (load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
  for (const [file, f] of sorted.slice(0, TOP_FILES)) out.push(`# ${f.seconds.toFixed(1).padStart(7)} s  ${file}${f.failed ? '  (failed)' : ''}`);
  if (sorted.length > TOP_FILES) out.push(`# ${(sum - sorted.slice(0, TOP_FILES).reduce((s, [, f]) => s + f.seconds, 0)).toFixed(1).padStart(7)} s  the other ${sorted.length - TOP_FILES} files`);
  out.push('# slowest top-level tests (a describe block counts with its before/after hooks):');
  for (const t of tests.sort((a, b) => b.seconds - a.seconds).slice(0, TOP_TESTS)) out.push(`# ${t.seconds.toFixed(1).padStart(7)} s  ${t.file}: ${t.name.slice(0, 100)}`);
  yield `${out.join('\n')}\n`;
  const record = process.env['JUMPGATE_TEST_DURATIONS'];
  if (record) {
    // Merged into the table: a run of one half (unit, e2e, some files) keeps the other files' times.
    let table = {};
    try {
      table = JSON.parse(readFileSync(record, 'utf8'));
    } catch {
      // no table yet
    }
    for (const [file, f] of sorted) table[file] = Math.round(f.seconds * 10) / 10;
    const ordered = Object.fromEntries(Object.entries(table).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])));
    writeFileSync(record, `${JSON.stringify(ordered, null, 2)}\n`);
    yield `# durations written to ${record}\n`;
  }
}

