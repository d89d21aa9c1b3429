import { Option } from 'commander';
import { VERSION } from '../version.js';
import { baseProgram, runMain, type ProgramBuilder } from './main.js';
import { flagDuration } from './flags.js';
import { printable } from '../util/printable.js';
import { UsageError } from '../errors.js';

// Commands are imported when they run, so `tsh version` or `tsh status` never
// load ssh2, openid-client or the keychain addon.

/** Builds `tsh`: the user's daily tool. */
export const buildTsh: ProgramBuilder = (deps) => {
  const program = baseProgram('tsh', 'Jumpgate client: log in once a day through single sign-on, then use plain ssh', [
    'tsh login --proxy=jump.example.org',
    'tsh login --proxy=localhost:3080 --insecure --browser=none',
    'tsh login --headless --proxy=jump.example.org    # from a remote shell: approve on your phone or laptop',
    'tsh status --format=json',
    'ssh alice@node1                    # after tsh login, plain OpenSSH works',
    'tsh ssh node1 uptime',
    'tsh ls env=prod',
    'tsh logout',
  ]);

  program
    .command('login')
    .description('log in through single sign-on in a browser; loads a certificate into ssh-agent and writes ~/.ssh/config')
    .option('--proxy <address>', 'the Jumpgate proxy: host, host:port (3080 if omitted) or https://host[:port] (default: $TSH_PROXY, or the current profile)')
    .option('--user <name>', 'the user name to log in as (a hint for the identity provider; remembered for the next login)')
    .option('--ttl <duration>', 'certificate validity wanted, e.g. 8h (capped by your roles; default: the cluster\'s, usually 24h)')
    .addOption(new Option('--browser <browser>', '"none" to only print the URL').choices(['default', 'none']).default('default'))
    .option('--insecure', 'do not verify the proxy\'s HTTPS certificate (development clusters with a self-signed one; remembered for the next login)')
    .option('--no-insecure', 'verify the proxy\'s HTTPS certificate again (forgets a remembered --insecure)')
    .option('--bind-addr <host:port>', 'a fixed loopback address for the login\'s browser callback, e.g. 127.0.0.1:8765 (for ssh -L or a container on the host network)')
    .option('--headless', 'for a machine with no browser: prints a URL on the proxy and a short code; open it on any device, sign in and approve (tsh opens no port)')
    .addOption(new Option('--keystore <where>', 'where the private key is kept').choices(['auto', 'keychain', 'file']).default('auto'))
    .option('--no-ssh-config', 'do not write the Jumpgate block into ~/.ssh/config')
    .option('--tsh-home <dir>', 'the tsh directory to log in to (default: $TSH_HOME, or ~/.tsh); hints name it when it is not the default')
    .addOption(
      new Option('--add-keys-to-agent <when>', 'load key and certificate into the ssh-agent: auto (when one answers), yes (a failure is an error), no (ssh reads the key file; needs the file keystore); remembered for the next login').choices(['auto', 'yes', 'no']),
    )
    .addHelpText('after', '\nWith no flags, logs in again to the current profile with the --insecure and --user it remembers.\nTSH_CLOCK_LEEWAY (default 5m): how far behind this machine\'s clock may be before a certificate is "not valid yet".\n')
    .action(async (o: { proxy?: string; user?: string; ttl?: string; browser: 'default' | 'none'; insecure?: boolean; bindAddr?: string; headless?: boolean; keystore: 'auto' | 'keychain' | 'file'; sshConfig: boolean; addKeysToAgent?: 'auto' | 'yes' | 'no'; tshHome?: string }) => {
      // The flag wins over the environment, as for `tsh proxy ssh --tsh-home` (the hints print it).
      const d = o.tshHome !== undefined ? { ...deps, env: { ...deps.env, TSH_HOME: o.tshHome } } : deps;
      const [login, ui, sshConfig] = await Promise.all([import('./commands/tsh/login.js'), import('./ui.js'), import('../client/ssh-config.js')]);
      await login.run(
        {
          ...(o.proxy !== undefined ? { proxy: o.proxy } : {}),
          ...(o.user !== undefined ? { user: o.user } : {}),
          ...(o.ttl !== undefined ? { ttlSeconds: flagDuration('--ttl', o.ttl) } : {}),
          browser: o.browser,
          ...(o.insecure !== undefined ? { insecure: o.insecure } : {}),
          ...(o.bindAddr !== undefined ? { bindAddr: o.bindAddr } : {}),
          ...(o.headless ? { headless: true } : {}),
          keystore: o.keystore,
          sshConfig: o.sshConfig,
          ...(o.addKeysToAgent !== undefined ? { addKeysToAgent: o.addKeysToAgent } : {}),
        },
        d,
        {
          openBrowser: (url) => ui.openBrowser(url, ui.browserSystem(d)),
          checkSshConfig: (profile, paths) => void sshConfig.renderSshConfigBlock(sshConfig.sshConfigInput(profile, paths, d.selfCommand)),
          installSshConfig: (profile, paths) => {
            const input = sshConfig.sshConfigInput(profile, paths, d.selfCommand);
            const block = sshConfig.renderSshConfigBlock(input);
            const r = sshConfig.installSshConfigBlock(paths, profile.name, block);
            const lines = r.changed ? [`Updated the Jumpgate block for ${printable(profile.name)} in ${printable(r.path)}; plain ssh to the cluster's nodes now goes through the proxy.`] : [];
            if (r.backup) lines.push(`(the original is saved as ${r.backup})`);
            // The block must be where ssh looks, and nothing read before it may override it.
            const unread = sshConfig.unreadConfigWarning(paths, d.accountHome);
            const overridden = unread ? undefined : sshConfig.overriddenBlockWarning(input, { env: d.env });
            for (const w of [unread, overridden]) if (w) lines.push(w);
            return lines;
          },
        },
      );
    });

  program
    .command('status')
    .description('show the current login: proxy, user, logins, roles, expiry (exit 4 when there is no valid certificate)')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (o: { format: 'text' | 'json' }) => {
      (await import('./commands/tsh/status.js')).run({ format: o.format }, deps);
    });

  program
    .command('logout')
    .description('remove the key, certificate, keychain item and every ssh-agent entry of the current profile')
    .option('--proxy <host[:port]>', 'the profile to log out of (default: the current one)')
    .option('--revoke', "first have the proxy lock this profile's certificate (it stops working on every proxy within 5 s), e.g. after a suspected leak")
    .action(async (o: { proxy?: string; revoke?: boolean }) => {
      await (await import('./commands/tsh/logout.js')).run({ ...(o.proxy !== undefined ? { proxy: o.proxy } : {}), ...(o.revoke ? { revoke: true } : {}) }, deps);
    });

  program
    .command('ssh')
    .description('open a shell or run a command on a node through the proxy (exit status = the remote command\'s)')
    .usage('[-p port] [-l login] [-L spec] [-R spec] [-A] [-t|-T] [user@]host [command...]')
    // ssh(1) parsing: options end at the destination, the rest is the remote command (parseSshArgs).
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      const ssh = await import('./commands/tsh/ssh.js');
      const opts = ssh.parseSshArgs(args);
      if (!opts) return void deps.io.stdout.write(ssh.SSH_USAGE);
      await ssh.run(opts, deps);
    });

  program
    .command('ls')
    .description('list the nodes you may reach')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('--proxy <host[:port]>', 'the cluster\'s proxy (default: $TSH_PROXY, or the current profile)')
    .argument('[label=value...]', 'only nodes with these labels')
    .action(async (labels: string[], o: { format: 'text' | 'json'; proxy?: string }) => {
      await (await import('./commands/tsh/ls.js')).run({ format: o.format, labels, ...(o.proxy !== undefined ? { proxy: o.proxy } : {}) }, deps);
    });

  program
    .command('config')
    .description('print the ~/.ssh/config block that makes plain ssh go through the proxy (for tsh config >> ~/.ssh/config)')
    .option('--proxy <host[:port]>', 'the cluster\'s proxy (default: $TSH_PROXY, or the current profile)')
    .action(async (o: { proxy?: string }) => {
      (await import('./commands/tsh/config.js')).run(o.proxy !== undefined ? { proxy: o.proxy } : {}, deps);
    });

  program
    .command('proxy')
    .description('helpers for other programs')
    .command('ssh')
    .description('ProxyCommand helper: joins stdin/stdout to a node\'s SSH port through the proxy')
    .argument('[[user@]host[:port]]', 'what ssh passes as %r@%h:%p (not with --check-login)')
    .option('--proxy <host[:port]>', 'the cluster\'s proxy (default: $TSH_PROXY, or the current profile)')
    .option('--tsh-home <dir>', 'the tsh directory of the login (default: $TSH_HOME, or ~/.tsh); the generated block passes it')
    .addOption(
      new Option('--relogin <when>', 'with a missing or expired certificate: auto = log in through the browser first (when one can be opened), never = print the `tsh login` command and exit 4')
        .choices(['auto', 'never'])
        .default('never'),
    )
    .option('--check-login', 'only make sure the login is usable (logging in again with --relogin=auto), always exit 0: the block\'s Match exec, which runs before ssh reads the key files')
    .addHelpText(
      'after',
      '\nIn ~/.ssh/config (tsh config prints it):\n  Match host node1,*.example.org exec "/path/to/tsh proxy ssh --check-login --relogin=auto --tsh-home=/home/al/.tsh --proxy=jump.example.org:3080"\n  Match host node1,*.example.org\n    ProxyCommand /path/to/tsh proxy ssh --relogin=auto --tsh-home=/home/al/.tsh --proxy=jump.example.org:3080 %r@%h:%p\n',
    )
    .action(async (target: string | undefined, o: { proxy?: string; tshHome?: string; relogin: 'auto' | 'never'; checkLogin?: boolean }) => {
      // The flag wins over the environment: ssh run from another process may carry another TSH_HOME, or none.
      const d = o.tshHome !== undefined ? { ...deps, env: { ...deps.env, TSH_HOME: o.tshHome } } : deps;
      const common = { ...(o.proxy !== undefined ? { proxy: o.proxy } : {}), relogin: o.relogin };
      // The Match exec check runs before every ssh to a node: it never loads ssh2 (relogin.ts, not proxy-ssh.ts).
      if (o.checkLogin) return (await import('./commands/tsh/relogin.js')).runCheckLogin(common, d);
      if (target === undefined) throw new UsageError('USAGE_NO_TARGET', 'tsh proxy ssh needs the target [user@]host[:port]', { hint: 'in ssh_config: ProxyCommand tsh proxy ssh %r@%h:%p' });
      await (await import('./commands/tsh/proxy-ssh.js')).run({ target, ...common }, d);
    });

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
