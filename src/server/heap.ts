/**
 * V8 heap sizing for the long-running server (`jumpgate start`), set from
 * inside the program so it holds however the server is started (bin/jumpgate,
 * the single executable, a systemd unit, `node dist/jumpgate.cjs`).
 *
 * V8 starts the young generation (where every new object lives until it
 * survives two scavenges) with 1 MiB semi-spaces and doubles them under
 * allocation up to 16 MiB each on 64-bit Node 20: a burst of work (1,000 node
 * joins) leaves the server holding about 32 MiB of young generation for good,
 * more than what 1,000 held heartbeats themselves cost. A server whose
 * requests each allocate a few KiB loses nothing measurable by scavenging
 * more often in a small young generation (BENCHMARKS.md, issue 16).
 *
 * `--max-semi-space-size` is read only when the heap is set up (too late from
 * inside the program); `--semi-space-growth-factor` is read at each growth
 * decision (V8 src/heap/heap.cc), so setting it to 1 from here keeps the
 * semi-spaces at their starting size. test/server/heap.test.ts fails if a
 * Node/V8 upgrade stops honouring it.
 */
import { setFlagsFromString } from 'node:v8';

/** V8 flags an operator may have set (command line or NODE_OPTIONS): then theirs wins and nothing is changed. */
const OPERATOR_FLAGS = /--(max|min)-semi-space-size|--semi-space-growth-factor/;

/**
 * Keeps V8's young generation at its starting size for the rest of the
 * process (see the top of this file). Returns false, changing nothing, when
 * `execArgv` or `nodeOptions` (NODE_OPTIONS) already size it.
 */
export function keepYoungGenerationSmall(execArgv: readonly string[] = process.execArgv, nodeOptions: string | undefined = process.env['NODE_OPTIONS']): boolean {
  if (execArgv.some((a) => OPERATOR_FLAGS.test(a)) || OPERATOR_FLAGS.test(nodeOptions ?? '')) return false;
  setFlagsFromString('--semi-space-growth-factor=1');
  return true;
}
