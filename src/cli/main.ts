import { Command, CommanderError } from 'commander';
import { UsageError } from '../errors.js';
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
    outputError: (s, write) => write(s),
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
    deps.io.stderr.write(formatError(err, deps.debug));
    return exitCodeFor(err);
  }
}

/** The programs' entry point: the only place that calls process.exit. */
export async function runMain(build: ProgramBuilder, argv: string[]): Promise<void> {
  const code = await execute(build, argv, realDeps());
  // Let stdout drain before exiting so piped output is never cut short.
  process.stdout.write('', () => process.exit(code));
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)]);
}

/** Adds the options every program accepts and the help footer with examples. */
export function baseProgram(name: string, description: string, examples: string[]): Command {
  return new Command(name)
    .description(description)
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
