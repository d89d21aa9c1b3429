import { AuthError } from '../../../errors.js';
import { TshPaths } from '../../../client/paths.js';
import { ProfileStore } from '../../../client/profile.js';
import { profileNameFor } from '../../../client/proxy-addr.js';
import { renderSshConfigBlock, sshConfigInput } from '../../../client/ssh-config.js';
import { notLoggedInHint } from '../../../client/credentials.js';
import type { Deps } from '../../deps.js';
import { tshProgram } from '../../ui.js';

export interface ConfigOptions {
  /** The profile's proxy (HOST[:PORT]); default $TSH_PROXY, then the current profile. */
  proxy?: string;
}

/**
 * `tsh config`: prints the ssh_config block `tsh login` installs, markers
 * included, for `tsh config >> ~/.ssh/config` (a later login then replaces
 * that copy instead of adding a second one).
 */
export function run(opts: ConfigOptions, deps: Deps): void {
  const paths = new TshPaths(deps);
  const store = new ProfileStore(paths);
  const name = profileNameFor(opts.proxy, deps.env);
  const profile = store.load(name);
  if (!profile) {
    throw new AuthError('NOT_LOGGED_IN', name ? `no profile for ${name}` : 'not logged in', {
      hint: `${notLoggedInHint(opts.proxy ?? deps.env['TSH_PROXY'], tshProgram(deps))}: the block names the cluster's nodes and your key`,
    });
  }
  deps.io.stdout.write(renderSshConfigBlock(sshConfigInput(profile, paths, deps.selfCommand)));
}
