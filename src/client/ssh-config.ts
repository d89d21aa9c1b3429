/**
 * The ssh_config block that makes plain OpenSSH (`ssh`, `scp`, `sftp`,
 * `rsync -e ssh`) go through the proxy after `tsh login`: `tsh config` prints
 * it, `tsh login` installs it into ~/.ssh/config between markers.
 *
 *   # BEGIN Jumpgate <profile>
 *   # (what it is)
 *   Match host node1,node2,*.<cluster> exec "<tsh> proxy ssh --check-login --relogin=auto ..."   (--relogin=auto only)
 *       # (empty: the exec logs in again, when needed, before ssh reads the key files)
 *   Match host node1,node2,*.<cluster>,!<proxy host>   the nodes: through `tsh proxy ssh`, trusting only the host CA
 *       UserKnownHostsFile "<TSH_HOME>/known_hosts"
 *       StrictHostKeyChecking yes
 *       IdentityFile "<key>"  (file keystore; keychain: "<key>-cert.pub", ssh signs with the agent's entry)
 *       CertificateFile "<key>-cert.pub"
 *       IdentitiesOnly yes                               only this certificate, whatever else the agent holds
 *       ProxyCommand <tsh> proxy ssh --relogin=auto|never --tsh-home=<TSH_HOME> --proxy=<web addr> %r@%h:%p
 *   Match host <proxy host>                            for `ssh -J`: the proxy's host certificate becomes trusted too
 *       UserKnownHostsFile ~/.ssh/known_hosts ~/.ssh/known_hosts2 "<TSH_HOME>/known_hosts"
 *       IdentityFile / CertificateFile / IdentitiesOnly (as above)
 *   Host *                                            ends the section so what follows applies to every host again
 *   # END Jumpgate <profile>
 *
 * Why `Match host` and not `Host`: ssh matches `Host` patterns against the
 * name as typed, case-sensitively (`Host WebServer01` misses `ssh
 * webserver01`), while `Match host` sees the host name ssh lower-cased
 * (OpenSSH 9.2, checked with `ssh -G`), the same name ssh then looks up in
 * known_hosts and checks against the host certificate. So the patterns are
 * written lower-case and every spelling of a node name takes the block.
 *
 * Why IdentitiesOnly with the keychain too: without it ssh offers every key
 * in the agent first, and a user with six or more other keys gets "Too many
 * authentication failures" before the certificate is tried. The identity is
 * then the CERTIFICATE file: ssh matches IdentityFile entries against the
 * agent's by type and key (sshkey_equal), and tsh puts only the certificate
 * in the agent, so a plain `<key>.pub` matches nothing, and ssh falls back
 * to reading it as a private key ("UNPROTECTED PRIVATE KEY FILE", OpenSSH
 * 9.2). The certificate file matches the agent's entry and the agent signs.
 *
 * Why the `Match exec` line (written with `--relogin=auto`, i.e. when the
 * login could open a browser): ssh reads IdentityFile/CertificateFile right
 * after it starts the ProxyCommand and before the ProxyCommand can finish a
 * login (OpenSSH 9.2, `ssh -vvv`: "Executing proxy command", then "identity
 * file ..."), so a relogin in the ProxyCommand alone leaves ssh offering the
 * expired certificate it read: "Permission denied (publickey)". That holds
 * for the keychain too: its IdentityFile is the certificate file, and with
 * IdentitiesOnly ssh uses only the agent's entry that equals it, the OLD
 * one. `Match exec` runs while ssh reads its config, before all of that; it
 * costs one more short tsh run per ssh to a node (its section is empty;
 * `ssh -G` runs it too). Left out where the command would need double quotes
 * (Windows paths with spaces: the exec argument is itself double-quoted).
 *
 * Why `--tsh-home`: ssh started from an IDE or another shell does not have
 * the TSH_HOME this login used; the block carries it so it works from any
 * process of the user (a tsh flag, not `env TSH_HOME=`: Windows has no env).
 *
 * Quoting (ssh_config(5), and the ProxyCommand's shell): paths in keywords
 * are double-quoted, `%` doubled (ssh expands %-tokens there). ProxyCommand
 * runs through `$SHELL -c` on POSIX: words are single-quoted when they need
 * it. On Windows, OpenSSH for Windows 7.7 (still the inbox ssh of many
 * Windows 10 machines) hands the command to CreateProcessW in a way that
 * fails with "CreateProcessW failed error:87" when the program path is quoted
 * (gravitational/teleport#16181, coder/coder#2853), while Git for Windows'
 * ssh runs it through bash, which eats unquoted backslashes (coder/coder#7639).
 * So on Windows every path is written with forward slashes (CreateProcessW
 * and bash both take them) and quoted only when it contains a space; install
 * tsh in a directory without spaces to stay clear of the old inbox ssh.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { isClusterName, isClusterPattern, isPlainHostName, isPlainHostPort, isRoutableNodeAddressHost, isThisMachine, isUnderCluster, isWithinCluster, sameHost, splitPlainHostPort } from '../api/names.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { printable } from '../util/printable.js';
import type { TshPaths } from './paths.js';
import type { KeystoreKind, Profile } from './profile.js';

/** Everything the block is rendered from; `sshConfigInput` fills it from a profile. */
export interface SshConfigBlockInput {
  profileName: string;
  clusterName: string;
  /** host:port of the proxy's HTTPS API: what `tsh proxy ssh --proxy=` selects the profile by. */
  webProxyAddr: string;
  /** host:port of the proxy's SSH service. */
  sshProxyAddr: string;
  nodeNames: string[];
  /** host:port of the nodes: their address hosts are routed too (not this machine's own names). */
  nodeAddrs: string[];
  keystore: KeystoreKind;
  /** The TSH_HOME of this login, carried by the ProxyCommand (`--tsh-home`). */
  tshHome: string;
  knownHostsFile: string;
  /** The private key file (written only with the file keystore). */
  identityFile: string;
  /** The certificate file (written with every keystore): also the identity with the keychain. */
  certificateFile: string;
  /** How to run this tsh: [program] or [node, script] (deps.selfCommand); absolute paths. */
  tshCommand: string[];
  platform: NodeJS.Platform;
  /** `--relogin` of the ProxyCommand (and, with `auto`, the `Match exec` check); default never. */
  relogin?: 'auto' | 'never';
}

