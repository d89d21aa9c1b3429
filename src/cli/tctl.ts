import { resolve } from 'node:path';
import { Option } from 'commander';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import { baseProgram, parseList, runMain, type ProgramBuilder } from './main.js';
import { flagDuration } from './flags.js';
import { openServerContext, type ServerContext } from './server-context.js';
import type { Deps } from './deps.js';
import * as authExport from './commands/tctl/auth-export.js';
import * as authSign from './commands/tctl/auth-sign.js';
import * as authRotate from './commands/tctl/auth-rotate.js';
import * as nodesLs from './commands/tctl/nodes-ls.js';

/** Builds `tctl`: the admin's tool on the server host. */
export const buildTctl: ProgramBuilder = (deps) => {
  const program = baseProgram('tctl', 'Jumpgate admin tool: certificate authorities, host certificates, nodes', [
    'tctl --config /etc/jumpgate.yaml auth export --type=user > /etc/ssh/jumpgate_user_ca.pub',
    'tctl auth sign --host=node1,node1.example.test --format=openssh --out=/etc/ssh/jumpgate_host_key',
    'tctl auth sign --user=alice --roles=user --format=openssh --out=./alice --ttl=1h',
    'tctl auth rotate --type=user --grace-period=30h',
    'tctl nodes ls --format=json',
  ]).addOption(new Option('-c, --config <file>', 'server configuration file (default: $JUMPGATE_CONFIG or /etc/jumpgate.yaml)'));

  const withContext = async (cmd: { optsWithGlobals(): Record<string, unknown> }, fn: (ctx: ServerContext) => void | Promise<void>) => {
    const ctx = await openServerContext(cmd.optsWithGlobals()['config'] as string | undefined, deps);
    try {
      await fn(ctx);
    } finally {
      await ctx.close();
    }
  };

  const auth = program.command('auth').description('certificate authorities and certificates');

  auth
    .command('export')
    .description('print the CA public keys: user CA for TrustedUserCAKeys, host CA as @cert-authority lines')
    .addOption(new Option('--type <type>', 'which CA').choices(['user', 'host']).makeOptionMandatory())
    .option('--hosts <patterns>', 'known_hosts patterns for the host CA line (comma-separated; default *)')
    .action(async function (this: typeof auth, o: { type: 'user' | 'host'; hosts?: string }) {
      if (o.hosts !== undefined && o.type !== 'host') throw new UsageError('USAGE_HOSTS_NEEDS_HOST', '--hosts goes with --type=host');
      await withContext(this, (ctx) => authExport.run({ type: o.type, hosts: o.hosts === undefined ? undefined : parseList('--hosts', o.hosts) }, ctx, deps));
    });

  auth
    .command('sign')
    .description('make a key pair and sign it: a host certificate for a node, or a user certificate for automation')
    .option('--host <names>', 'host certificate for these names (comma-separated): what users type and the node addresses')
    .option('--user <name>', 'user certificate for this user name')
    .option('--roles <roles>', 'with --user: the roles that decide the logins (comma-separated)')
    .addOption(new Option('--format <format>', 'output format').choices(['openssh']).default('openssh'))
    .requiredOption('--out <path>', 'write the private key to PATH and the certificate to PATH-cert.pub')
    .option('--ttl <duration>', 'validity, e.g. 24h or 90m (user: capped by the roles; host default 8760h)')
    .action(async function (this: typeof auth, o: { host?: string; user?: string; roles?: string; out: string; ttl?: string }) {
      const ttlSeconds = o.ttl === undefined ? undefined : flagDuration('--ttl', o.ttl);
      if ((o.host === undefined) === (o.user === undefined)) {
        throw new UsageError('USAGE_SIGN_KIND', 'give exactly one of --host=NAMES or --user=NAME');
      }
      const out = resolvePath(deps, o.out);
      let opts: authSign.AuthSignOptions;
      if (o.host !== undefined) {
        if (o.roles !== undefined) throw new UsageError('USAGE_ROLES_NEEDS_USER', '--roles goes with --user, not --host');
        opts = { kind: 'host', names: parseList('--host', o.host), out, ttlSeconds };
      } else {
        if (o.roles === undefined) throw new UsageError('USAGE_USER_NEEDS_ROLES', '--user needs --roles=R1,R2 (the roles decide the logins)');
        opts = { kind: 'user', user: o.user!, roles: parseList('--roles', o.roles), out, ttlSeconds };
      }
      await withContext(this, (ctx) => authSign.run(opts, ctx, deps));
    });

  auth
    .command('rotate')
    .description('make a new CA signing key; the old one stays trusted during the grace period')
    .addOption(new Option('--type <type>', 'which CA').choices(['user', 'host']).makeOptionMandatory())
    .option('--grace-period <duration>', 'how long the old key stays trusted (0 = not at all)', '30h')
    .action(async function (this: typeof auth, o: { type: 'user' | 'host'; gracePeriod: string }) {
      const graceSeconds = o.gracePeriod === '0' ? 0 : flagDuration('--grace-period', o.gracePeriod);
      await withContext(this, (ctx) => authRotate.run({ type: o.type, graceSeconds }, ctx, deps));
    });

  const nodes = program.command('nodes').description('the node inventory');
  nodes
    .command('ls')
    .description('list the nodes in the inventory')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async function (this: typeof nodes, o: { format: 'text' | 'json' }) {
      await withContext(this, (ctx) => nodesLs.run({ format: o.format }, ctx, deps));
    });

  program
    .command('version')
    .description('print the version')
    .action(() => {
      deps.io.stdout.write(`tctl ${VERSION}\n`);
    });

  return program;
};

function resolvePath(deps: Deps, p: string): string {
  return resolve(deps.cwd, p);
}

/** Entry point for bin/tctl. */
export function main(argv: string[]): Promise<void> {
  return runMain(buildTctl, argv);
}
