/**
 * Where the user's private key lives between logins: the OS keychain (macOS
 * Keychain, Windows Credential Manager, the Secret Service on Linux) through
 * `@napi-rs/keyring`, or a file under TSH_HOME: mode 0600 where the OS has
 * modes; on Windows (no modes: Node's mode only sets the read-only flag) the
 * file is protected by the ACL it inherits, which under %USERPROFILE% admits
 * the user, SYSTEM and Administrators. Messages say which (`fileKeyProtection`).
 *
 * `openKeyStore('auto')` probes the keychain (write, read back, delete a probe
 * entry) under a deadline and falls back to the file store with one notice:
 * headless Linux has no Secret Service and fails fast, but a wedged D-Bus
 * could otherwise hang tsh. The deadline alone is not enough there: the
 * addon's entry constructor connects to the session bus ON THE MAIN THREAD
 * and blocks it (seen with a bus that accepts and never answers: timers stop,
 * and a worker thread stuck the same way even blocks process.exit). So on
 * Linux every keychain call is preceded by `checkSessionBus`, a non-blocking
 * D-Bus AUTH handshake in plain Node with its own deadline; only a bus that
 * answers is handed to the addon. On Linux the Secret Service is required
 * explicitly: the library would otherwise fall back to the kernel keyring,
 * which forgets everything at reboot or logout while the certificate and
 * profile stay on disk.
 *
 * The native addon is imported lazily, so commands that never touch the key
 * store (tsh version, tsh config, ...) do not load it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { isUnderUserHome, keychainAccount, type TshPaths } from './paths.js';
import { ProfileStore, type KeystoreKind } from './profile.js';

/** Where a profile's private key (OpenSSH PEM text) is kept. */
export interface KeyStore {
  readonly kind: KeystoreKind;
  /** Where the key of (profile, user) is, for messages ("the OS keychain (...)" or a path). */
  where(profile: string, user: string): string;
  save(profile: string, user: string, privateKeyPem: string): Promise<void>;
  /** The saved key, or undefined when there is none. */
  load(profile: string, user: string): Promise<string | undefined>;
  /** Removes the key; nothing to remove is not an error. */
  remove(profile: string, user: string): Promise<void>;
}

/** The part of `@napi-rs/keyring` used here (its AsyncEntry runs off the main thread). */
export interface KeyringModule {
  AsyncEntry: new (
    service: string,
    account: string,
    options?: { linux?: { store?: 'secret-service' | 'keyutils' } } | null,
  ) => {
    setPassword(password: string, signal?: AbortSignal | null): Promise<void>;
    getPassword(signal?: AbortSignal | null): Promise<string | null>;
    deletePassword(signal?: AbortSignal | null): Promise<boolean>;
  };
}

/** How long the `auto` probe may take before tsh gives up on the keychain. */
export const KEYCHAIN_PROBE_TIMEOUT_MS = 3_000;
/** Deadline for one keychain read/write; long enough for an unlock prompt on a desktop. */
export const KEYCHAIN_OP_TIMEOUT_MS = 60_000;

/** Loads the addon; a failure (no prebuilt binary for this platform) makes the keychain unavailable. */
export const loadKeyringModule = async (): Promise<KeyringModule> => (await import('@napi-rs/keyring')) as unknown as KeyringModule;

/**
 * The unix socket addresses in a D-Bus address list (D-Bus specification,
 * "Server Addresses"): `unix:path=...` and `unix:abstract=...` entries, in
 * order. Other transports (tcp, launchd, autolaunch) are skipped.
 */
export function sessionBusSockets(address: string): string[] {
  const out: string[] = [];
  for (const entry of address.split(';')) {
    const m = /^unix:(.*)$/.exec(entry.trim());
    if (!m) continue;
    for (const kv of m[1]!.split(',')) {
      const eq = kv.indexOf('=');
      const key = kv.slice(0, eq);
      // Values are %-escaped (D-Bus specification, "Server Addresses").
      let value: string;
      try {
        value = decodeURIComponent(kv.slice(eq + 1));
      } catch {
        continue;
      }
      if (key === 'path') out.push(value);
      else if (key === 'abstract') out.push('\0' + value);
    }
  }
  return out;
}

/**
 * Checks that the D-Bus session bus answers, without blocking: connects to
 * its socket and runs the first step of the D-Bus authentication protocol
 * (NUL byte, `AUTH EXTERNAL <uid as hex>`); any `OK` or `REJECTED` line means
 * a live bus. Resolves undefined when the bus answered (or there is no
 * socket address to check: then the addon fails fast by itself), or the
 * reason it did not.
 */
