/**
 * Every path tsh reads or writes, in one place. The layout under TSH_HOME
 * (default ~/.tsh, %USERPROFILE%\.tsh on Windows):
 *
 *   ~/.tsh/                              0700
 *   ├── current-profile                  name of the profile commands use by default
 *   ├── known_hosts                      @cert-authority lines of every cluster's host CA
 *   ├── .lock                            held while a login or logout rewrites a profile
 *   ├── .relogin.lock                    held by the one `tsh proxy ssh` that logs in again (others wait)
 *   ├── relogin-result                   0600  how that login ended ({"outcome","at"}): waiters do not start another
 *   ├── profiles/                        0700
 *   │   └── <profile>.json               0600  proxy addresses, user, logins, roles, expiry
 *   └── keys/                            0700
 *       └── <profile>/                   0700
 *           ├── <user>                   0600  private key, only with the file keystore
 *           ├── <user>.pub                     public key (OpenSSH line), with every keystore
 *           ├── <user>-cert.pub                user certificate (OpenSSH line), with every keystore; the
 *           │                                  ssh_config block's CertificateFile (and, with the
 *           │                                  keychain, its IdentityFile: ssh signs through the agent)
 *           ├── <user>-x509.pem          0600  X.509 client certificate for the same key (TLS routing: mutual TLS
 *           │                                  on the web port), with every keystore; absent from older logins
 *           ├── +last-route              0600  how the last connection went ({"path":"tls"|"ssh","node","at"}): tsh status
 *           └── +agent-keys              0600  public keys this profile loaded into ssh-agent (logout removes them);
 *                                              ("+" is not allowed in user names: no <user> file collides)
 *
 * The modes apply on Linux and macOS; Windows has none (Node's mode only sets
 * the read-only flag): there the files are protected by the ACL they inherit,
 * which under %USERPROFILE% admits the user, SYSTEM and Administrators.
 *
 * <profile> is the proxy's public host name (e.g. `jump.example.org`), so one
 * laptop can hold logins to several clusters. With the keychain keystore the
 * private key lives in the OS keychain under service `jumpgate`, account
 * `<profile>/<user>`, and never touches the disk.
 *
 * The user's ~/.ssh/config gains one managed block per profile (see ssh-config.ts);
 * a backup of the original is kept once as ~/.ssh/config.jumpgate-backup. The
 * block's ProxyCommand carries this TSH_HOME (`tsh proxy ssh --tsh-home=`), so
 * ssh started without TSH_HOME in its environment still finds the login.
 * OpenSSH reads ~/.ssh/config under the passwd entry's home, not $HOME
 * (ssh-config.ts unreadConfigWarning).
 */
import { join } from 'node:path';

/** The inputs paths depend on: taken from deps so tests (and Windows) can pin them. */
export interface PathEnv {
  env: Record<string, string | undefined>;
  homedir: string;
  platform: NodeJS.Platform;
}

/** The user's home: %USERPROFILE% on Windows (not HOME, which Git Bash and MSYS set), else the home directory. */
export function userHome(p: PathEnv): string {
  return p.platform === 'win32' ? (p.env['USERPROFILE'] ?? p.homedir) : p.homedir;
}

/** TSH_HOME, or the per-OS default. */
export function tshHome(p: PathEnv): string {
  const fromEnv = p.env['TSH_HOME'];
  if (fromEnv) return fromEnv;
  return join(userHome(p), '.tsh');
}

/**
 * TSH_HOME when it is not the per-OS default (the TSH_HOME variable or
 * `--tsh-home` moved it), else undefined: hints then add `--tsh-home=` so the
 * command they print finds the same login from any shell.
 */
export function nonDefaultTshHome(p: PathEnv): string | undefined {
  const home = tshHome(p);
  return home === join(userHome(p), '.tsh') ? undefined : home;
}

