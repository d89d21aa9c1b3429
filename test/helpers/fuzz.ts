/**
 * A small, reproducible fuzzing harness: a seeded PRNG, a structure-aware
 * mutator for SSH wire data, and a loop that feeds mutants to a parser and
 * fails on any error that is not one of the expected kinds. Used by
 * test/sshcert/fuzz.test.ts (short run) and bench/fuzz.ts (long run).
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

export interface FuzzOptions {
  /** Valid inputs to start from. */
  corpus: readonly Buffer[];
  count: number;
  seed: number;
  /** Parses (and checks) one input; may throw only errors `expected` accepts. */
  target: (input: Buffer) => void;
  /** True for the errors the target may legitimately throw. */
  expected: (err: unknown) => boolean;
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

/**
 * Feeds `count` mutants to `target`. An unexpected error stops the run with a
 * message holding the seed, the iteration and the input in hex, which is all
 * it takes to reproduce it.
 */
export function fuzz(opts: FuzzOptions): FuzzStats {
  const rng = new Rng(opts.seed);
  const stats: FuzzStats = { count: 0, accepted: 0, rejected: 0, codes: {}, elapsedMs: 0, slowestMs: 0, slowestIteration: -1 };
  const started = performance.now();
  for (let i = 0; i < opts.count; i++) {
    const input = mutate(rng.pick(opts.corpus), rng);
    const t0 = performance.now();
    try {
      opts.target(input);
      stats.accepted++;
    } catch (err) {
      if (!opts.expected(err)) {
        const e = err as Error;
        throw new Error(
          `fuzz: unexpected ${e?.name ?? typeof err}: ${e?.message ?? String(err)}\n` +
            `  reproduce: seed ${opts.seed}, iteration ${i}\n  input (${input.length} bytes): ${input.toString('hex')}\n${e?.stack ?? ''}`,
          { cause: err },
        );
      }
      stats.rejected++;
      const code = (err as { code?: string }).code ?? 'UNKNOWN';
      stats.codes[code] = (stats.codes[code] ?? 0) + 1;
    }
    const dt = performance.now() - t0;
    if (dt > stats.slowestMs) {
      stats.slowestMs = dt;
      stats.slowestIteration = i;
    }
    stats.count++;
    if (opts.progress && opts.every && (i + 1) % opts.every === 0) {
      stats.elapsedMs = performance.now() - started;
      opts.progress(i + 1, stats);
    }
  }
  stats.elapsedMs = performance.now() - started;
  return stats;
}
