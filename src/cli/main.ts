import { Command, CommanderError } from 'commander';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import { EXIT, ExitStatus, exitCodeFor, formatError } from './errors.js';
import { realDeps, type Deps } from './deps.js';

/** Builds one program's commander tree; actions run with the given deps. */
export type ProgramBuilder = (deps: Deps) => Command;

/**
 * Runs a program to completion and returns its exit code. Never exits the
 * process, so tests can call it with pinned deps and argv.
 */
export async function execute(build: ProgramBuilder, argv: string[], deps: Deps): Promise<number> {
  deps.debug = argv.includes('--debug');
  const program = build(deps);
  program.exitOverride();
  program.configureOutput({
    writeOut: (s) => deps.io.stdout.write(s),
    writeErr: (s) => deps.io.stderr.write(s),
    outputError: (s, write) => write(s.replace(/^error:/, (m) => deps.colors.err.red(m))),
  });
  for (const sub of allCommands(program)) {
    sub.exitOverride();
    sub.configureOutput(program.configureOutput());
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return EXIT.ok;
      // commander already printed its message to stderr
      return EXIT.usage;
    }
    if (err instanceof ExitStatus) return err.status;
    deps.io.stderr.write(formatError(err, deps.debug, deps.colors.err));
    return exitCodeFor(err);
  }
}

/**
 * The exit status when the reader of stdout or stderr went away (`tsh ls |
 * head -1`): 141 = 128 + SIGPIPE, what the shell reports for git and gh,
 * which the kernel kills with SIGPIPE in the same situation. Node ignores
 * SIGPIPE, so the status is set by hand; `set -o pipefail` scripts can still
 * tell that the output was cut short, and nothing is printed.
 */
export const EXIT_CLOSED_PIPE = 141;

/**
 * Ends the process quietly with EXIT_CLOSED_PIPE when a write to `stream`
 * fails with EPIPE (the reader closed the pipe), instead of Node's unhandled
 * 'error' event and its stack trace. Other stream errors are not ours to hide.
 */
export function exitQuietlyOnClosedPipe(stream: NodeJS.WritableStream, exit: (code: number) => void): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') return exit(EXIT_CLOSED_PIPE);
    throw err;
  });
}

/** The programs' entry point: the only place that calls process.exit. */
export async function runMain(build: ProgramBuilder, argv: string[]): Promise<void> {
  for (const s of [process.stdout, process.stderr]) exitQuietlyOnClosedPipe(s, (code) => process.exit(code));
  const code = await execute(build, argv, realDeps());
  // Let stdout drain before exiting so piped output is never cut short.
  process.stdout.write('', () => process.exit(code));
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)]);
}

/**
 * commander's Command with one fix: an unknown `--opt=value` is matched
 * against the known options by its name only, so `tsh status --formt=json`
 * gets "(Did you mean --format?)" (commander compares the whole
 * `formt=json`, and the value pushes it past its edit distance of 3).
 * Subcommands are made of the same class, so it holds for every command.
 */
export class JumpgateCommand extends Command {
  override createCommand(name?: string): Command {
    return new JumpgateCommand(name);
  }

  private unknownSeen: string[] = [];

  override parseOptions(argv: string[]): { operands: string[]; unknown: string[] } {
    const parsed = super.parseOptions(argv);
    this.unknownSeen = parsed.unknown;
    return parsed;
  }

  /**
   * commander checks mandatory options before unknown ones, so
   * `tctl auth export --typ=user` said "required option '--type' not
   * specified" instead of naming the typo: report the unknown option first.
   */
  _checkForMissingMandatoryOptions(): void {
    const flag = this.unknownSeen.find((a) => a.startsWith('-') && a !== '-');
    const self = this as unknown as { _allowUnknownOption: boolean };
    if (flag !== undefined && !self._allowUnknownOption) this.unknownOption(flag);
    const base = Command.prototype as unknown as { _checkForMissingMandatoryOptions(this: Command): void };
    base._checkForMissingMandatoryOptions.call(this);
  }

  // unknownOption is commander's internal (untyped) hook for an unknown flag.
  unknownOption(flag: string): never {
    const eq = flag.startsWith('--') ? flag.indexOf('=') : -1;
    const base = Command.prototype as unknown as { unknownOption(this: Command, flag: string): never };
    return base.unknownOption.call(this, eq > 0 ? flag.slice(0, eq) : flag);
  }
}

/** Adds the options every program accepts (--debug, --version) and the help footer with examples. */
export function baseProgram(name: string, description: string, examples: string[]): Command {
  return new JumpgateCommand(name)
    .description(description)
    .version(`${name} ${VERSION}`, '--version', 'print the version (the same line as the version command)')
    .option('--debug', 'print stack traces and protocol details to stderr')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', `\nExamples:\n${examples.map((e) => `  $ ${e}`).join('\n')}\n`);
}

/** Parses a required comma-separated list flag, refusing empty items. */
export function parseList(flag: string, value: string): string[] {
  const items = value.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) {
    throw new UsageError('USAGE_BAD_LIST', `${flag}: "${value}" has an empty item; give a comma-separated list like a,b`);
  }
  return items;
}