export async function checkSessionBus(env: Record<string, string | undefined>, timeoutMs: number): Promise<string | undefined> {
  let sockets: string[];
  const address = env['DBUS_SESSION_BUS_ADDRESS'];
  if (address) sockets = sessionBusSockets(address);
  else {
    const runtime = env['XDG_RUNTIME_DIR'];
    sockets = runtime && existsSync(`${runtime}/bus`) ? [`${runtime}/bus`] : [];
  }
  if (sockets.length === 0) return undefined;
  const path = sockets[0]!;
  const shown = path.startsWith('\0') ? `@${path.slice(1)}` : path;
  const uid = String(process.getuid?.() ?? 0);
  return new Promise((resolve) => {
    const sock = netConnect({ path });
    let got = '';
    const done = (reason: string | undefined): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(reason);
    };
    const timer = setTimeout(() => done(`the D-Bus session bus at ${shown} did not answer within ${timeoutMs} ms`), timeoutMs);
    sock.on('connect', () => sock.write(`\0AUTH EXTERNAL ${Buffer.from(uid).toString('hex')}\r\n`));
    sock.on('data', (b: Buffer) => {
      got += b.toString('latin1');
      if (got.length > 4096) return done(`the D-Bus session bus at ${shown} answered with something that is not D-Bus`);
      const nl = got.indexOf('\r\n');
      if (nl < 0) return;
      const line = got.slice(0, nl);
      done(/^(OK|REJECTED)\b/.test(line) ? undefined : `the D-Bus session bus at ${shown} answered with something that is not D-Bus`);
    });
    sock.on('error', (err: NodeJS.ErrnoException) => done(`no D-Bus session bus at ${shown} (${err.code ?? err.message})`));
    sock.on('close', () => done(`the D-Bus session bus at ${shown} closed the connection`));
  });
}

class KeychainTimeout extends Error {}

/** Runs a keychain call with a deadline; the AbortSignal tells the addon to give up too. */
async function bounded<T>(ms: number, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ac.abort();
      reject(new KeychainTimeout(`${what} did not answer within ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([fn(ac.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A one-line reason from whatever the addon threw. */
function reasonOf(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s+/g, ' ').trim().slice(0, 200) || 'unknown error';
}

function keychainName(platform: NodeJS.Platform): string {
  if (platform === 'darwin') return 'the macOS Keychain';
  if (platform === 'win32') return 'the Windows Credential Manager';
  return 'the Secret Service (GNOME Keyring, KWallet, KeePassXC)';
}

function entryOptions(platform: NodeJS.Platform): { linux: { store: 'secret-service' } } | undefined {
  return platform === 'linux' ? { linux: { store: 'secret-service' } } : undefined;
}

/** The private key in the OS keychain: service `jumpgate`, account `<profile>/<user>` (paths.ts keychainAccount). */
export class KeychainStore implements KeyStore {
  readonly kind = 'keychain' as const;

  constructor(
    private readonly mod: KeyringModule,
    private readonly platform: NodeJS.Platform,
    private readonly env: Record<string, string | undefined>,
    private readonly timeoutMs = KEYCHAIN_OP_TIMEOUT_MS,
  ) {}

  private entry(profile: string, user: string) {
    const { service, account } = keychainAccount(profile, user);
    return new this.mod.AsyncEntry(service, account, entryOptions(this.platform));
  }

  /** On Linux, refuses to hand a bus that does not answer to the addon (see the header). */
  private async checkBus(what: string, profile: string, user: string): Promise<void> {
    if (this.platform !== 'linux') return;
    const reason = await checkSessionBus(this.env, KEYCHAIN_PROBE_TIMEOUT_MS);
    if (reason) {
      throw new UserError('KEYCHAIN_UNAVAILABLE', `cannot ${what} ${this.where(profile, user)}: ${reason}`, {
        hint: 'run tsh where your desktop session (and its D-Bus) is available, or log in again with --keystore=file',
      });
    }
  }

  where(profile: string, user: string): string {
    const { service, account } = keychainAccount(profile, user);
    return `${keychainName(this.platform)} (service "${service}", account "${account}")`;
  }

  private async call<T>(what: string, profile: string, user: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    await this.checkBus(what, profile, user);
    try {
      return await bounded(this.timeoutMs, keychainName(this.platform), fn);
    } catch (err) {
      throw new UserError('KEYCHAIN_UNAVAILABLE', `cannot ${what} ${this.where(profile, user)}: ${reasonOf(err)}`, {
        cause: err,
        hint:
          this.platform === 'win32'
            ? 'run the command again in your own interactive Windows session (the Credential Manager is per logon session), or log in again with --keystore=file'
            : 'unlock the keychain (or start its service) and run the command again, or log in again with the file key store',
      });
    }
  }

  async save(profile: string, user: string, privateKeyPem: string): Promise<void> {
    await this.call('save the private key to', profile, user, (signal) => this.entry(profile, user).setPassword(privateKeyPem, signal));
  }

  async load(profile: string, user: string): Promise<string | undefined> {
    const v = await this.call('read the private key from', profile, user, (signal) => this.entry(profile, user).getPassword(signal));
    return v ?? undefined;
  }

  async remove(profile: string, user: string): Promise<void> {
    await this.call('remove the private key from', profile, user, (signal) => this.entry(profile, user).deletePassword(signal));
  }
}

/** The private key in a 0600 file: TSH_HOME/keys/<profile>/<user>, written atomically. */
export class FileStore implements KeyStore {
  readonly kind = 'file' as const;

  constructor(private readonly paths: TshPaths) {}

  where(profile: string, user: string): string {
    return this.paths.privateKey(profile, user);
  }

  async save(profile: string, user: string, privateKeyPem: string): Promise<void> {
    new ProfileStore(this.paths).ensureDirs(profile);
    writeFileAtomic(this.paths.privateKey(profile, user), privateKeyPem, 0o600);
  }

  async load(profile: string, user: string): Promise<string | undefined> {
    const file = this.paths.privateKey(profile, user);
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new UserError('KEY_UNREADABLE', `cannot read the private key ${file}: ${(err as Error).message}`, {
        cause: err,
        hint:
          this.paths.penv.platform === 'win32'
            ? `check that your account may read ${file} (\`icacls "${file}"\` lists who may), or run \`tsh login\` again`
            : `check the owner and permissions of ${file}, or run \`tsh login\` again`,
      });
    }
  }

  async remove(profile: string, user: string): Promise<void> {
    rmSync(this.paths.privateKey(profile, user), { force: true });
  }
}

