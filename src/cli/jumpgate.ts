import { SAMPLE_CONFIG } from '../config/sample.js';
import { VERSION } from '../version.js';
import { baseProgram, runMain, type ProgramBuilder } from './main.js';

/** Builds `jumpgate`: the server (auth service and proxy service in one process). */
export const buildJumpgate: ProgramBuilder = (deps) => {
  const program = baseProgram('jumpgate', 'Jumpgate server: auth service and proxy service in one process', [
    'jumpgate configure > /etc/jumpgate.yaml',
    'jumpgate start --config /etc/jumpgate.yaml',
    'jumpgate version',
  ]);
  program
    .command('start')
    .description('run the auth service and the proxy service (HTTPS login API, SSH proxy) until stopped')
    .option('-c, --config <file>', 'server configuration file (default: $JUMPGATE_CONFIG or /etc/jumpgate.yaml)')
    .action(async (o: { config?: string }) => {
      const { run } = await import('./commands/jumpgate/start.js');
      await run({ ...(o.config !== undefined ? { config: o.config } : {}) }, deps);
    });

  program
    .command('configure')
    .description('print an annotated sample configuration to start from')
    .action(() => {
      deps.io.stdout.write(SAMPLE_CONFIG);
    });
  program
    .command('version')
    .description('print the version')
    .action(() => {
      deps.io.stdout.write(`jumpgate ${VERSION}\n`);
    });
  return program;
};

/** Entry point for bin/jumpgate. */
export function main(argv: string[]): Promise<void> {
  return runMain(buildJumpgate, argv);
}
