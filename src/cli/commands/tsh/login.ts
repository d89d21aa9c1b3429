import { AuthError, UsageError } from '../../../errors.js';
import { AgentClient, AgentError } from '../../../client/agent.js';
import { openKeyStore, type KeyStore } from '../../../client/keystore.js';
import { browserLogin, ping } from '../../../client/login.js';
import type { LoginResult } from '../../../api/types.js';
import { parseProxyFlag } from '../../../client/proxy-addr.js';
import { TshPaths } from '../../../client/paths.js';
import { ProfileStore, type Profile } from '../../../client/profile.js';
import { formatHostCaLines, knownHostsPatterns, writeClusterHostCAs } from '../../../client/known-hosts.js';
import { claimClusterScope, droppedNotes } from '../../../client/cluster-scope.js';
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
  /** Renders the block without writing it, so a value its guard refuses fails the login before anything is saved. */
  checkSshConfig?: (profile: Profile, paths: TshPaths, deps: Deps) => void;
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
  const scopeOf = (r: LoginResult) => {
    if (r.cluster_name !== info.cluster_name) {
      throw new AuthError('LOGIN_BAD_ANSWER', `the proxy's login answer names the cluster ${r.cluster_name}, but the proxy said it is ${info.cluster_name}`, {
        hint: 'nothing was saved; the proxy is misconfigured or not the one you meant (check --proxy)',
      });
    }
    return claimClusterScope({ profileName: proxy.host, proxyHost: proxy.host, clusterName: r.cluster_name, sshProxyAddr: r.ssh_public_addr, nodeNames: r.nodes }, store.list());
  };
  const login = await browserLogin({
    proxyAddr: proxy.addr,
    dispatcher,
    ...(opts.ttlSeconds !== undefined ? { ttlSeconds: opts.ttlSeconds } : {}),
    ...(opts.user !== undefined ? { user: opts.user } : {}),
    ...(opts.browser === 'none' ? {} : { openBrowser: (url: string) => hooks.openBrowser(url, deps) }),
    say,
    waiting: (text) => waitingIndicator(text, deps),
    // Checked here first so the browser page tells the truth; checked again under the lock below.
    checkResult: (r) => void scopeOf(r),
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
    nodeNames: [],
  };
  const notes = await store.locked(async () => {
    // Decided under the lock, against every other profile, before anything is saved.
    const scope = scopeOf(r);
    profile.nodeNames = scope.nodeNames;
    const hostCa = {
      clusterName: r.cluster_name,
      proxyHost: proxy.host,
      nodeNames: scope.nodeNames,
      patterns: knownHostsPatterns({ clusterName: r.cluster_name, nodeNames: scope.nodeNames, sshProxyAddr: r.ssh_public_addr }),
      caKeys: r.host_ca.map((l) => parsePublicKeyLine(l).key),
    };
    // The renderers' own guards run before the first write, so a value they refuse leaves nothing behind.
    formatHostCaLines(hostCa.clusterName, hostCa.patterns, hostCa.caKeys, hostCa);
    if (opts.sshConfig && hooks.checkSshConfig) hooks.checkSshConfig(profile, paths, deps);
    await saveKeys(keystore, paths, profile, login.privateKeyPem, formatPublicKeyLine(login.publicKey, r.username), r.certificate);
    store.save(profile);
    writeClusterHostCAs(paths.knownHosts(), hostCa);
    const written = opts.sshConfig && hooks.installSshConfig ? hooks.installSshConfig(profile, paths, deps) : [];
    return [...droppedNotes(r.cluster_name, scope.dropped), ...written];
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
    if (err instanceof AgentError) {
      return [`note: the certificate is not in an ssh-agent (${err.message}); plain ssh ${profile.keystore === 'file' ? 'uses the key file named in ~/.ssh/config instead' : 'needs an agent: start one with `eval "$(ssh-agent)"` and log in again'}.`];
    }
    throw err;
  }
  try {
    const res = await agent.addCertificateAndVerify({
      privateKey: login.privateKey,
      certBlob: login.cert.blob,
      comment: `jumpgate ${profile.username}@${profile.name}`,
      lifetimeSeconds: Math.max(1, lifetime),
      ...(profile.keystore === 'file'
        ? { files: { key: paths.privateKey(profile.name, profile.username), cert: paths.certificate(profile.name, profile.username) } }
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
