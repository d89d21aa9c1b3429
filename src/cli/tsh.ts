import { VERSION } from '../version.js';
import { baseProgram, runMain, type ProgramBuilder } from './main.js';

/** Builds `tsh`: the user's daily tool. */
export const buildTsh: ProgramBuilder = (deps) => {
  const program = baseProgram('tsh', 'Jumpgate client: log in once a day through single sign-on, then use plain ssh', [
    'tsh version',
  ]);
  program
    .command('version')
    .description('print the version')
    .action(() => {
      deps.io.stdout.write(`tsh ${VERSION}\n`);
    });
  return program;
};

/** Entry point for bin/tsh. */
export function main(argv: string[]): Promise<void> {
  return runMain(buildTsh, argv);
}
