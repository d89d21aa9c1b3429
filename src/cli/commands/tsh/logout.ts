import { AgentClient, AgentError } from '../../../client/agent.js';
import { openProfileKeyStore } from '../../../client/keystore.js';
import { TshPaths } from '../../../client/paths.js';
import { ProfileStore, type Profile } from '../../../client/profile.js';
import { UserError } from '../../../errors.js';
import { readProfileCertificate } from '../../../client/credentials.js';
import { printable } from '../../../util/printable.js';
import type { Deps } from '../../deps.js';
import { parseProxyFlag } from '../../../client/proxy-addr.js';

export interface LogoutOptions {
  /** The profile's proxy (HOST[:PORT]); default: the current profile. */
  proxy?: string;
}

/** `tsh logout`: the profile's key, certificate, agent entry and keychain item are removed. */
export async function run(opts: LogoutOptions, deps: Deps): Promise<void> {
  const say = (l: string) => deps.io.stderr.write(`${l}\n`);
  const paths = new TshPaths(deps);
  const store = new ProfileStore(paths);
  const name = opts.proxy ? parseProxyFlag(opts.proxy).host : store.currentName();
  let profile: Profile | undefined;
  try {
    profile = name ? store.load(name) : undefined;
  } catch (err) {
    if (!(err instanceof UserError && err.code === 'PROFILE_CORRUPT') || !name) throw err;
    // A damaged profile is removed with its key files, so `tsh login` can start clean.
    await store.locked(async () => store.remove(name));
    say(`Removed the damaged profile ${printable(name)} and its key files (a key it kept in the OS keychain, service "jumpgate", may remain).`);
    return;
  }
  if (!profile) {
    say(name ? `no profile for ${printable(name)}; nothing to do` : 'not logged in; nothing to do');
    return;
  }
  const certBlob = readProfileCertificate(paths, profile)?.cert.blob;
  await store.locked(async () => {
    const keystore = await openProfileKeyStore(profile.keystore, { paths });
    await keystore.remove(profile.name, profile.username);
    store.remove(profile.name);
  });
  if (certBlob) {
    try {
      const agent = await AgentClient.connect({ env: deps.env, platform: deps.platform });
      try {
        await agent.removeMatching((id) => id.blob.equals(certBlob!));
      } finally {
        agent.close();
      }
    } catch (err) {
      if (!(err instanceof AgentError)) throw err;
      // No agent, or it is gone: nothing of ours can be in it.
    }
  }
  say(`Logged out ${printable(profile.username)} from ${printable(profile.name)}.`);
}
