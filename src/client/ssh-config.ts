/**
 * The ssh_config block that makes plain OpenSSH (`ssh`, `scp`, `sftp`,
 * `rsync -e ssh`) go through the proxy after `tsh login`: `tsh config` prints
 * it, `tsh login` installs it into ~/.ssh/config between markers.
 *
 *   # BEGIN Jumpgate <profile>
 *   # (what it is)
 *   Host node1 node2 *.<cluster> !<proxy host>     the nodes: through `tsh proxy ssh`, trusting only the host CA
 *       UserKnownHostsFile "<TSH_HOME>/known_hosts"
 *       StrictHostKeyChecking yes
 *       IdentityFile / CertificateFile / IdentitiesOnly   (file keystore; with the keychain the agent holds them)
 *       ProxyCommand <tsh> proxy ssh --proxy=<web addr> %r@%h:%p
 *   Host <proxy host>                                 for `ssh -J`: the proxy's host certificate becomes trusted too
 *       UserKnownHostsFile ~/.ssh/known_hosts ~/.ssh/known_hosts2 "<TSH_HOME>/known_hosts"
 *   Host *                                            ends the section so what follows applies to every host again
 *   # END Jumpgate <profile>
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
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../errors.js';
import { isClusterName, isClusterPattern, isPlainHostName, isPlainHostPort, isUnderCluster, sameHost, splitPlainHostPort } from '../api/names.js';
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
  keystore: KeystoreKind;
  knownHostsFile: string;
  /** The private key and certificate files (written only with the file keystore). */
  identityFile: string;
  certificateFile: string;
  /** How to run this tsh: [program] or [node, script] (deps.selfCommand); absolute paths. */
  tshCommand: string[];
  platform: NodeJS.Platform;
}

/** The block's input for a stored profile. */
export function sshConfigInput(profile: Profile, paths: TshPaths, tshCommand: string[]): SshConfigBlockInput {
  return {
    profileName: profile.name,
    clusterName: profile.clusterName,
    webProxyAddr: profile.webProxyAddr,
    sshProxyAddr: profile.sshProxyAddr,
    nodeNames: profile.nodeNames,
    keystore: profile.keystore,
    knownHostsFile: paths.knownHosts(),
    identityFile: paths.privateKey(profile.name, profile.username),
    certificateFile: paths.certificate(profile.name, profile.username),
    tshCommand,
    platform: paths.penv.platform,
  };
}

/** The exact marker lines of a profile's block. */
export function blockMarkers(profileName: string): { begin: string; end: string } {
  return { begin: `# BEGIN Jumpgate ${profileName}`, end: `# END Jumpgate ${profileName}` };
}

/** Renders the managed block, markers included, `\n` line endings, ending in a newline. */
export function renderSshConfigBlock(input: SshConfigBlockInput): string {
  checkBlockInput(input);
  const win = input.platform === 'win32';
  const { begin, end } = blockMarkers(input.profileName);
  const proxyHost = hostOf(input.sshProxyAddr);
  const nodePatterns = clusterHostPatterns(input.clusterName, input.nodeNames);
  const path = (p: string) => configPath(p, win);
  const identity =
    input.keystore === 'file'
      ? [`    IdentityFile ${path(input.identityFile)}`, `    CertificateFile ${path(input.certificateFile)}`]
      : ['    # Identity: the key and certificate `tsh login` loaded into your ssh-agent.'];
  const proxyCommand = [...input.tshCommand.map((w) => commandWord(w, win)), 'proxy', 'ssh', commandWord(`--proxy=${input.webProxyAddr}`, win), '%r@%h:%p'].join(' ');
  return [
    begin,
    `# Cluster ${input.clusterName} through the proxy ${input.webProxyAddr}. Written by tsh; \`tsh login\` rewrites it: edit outside it.`,
    `Host ${nodePatterns.join(' ')}${proxyHost ? ` !${proxyHost}` : ''}`,
    `    UserKnownHostsFile ${path(input.knownHostsFile)}`,
    '    StrictHostKeyChecking yes',
    ...identity,
    ...(input.keystore === 'file' ? ['    IdentitiesOnly yes'] : []),
    `    ProxyCommand ${proxyCommand}`,
    ...(proxyHost
      ? [
          `Host ${proxyHost}`,
          `    UserKnownHostsFile ~/.ssh/known_hosts ~/.ssh/known_hosts2 ${path(input.knownHostsFile)}`,
          ...(input.keystore === 'file' ? identity : []),
        ]
      : []),
    '# Ends the Host section above, so the lines after this block apply to every host again.',
    'Host *',
    end,
    '',
  ].join('\n');
}

function hostOf(addr: string): string | undefined {
  return splitPlainHostPort(addr)?.host;
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
    if (p.startsWith('!') || !isClusterPattern(p, clusterName)) throw unsafeValue(`Host pattern for ${printable(clusterName)}`, p);
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
