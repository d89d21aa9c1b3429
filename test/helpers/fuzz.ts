/**
 * A small, reproducible fuzzing harness: a seeded PRNG, a structure-aware
 * mutator for SSH wire data, a token-aware mutator for text (YAML, JSON,
 * NO_PROXY, HTTP), and a loop that feeds mutants to a parser and fails on any
 * error that is not one of the expected kinds. Used by the CI-size fuzz tests
 * (test/sshcert, test/client, test/fuzz) and bench/fuzz.ts (long runs); the
 * targets are in test/fuzz/targets.ts.
 */

/** mulberry32: tiny, fast, good enough for fuzzing; the same seed gives the same stream. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform uint32. */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.u32() % n;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe];

/** Offsets where a big-endian uint32 could be an SSH length field (it fits in what follows). */
function lengthFields(buf: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 4 <= buf.length; i++) {
    const v = buf.readUInt32BE(i);
    if (v <= buf.length - i - 4 && (v > 0 || (i > 0 && buf[i - 1] !== 0))) out.push(i);
  }
  return out;
}

type Mutation = (b: Buffer, rng: Rng) => Buffer;

const MUTATIONS: Mutation[] = [
  // Flip one bit.
  (b, rng) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    out[rng.int(out.length)]! ^= 1 << rng.int(8);
    return out;
  },
  // Set a byte to an interesting value.
  (b, rng) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    out[rng.int(out.length)] = rng.pick(INTERESTING_BYTES);
    return out;
  },
  // Inflate or deflate a length field: by one, to zero, to the maximum, past the end.
  (b, rng) => {
    const fields = lengthFields(b);
    if (fields.length === 0) return b;
    const at = rng.pick(fields);
    const v = b.readUInt32BE(at);
    const rest = b.length - at - 4;
    const choices = [v + 1, v - 1, 0, 0xffffffff, 0x7fffffff, 0x80000000, rest + 1, rest, v + 4, v - 4, v * 2, v >>> 1];
    const out = Buffer.from(b);
    out.writeUInt32BE(rng.pick(choices) >>> 0, at);
    return out;
  },
  // Truncate.
  (b, rng) => b.subarray(0, rng.int(b.length)),
  // Insert random bytes.
  (b, rng) => {
    const at = rng.int(b.length + 1);
    return Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(8)), b.subarray(at)]);
  },
  // Duplicate a slice in place (repeats fields, e.g. an option).
  (b, rng) => {
    if (b.length === 0) return b;
    const start = rng.int(b.length);
    const end = Math.min(b.length, start + 1 + rng.int(64));
    return Buffer.concat([b.subarray(0, end), b.subarray(start, end), b.subarray(end)]);
  },
  // Delete a slice.
  (b, rng) => {
    if (b.length === 0) return b;
    const start = rng.int(b.length);
    const end = Math.min(b.length, start + 1 + rng.int(16));
    return Buffer.concat([b.subarray(0, start), b.subarray(end)]);
  },
  // Append bytes (trailing data).
  (b, rng) => Buffer.concat([b, rng.bytes(1 + rng.int(4))]),
];

/** Applies one to three random mutations; never modifies `buf`. */
export function mutate(buf: Buffer, rng: Rng): Buffer {
  let out = buf;
  const n = 1 + rng.int(3);
  for (let i = 0; i < n; i++) out = rng.pick(MUTATIONS)(out, rng);
  return out === buf ? Buffer.from(buf) : out;
}

/** Characters that break parsers: NUL, controls, a lone surrogate, BOM, zero-width, RTL, non-ASCII letters, emoji. */
const ODD_CHARS = ['\u0000', '\u0001', '\u001b', '\u007f', '\ud800', '\ufeff', '\u200b', '\u202e', '\u00e9', '\u0130', '\u3002', '\uff0e', '\u{1f600}', '\r', '\n', '\t', ' '];

type TextMutation = (s: string, rng: Rng, dict: readonly string[]) => string;

const spanOf = (s: string, rng: Rng, max: number): [number, number] => {
  const start = rng.int(s.length + 1);
  return [start, Math.min(s.length, start + 1 + rng.int(max))];
};
const linesOf = (s: string) => s.split('\n');

