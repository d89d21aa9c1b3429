import { Option } from 'commander';
import { VERSION } from '../version.js';
import { baseProgram, runMain, type ProgramBuilder } from './main.js';
import { flagDuration } from './flags.js';

// Commands are imported when they run, so `tsh version` or `tsh status` never
// load ssh2, openid-client or the keychain addon.

/** Builds `tsh`: the user's daily tool. */
export const buildTsh: ProgramBuilder = (deps) => {
  const program = baseProgram('tsh', 'Jumpgate client: log in once a day through single sign-on, then use plain ssh', [
    'tsh login --proxy=jump.example.org',
    'tsh login --proxy=localhost:3080 --insecure --browser=none',
    'tsh status --format=json',
    'ssh alice@node1                    # after tsh login, plain OpenSSH works',
    'tsh logout',
  ]);

  program
    .command('login')
    .description('log in through single sign-on in a browser; loads a certificate into ssh-agent and writes ~/.ssh/config')
    .option('--proxy <host[:port]>', 'the Jumpgate proxy (default: $TSH_PROXY, or the current profile); port 3080 if omitted')
    .option('--user <name>', 'the user name to log in as (a hint for the identity provider)')
    .option('--ttl <duration>', 'certificate validity wanted, e.g. 8h (capped by your roles; default: the cluster\'s, usually 24h)')
    .addOption(new Option('--browser <browser>', '"none" to only print the URL').choices(['default', 'none']).default('default'))
    .option('--insecure', 'do not verify the proxy\'s HTTPS certificate (development clusters with a self-signed one)', false)
    .addOption(new Option('--keystore <where>', 'where the private key is kept').choices(['auto', 'keychain', 'file']).default('auto'))
    .option('--no-ssh-config', 'do not write the Jumpgate block into ~/.ssh/config')
    .action(async (o: { proxy?: string; user?: string; ttl?: string; browser: 'default' | 'none'; insecure: boolean; keystore: 'auto' | 'keychain' | 'file'; sshConfig: boolean }) => {
      const [login, ui, sshConfig] = await Promise.all([import('./commands/tsh/login.js'), import('./ui.js'), import('../client/ssh-config.js')]);
      await login.run(
        {
          ...(o.proxy !== undefined ? { proxy: o.proxy } : {}),
          ...(o.user !== undefined ? { user: o.user } : {}),
          ...(o.ttl !== undefined ? { ttlSeconds: flagDuration('--ttl', o.ttl) } : {}),
          browser: o.browser,
          insecure: o.insecure,
          keystore: o.keystore,
          sshConfig: o.sshConfig,
        },
        deps,
        {
          openBrowser: (url) => ui.openBrowser(url),
          installSshConfig: (profile, paths) => {
            const block = sshConfig.renderSshConfigBlock(sshConfig.sshConfigInput(profile, paths, deps.selfCommand));
            const r = sshConfig.installSshConfigBlock(paths, profile.name, block);
            const lines = r.changed ? [`Updated the Jumpgate block for ${profile.name} in ${r.path}; plain ssh to the cluster's nodes now goes through the proxy.`] : [];
            if (r.backup) lines.push(`(the original is saved as ${r.backup})`);
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
    .description('remove the key, certificate, agent entry and keychain item of the current profile')
    .option('--proxy <host[:port]>', 'the profile to log out of (default: the current one)')
    .action(async (o: { proxy?: string }) => {
      await (await import('./commands/tsh/logout.js')).run(o.proxy !== undefined ? { proxy: o.proxy } : {}, deps);
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
