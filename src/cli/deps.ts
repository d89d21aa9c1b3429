import { homedir, userInfo } from 'node:os';
import { resolve } from 'node:path';
import { isSea } from 'node:sea';
import { makeColors, type Colors } from './color.js';

/** Where a command writes: stdout for data only, stderr for people. */
export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  /** Whether stderr is a terminal (spinners and colour only then). */
  stderrIsTTY: boolean;
  /** Whether stdout is a terminal (colour in data output only then). */
  stdoutIsTTY: boolean;
}

/**
 * Everything a command takes from the outside world, so tests can pin it.
 * Commands never read process.env, the clock or the platform directly.
 */
export interface Deps {
  io: Io;
  env: Record<string, string | undefined>;
  clock: () => Date;
  platform: NodeJS.Platform;
  homedir: string;
  /**
   * The home directory in the user database (passwd), which OpenSSH uses for
   * `~` and ~/.ssh/config whatever $HOME says; undefined when unknown (Windows,
   * no passwd entry).
   */
  accountHome?: string;
  cwd: string;
  /** chalk for stdout and stderr at the level NO_COLOR, FORCE_COLOR and the terminals allow (color.ts). */
  colors: Colors;
  /** True when --debug was given: stack traces and protocol details to stderr. */
  debug: boolean;
  /**
   * How to run this program again, absolute paths: [executable] for a
   * single-executable build, else [node, script]. The ssh_config block's
   * ProxyCommand runs it.
   */
  selfCommand: string[];
  /** Resolves with the signal name when the process is asked to stop (SIGINT, SIGTERM). */
  waitForShutdown: () => Promise<string>;
  /** Waits `ms` (tsh play's replay timing); default a timer. Tests pass a fake clock's. */
  sleep?: (ms: number) => Promise<void>;
}

/** The real world, for the programs' entry points. */
export function realDeps(): Deps {
  return {
    io: {
      stdout: process.stdout,
      stderr: process.stderr,
      stdin: process.stdin,
      stderrIsTTY: Boolean(process.stderr.isTTY),
      stdoutIsTTY: Boolean(process.stdout.isTTY),
    },
    env: process.env,
    colors: makeColors(process.env, { stdout: Boolean(process.stdout.isTTY), stderr: Boolean(process.stderr.isTTY) }),
    clock: () => new Date(),
    platform: process.platform,
    homedir: homedir(),
    ...accountHome(),
    cwd: process.cwd(),
    debug: false,
    selfCommand: isSea() || !process.argv[1] ? [process.execPath] : [process.execPath, resolve(process.argv[1])],
    waitForShutdown: () =>
      new Promise((done) => {
        for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => done(sig));
      }),
  };
}

/** The passwd entry's home directory (os.userInfo reads it, not $HOME); none on Windows or without an entry. */
function accountHome(): { accountHome?: string } {
  if (process.platform === 'win32') return {};
  try {
    return { accountHome: userInfo().homedir };
  } catch {
    return {};
  }
}