const TEXT_MUTATIONS: TextMutation[] = [
  // Insert a dictionary token (a delimiter, a keyword, a boundary value).
  (s, rng, dict) => {
    const at = rng.int(s.length + 1);
    return s.slice(0, at) + rng.pick(dict) + s.slice(at);
  },
  // Replace a span with a dictionary token.
  (s, rng, dict) => {
    const [a, b] = spanOf(s, rng, 12);
    return s.slice(0, a) + rng.pick(dict) + s.slice(b);
  },
  // Insert an odd character.
  (s, rng) => {
    const at = rng.int(s.length + 1);
    return s.slice(0, at) + rng.pick(ODD_CHARS) + s.slice(at);
  },
  // Delete a span.
  (s, rng) => {
    const [a, b] = spanOf(s, rng, 24);
    return s.slice(0, a) + s.slice(b);
  },
  // Duplicate a span in place.
  (s, rng) => {
    const [a, b] = spanOf(s, rng, 64);
    return s.slice(0, b) + s.slice(a, b) + s.slice(b);
  },
  // Repeat a token or a span many times (long names, deep nesting, huge numbers).
  (s, rng, dict) => {
    const at = rng.int(s.length + 1);
    const piece = rng.chance(0.5) ? rng.pick(dict) : s.slice(at, at + 1 + rng.int(8)) || 'a';
    return s.slice(0, at) + piece.repeat(rng.pick([2, 16, 256, 4096])) + s.slice(at);
  },
  // Duplicate, delete or swap whole lines; change a line's indentation.
  (s, rng) => {
    const l = linesOf(s);
    const i = rng.int(l.length);
    l.splice(i, 0, l[i]!);
    return l.join('\n');
  },
  (s, rng) => {
    const l = linesOf(s);
    l.splice(rng.int(l.length), 1);
    return l.join('\n');
  },
  (s, rng) => {
    const l = linesOf(s);
    const i = rng.int(l.length);
    const j = rng.int(l.length);
    [l[i], l[j]] = [l[j]!, l[i]!];
    return l.join('\n');
  },
  (s, rng) => {
    const l = linesOf(s);
    const i = rng.int(l.length);
    l[i] = rng.chance(0.5) ? ' '.repeat(1 + rng.int(4)) + l[i] : l[i]!.replace(/^ {1,4}/, '');
    return l.join('\n');
  },
  // Truncate.
  (s, rng) => s.slice(0, rng.int(s.length + 1)),
  // The byte mutations (invalid UTF-8 becomes U+FFFD, as a reader of a file would see it).
  (s, rng) => mutate(Buffer.from(s), rng).toString('utf8'),
];

/**
 * Applies one to three text mutations: dictionary tokens, odd characters,
 * span and line edits, long repeats, byte flips. Returns UTF-8.
 */
export function mutateText(input: Buffer, rng: Rng, dict: readonly string[]): Buffer {
  let s = input.toString('utf8');
  const n = 1 + rng.int(3);
  for (let i = 0; i < n; i++) s = rng.pick(TEXT_MUTATIONS)(s, rng, dict);
  return Buffer.from(s);
}

export interface FuzzOptions {
  /** Valid inputs to start from. */
  corpus: readonly Buffer[];
  count: number;
  seed: number;
  /** Parses (and checks) one input; may throw only errors `expected` accepts. */
  target: (input: Buffer) => void;
  /** True for the errors the target may legitimately throw. */
  expected: (err: unknown) => boolean;
  /** Makes a mutant of a corpus entry (default: `mutate`, for SSH wire data). */
  mutator?: (input: Buffer, rng: Rng) => Buffer;
  /** Called every `every` iterations with progress, for long runs. */
  progress?: (done: number, stats: FuzzStats) => void;
  every?: number;
}

export interface FuzzStats {
  count: number;
  accepted: number;
  rejected: number;
  /** Rejections by error code. */
  codes: Record<string, number>;
  elapsedMs: number;
  slowestMs: number;
  slowestIteration: number;
}

