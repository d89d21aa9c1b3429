/**
 * Colour for people, decided once from the injected environment and
 * terminals (commands never read process.env): chalk instances with an
 * explicit level, so chalk's own detection (which reads process.env and
 * process.argv at import) never decides anything.
 */
import { Chalk, type ChalkInstance } from 'chalk';

/** chalk's levels: 0 none, 1 16 colours, 2 256 colours, 3 truecolor. */
export type ColorLevel = 0 | 1 | 2 | 3;

/** One chalk per stream: stdout can be piped while stderr is a terminal. */
export interface Colors {
  out: ChalkInstance;
  err: ChalkInstance;
}

/**
 * The colour level for one stream. Follows Node's own rules
 * (https://nodejs.org/api/cli.html#force_color1-2-3): FORCE_COLOR wins
 * (`''`/`1`/`true` 16 colours, `2` 256, `3` truecolor, `0`/`false` none);
 * then NO_COLOR set to anything non-empty means none (https://no-color.org);
 * then no colour unless the stream is a terminal other than TERM=dumb;
 * COLORTERM=truecolor|24bit gives 3, a TERM with 256 gives 2, else 1.
 */
export function colorLevel(env: Record<string, string | undefined>, isTTY: boolean): ColorLevel {
  const force = env['FORCE_COLOR'];
  if (force !== undefined) {
    const f = force.trim().toLowerCase();
    if (f === '0' || f === 'false') return 0;
    if (f === '2') return 2;
    if (f === '3') return 3;
    return 1;
  }
  if (env['NO_COLOR']) return 0;
  if (!isTTY || env['TERM'] === 'dumb') return 0;
  if (/^(truecolor|24bit)$/i.test(env['COLORTERM'] ?? '')) return 3;
  if (/256/.test(env['TERM'] ?? '')) return 2;
  return 1;
}

/** The Colors for a program run with `env`, given which of its streams are terminals. */
export function makeColors(env: Record<string, string | undefined>, tty: { stdout: boolean; stderr: boolean }): Colors {
  return { out: new Chalk({ level: colorLevel(env, tty.stdout) }), err: new Chalk({ level: colorLevel(env, tty.stderr) }) };
}