export type KeychainProbe = { ok: true; module: KeyringModule } | { ok: false; reason: string };

/**
 * Checks the keychain really works: loads the addon, then writes, reads back
 * and deletes a probe entry, all within `timeoutMs`. Never throws.
 */
export async function probeKeychain(opts: {
  platform: NodeJS.Platform;
  env: Record<string, string | undefined>;
  timeoutMs?: number;
  loadKeyring?: () => Promise<KeyringModule>;
}): Promise<KeychainProbe> {
  const timeoutMs = opts.timeoutMs ?? KEYCHAIN_PROBE_TIMEOUT_MS;
  const started = Date.now();
  let mod: KeyringModule;
  try {
    mod = await (opts.loadKeyring ?? loadKeyringModule)();
  } catch (err) {
    return { ok: false, reason: `the keychain library did not load: ${reasonOf(err)}` };
  }
  const left = (): number => Math.max(1, timeoutMs - (Date.now() - started));
  if (opts.platform === 'linux') {
    const busReason = await checkSessionBus(opts.env, left());
    if (busReason) return { ok: false, reason: busReason };
  }
  const { service } = keychainAccount('probe', 'probe');
  const account = `.probe/${process.pid}-${randomBytes(4).toString('hex')}`;
  const value = randomBytes(12).toString('hex');
  let entry: InstanceType<KeyringModule['AsyncEntry']>;
  try {
    entry = new mod.AsyncEntry(service, account, entryOptions(opts.platform));
  } catch (err) {
    return { ok: false, reason: reasonOf(err) };
  }
  let written = false;
  try {
    await bounded(left(), keychainName(opts.platform), (signal) => entry.setPassword(value, signal));
    written = true;
    const back = await bounded(left(), keychainName(opts.platform), (signal) => entry.getPassword(signal));
    if (back !== value) return { ok: false, reason: 'it did not give back what was stored' };
    await bounded(left(), keychainName(opts.platform), (signal) => entry.deletePassword(signal));
    written = false;
    return { ok: true, module: mod };
  } catch (err) {
    return { ok: false, reason: reasonOf(err) };
  } finally {
    // Best effort, not awaited: a keychain that just timed out must not hold tsh up.
    if (written) entry.deletePassword().catch(() => undefined);
  }
}

export interface OpenKeyStoreDeps {
  paths: TshPaths;
  /** Prints one line for people (stderr). */
  notice: (line: string) => void;
  /** Default KEYCHAIN_PROBE_TIMEOUT_MS. */
  probeTimeoutMs?: number;
  /** Default: import('@napi-rs/keyring'); a single-executable build can pass its own loader. */
  loadKeyring?: () => Promise<KeyringModule>;
  /** --debug: the fallback notice carries the probe's raw reason (D-Bus and addon errors); otherwise it stays one plain line. */
  debug?: boolean;
}