/** The block's input for a stored profile. */
export function sshConfigInput(profile: Profile, paths: TshPaths, tshCommand: string[]): SshConfigBlockInput {
  return {
    profileName: profile.name,
    clusterName: profile.clusterName,
    webProxyAddr: profile.webProxyAddr,
    sshProxyAddr: profile.sshProxyAddr,
    nodeNames: profile.nodeNames,
    nodeAddrs: profile.nodeAddrs ?? [],
    keystore: profile.keystore,
    tshHome: paths.home,
    knownHostsFile: paths.knownHosts(),
    identityFile: paths.privateKey(profile.name, profile.username),
    certificateFile: paths.certificate(profile.name, profile.username),
    tshCommand,
    platform: paths.penv.platform,
    relogin: profile.relogin ?? 'never',
  };
}

/** The exact marker lines of a profile's block. */
export function blockMarkers(profileName: string): { begin: string; end: string } {
  return { begin: `# BEGIN Jumpgate ${profileName}`, end: `# END Jumpgate ${profileName}` };
}

/** Renders the managed block, markers included, `\n` line endings, ending in a newline. */
export function renderSshConfigBlock(input: SshConfigBlockInput): string {
  checkBlockInput(input);
  const { begin, end } = blockMarkers(input.profileName);
  const proxyHost = hostOf(input.sshProxyAddr);
  return [
    begin,
    `# Cluster ${input.clusterName} through the proxy ${input.webProxyAddr}. Written by tsh; \`tsh login\` rewrites it: edit outside it.`,
    ...nodeSection(input, proxyHost),
    ...(proxyHost ? proxySection(input, proxyHost) : []),
    '# Ends the Host section above, so the lines after this block apply to every host again.',
    'Host *',
    end,
    '',
  ].join('\n');
}

