/**
 * Long fuzz runs, one named target at a time, with the same corpora,
 * mutators and checks as the CI-size tests (test/fuzz/targets.ts).
 *
 *   npm run fuzz -- [--target certs|agent|noproxy|config|login-answer|cast|login-start|web] [--count N] [--seed S]
 *
 * Default target certs. Exits 1 (with the seed, the iteration and the input)
 * on the first input that breaks a rule, 2 on a usage error.
 */
import { fuzz, fuzzAsync, fuzzSummary, type FuzzStats } from '../test/helpers/fuzz.js';
import { ASYNC_TARGET_NAMES, loginStartTarget, SYNC_TARGETS, webTarget } from '../test/fuzz/targets.js';

const NAMES = [...Object.keys(SYNC_TARGETS), ...ASYNC_TARGET_NAMES];
/** Default counts: about a minute each on a 2-core machine. */
const DEFAULT_COUNT: Record<string, number> = { certs: 1_000_000, agent: 1_000_000, noproxy: 250_000, config: 30_000, 'login-answer': 100_000, cast: 200_000, 'login-start': 200_000, web: 12_000 };

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\nusage: npm run fuzz -- [--target ${NAMES.join('|')}] [--count N] [--seed S]\n`);
  process.exit(2);
}

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  if (v === undefined) usage(`--${name} needs a value`);
  return v;
}

function wholeNumber(name: string, fallback: number): number {
  const text = flag(name);
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isSafeInteger(v) || v < 0) usage(`--${name} needs a non-negative whole number`);
  return v;
}

async function main(): Promise<void> {
  const name = flag('target') ?? 'certs';
  if (!NAMES.includes(name)) usage(`unknown target "${name}"`);
  const count = wholeNumber('count', DEFAULT_COUNT[name]!);
  const seed = wholeNumber('seed', Date.now() % 0x100000000);
  process.stderr.write(`fuzz ${name}: ${count} mutated inputs, seed ${seed}\n`);
  const every = Math.max(1, Math.round(count / 10));
  const progress = (done: number, s: FuzzStats) => process.stderr.write(`fuzz ${name}: ${done}/${count}, ${(s.elapsedMs / 1000).toFixed(0)} s, slowest ${s.slowestMs.toFixed(2)} ms\n`);
  let stats: FuzzStats;
  if (name in SYNC_TARGETS) {
    const t = SYNC_TARGETS[name as keyof typeof SYNC_TARGETS];
    stats = fuzz({ corpus: t.corpus(), count, seed, target: t.target, expected: t.expected, mutator: t.mutator, every, progress });
  } else {
    // The server side runs in this process: the dev IdP and the HTTPS API (test/fuzz/web-server.ts).
    const { startWebFuzzServer } = await import('../test/fuzz/web-server.js');
    const srv = await startWebFuzzServer();
    try {
      const t = name === 'web' ? webTarget : loginStartTarget;
      stats = await fuzzAsync({
        corpus: t.corpus(),
        count,
        seed,
        mutator: t.mutator,
        target: name === 'web' ? (input) => webTarget.target(srv.web, input) : (input) => loginStartTarget.target({ login: srv.api.server.login }, input),
        expected: t.expected,
        concurrency: name === 'web' ? 16 : 4,
        every,
        progress,
      });
      const problems = await srv.problems();
      if (problems.length > 0) throw new Error(`fuzz ${name}: the server had problems:\n${problems.join('\n')}`);
    } finally {
      await srv.close();
    }
  }
  process.stdout.write(`fuzz ${name}: seed ${seed}: ${fuzzSummary(stats)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
});
