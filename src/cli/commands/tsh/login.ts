import { AuthError, UsageError } from '../../../errors.js';
import { AgentClient, AgentError, startAgentHint } from '../../../client/agent.js';
import { openKeyStore, type KeyStore } from '../../../client/keystore.js';
import { browserLogin, ping } from '../../../client/login.js';
import { parseProxyFlag } from '../../../client/proxy-addr.js';
import { TshPaths } from '../../../client/paths.js';
import { ProfileStore, type Profile } from '../../../client/profile.js';
import { knownHostsPatterns, writeClusterHostCAs } from '../../../client/known-hosts.js';
import { createHttpDispatcher } from '../../../net/index.js';
import { formatPublicKeyLine, parsePublicKeyLine } from '../../../sshcert/index.js';
import { stageFile, type StagedFile } from '../../../util/atomic-write.js';
import { printable } from '../../../util/printable.js';
import type { Deps } from '../../deps.js';
import { waitingIndicator } from '../../ui.js';

export interface LoginOptions {
  proxy?: string;
  /** A hint for the identity provider (OIDC login_hint). */
  user?: string;
  ttlSeconds?: number;
  browser: 'default' | 'none';
  insecure: boolean;
  keystore: 'auto' | 'keychain' | 'file';
  /** Write the managed block into ~/.ssh/config (off with --no-ssh-config). */
  sshConfig: boolean;
}

/** Hooks for what happens after the certificate is stored (the ssh_config block lives in ssh-config.ts). */
export interface LoginHooks {
  /** Writes the managed ~/.ssh/config block for the profile; returns lines to show the user. */
  installSshConfig?: (profile: Profile, paths: TshPaths, deps: Deps) => string[];
  /** Opens a URL in the user's browser. */
  openBrowser: (url: string, deps: Deps) => Promise<void>;
}

/** `tsh login`: browser SSO, then key + certificate stored, loaded into the agent, ssh config written. */
export async function run(opts: LoginOptions, deps: Deps, hooks: LoginHooks): Promise<void> {
  const say = (line: string) => deps.io.stderr.write(`${line}\n`);
  const paths = new TshPaths(deps);
  const store = new ProfileStore(paths);
  const proxyText = opts.proxy ?? deps.env['TSH_PROXY'] ?? store.load()?.webProxyAddr;
  if (!proxyText) {
    throw new UsageError('USAGE_NO_PROXY', 'tsh login needs the proxy address', { hint: 'give --proxy=HOST[:PORT] or set TSH_PROXY' });
  }
  const proxy = parseProxyFlag(proxyText);
  const dispatcher = createHttpDispatcher({
    env: deps.env,
    insecureSkipVerify: opts.insecure,
    log: deps.debug ? (l) => say(l) : undefined,
    warn: say,
  });
  const keystore = await openKeyStore(opts.keystore, { paths, notice: say });
  const info = await ping(proxy.addr, dispatcher);
  if (info.auth.type !== 'oidc') {
    throw new AuthError('LOGIN_NOT_CONFIGURED', `the cluster ${printable(info.cluster_name)} has no single sign-on configured`, { hint: 'ask an admin to set auth.oidc' });
  }
  const login = await browserLogin({
    proxyAddr: proxy.addr,
    dispatcher,
    ...(opts.ttlSeconds !== undefined ? { ttlSeconds: opts.ttlSeconds } : {}),
    ...(opts.user !== undefined ? { user: opts.user } : {}),
    ...(opts.browser === 'none' ? {} : { openBrowser: (url: string) => hooks.openBrowser(url, deps) }),
    say,
    waiting: (text) => waitingIndicator(text, deps),
  });
  const r = login.result;
  const profile: Profile = {
    version: 1,
    name: proxy.host,
    webProxyAddr: proxy.addr,
    sshProxyAddr: r.ssh_public_addr,
    clusterName: r.cluster_name,
    username: r.username,
    logins: r.logins,
    roles: r.roles,
    validBefore: r.valid_before,
    keystore: keystore.kind,
    insecure: opts.insecure,
    nodeNames: r.nodes,
  };
  const notes = await store.locked(async () => {
    await saveKeys(keystore, paths, profile, login.privateKeyPem, formatPublicKeyLine(login.publicKey, r.username), r.certificate);
    store.save(profile);
    writeClusterHostCAs(paths.knownHosts(), {
      clusterName: r.cluster_name,
      patterns: knownHostsPatterns({ clusterName: r.cluster_name, nodeNames: r.nodes, sshProxyAddr: r.ssh_public_addr }),
      caKeys: r.host_ca.map((l) => parsePublicKeyLine(l).key),
    });
    return opts.sshConfig && hooks.installSshConfig ? hooks.installSshConfig(profile, paths, deps) : [];
  });
  const agentNote = await loadIntoAgent(login, profile, paths, deps);
  const until = new Date(r.valid_before);
  say(`Logged in to ${printable(r.cluster_name)} as ${printable(r.username)} (roles: ${r.roles.map((x) => printable(x)).join(', ')}).`);
  say(`Logins: ${r.logins.map((x) => printable(x)).join(', ')}. Valid until ${until.toISOString()}.`);
  for (const n of [...notes, ...agentNote]) say(n);
}