// --- guards: every value from a profile (and so from a server) is checked
// here, where it is written, whatever the caller checked before. ----------

/**
 * Refuses a block input with any value that is not plain: the profile name
 * (the markers), the cluster name (comment and `*.<cluster>`), both proxy
 * addresses, and an SSH proxy host that is neither the profile's host nor a
 * name under the cluster. Node names are checked by clusterHostPatterns.
 * @throws UserError SSH_CONFIG_UNSAFE_VALUE naming the value (escaped) and the fix
 */
export function checkBlockInput(input: Pick<SshConfigBlockInput, 'profileName' | 'clusterName' | 'webProxyAddr' | 'sshProxyAddr'>): void {
  if (!isPlainHostName(input.profileName)) throw unsafeValue('profile name', input.profileName);
  if (!isClusterName(input.clusterName)) throw unsafeValue('cluster name', input.clusterName);
  if (!isPlainHostPort(input.webProxyAddr)) throw unsafeValue('proxy address', input.webProxyAddr);
  const ssh = splitPlainHostPort(input.sshProxyAddr);
  if (!ssh || !(sameHost(ssh.host, input.profileName) || isUnderCluster(ssh.host, input.clusterName))) throw unsafeValue('SSH proxy address', input.sshProxyAddr);
}

/**
 * The Host patterns of the block's node section: the node names, then
 * `*.<cluster>`, without duplicates (ignoring case). Every pattern must stay
 * within the cluster's own names (api/names.ts isClusterPattern): no `*`, no
 * `?`, no negation, no name outside the cluster, no unsafe character.
 * @throws UserError SSH_CONFIG_UNSAFE_VALUE on the first pattern that is not
 */
export function clusterHostPatterns(clusterName: string, nodeNames: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const p of [...nodeNames, `*.${clusterName}`]) {
    if (p.startsWith('!') || !isClusterPattern(p, clusterName) || isThisMachine(p)) throw unsafeValue(`Host pattern for ${printable(clusterName)}`, p);
    if (seen.has(p.toLowerCase())) continue;
    seen.add(p.toLowerCase());
    out.push(p);
  }
  return out;
}

function unsafeValue(what: string, value: string): UserError {
  return new UserError('SSH_CONFIG_UNSAFE_VALUE', `refusing to write the ${what} "${printable(value, 80)}" into an ssh_config file: it is not a plain name within the cluster`, {
    hint: 'the profile holds a value no proxy may set; run `tsh logout` and then `tsh login` again',
  });
}

/**
 * The `Match host` patterns of the nodes: the inventory names,
 * `*.<cluster>` and the hosts of the nodes' addresses, lower-case (ssh
 * lower-cases the host name `Match host` sees), deduplicated; names that
 * cannot be a pattern as they are are left out. The names this machine
 * answers to (`localhost`, `127.0.0.1`, `::1`) are never routed: `ssh
 * localhost` must stay the local sshd even when a node listens there.
 */
export function nodeHostPatterns(nodeNames: string[], clusterName: string, nodeAddrs: string[] = []): string[] {
  // Node names must be the cluster's own (clusterHostPatterns throws otherwise); an
  // address host is routed only when it is such a name or a private IP address:
  // never a public address or a name outside the cluster, which a proxy could use
  // to take over another host.
  const names = clusterHostPatterns(clusterName, nodeNames);
  const hosts = nodeAddrs
    .map(addrHost)
    .filter((h): h is string => h !== undefined && isRoutableNodeAddressHost(h, clusterName))
    // A bare name is routed only as one of the node names.
    .filter((h) => h.includes('.') || h.includes(':') || names.some((n) => n.toLowerCase() === h.toLowerCase()));
  return [...new Set([...names, ...hosts].map((n) => n.toLowerCase()))];
}


/** The host of `host:port` or `[v6]:port`. */
function addrHost(addr: string): string | undefined {
  return (/^\[([^\]]+)\]:\d+$/.exec(addr) ?? /^([^:]+):\d+$/.exec(addr))?.[1];
}