/** The message that stops a run: seed, iteration and input, all it takes to reproduce it. */
function unexpected(err: unknown, seed: number, i: number, input: Buffer): Error {
  const e = err as Error;
  // Long inputs are cut in the message: the seed and the iteration reproduce them exactly.
  const cut = input.length > 4096 ? ` (first 4096 of ${input.length} bytes)` : '';
  const shown = input.subarray(0, 4096);
  return new Error(
    `fuzz: unexpected ${e?.name ?? typeof err}: ${e?.message ?? String(err)}\n` +
      `  reproduce: seed ${seed}, iteration ${i}\n  input (${input.length} bytes)${cut}: ${shown.toString('hex')}\n  as text: ${JSON.stringify(shown.toString('utf8'))}\n${e?.stack ?? ''}`,
    { cause: err },
  );
}

/**
 * Feeds `count` mutants to `target`. An unexpected error stops the run with a
 * message holding the seed, the iteration and the input in hex, which is all
 * it takes to reproduce it.
 */
export function fuzz(opts: FuzzOptions): FuzzStats {
  const rng = new Rng(opts.seed);
  const mutator = opts.mutator ?? mutate;
  const stats = newStats();
  const started = performance.now();
  for (let i = 0; i < opts.count; i++) {
    const input = mutator(rng.pick(opts.corpus), rng);
    const t0 = performance.now();
    try {
      opts.target(input);
      stats.accepted++;
    } catch (err) {
      if (!opts.expected(err)) throw unexpected(err, opts.seed, i, input);
      countRejection(stats, err);
    }
    record(stats, i, performance.now() - t0, started, opts);
  }
  stats.elapsedMs = performance.now() - started;
  return stats;
}

/**
 * The same loop for targets that talk to a server: mutants are made from the
 * seed in order (so a seed reproduces the inputs), then run `concurrency` at a time.
 */
export async function fuzzAsync(opts: Omit<FuzzOptions, 'target'> & { target: (input: Buffer, i: number) => Promise<void>; concurrency?: number }): Promise<FuzzStats> {
  const rng = new Rng(opts.seed);
  const mutator = opts.mutator ?? mutate;
  const stats = newStats();
  const started = performance.now();
  let next = 0;
  let failure: Error | undefined;
  const worker = async () => {
    while (next < opts.count && !failure) {
      const i = next++;
      const input = mutator(rng.pick(opts.corpus), rng);
      const t0 = performance.now();
      try {
        await opts.target(input, i);
        stats.accepted++;
      } catch (err) {
        if (!opts.expected(err)) {
          failure ??= unexpected(err, opts.seed, i, input);
          return;
        }
        countRejection(stats, err);
      }
      record(stats, i, performance.now() - t0, started, opts);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 1 }, worker));
  if (failure) throw failure;
  stats.elapsedMs = performance.now() - started;
  return stats;
}

function newStats(): FuzzStats {
  return { count: 0, accepted: 0, rejected: 0, codes: {}, elapsedMs: 0, slowestMs: 0, slowestIteration: -1 };
}

function countRejection(stats: FuzzStats, err: unknown): void {
  stats.rejected++;
  const code = (err as { code?: string }).code ?? 'UNKNOWN';
  stats.codes[code] = (stats.codes[code] ?? 0) + 1;
}

function record(stats: FuzzStats, i: number, dt: number, started: number, opts: Pick<FuzzOptions, 'progress' | 'every'>): void {
  if (dt > stats.slowestMs) {
    stats.slowestMs = dt;
    stats.slowestIteration = i;
  }
  stats.count++;
  if (opts.progress && opts.every && stats.count % opts.every === 0) {
    stats.elapsedMs = performance.now() - started;
    opts.progress(stats.count, stats);
  }
}

/** One line for a test diagnostic or the long run's report. */
export function fuzzSummary(s: FuzzStats): string {
  const codes = Object.entries(s.codes)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 8)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return (
    `${s.count} inputs in ${(s.elapsedMs / 1000).toFixed(1)} s (${Math.round((s.count * 1000) / Math.max(1, s.elapsedMs))}/s); ` +
    `${s.accepted} accepted, ${s.rejected} rejected${codes ? ` (${codes})` : ''}; ` +
    `slowest ${s.slowestMs.toFixed(2)} ms at iteration ${s.slowestIteration}`
  );
}

/**
 * How long a whole CI-size fuzz run may take before it counts as a hang. Not
 * a speed check (the machine may be busy; `npm run fuzz` prints the slowest
 * input): a parser stuck in a loop fails the test through this timeout.
 */
export const HANG_TIMEOUT_MS = 180_000;
