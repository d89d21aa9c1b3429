import { readdirSync } from 'node:fs';
import { UserError } from '../../../errors.js';
import { AgentClient, AgentError } from '../../../client/agent.js';
import { profileKeys, removeProfileEntries, type RemovalResult } from '../../../client/agent-entries.js';
import { openProfileKeyStore } from '../../../client/keystore.js';
import { TshPaths } from '../../../client/paths.js';
import { ProfileStore, type Profile } from '../../../client/profile.js';
import { printable } from '../../../util/printable.js';
import type { Deps } from '../../deps.js';
import { parseProxyFlag, profileNameFor, proxyAddrFor } from '../../../client/proxy-addr.js';
import { credentialsFor, defaultLogin } from '../../../client/proxy-conn.js';
import { revokeVia } from '../../../client/node-route.js';
import { credentialOptions } from './client-context.js';

export interface LogoutOptions {
  /** The profile's proxy (HOST[:PORT]); default: the current profile. */
  proxy?: string;
  /** First have the proxy lock the profile's certificate (it stops working everywhere within 5 s, nodes through the KRL). */
  revoke?: boolean;
}

/**
 * `tsh logout`: every key and certificate of the profile leaves the agent
 * (client/agent-entries.ts: by comment marker, recorded key, key files), the
 * keychain item(s) and the files under TSH_HOME are removed. Works on a
 * profile whose JSON is damaged or gone as long as it is named (--proxy).
 * @throws UserError AGENT_REMOVE_FAILED (exit 1) when the agent still lists
 *   some of the profile's entries afterwards; everything else was removed.
 */
export async function run(opts: LogoutOptions, deps: Deps): Promise<void> {
  const say = (l: string) => deps.io.stderr.write(`${l}\n`);
  const paths = new TshPaths(deps);
  // --revoke first: if the proxy cannot lock the certificate, nothing is removed (the user can retry) and the error says so.
  if (opts.revoke) await revoke(opts, deps, paths, say);
  const store = new ProfileStore(paths);
  const name = opts.proxy ? parseProxyFlag(opts.proxy).host : store.currentName();
  if (!name) {
    say('not logged in; nothing to do');
    return;
  }
  let profile: Profile | undefined;
  let damaged = false;
  try {
    profile = store.load(name);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    damaged = true;
    say(`note: ${err.message}; removing what is left of it`);
  }
  // Every user that left files here (a relogin as someone else may have left an older one).
  const users = [...new Set([...(profile ? [profile.username] : []), ...usersOnDisk(paths, name)])];
  const keys = profileKeys(paths, name, users);
  const hadFiles = damaged || profile !== undefined || users.length > 0 || keys.length > 0;
  await store.locked(async () => {
    if (profile) {
      const keystore = await openProfileKeyStore(profile.keystore, { paths });
      for (const user of users) await keystore.remove(name, user);
    }
    store.remove(name);
  });
  const agent = await sweepAgent(deps, name, keys);
  if (!hadFiles && agent.removed === 0) {
    say(`no profile for ${printable(name)}; nothing to do`);
    return;
  }
  if (agent.warning) {
    throw new UserError('AGENT_REMOVE_FAILED', `logged out of ${printable(name)}, but ${agent.warning}`);
  }
  if (damaged) {
    // A damaged profile is removed with its key files, so `tsh login` can start clean.
    say(`Removed the damaged profile ${printable(name)} and its key files (a key it kept in the OS keychain, service "jumpgate", may remain).`);
    return;
  }
  say(profile ? `Logged out ${printable(profile.username)} from ${printable(profile.name)}.` : `Logged out from ${printable(name)}.`);
}

/**
 * Connects to the proxy with the profile's certificate and has it lock that
 * certificate. @throws UserError REVOKE_FAILED (nothing removed locally).
 */
async function revoke(opts: LogoutOptions, deps: Deps, paths: TshPaths, say: (l: string) => void): Promise<void> {
  const notRevoked = (err: unknown): never => {
    throw new UserError('REVOKE_FAILED', `the certificate was NOT revoked and nothing was removed: ${(err as Error).message}`, {
      cause: err,
      hint: 'retry, or ask an administrator for `tctl lock add --user=YOU`; `tsh logout` without --revoke removes the local files only',
    });
  };
  let creds;
  try {
    creds = await credentialsFor(paths, profileNameFor(opts.proxy, deps.env), deps.clock(), { ...credentialOptions(deps), proxyAddr: proxyAddrFor(opts.proxy, deps.env) });
  } catch (err) {
    // An expired certificate opens nothing any more: there is nothing left to revoke, so logging out goes on.
    if (err instanceof UserError && err.code === 'CERT_EXPIRED') {
      say('The certificate has already expired: nothing to revoke.');
      return;
    }
    return notRevoked(err);
  }
  const log = deps.debug ? (l: string) => deps.io.stderr.write(`tsh: ${l}\n`) : undefined;
  try {
    const answer = await revokeVia({ creds, paths, env: deps.env, login: defaultLogin(creds, deps.env), now: deps.clock, ...(log ? { log } : {}) });
    say(`Revoked certificate ${answer.serial} (lock ${answer.lock_id}${answer.expires ? `, until it expires at ${answer.expires}` : ''}): every proxy refuses it within 5 s.`);
  } catch (err) {
    notRevoked(err);
  }
}

/** User names that have a key, public key or certificate file under keys/PROFILE. */
function usersOnDisk(paths: TshPaths, profile: string): string[] {
  let files: string[];
  try {
    files = readdirSync(paths.keysDir(profile));
  } catch {
    return [];
  }
  return [...new Set(files.filter((f) => !f.startsWith('+')).map((f) => f.replace(/(-cert)?\.pub$/, '')))];
}

/** Removes the profile's entries from the agent; no agent (or a gone one) holds nothing of ours. */
async function sweepAgent(deps: Deps, profile: string, keys: Buffer[]): Promise<Pick<RemovalResult, 'removed' | 'warning'>> {
  let agent: AgentClient;
  try {
    agent = await AgentClient.connect({ env: deps.env, platform: deps.platform });
  } catch (err) {
    if (err instanceof AgentError) return { removed: 0 };
    throw err;
  }
  try {
    return await removeProfileEntries(agent, { profile, keys });
  } catch (err) {
    if (err instanceof AgentError) return { removed: 0, warning: `the ssh-agent failed while removing this profile's entries (${err.message}); check with \`ssh-add -l\`` };
    throw err;
  } finally {
    agent.close();
  }
}