/** The section for the nodes: through `tsh proxy ssh`, tsh's known_hosts only, exactly the cluster's certificate. */
function nodeSection(input: SshConfigBlockInput, proxyHost: string | undefined): string[] {
  const path = (p: string) => configPath(p, input.platform === 'win32');
  const nodes = nodeHostPatterns(input.nodeNames, input.clusterName, input.nodeAddrs);
  const patterns = [...nodes, ...(proxyHost ? [`!${proxyHost}`] : [])];
  const check = input.relogin === 'auto' ? checkLoginCommand(input) : undefined;
  return [
    ...(check
      ? [`Match host ${patterns.join(',')} exec "${check}"`, '    # (empty on purpose: the exec logs in again, when needed, before ssh reads the key files)']
      : []),
    `Match host ${patterns.join(',')}`,
    `    UserKnownHostsFile ${path(input.knownHostsFile)}`,
    '    StrictHostKeyChecking yes',
    ...identityLines(input),
    `    ProxyCommand ${proxyCommand(input)}`,
  ];
}

/** The section for the proxy's SSH service (`ssh -J`): tsh's known_hosts after the user's own, the same identity. */
function proxySection(input: SshConfigBlockInput, proxyHost: string): string[] {
  const path = (p: string) => configPath(p, input.platform === 'win32');
  return [
    `Match host ${proxyHost}`,
    `    UserKnownHostsFile ~/.ssh/known_hosts ~/.ssh/known_hosts2 ${path(input.knownHostsFile)}`,
    ...identityLines(input),
  ];
}

/**
 * The identity lines: the private key file with the file keystore; with the
 * keychain the certificate file, which ssh matches with the agent's
 * certificate (header). IdentitiesOnly: no other key is offered.
 */
function identityLines(input: SshConfigBlockInput): string[] {
  const path = (p: string) => configPath(p, input.platform === 'win32');
  const key = input.keystore === 'file' ? input.identityFile : input.certificateFile;
  return [`    IdentityFile ${path(key)}`, `    CertificateFile ${path(input.certificateFile)}`, '    IdentitiesOnly yes'];
}

/** `<tsh> proxy ssh --relogin=<auto|never> --tsh-home=<TSH_HOME> --proxy=<web addr> %r@%h:%p`, each word quoted for its platform. */
function proxyCommand(input: SshConfigBlockInput): string {
  const win = input.platform === 'win32';
  return [
    ...input.tshCommand.map((w) => commandWord(w, win)),
    'proxy',
    'ssh',
    `--relogin=${input.relogin ?? 'never'}`,
    commandWord(`--tsh-home=${input.tshHome}`, win),
    commandWord(`--proxy=${input.webProxyAddr}`, win),
    '%r@%h:%p',
  ].join(' ');
}

/**
 * `<tsh> proxy ssh --check-login --relogin=auto --tsh-home=<TSH_HOME>
 * --proxy=<web addr>` for the `Match exec` line, whose argument ssh_config
 * double-quotes: undefined when a word needs double quotes itself (Windows
 * paths with spaces), and the line is then left out.
 */
function checkLoginCommand(input: SshConfigBlockInput): string | undefined {
  const win = input.platform === 'win32';
  const words = [
    ...input.tshCommand.map((w) => commandWord(w, win)),
    'proxy',
    'ssh',
    '--check-login',
    '--relogin=auto',
    commandWord(`--tsh-home=${input.tshHome}`, win),
    commandWord(`--proxy=${input.webProxyAddr}`, win),
  ];
  return words.some((w) => w.includes('"')) ? undefined : words.join(' ');
}

/** The proxy's host, lower-case, when it can be a pattern. */
function hostOf(addr: string): string | undefined {
  const h = addrHost(addr);
  return h && isPlainPattern(h) ? h.toLowerCase() : undefined;
}

/** A name usable as a pattern as is: no space, quote, comma or negation. */
function isPlainPattern(name: string): boolean {
  return /^[A-Za-z0-9._*?:-]+$/.test(name);
}

