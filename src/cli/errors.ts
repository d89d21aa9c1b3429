import type { ChalkInstance } from 'chalk';
import { AuthError, UsageError, UserError } from '../errors.js';

/** Exit codes fixed by the contract. */
export const EXIT = { ok: 0, error: 1, usage: 2, auth: 4 } as const;

/**
 * Not a failure to report: a command's own exit status, e.g. `tsh ssh`
 * passing on the remote command's. execute() returns it and prints nothing.
 */
export class ExitStatus extends Error {
  constructor(readonly status: number) {
    super(`exit status ${status}`);
    this.name = 'ExitStatus';
  }
}

/** Maps an error kind to the contract's exit code, in this one place. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage;
  if (err instanceof AuthError) return EXIT.auth;
  return EXIT.error;
}

/**
 * Renders an error for stderr: `error: message`, the hint on its own line, and
 * with --debug the code, the stack and the chain of causes. `color` (the
 * stderr chalk, level 0 when piped or NO_COLOR) paints `error:` red and `hint:` yellow.
 */
export function formatError(err: unknown, debug: boolean, color?: ChalkInstance): string {
  const lines: string[] = [];
  const error = color ? color.red('error:') : 'error:';
  if (err instanceof UserError) {
    lines.push(`${error} ${err.message}`);
    if (err.hint) lines.push(`${color ? color.yellow('hint:') : 'hint:'} ${err.hint}`);
    if (debug) lines.push(`code: ${err.code}`);
  } else {
    lines.push(`${error} ${err instanceof Error ? err.message : String(err)}`);
    if (!debug) lines.push('hint: this looks like a bug; run again with --debug and report the output');
  }
  if (debug) {
    let cur: unknown = err;
    for (let depth = 0; cur instanceof Error && depth < 8; depth++) {
      lines.push(depth === 0 ? (cur.stack ?? String(cur)) : `caused by: ${cur.stack ?? String(cur)}`);
      cur = cur.cause;
    }
  }
  return lines.join('\n') + '\n';
}