/** Separators as the platform writes them: backslashes on Windows. */
function nativeSeparators(p: PathEnv, path: string): string {
  return p.platform === 'win32' ? path.replace(/\//g, '\\') : path;
}

/** The part of `path` after the user's home (starting with a separator), or undefined when it is elsewhere. */
function homeRelative(p: PathEnv, path: string): string | undefined {
  const win = p.platform === 'win32';
  const home = nativeSeparators(p, userHome(p)).replace(/[\\/]+$/, '');
  const full = nativeSeparators(p, path);
  const prefix = home + (win ? '\\' : '/');
  // Windows paths compare without case (NTFS, as Explorer does).
  const inside = home !== '' && (win ? full.toLowerCase().startsWith(prefix.toLowerCase()) : full.startsWith(prefix));
  return inside ? full.slice(home.length) : undefined;
}

/**
 * A path written the way the platform's users write it, for messages (never
 * for files): under the home directory `~/.tsh/keys` on Linux and macOS,
 * `%USERPROFILE%\.tsh\keys` on Windows (backslashes, as Explorer and cmd
 * show them); anything else as it is.
 */
export function shownPath(p: PathEnv, path: string): string {
  const rest = homeRelative(p, path);
  if (rest === undefined) return nativeSeparators(p, path);
  return (p.platform === 'win32' ? '%USERPROFILE%' : '~') + rest;
}

/** Whether `path` is inside the user's home (%USERPROFILE% on Windows, compared without case there). */
export function isUnderUserHome(p: PathEnv, path: string): boolean {
  return homeRelative(p, path) !== undefined;
}

/** The paths of one TSH_HOME. */
export class TshPaths {
  readonly home: string;

  constructor(readonly penv: PathEnv) {
    this.home = tshHome(penv);
  }

  currentProfile(): string {
    return join(this.home, 'current-profile');
  }
  knownHosts(): string {
    return join(this.home, 'known_hosts');
  }
  lock(): string {
    return join(this.home, '.lock');
  }
  /** Held by the `tsh proxy ssh --relogin=auto` that runs the browser login; concurrent ssh processes wait on it. */
  reloginLock(): string {
    return join(this.home, '.relogin.lock');
  }
  /** The outcome of the last automatic relogin (cli/commands/tsh/relogin.ts). */
  reloginResult(): string {
    return join(this.home, 'relogin-result');
  }
  profilesDir(): string {
    return join(this.home, 'profiles');
  }
  profile(name: string): string {
    return join(this.profilesDir(), `${safeName(name)}.json`);
  }
  keysDir(profile: string): string {
    return join(this.home, 'keys', safeName(profile));
  }
  privateKey(profile: string, user: string): string {
    return join(this.keysDir(profile), safeName(user));
  }
  publicKey(profile: string, user: string): string {
    return `${this.privateKey(profile, user)}.pub`;
  }
  certificate(profile: string, user: string): string {
    return `${this.privateKey(profile, user)}-cert.pub`;
  }
  /** The X.509 client certificate (PEM) for the TLS route, issued with the SSH certificate. */
  tlsCertificate(profile: string, user: string): string {
    return `${this.privateKey(profile, user)}-x509.pem`;
  }
  /** Which path (TLS route or SSH port) the profile's last connection took (tsh status). */
  lastRoute(profile: string): string {
    return join(this.keysDir(profile), '+last-route');
  }
  /** Base64 public key blobs, one a line, of every key a login of this profile put into the agent. */
  agentKeys(profile: string): string {
    return join(this.keysDir(profile), '+agent-keys');
  }

  /** The user's OpenSSH client config (where the managed block goes). */
  sshConfig(): string {
    return join(userHome(this.penv), '.ssh', 'config');
  }
  sshConfigBackup(): string {
    return `${this.sshConfig()}.jumpgate-backup`;
  }

  /** `path` as people write it on this platform (shownPath): for messages only. */
  shown(path: string): string {
    return shownPath(this.penv, path);
  }
}

/** The keychain entry of a profile's private key. */
export function keychainAccount(profile: string, user: string): { service: string; account: string } {
  return { service: 'jumpgate', account: `${profile}/${user}` };
}

/**
 * Profile and user names become file names: refuse anything that could
 * escape the directory or confuse a shell, rather than silently mangling it.
 */
export function safeName(name: string): string {
  if (!/^[A-Za-z0-9._@-]{1,128}$/.test(name) || name === '.' || name === '..') {
    throw new Error(`"${name}" cannot be used as a file name under TSH_HOME`);
  }
  return name;
}