/**
 * A warning when the ssh config tsh writes is not the one OpenSSH reads:
 * ssh takes `~` (and so ~/.ssh/config) from the account's passwd entry, not
 * from $HOME, so with HOME pointed elsewhere (sudo -E, a container, a test)
 * the block would sit in a file plain ssh never opens. `accountHome` is the
 * passwd home (deps.accountHome); undefined (Windows, no entry) means no check.
 * Returns undefined when both name the same directory.
 */
export function unreadConfigWarning(paths: TshPaths, accountHome: string | undefined): string | undefined {
  if (accountHome === undefined || accountHome === '' || paths.penv.platform === 'win32') return undefined;
  const written = paths.sshConfig();
  const read = join(accountHome, '.ssh', 'config');
  if (sameDir(dirname(dirname(written)), accountHome)) return undefined;
  return (
    `warning: wrote the block into ${written}, but OpenSSH reads ${read} (the home directory of your account, not $HOME=${paths.penv.homedir}), ` +
    `so plain ssh will not use it: run ssh with -F ${written}, or add the line "Include ${written}" at the top of ${read}`
  );
}

/**
 * Asks OpenSSH itself whether the block takes effect: `ssh -G
 * jumpgate-probe.<cluster>` (ssh_config as ssh reads it: the passwd home's
 * ~/.ssh/config, then /etc/ssh/ssh_config; no connection, no DNS) must show
 * the block's ProxyCommand and `identitiesonly yes`. A Host or Match section,
 * an Include, or a system-wide setting that comes first wins over the block
 * (ssh takes the first value of each keyword): this says so. Returns
 * undefined when the block is in effect, or when ssh cannot be run (not
 * installed: nothing to warn about). `args` go before the host (tests: -F FILE).
 */
export function overriddenBlockWarning(
  input: SshConfigBlockInput,
  opts: { env: Record<string, string | undefined>; ssh?: string; args?: string[]; timeoutMs?: number },
): string | undefined {
  const host = `jumpgate-probe.${input.clusterName.toLowerCase()}`;
  const r = spawnSync(opts.ssh ?? 'ssh', [...(opts.args ?? []), '-G', host], {
    env: opts.env as NodeJS.ProcessEnv,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 5_000,
    stdio: ['ignore', 'pipe', 'pipe'],
    windowsHide: true,
  });
  if (r.error || r.status !== 0) return undefined;
  const value = (key: string) => new RegExp(`^${key} (.*)$`, 'm').exec(r.stdout)?.[1]?.trim();
  const proxyCommand = value('proxycommand') ?? 'none';
  const ours = proxyCommand.includes(' proxy ssh ') && proxyCommand.includes(`--proxy=${input.webProxyAddr}`);
  const identitiesOnly = value('identitiesonly') === 'yes';
  if (ours && identitiesOnly) return undefined;
  const what = !ours ? `its ProxyCommand is ${JSON.stringify(proxyCommand)}` : 'IdentitiesOnly is off';
  return (
    `warning: OpenSSH does not use the Jumpgate block for ${host} (\`ssh -G ${host}\`: ${what}): ` +
    'a Host or Match section, an Include or a system-wide setting (/etc/ssh/ssh_config) read before the block sets it first; ' +
    'move that section below the block, or exclude the cluster from it'
  );
}

function sameDir(a: string, b: string): boolean {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  return real(a) === real(b);
}

