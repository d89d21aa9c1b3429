import { SAMPLE_CONFIG } from '../config/sample.js';
import { VERSION } from '../version.js';
import { baseProgram, runMain, type ProgramBuilder } from './main.js';

/** Builds `jumpgate`: the server (auth service and proxy service in one process). */
export const buildJumpgate: ProgramBuilder = (deps) => {
  const program = baseProgram('jumpgate', 'Jumpgate server: auth service and proxy service in one process', [
    'jumpgate configure > /etc/jumpgate.yaml',
    'jumpgate start --config /etc/jumpgate.yaml',
    'jumpgate node start --token=TOKEN --proxy=proxy.example.com:3080 --name=web1 --addr=10.0.0.5:22 --data-dir=/var/lib/jumpgate-node',
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

  const node = program.command('node').description('the node agent that runs beside an OpenSSH sshd');
  const collect = (v: string, prev: string[]) => [...prev, v];
  node
    .command('start')
    .description('join the cluster with a token, then keep sshd\'s host certificate, user CA keys and revocation list current and heartbeat')
    .option('--token <token>', 'join token from `tctl tokens add --type=node` (or $JUMPGATE_NODE_TOKEN); not needed once joined')
    .option('--token-file <file>', 'read the join token from a file (keeps it out of the process list)')
    .option('--proxy <host:port>', "the proxy's HTTPS address: host:port or https://host:port (default port 443), a name in its certificate")
    .option('--name <name>', 'the node name users type')
    .option('--addr <host:port>', "this node's sshd as the proxy dials it (port default 22)")
    .option('-c, --config <file>', 'a YAML file with the same keys (token, token_file, proxy, name, addr, data_dir, labels, label_cmd, reload, sshd_pid_file, ca_file, insecure); flags win')
    .option('--data-dir <dir>', 'where the host key, certificate, CA keys, KRL and credential live (default /var/lib/jumpgate-node)')
    .option('--labels <labels>', 'labels, e.g. env=prod,rack=r12')
    .option('--label-cmd <name=command>', "a label whose value is a command's output, refreshed every minute, e.g. 'kernel=uname -r' (repeatable)", collect, [])
    .option('--reload <command>', 'run after the files change (no shell; split on spaces) instead of SIGHUP to sshd')
    .option('--sshd-pid-file <file>', "sshd's PidFile: SIGHUP goes to that pid (default /run/sshd.pid)")
    .option('--ca-file <file>', "PEM CA certificate(s) the proxy's HTTPS certificate must chain to, instead of the system's (a private CA, or the proxy's self-signed certificate)")
    .option('--insecure', 'accept any TLS certificate from the proxy (a self-signed one); never in production')
    .action(async (o: import('./commands/jumpgate/node-start.js').NodeStartFlags) => {
      const { run } = await import('./commands/jumpgate/node-start.js');
      await run(o, deps);
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