/**
 * Stores the key, public key and certificate so that they change together:
 * the certificate files are written first (a full disk fails here, before
 * anything is replaced), then the key is saved, then the files are renamed
 * into place. A failure at any step leaves the previous login intact.
 */
async function saveKeys(keystore: KeyStore, paths: TshPaths, profile: Profile, pem: string, pubLine: string, certLine: string): Promise<void> {
  new ProfileStore(paths).ensureDirs(profile.name);
  const staged: StagedFile[] = [];
  try {
    staged.push(stageFile(paths.publicKey(profile.name, profile.username), pubLine + '\n', 0o644));
    staged.push(stageFile(paths.certificate(profile.name, profile.username), certLine + '\n', 0o644));
    await keystore.save(profile.name, profile.username, pem);
  } catch (err) {
    for (const f of staged) f.abort();
    throw err;
  }
  for (const f of staged) f.commit();
}

/**
 * Adds key + certificate to the agent at SSH_AUTH_SOCK with lifetime = the
 * certificate's remaining validity, and checks it is really listed. Agent
 * trouble never fails the login (tsh ssh works without an agent): it is reported.
 */
async function loadIntoAgent(
  login: Awaited<ReturnType<typeof browserLogin>>,
  profile: Profile,
  paths: TshPaths,
  deps: Deps,
): Promise<string[]> {
  const lifetime = Math.floor((Date.parse(profile.validBefore) - deps.clock().getTime()) / 1000);
  let agent: AgentClient;
  try {
    agent = await AgentClient.connect({ env: deps.env, platform: deps.platform });
  } catch (err) {
    if (err instanceof AgentError) return [agentMissingNote(err, profile.keystore, paths)];
    throw err;
  }
  try {
    const res = await agent.addCertificateAndVerify({
      privateKey: login.privateKey,
      certBlob: login.cert.blob,
      comment: `jumpgate ${profile.username}@${profile.name}`,
      lifetimeSeconds: Math.max(1, lifetime),
      ...(profile.keystore === 'file'
        ? {
            files: {
              key: paths.privateKey(profile.name, profile.username),
              cert: paths.certificate(profile.name, profile.username),
              sshConfig: paths.shown(paths.sshConfig()),
            },
          }
        : {}),
    });
    return res.warning ? [`warning: ${res.warning}`] : [];
  } catch (err) {
    if (err instanceof AgentError) return [`warning: could not add the certificate to the ssh-agent: ${err.message}`];
    throw err;
  } finally {
    agent.close();
  }
}

/**
 * The note when no agent could be reached: plain ssh then uses the key file
 * the ssh config names (file keystore) or needs an agent, started the
 * platform's way (startAgentHint); paths as the platform's users write them.
 */
export function agentMissingNote(err: AgentError, keystore: Profile['keystore'], paths: TshPaths): string {
  const then =
    keystore === 'file'
      ? `uses the key file named in ${paths.shown(paths.sshConfig())} instead`
      : `needs an agent: ${startAgentHint(paths.penv.platform)} and log in again`;
  return `note: the certificate is not in an ssh-agent (${err.message}); plain ssh ${then}.`;
}
