import { rmSync } from 'node:fs';
import { X509Certificate, type KeyObject } from 'node:crypto';
import { AuthError, UsageError, UserError } from '../../../errors.js';
import { AgentClient, AgentError, startAgentHint } from '../../../client/agent.js';
import { agentComment, profileKeys, recordKey, removeProfileEntries } from '../../../client/agent-entries.js';
import { openKeyStore, openProfileKeyStore, type KeyStore } from '../../../client/keystore.js';
import { browserLogin, pingProxy } from '../../../client/login.js';
import { headlessLogin } from '../../../client/headless-login.js';
import type { LoginResult } from '../../../api/types.js';
import { EXAMPLE_PROXY, loginCommand, parseProxyFlag, shellWord } from '../../../client/proxy-addr.js';
import { diagnoseProxyError } from '../../../client/proxy-diagnose.js';
import { certValidity, clockBehindText, DEFAULT_CLOCK_LEEWAY_SECONDS } from '../../../client/credentials.js';
import { formatHostPort, isLoopbackHost, parseHostPort, AddressError } from '../../../shared/address.js';
import { formatDuration } from '../../../shared/duration.js';
import { CLOCK_SKEW_SECONDS } from '../../../sshcert/sign.js';
import { nonDefaultTshHome, TshPaths } from '../../../client/paths.js';
import { ProfileStore, type AddKeysToAgent, type Profile } from '../../../client/profile.js';
import { formatHostCaLines, knownHostsPatterns, writeClusterHostCAs } from '../../../client/known-hosts.js';
import { claimClusterScope, droppedNotes, scopeNodeAddrs } from '../../../client/cluster-scope.js';
import { createHttpDispatcher } from '../../../net/index.js';
import { formatPublicKeyLine, parsePublicKeyLine } from '../../../sshcert/index.js';
import { stageFile, type StagedFile } from '../../../util/atomic-write.js';
import { printable } from '../../../util/printable.js';
import type { Deps } from '../../deps.js';
import { clockLeewaySeconds } from '../../flags.js';
import { browserSystem, canOpenBrowser, tshProgram, waitingIndicator } from '../../ui.js';

export interface LoginOptions {
  proxy?: string;
  /** A hint for the identity provider (OIDC login_hint). */
  user?: string;
  ttlSeconds?: number;
  browser: 'default' | 'none';
  /** --insecure / --no-insecure; undefined: the profile's remembered setting (false for a new profile). */
  insecure?: boolean;
  /** --bind-addr=HOST:PORT for the loopback listener (parseBindAddr). */
  bindAddr?: string;
  /** --headless: approve on another device (client/headless-login.ts); no listener, no browser here. */
  headless?: boolean;
  keystore: 'auto' | 'keychain' | 'file';
  /** Write the managed block into ~/.ssh/config (off with --no-ssh-config). */
  sshConfig: boolean;
  /** --add-keys-to-agent; undefined: what the profile remembers, else auto. */
  addKeysToAgent?: AddKeysToAgent;
}

/**
 * The agent setting of a login and the key store mode it allows. ssh cannot
 * read a key from the OS keychain, only from the agent or a file: with
 * `no`, `--keystore=keychain` is refused and `auto` means the file store.
 * @throws UsageError USAGE_AGENT_KEYCHAIN for `no` with `--keystore=keychain`.
 */