/**
 * What keeps others from reading the file store's key, true for the
 * platform: the mode `0600` on Linux and macOS; on Windows, which has no
 * modes, the ACL the file inherits: under %USERPROFILE% the profile's
 * (the user, SYSTEM and Administrators); elsewhere whatever that directory
 * allows, which tsh does not change.
 */
export function fileKeyProtection(paths: TshPaths): string {
  if (paths.penv.platform !== 'win32') return '0600';
  if (isUnderUserHome(paths.penv, paths.home)) return 'readable by your account, SYSTEM and Administrators: the ACL of your user profile directory';
  return `protected only by the ACL of ${paths.shown(paths.home)}, which tsh does not change; keep TSH_HOME inside %USERPROFILE%`;
}

/** Why a keychain mode failed, and how to get on: per OS, since each keychain fails its own way. */
function keychainHint(platform: NodeJS.Platform): string {
  if (platform === 'linux') return 'start a Secret Service (e.g. gnome-keyring-daemon) in a D-Bus session, or use --keystore=file';
  if (platform === 'win32') return 'run tsh in your own interactive Windows session (the Credential Manager is per logon session), or use --keystore=file';
  return 'unlock the keychain, or use --keystore=file';
}

/**
 * The one line `auto` prints when it falls back to the file store: which
 * keychain was not usable and why, where the key goes (as the platform's
 * users write paths: ~/.tsh/keys/… or %USERPROFILE%\.tsh\keys\…), and what
 * protects it (fileKeyProtection: 0600, or on Windows the ACL).
 */
export function fileStoreNotice(paths: TshPaths, reason: string | undefined): string {
  const platform = paths.penv.platform;
  const dir = paths.shown(join(paths.home, 'keys', '…'));
  const what = platform === 'linux' ? 'no OS keychain available' : `no OS keychain available: ${keychainName(platform)} is not usable`;
  const why = reason === undefined ? '' : ` (${reason})`;
  return `${what}${why}; keeping the private key in ${dir} (${fileKeyProtection(paths)})`;
}

/**
 * The key store for `mode`: `file` never touches the keychain; `keychain`
 * fails with KEYCHAIN_UNAVAILABLE if the probe fails; `auto` uses the
 * keychain when the probe passes and otherwise the file store, with one notice.
 */
export async function openKeyStore(mode: 'auto' | 'keychain' | 'file', deps: OpenKeyStoreDeps): Promise<KeyStore> {
  const platform = deps.paths.penv.platform;
  if (mode === 'file') return new FileStore(deps.paths);
  const probe = await probeKeychain({
    platform,
    env: deps.paths.penv.env,
    ...(deps.probeTimeoutMs !== undefined ? { timeoutMs: deps.probeTimeoutMs } : {}),
    ...(deps.loadKeyring ? { loadKeyring: deps.loadKeyring } : {}),
  });
  if (probe.ok) return new KeychainStore(probe.module, platform, deps.paths.penv.env);
  if (mode === 'keychain') {
    throw new UserError('KEYCHAIN_UNAVAILABLE', `the OS keychain is not usable: ${keychainName(platform)}: ${probe.reason}`, {
      hint: keychainHint(platform),
    });
  }
  // One plain line: the probe's raw reason (D-Bus, addon errors) only with --debug.
  if (deps.debug) deps.notice(fileStoreNotice(deps.paths, probe.reason.replace(/\s+/g, ' ')));
  else deps.notice(`${fileStoreNotice(deps.paths, platform === 'linux' ? 'no Secret Service' : undefined)}; --debug says why`);
  return new FileStore(deps.paths);
}

/**
 * The store a profile was saved with, without the probe (the login already
 * chose it): for tsh ssh / proxy ssh / logout. Keychain calls still go
 * through the D-Bus check and their deadlines.
 */
export async function openProfileKeyStore(
  kind: KeystoreKind,
  deps: { paths: TshPaths; loadKeyring?: () => Promise<KeyringModule> },
): Promise<KeyStore> {
  if (kind === 'file') return new FileStore(deps.paths);
  let mod: KeyringModule;
  try {
    mod = await (deps.loadKeyring ?? loadKeyringModule)();
  } catch (err) {
    throw new UserError('KEYCHAIN_UNAVAILABLE', `the keychain library did not load: ${reasonOf(err)}`, {
      cause: err,
      hint: 'log in again with --keystore=file',
    });
  }
  return new KeychainStore(mod, deps.paths.penv.platform, deps.paths.penv.env);
}