/** A path argument of an ssh_config keyword: double-quoted, %-tokens escaped; forward slashes on Windows. */
export function configPath(p: string, windows: boolean): string {
  if (/["\r\n]/.test(p)) throw new UserError('SSH_CONFIG_BAD_PATH', `the path ${JSON.stringify(p)} cannot be written into an ssh_config file`, { hint: 'set TSH_HOME to a path without quotes or line breaks' });
  const v = (windows ? p.replace(/\\/g, '/') : p).replace(/%/g, '%%');
  return `"${v}"`;
}

/**
 * One word of the ProxyCommand: bare when safe, else quoted for the shell
 * that runs it (POSIX: single quotes; Windows: double quotes, only for a
 * space). `%` is doubled: ssh expands %-tokens before anything else.
 */
export function commandWord(word: string, windows: boolean): string {
  if (/[\r\n]/.test(word)) throw new UserError('SSH_CONFIG_BAD_PATH', `${JSON.stringify(word)} cannot be written into a ProxyCommand`);
  if (windows) {
    const w = word.replace(/\\/g, '/').replace(/%/g, '%%');
    if (w.includes('"')) throw new UserError('SSH_CONFIG_BAD_PATH', `${JSON.stringify(word)} cannot be written into a ProxyCommand on Windows`);
    return /\s/.test(w) ? `"${w}"` : w;
  }
  const w = word.replace(/%/g, '%%');
  return /^[A-Za-z0-9_/.,:=@+%-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

/**
 * Puts `block` into an ssh_config text: in place of the profile's first
 * block (any further blocks of the profile are removed: a copy appended by
 * `tsh config >>` and one from a login never pile up), or, when there is
 * none, at the top: ssh takes the first value it finds for each keyword, so
 * only there can a `Host *` section of the user's not override the block's
 * UserKnownHostsFile. Every other line stays as it was; CRLF files stay CRLF.
 * @throws UserError SSH_CONFIG_UNBALANCED when a BEGIN marker has no END.
 */
export function replaceManagedBlock(existing: string, profileName: string, block: string, file = 'ssh config'): string {
  const { begin, end } = blockMarkers(profileName);
  const eol = existing.includes('\r\n') ? '\r\n' : '\n';
  const lines = existing === '' ? [] : existing.replace(/\r?\n$/, '').split(/\r?\n/);
  const blockLines = block.replace(/\n$/, '').split('\n');
  const out: string[] = [];
  let placed = false;
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== begin) {
      out.push(lines[i]!);
      continue;
    }
    const close = lines.findIndex((l, j) => j > i && l.trim() === end);
    if (close < 0) {
      throw new UserError('SSH_CONFIG_UNBALANCED', `${file}:${i + 1}: "${begin}" has no matching "${end}" line`, {
        hint: `fix the block by hand (or delete it from "${begin}" on), then run the command again`,
      });
    }
    if (!placed) out.push(...blockLines);
    placed = true;
    i = close;
  }
  if (!placed) {
    const rest = out.length > 0 ? ['', ...out] : [];
    return [...blockLines, ...rest].join(eol) + eol;
  }
  return out.join(eol) + eol;
}

export interface InstallResult {
  /** The file written (the target of a symlinked ~/.ssh/config). */
  path: string;
  /** Set when this call made the one-time backup of the original. */
  backup?: string;
  /** False when the file already held exactly this block. */
  changed: boolean;
}

/**
 * Installs a profile's block into ~/.ssh/config: atomically (temp file +
 * rename; a full disk leaves the old file intact), after a one-time backup of
 * the original (paths.sshConfigBackup()), keeping the file's mode (0600 for a
 * new file, in a new ~/.ssh of 0700). A symlinked config (dotfile managers) is
 * written through to its target. `write` is injectable for tests.
 */
export function installSshConfigBlock(
  paths: TshPaths,
  profileName: string,
  block: string,
  opts: { write?: typeof writeFileAtomic } = {},
): InstallResult {
  const write = opts.write ?? writeFileAtomic;
  let file = paths.sshConfig();
  const dir = dirname(file);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (paths.penv.platform !== 'win32') chmodSync(dir, 0o700);
  }
  let existing = '';
  let mode = 0o600;
  let exists = false;
  try {
    if (lstatSync(file).isSymbolicLink()) file = realpathSync(file);
    existing = readFileSync(file, 'utf8');
    mode = statSync(file).mode & 0o777;
    exists = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UserError('SSH_CONFIG_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  const next = replaceManagedBlock(existing, profileName, block, file);
  if (exists && next === existing) return { path: file, changed: false };
  let backup: string | undefined;
  if (exists && !existsSync(paths.sshConfigBackup())) {
    write(paths.sshConfigBackup(), existing, 0o600);
    backup = paths.sshConfigBackup();
  }
  write(file, next, mode);
  return { path: file, changed: true, ...(backup ? { backup } : {}) };
}