export function agentAndKeystore(
  flag: AddKeysToAgent | undefined,
  remembered: AddKeysToAgent | undefined,
  keystore: LoginOptions['keystore'],
): { addKeysToAgent: AddKeysToAgent; keystore: LoginOptions['keystore']; note?: string } {
  // The profile is a file: a value other than the three is ignored, not trusted.
  const known = remembered === 'auto' || remembered === 'yes' || remembered === 'no' ? remembered : undefined;
  const addKeysToAgent = flag ?? known ?? 'auto';
  if (addKeysToAgent !== 'no' || keystore === 'file') return { addKeysToAgent, keystore };
  const origin = flag === undefined ? ' (remembered from your last login; give --add-keys-to-agent=auto to change it)' : '';
  if (keystore === 'keychain') {
    throw new UsageError('USAGE_AGENT_KEYCHAIN', `--add-keys-to-agent=no${origin} cannot go with --keystore=keychain: plain ssh reads keys from the agent or a file, never from the OS keychain`, {
      hint: 'use --keystore=file (the key in a 0600 file ssh reads), or --add-keys-to-agent=auto',
    });
  }
  return { addKeysToAgent, keystore: 'file', note: `--add-keys-to-agent=no${origin}: keeping the private key in a 0600 file under TSH_HOME, where plain ssh reads it` };
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

/**
 * --bind-addr: a loopback HOST:PORT for the login's listener. Anything else
 * is refused: the proxy sends the login back only to 127.0.0.1, localhost or
 * [::1] (a callback elsewhere would be refused there), and a listener on
 * another interface would let the network reach the login's callback.
 */
export function parseBindAddr(text: string): { host: string; port: number } {
  let hp: { host: string; port: number };
  try {
    hp = parseHostPort(text.trim());
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    throw new UsageError('USAGE_BAD_BIND_ADDR', `--bind-addr: ${err.message}`, { cause: err, hint: 'e.g. --bind-addr=127.0.0.1:8765' });
  }
  if (!isLoopbackHost(hp.host)) {
    throw new UsageError('USAGE_BAD_BIND_ADDR', `--bind-addr: ${formatHostPort(hp)} is not a loopback address; the login listener binds only to 127.0.0.1, localhost or [::1]`, {
      hint:
        'the proxy sends the browser back only to a loopback address, and a listener on another interface would expose the login to the network; ' +
        `in a container use --network=host, from another machine forward the port: ssh -L ${hp.port}:127.0.0.1:${hp.port} HOST, then --bind-addr=127.0.0.1:${hp.port}`,
    });
  }
  return hp;
}

/**
 * `tsh login`: browser SSO, then key + certificate stored, loaded into the
 * agent, ssh config written. With no flags it logs in again to the current
 * profile (or TSH_PROXY) with the settings that profile remembers
 * (`--insecure`, `--user`); a flag given wins over the remembered value.
 */
export async function run(opts: LoginOptions, deps: Deps, hooks: LoginHooks): Promise<void> {
  const say = (line: string) => deps.io.stderr.write(`${line}\n`);
  const paths = new TshPaths(deps);
  const store = new ProfileStore(paths);
  const program = tshProgram(deps);
  const leeway = clockLeewaySeconds(deps.env, DEFAULT_CLOCK_LEEWAY_SECONDS);
  const proxyFlag = opts.proxy !== undefined ? '--proxy' : 'TSH_PROXY';
  // A damaged profile must not stop the login that replaces it.
  const loadOrNone = (name?: string): Profile | undefined => {
    try {
      return store.load(name);
    } catch {
      return undefined;
    }
  };
  const proxyText = opts.proxy ?? deps.env['TSH_PROXY'] ?? loadOrNone()?.webProxyAddr;
  if (!proxyText) {
    throw new UsageError('USAGE_NO_PROXY', 'tsh login needs the proxy address: there is no profile to log in to again', {
      hint: `run \`${program} login --proxy=PROXY\`, where PROXY is your Jumpgate proxy's address (e.g. ${EXAMPLE_PROXY}), or set TSH_PROXY`,
    });
  }
  const proxy = parseProxyFlag(proxyText, opts.proxy === undefined && deps.env['TSH_PROXY'] === undefined ? 'the current profile\'s proxy' : proxyFlag);
  if (opts.headless && opts.bindAddr !== undefined) {
    throw new UsageError('USAGE_HEADLESS_BIND_ADDR', '--headless cannot go with --bind-addr: a headless login opens no listener', { hint: 'leave out --bind-addr' });
  }
  const bindAddr = opts.bindAddr !== undefined ? parseBindAddr(opts.bindAddr) : undefined;
  // What the last login to this proxy (same host and port) remembers; an explicit flag wins.
  const last = loadOrNone(proxy.host);
  const remembered = last?.webProxyAddr === proxy.addr ? last : undefined;
  const insecure = opts.insecure ?? remembered?.insecure ?? false;
  const user = opts.user ?? remembered?.user;
  const reused = [
    ...(opts.insecure === undefined && insecure ? ['--insecure'] : []),
    ...(opts.user === undefined && user !== undefined ? [`--user=${printable(shellWord(user))}`] : []),
  ];
  if (reused.length > 0) say(`Using ${reused.join(' ')} from the last login to ${proxy.host}${insecure && opts.insecure === undefined ? ' (--no-insecure to check the certificate again)' : ''}.`);
  const tshHome = nonDefaultTshHome(paths.penv);
  const command = { webProxyAddr: proxy.addr, insecure, ...(user !== undefined ? { user } : {}), ...(tshHome ? { tshHome } : {}) };
  const retry = loginCommand(command, program);
  const choice = agentAndKeystore(opts.addKeysToAgent, remembered?.addKeysToAgent, opts.keystore);
  const dispatcher = createHttpDispatcher({
    env: deps.env,
    insecureSkipVerify: insecure,
    log: deps.debug ? (l) => say(l) : undefined,
    warn: say,
  });
  let pinged: Awaited<ReturnType<typeof pingProxy>>;
  const asked = deps.clock();
  try {
    pinged = await pingProxy(proxy.addr, dispatcher);
  } catch (err) {
    throw await diagnoseProxyError(err, { proxy, env: deps.env, login: command, program, ...(last?.webProxyAddr ? { knownWebAddr: last.webProxyAddr } : {}) });
  }
  const info = pinged.info;
  if (info.auth.type !== 'oidc') {
    throw new AuthError('LOGIN_NOT_CONFIGURED', `the cluster ${printable(info.cluster_name)} has no single sign-on configured`, { hint: 'ask an admin to set auth.oidc' });
  }
  if (choice.note) say(choice.note);
  const keystore = await openKeyStore(choice.keystore, { paths, notice: say, debug: deps.debug });
  const clockNote = clockWarning(pinged.serverDate, asked, deps.clock(), leeway);
  if (clockNote) say(deps.colors.err.yellow(clockNote));
  const scopeOf = (r: LoginResult) => {
    if (r.cluster_name !== info.cluster_name) {
      throw new AuthError('LOGIN_BAD_ANSWER', `the proxy's login answer names the cluster ${printable(r.cluster_name)}, but the proxy said it is ${printable(info.cluster_name)}`, {
        hint: 'nothing was saved; the proxy is misconfigured or not the one you meant (check --proxy)',
      });
    }
    return claimClusterScope({ profileName: proxy.host, proxyHost: proxy.host, clusterName: r.cluster_name, sshProxyAddr: r.ssh_public_addr, nodeNames: r.nodes }, store.list());
  };
  const common = {
    proxyAddr: proxy.addr,
    dispatcher,
    ...(opts.ttlSeconds !== undefined ? { ttlSeconds: opts.ttlSeconds } : {}),
    ...(user !== undefined ? { user } : {}),
    say,
    waiting: (text: string) => waitingIndicator(text, deps),
    // Checked here first so the browser page (or the wait) tells the truth; checked again under the lock below.
    checkResult: (r: LoginResult) => void scopeOf(r),
  };
  if (!opts.headless) {
    const tip = headlessTip(deps);
    if (tip) say(deps.colors.err.yellow(tip));
  }
  // Both kinds end in the same checked result; everything below stores it the same way.
  const login = opts.headless
    ? await headlessLogin({ ...common, retry: `${retry} --headless`, now: () => deps.clock().getTime() })
    : await browserLogin({
        ...common,
        ...(opts.browser === 'none' ? {} : { openBrowser: (url: string) => hooks.openBrowser(url, deps) }),
        ...(bindAddr ? { bindAddr } : {}),
        retry,
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
    insecure,
    ...(user !== undefined ? { user } : {}),
    nodeNames: [],
    nodeAddrs: nodeAddrsOf(r.node_addrs),
    addKeysToAgent: choice.addKeysToAgent,
    // What the ssh_config block's ProxyCommand does when this certificate has run out (ssh-config.ts).
    relogin: opts.browser !== 'none' && canOpenBrowser(browserSystem(deps)) ? 'auto' : 'never',
  };
  const tlsCert = tlsCertificateFor(r, login.publicKey.key);
  if (tlsCert !== undefined && r.tls_routing === true) profile.tlsRouting = true;
  const { notes, earlierKeys } = await store.locked(async () => {
    const earlier = previousProfile(store, profile.name);
    // Read before saveKeys overwrites them: the earlier login's keys, so its agent entries can be found.
    const earlierKeys = profileKeys(paths, profile.name, earlier ? [earlier.username] : []);
    // Decided under the lock, against every other profile, before anything is saved.
    const scope = scopeOf(r);
    profile.nodeNames = scope.nodeNames;
    profile.nodeAddrs = scopeNodeAddrs(profile.nodeAddrs ?? [], r.cluster_name, scope, store.list().filter((p) => p.name !== profile.name));
    const hostCa = {
      clusterName: r.cluster_name,
      proxyHost: proxy.host,
      nodeNames: scope.nodeNames,
      patterns: knownHostsPatterns({ clusterName: r.cluster_name, nodeNames: scope.nodeNames, sshProxyAddr: r.ssh_public_addr, nodeAddrs: profile.nodeAddrs ?? [] }),
      caKeys: r.host_ca.map((l) => parsePublicKeyLine(l).key),
    };
    // The renderers' own guards run before the first write, so a value they refuse leaves nothing behind.
    formatHostCaLines(hostCa.clusterName, hostCa.patterns, hostCa.caKeys, hostCa);
    if (opts.sshConfig && hooks.checkSshConfig) hooks.checkSshConfig(profile, paths, deps);
    await saveKeys(keystore, paths, profile, login.privateKeyPem, formatPublicKeyLine(login.publicKey, r.username), r.certificate, tlsCert);
    recordKey(paths, profile.name, login.publicKey.blob);
    if (earlier && (earlier.username !== profile.username || earlier.keystore !== profile.keystore)) {
      await forgetEarlierKey(paths, earlier, profile);
    }
    store.save(profile);
    writeClusterHostCAs(paths.knownHosts(), hostCa);
    const written = opts.sshConfig && hooks.installSshConfig ? hooks.installSshConfig(profile, paths, deps) : [];
    return { notes: [...droppedNotes(r.cluster_name, scope.dropped), ...written], earlierKeys };
  });
  const agent = choice.addKeysToAgent === 'no' ? { notes: [], failed: false } : await loadIntoAgent(login, profile, paths, deps, earlierKeys, opts.sshConfig && hooks.installSshConfig !== undefined);
  const until = new Date(r.valid_before);
  say(`Logged in to ${printable(r.cluster_name)} as ${printable(r.username)} (roles: ${r.roles.map((x) => printable(x)).join(', ')}).`);
  say(`Logins: ${r.logins.map((x) => printable(x)).join(', ')}. Valid until ${until.toISOString()}.`);
  const v = certValidity(login.cert, deps.clock(), leeway);
  if (v.state === 'not-yet-valid') {
    const clock = clockBehindText(v.behindSeconds);
    say(deps.colors.err.yellow(`warning: the new certificate starts at ${v.from.toISOString()}: ${clock.message}, so tsh ssh, tsh ls and plain ssh through tsh refuse it until then; ${clock.hint}`));
  }
  if (agent.failed && choice.addKeysToAgent === 'yes') {
    for (const n of notes) say(n);
    throw new UserError('AGENT_ADD_FAILED', `logged in, but the certificate is not in the ssh-agent (--add-keys-to-agent=yes): ${agent.notes.join(' ')}`, {
      hint: 'start an agent (`eval "$(ssh-agent)"`) and log in again, or use --add-keys-to-agent=auto',
    });
  }
  for (const n of [...notes, ...agent.notes]) say(n);
}

/**
 * The hint for `tsh login` run over SSH on a machine with no display
 * (SSH_CONNECTION or SSH_TTY set, neither DISPLAY nor WAYLAND_DISPLAY; not on
 * macOS or Windows, whose desktops need neither): the browser would open
 * nowhere near the person, and the loopback URL works only on this machine.
 */
export function headlessTip(deps: Pick<Deps, 'env' | 'platform'>): string | undefined {
  const e = deps.env;
  if (deps.platform === 'darwin' || deps.platform === 'win32') return undefined;
  const overSsh = Boolean(e['SSH_CONNECTION'] || e['SSH_TTY']);
  const display = Boolean(e['DISPLAY'] || e['WAYLAND_DISPLAY']);
  if (!overSsh || display) return undefined;
  return 'tip: this looks like an SSH session with no display: the login URL below works only in a browser on this machine. Use `tsh login --headless` to approve the login from any device instead.';
}

/**
 * The node addresses of a login answer that are host:port (`[v6]:port`),
 * lower-case, at most 10,000; anything else is dropped: they become
 * ssh_config and known_hosts patterns.
 */
export function nodeAddrsOf(addrs: unknown): string[] {
  if (!Array.isArray(addrs)) return [];
  const out: string[] = [];
  for (const a of addrs.slice(0, 10_000)) {
    if (typeof a !== 'string' || a.length > 300) continue;
    try {
      const hp = parseHostPort(a);
      out.push(formatHostPort({ host: hp.host.toLowerCase(), port: hp.port }));
    } catch {
      // not an address: left out
    }
  }
  return out;
}

/**
 * A warning when this machine's clock is off from the proxy's (its Date
 * header, whole seconds, read between `asked` and `answered`) by more than
 * the proxy's back-dating of certificates (CLOCK_SKEW_SECONDS): behind, a
 * fresh certificate starts in this machine's future; ahead, it looks expired
 * early. Undefined when the clock is close enough or the proxy sent no Date.
 */
export function clockWarning(serverDate: Date | undefined, asked: Date, answered: Date, leewaySeconds: number): string | undefined {
  if (!serverDate) return undefined;
  // The Date header is truncated to the second: the server's clock was in [date, date + 1 s).
  const behind = serverDate.getTime() - answered.getTime();
  const ahead = asked.getTime() - (serverDate.getTime() + 1000);
  if (behind / 1000 > CLOCK_SKEW_SECONDS) {
    const by = formatDuration(Math.floor(behind / 1000));
    const fix = clockBehindText(0).hint;
    return behind / 1000 - CLOCK_SKEW_SECONDS > leewaySeconds
      ? `warning: this machine's clock is about ${by} behind the proxy's; the certificate will look not valid yet here and tsh will refuse it for a while: ${fix}`
      : `warning: this machine's clock is about ${by} behind the proxy's (within TSH_CLOCK_LEEWAY=${formatDuration(leewaySeconds)}, so tsh still uses the certificate); set the clock right (e.g. \`sudo timedatectl set-ntp true\`)`;
  }
  if (ahead / 1000 > CLOCK_SKEW_SECONDS) {
    return `warning: this machine's clock is about ${formatDuration(Math.floor(ahead / 1000))} ahead of the proxy's: tsh will call the certificate expired that much early; set the clock right (e.g. \`sudo timedatectl set-ntp true\`)`;
  }
  return undefined;
}

/**
 * Stores the key, public key and certificate so that they change together:
 * the certificate files are written first (a full disk fails here, before
 * anything is replaced), then the key is saved, then the files are renamed
 * into place. A failure at any step leaves the previous login intact.
 */
async function saveKeys(keystore: KeyStore, paths: TshPaths, profile: Profile, pem: string, pubLine: string, certLine: string, tlsCert: string | undefined): Promise<void> {
  new ProfileStore(paths).ensureDirs(profile.name);
  const staged: StagedFile[] = [];
  try {
    staged.push(stageFile(paths.publicKey(profile.name, profile.username), pubLine + '\n', 0o644));
    staged.push(stageFile(paths.certificate(profile.name, profile.username), certLine + '\n', 0o644));
    // The TLS route's client certificate; an older proxy sends none: then no stale one from an earlier login stays.
    if (tlsCert !== undefined) staged.push(stageFile(paths.tlsCertificate(profile.name, profile.username), tlsCert, 0o600));
    else rmSync(paths.tlsCertificate(profile.name, profile.username), { force: true });
    await keystore.save(profile.name, profile.username, pem);
  } catch (err) {
    for (const f of staged) f.abort();
    throw err;
  }
  for (const f of staged) f.commit();
}

/**
 * The login answer's X.509 client certificate when it certifies the key this
 * login made (else undefined: tsh then keeps to the SSH port).
 */
function tlsCertificateFor(r: LoginResult, key: KeyObject): string | undefined {
  if (r.tls_cert === undefined) return undefined;
  try {
    const x = new X509Certificate(r.tls_cert);
    return x.publicKey.export({ format: 'der', type: 'spki' }).equals(key.export({ format: 'der', type: 'spki' })) ? r.tls_cert : undefined;
  } catch {
    return undefined;
  }
}

/** The profile this login replaces, if any; a damaged one counts as none (the login rewrites it). */
function previousProfile(store: ProfileStore, name: string): Profile | undefined {
  try {
    return store.load(name);
  } catch {
    return undefined;
  }
}

/**
 * A relogin as another user (or into another keystore) leaves the earlier
 * user's key behind under another name: remove its key (keychain or file),
 * public key and certificate, as logout would.
 */
async function forgetEarlierKey(paths: TshPaths, earlier: Profile, now: Profile): Promise<void> {
  try {
    const ks = await openProfileKeyStore(earlier.keystore, { paths });
    await ks.remove(earlier.name, earlier.username);
  } catch {
    // An unreachable keychain must not fail the new login; logout tries again.
  }
  if (earlier.username !== now.username) {
    for (const f of [paths.publicKey(earlier.name, earlier.username), paths.certificate(earlier.name, earlier.username), paths.tlsCertificate(earlier.name, earlier.username)]) rmSync(f, { force: true });
  }
}

/**
 * Adds key + certificate to the agent at SSH_AUTH_SOCK with lifetime = the
 * certificate's remaining validity, and checks it is really listed; then
 * removes the profile's earlier entries (agent-entries.ts: by comment marker,
 * recorded key or `earlierKeys`), keeping the new one. Agent trouble never
 * fails the login (tsh ssh works without an agent): it is reported.
 */
async function loadIntoAgent(
  login: Awaited<ReturnType<typeof browserLogin>>,
  profile: Profile,
  paths: TshPaths,
  deps: Deps,
  earlierKeys: Buffer[],
  sshConfigWritten: boolean,
): Promise<{ notes: string[]; failed: boolean }> {
  const lifetime = Math.floor((Date.parse(profile.validBefore) - deps.clock().getTime()) / 1000);
  let agent: AgentClient;
  try {
    agent = await AgentClient.connect({ env: deps.env, platform: deps.platform });
  } catch (err) {
    if (err instanceof AgentError) return { notes: [agentMissingNote(err, profile.keystore, paths)], failed: true };
    throw err;
  }
  try {
    const res = await agent.addCertificateAndVerify({
      privateKey: login.privateKey,
      certBlob: login.cert.blob,
      comment: agentComment(profile.name, profile.username, profile.clusterName),
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
    const notes = res.status === 'listed' ? [] : [agentWarning(res, profile, paths, sshConfigWritten, paths.penv.platform)];
    const old = await removeProfileEntries(agent, { profile: profile.name, keys: earlierKeys }, [login.cert.blob, login.publicKey.blob]);
    if (old.warning) notes.push(`warning: the earlier login's entries are still in the agent: ${old.warning}`);
    return { notes, failed: res.status !== 'listed' };
  } catch (err) {
    if (err instanceof AgentError) return { notes: [`warning: could not add the certificate to the ssh-agent: ${err.message}`], failed: true };
    throw err;
  } finally {
    agent.close();
  }
}

/**
 * What a certificate the agent refused or dropped means for plain ssh, true
 * for each keystore: with the file keystore the managed block names the key
 * and certificate files (IdentityFile/CertificateFile), so plain ssh still
 * works; with the keychain the block relies on the agent, so it does not.
 */
export function agentWarning(
  res: { status: 'refused' | 'dropped' | 'listed'; agentName: string },
  profile: Pick<Profile, 'keystore' | 'name' | 'username'>,
  paths: Pick<TshPaths, 'privateKey' | 'certificate'>,
  sshConfigWritten: boolean,
  platform: NodeJS.Platform = 'linux',
): string {
  const what = res.status === 'refused' ? `${res.agentName} refused the certificate` : `${res.agentName} accepted the certificate but does not list it (it drops OpenSSH certificates)`;
  if (profile.keystore === 'file' && sshConfigWritten) {
    return `note: ${what}; plain ssh still works: the Jumpgate block in ~/.ssh/config names the key and certificate files (${paths.privateKey(profile.name, profile.username)}).`;
  }
  const fixes = [`${startAgentHint(platform)} and log in again`, 'or use `tsh ssh`, which does not need the agent'];
  if (profile.keystore === 'file') {
    fixes.push(`or add \`IdentityFile ${paths.privateKey(profile.name, profile.username)}\` and \`CertificateFile ${paths.certificate(profile.name, profile.username)}\` to the Host block in ~/.ssh/config (or log in without --no-ssh-config)`);
  }
  return `warning: ${what}, so plain ssh cannot use it. To fix: ${fixes.join('; ')}.`;
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
