import { resolve } from 'node:path';
import { Option } from 'commander';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import { baseProgram, parseList, runMain, type ProgramBuilder } from './main.js';
import { flagDuration, parseLabels } from './flags.js';
import { openServerContext, type ServerContext } from './server-context.js';
import type { Deps } from './deps.js';
import * as authExport from './commands/tctl/auth-export.js';
import * as authSign from './commands/tctl/auth-sign.js';
import * as authRotate from './commands/tctl/auth-rotate.js';
import * as nodesLs from './commands/tctl/nodes-ls.js';
import * as lockCmd from './commands/tctl/lock.js';
import * as tokens from './commands/tctl/tokens.js';
import * as auditLs from './commands/tctl/audit-ls.js';
import * as storageMigrate from './commands/tctl/storage-migrate.js';
import * as storageRekey from './commands/tctl/storage-rekey.js';
import { loadServerConfig } from '../config/index.js';
import { openStateBackend } from '../server/storage/index.js';
import { hostname } from 'node:os';

/** Builds `tctl`: the admin's tool on the server host. */
export const buildTctl: ProgramBuilder = (deps) => {
  const program = baseProgram('tctl', 'Jumpgate admin tool: certificate authorities, host certificates, nodes', [
    'tctl --config /etc/jumpgate.yaml auth export --type=user > /etc/ssh/jumpgate_user_ca.pub',
    'tctl auth sign --host=node1,node1.example.test --format=openssh --out=/etc/ssh/jumpgate_host_key',
    'tctl auth sign --user=alice --roles=user --format=openssh --out=./alice --ttl=1h',
    'tctl auth rotate --type=user --grace-period=30h',
    'tctl tokens add --type=node --ttl=1h --labels=env=prod',
    'tctl nodes ls --format=json',
    'tctl lock add --user=alice --ttl=24h --message="laptop stolen, call IT"',
    'tctl auth export --type=krl --out=/etc/ssh/revoked.krl',
    'tctl audit ls --since=1h --type=session.start',
    'tctl recordings export 0b7c2f1e-5d3a-4c1b-9e8f-7a6b5c4d3e2f --out=session.cast',
    'tctl storage migrate --to=/etc/jumpgate-postgres.yaml',
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
    .description('print the CA public keys (user CA for TrustedUserCAKeys, host CA as @cert-authority lines) or the key revocation list (krl, for RevokedKeys)')
    .addOption(new Option('--type <type>', 'which CA, or krl: the revocation list of the certificates locks cover').choices(['user', 'host', 'krl']).makeOptionMandatory())
    .option('--hosts <patterns>', 'known_hosts patterns for the host CA line (comma-separated; default *)')
    .option('--out <file>', 'with --type=krl: write the KRL to FILE instead of stdout')
    .action(async function (this: typeof auth, o: { type: 'user' | 'host' | 'krl'; hosts?: string; out?: string }) {
      if (o.hosts !== undefined && o.type !== 'host') throw new UsageError('USAGE_HOSTS_NEEDS_HOST', '--hosts goes with --type=host');
      if (o.out !== undefined && o.type !== 'krl') throw new UsageError('USAGE_OUT_NEEDS_KRL', '--out goes with --type=krl');
      await withContext(this, (ctx) =>
        authExport.run({ type: o.type, hosts: o.hosts === undefined ? undefined : parseList('--hosts', o.hosts), ...(o.out !== undefined ? { out: resolvePath(deps, o.out) } : {}) }, ctx, deps),
      );
    });

  auth
    .command('sign')
    .description('make a key pair and sign it: a host certificate for a node, or a user certificate for automation')
    .option('--host <names>', 'host certificate for these names (comma-separated): what users type and the node addresses')
    .option('--user <name>', 'user certificate for this user name')
    .option('--roles <roles>', 'with --user: the roles that decide the logins (comma-separated)')
    .addOption(new Option('--format <format>', 'output format').choices(['openssh']).default('openssh'))
    .requiredOption('--out <path>', 'write the private key to PATH, the certificate to PATH-cert.pub (with --user also the X.509 client certificate to PATH-x509.pem)')
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

  const lock = program.command('lock').description('locks: cut a user, a login, a node or a role off now, on every proxy (and on nodes through the KRL)');
  lock
    .command('add')
    .description('add a lock: matching logins and connections are refused and running sessions ended within 5 s; prints the lock id')
    .option('--user <name>', 'lock this user (every certificate whose key id it is)')
    .option('--login <login>', 'lock this Unix login (the user keeps other logins)')
    .option('--node <name>', 'lock this node: nobody reaches it through the proxy')
    .option('--role <role>', 'lock everyone holding this role')
    .option('--ttl <duration>', 'expire the lock after DURATION, e.g. 1h (default: until `tctl lock rm`)')
    .option('--message <text>', 'what locked-out users are told')
    .action(async function (this: typeof lock, o: { user?: string; login?: string; node?: string; role?: string; ttl?: string; message?: string }) {
      const opts: lockCmd.LockAddOptions = { ...o, ...(o.ttl !== undefined ? { ttlSeconds: flagDuration('--ttl', o.ttl) } : {}) };
      lockCmd.lockTarget(opts); // usage errors before the store is opened
      await withContext(this, (ctx) => lockCmd.add(opts, ctx, deps));
    });
  lock
    .command('ls')
    .description('list the locks in force')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async function (this: typeof lock, o: { format: 'text' | 'json' }) {
      await withContext(this, (ctx) => lockCmd.ls({ format: o.format }, ctx, deps));
    });
  lock
    .command('rm')
    .description('remove a lock (its id from `tctl lock ls`)')
    .argument('<id>', 'the lock id')
    .action(async function (this: typeof lock, id: string) {
      await withContext(this, (ctx) => lockCmd.rm(id, ctx, deps));
    });

  const recordings = program.command('recordings').description('session recordings (auth.session_recording: proxy)');
  recordings
    .command('ls')
    .description('list every recording: session id, user, login, node, start, duration, size')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async function (this: typeof recordings, o: { format: 'text' | 'json' }) {
      const cmd = await import('./commands/tctl/recordings.js');
      await withContext(this, (ctx) => cmd.runLs({ format: o.format }, ctx, deps));
    });
  recordings
    .command('export')
    .description('write a recording (asciicast v2, for asciinema play/cat) to a file or stdout; audited')
    .argument('<session-id>', 'from `tctl recordings ls`')
    .option('--out <file>', 'write here (0600) instead of stdout')
    .action(async function (this: typeof recordings, sessionId: string, o: { out?: string }) {
      const cmd = await import('./commands/tctl/recordings.js');
      await withContext(this, (ctx) => cmd.runExport({ sessionId, ...(o.out !== undefined ? { out: resolve(deps.cwd, o.out) } : {}) }, ctx, deps));
    });

  nodes
    .command('rm')
    .description('remove a joined node: its credential is refused from now on and it leaves the inventory')
    .argument('<name>', 'the node name')
    .action(async function (this: typeof nodes, name: string) {
      await withContext(this, (ctx) => nodesLs.rm(name, ctx, deps));
    });

  const tokenCmd = program.command('tokens').description('join tokens for `jumpgate node start`');
  tokenCmd
    .command('add')
    .description('make a join token and print the `jumpgate node start` line that uses it')
    .addOption(new Option('--type <type>', 'what joins with it').choices(['node']).makeOptionMandatory())
    .option('--ttl <duration>', 'how long the token may be used (default 30m, at most 7d)')
    .option('--labels <labels>', 'labels every node joining with it gets, e.g. env=prod,rack=r12')
    .option('--reusable', 'usable by many nodes until it expires (default: single use)', false)
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async function (this: typeof tokenCmd, o: { type: 'node'; ttl?: string; labels?: string; reusable: boolean; format: 'text' | 'json' }) {
      const opts: tokens.TokensAddOptions = {
        type: o.type,
        labels: o.labels === undefined ? {} : parseLabels('--labels', o.labels),
        reusable: o.reusable,
        format: o.format,
        ...(o.ttl !== undefined ? { ttlSeconds: flagDuration('--ttl', o.ttl) } : {}),
      };
      await withContext(this, (ctx) => tokens.add(opts, ctx, deps));
    });
  tokenCmd
    .command('ls')
    .description('list the join tokens by id (the tokens themselves are not stored)')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async function (this: typeof tokenCmd, o: { format: 'text' | 'json' }) {
      await withContext(this, (ctx) => tokens.ls({ format: o.format }, ctx, deps));
    });
  tokenCmd
    .command('rm')
    .description('remove a join token')
    .argument('<token>', 'the token, or its id from `tctl tokens ls`')
    .action(async function (this: typeof tokenCmd, token: string) {
      await withContext(this, (ctx) => tokens.rm(token, ctx, deps));
    });

  const audit = program.command('audit').description('the audit log');
  audit
    .command('ls')
    .description('list audit events, oldest first, from whichever store holds them (storage.type)')
    .option('--since <duration>', 'only events of the last DURATION, e.g. 1h or 7d')
    .option('--type <type>', `only this event type (${auditLs.AUDIT_EVENT_TYPES.join(', ')})`)
    .option('--user <name>', 'only events of this user')
    .option('--limit <n>', `at most the newest N events (default ${auditLs.DEFAULT_AUDIT_LIMIT})`)
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async function (this: typeof audit, o: { since?: string; type?: string; user?: string; limit?: string; format: 'text' | 'json' }) {
      const limit = o.limit === undefined ? auditLs.DEFAULT_AUDIT_LIMIT : /^\d{1,7}$/.test(o.limit) ? Number(o.limit) : NaN;
      const opts = auditLs.checkAuditLsOptions({
        ...(o.since !== undefined ? { sinceSeconds: flagDuration('--since', o.since) } : {}),
        ...(o.type !== undefined ? { type: o.type } : {}),
        ...(o.user !== undefined ? { user: o.user } : {}),
        limit,
        format: o.format,
      });
      await withContext(this, (ctx) => auditLs.run(opts, ctx, deps));
    });

  const storage = program.command('storage').description('the state store (storage: in the config)');
  storage
    .command('migrate')
    .description("copy this cluster's state (CAs with their trust windows, items, audit log) into the store another config names")
    .requiredOption('--to <file>', 'the config file naming the target store (e.g. one with storage.type postgres)')
    .action(async function (this: typeof storage, o: { to: string }) {
      const targetConfig = loadServerConfig(resolvePath(deps, o.to));
      await withContext(this, async (ctx) => {
        if (ctx.config.storage.type === targetConfig.storage.type && (targetConfig.storage.type === 'dir' ? targetConfig.dataDir === ctx.config.dataDir : JSON.stringify(targetConfig.storage) === JSON.stringify(ctx.config.storage))) {
          throw new UsageError('USAGE_MIGRATE_SAME_STORE', `--to ${o.to} names the same store as --config (${ctx.store.location}); name the new store's config`);
        }
        const warn = (m: string) => deps.io.stderr.write(`${m}\n`);
        const target = await openStateBackend(targetConfig, { serverId: `tctl@${hostname()}`, clock: deps.clock, warn });
        try {
          const r = await storageMigrate.migrateStore(ctx.store, target, (line) => deps.io.stderr.write(`${line}\n`));
          storageMigrate.printMigrateResult(r, target, deps);
        } finally {
          await target.close();
        }
      });
    });
  storage
    .command('rekey')
    .description('re-encrypt the CA keys in the database with the current storage.encryption_key_file (postgres)')
    .action(async function (this: typeof storage) {
      await withContext(this, (ctx) => storageRekey.run(ctx, deps));
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
