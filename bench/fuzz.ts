/**
 * The long certificate fuzz run: the same corpus, mutator and target as
 * test/sshcert/fuzz.test.ts, for as many inputs as asked.
 * Usage: npm run fuzz -- [--count 5000000] [--seed N]
 * Exits 1 (with the seed, iteration and input hex) on any error that is not
 * a CertError or WireError.
 */
import { fuzz, type FuzzStats } from '../test/helpers/fuzz.js';
import { certCorpus, certFuzzTarget, isExpectedCertError } from '../test/sshcert/fuzz-corpus.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 0) {
    process.stderr.write(`fuzz: --${name} needs a non-negative whole number\n`);
    process.exit(2);
  }
  return v;
}

function summary(s: FuzzStats): string {
  const codes = Object.entries(s.codes)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return (
    `${s.count} inputs in ${(s.elapsedMs / 1000).toFixed(1)} s (${Math.round((s.count * 1000) / s.elapsedMs)}/s); ` +
    `${s.accepted} parsed and verified, ${s.rejected} rejected (${codes}); ` +
    `slowest ${s.slowestMs.toFixed(2)} ms at iteration ${s.slowestIteration}`
  );
}

function main(): void {
  const count = arg('count', 1_000_000);
  const seed = arg('seed', Date.now() % 0x100000000);
  process.stderr.write(`fuzz: ${count} mutated certificates, seed ${seed}\n`);
  try {
    const stats = fuzz({
      corpus: certCorpus(),
      count,
      seed,
      target: certFuzzTarget,
      expected: isExpectedCertError,
      every: 100_000,
      progress: (done, s) => process.stderr.write(`fuzz: ${done}/${count}, ${(s.elapsedMs / 1000).toFixed(0)} s, slowest ${s.slowestMs.toFixed(2)} ms\n`),
    });
    process.stdout.write(`fuzz: seed ${seed}: ${summary(stats)}\n`);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

main();
