/**
 * tsh profiles: what one login to one cluster left behind (addresses, user,
 * logins, expiry, where the key is). The certificate itself is the truth for
 * validity; the profile only remembers where things are.
 */
import { existsSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import * as v from 'valibot';
import { UserError } from '../errors.js';
import { isClusterName, isDnsName, isPlainHostName, isPlainHostPort, isPlainToken } from '../api/names.js';
import { MAX_NODE_NAMES, MAX_TOKENS, parseShape } from '../api/schema.js';
import { printable } from '../util/printable.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { ensurePrivateDir } from '../util/private-dir.js';
import { withLockFileAsync } from '../util/lockfile.js';
import { safeName, type TshPaths } from './paths.js';

export type KeystoreKind = 'keychain' | 'file';

/**
 * Whether `tsh login` loads key + certificate into the ssh-agent: `auto`
 * when one answers, `yes` and a failure is an error, `no` never (ssh then
 * reads the key file: only with the file keystore).
 */
export type AddKeysToAgent = 'auto' | 'yes' | 'no';

const check = (rule: (s: string) => boolean, what: string) => v.pipe(v.string(`expected ${what}`), v.check(rule, `not ${what}`));

/**
 * A profile as stored: the declared shape it is parsed with when read (a
 * hand-edited or old profile is outside input too), and the type derived
 * from it. The character rules are the API's (api/names.ts).
 */
export const ProfileSchema = v.object({
  version: v.literal(1, 'expected version 1'),
  /** The proxy's public host name: the profile's key. */
  name: check(isPlainHostName, 'a plain host name'),
  /** host:port of the proxy's HTTPS API. */
  webProxyAddr: check(isPlainHostPort, 'host:port'),
  /** host:port of the proxy's SSH service. */
  sshProxyAddr: check(isPlainHostPort, 'host:port'),
  clusterName: check(isClusterName, 'a cluster name (a DNS name of at least two labels)'),
  username: check(isPlainToken, 'a plain user name'),
  logins: v.pipe(v.array(check(isPlainToken, 'a plain login name')), v.maxLength(MAX_TOKENS)),
  roles: v.pipe(v.array(check(isPlainToken, 'a plain role name')), v.maxLength(MAX_TOKENS)),
  /** ISO time the certificate expires. */
  validBefore: v.pipe(v.string(), v.check((t) => Number.isFinite(Date.parse(t)), 'not a time')),
  keystore: v.picklist(['keychain', 'file'], 'expected "keychain" or "file"'),
  /** TLS verification of the proxy was skipped at login (--insecure). */
  insecure: v.boolean('expected true or false'),
  /** The --user given at login (the identity provider's login hint); the next `tsh login` reuses it. */
  user: v.optional(check(isPlainToken, 'a plain user name')),
  /** Nodes this profile routes (the names it claimed at login), for the ssh_config Host patterns. */
  nodeNames: v.pipe(v.array(check(isDnsName, 'a plain node name')), v.maxLength(MAX_NODE_NAMES)),
  /** Their inventory addresses, host:port (absent in older profiles): known_hosts and Match host address forms. */
  nodeAddrs: v.optional(v.pipe(v.array(check(isPlainHostPort, 'host:port')), v.maxLength(MAX_NODE_NAMES))),
  /** `--add-keys-to-agent` of the login, remembered for the next one (absent in older profiles: auto). */
  addKeysToAgent: v.optional(v.picklist(['auto', 'yes', 'no'], 'expected "auto", "yes" or "no"')),
  /**
   * `tsh proxy ssh --relogin=` in the ssh_config block: `auto` when the login
   * that wrote it could open a browser (cli/ui.ts canOpenBrowser), else
   * `never` (absent in older profiles: never).
   */
  relogin: v.optional(v.picklist(['auto', 'never'], 'expected "auto" or "never"')),
  /**
   * The proxy routes SSH through its web port (TLS routing) and the login
   * left an X.509 client certificate: tsh proxy ssh / ssh / ls use that
   * port. Absent in older profiles: the SSH port, as before.
   */
  tlsRouting: v.optional(v.boolean('expected true or false')),
});

/** What one login to one cluster left behind. */
export type Profile = v.InferOutput<typeof ProfileSchema>;

/** Reads and writes profiles under TSH_HOME; writes are atomic and locked. */
export class ProfileStore {
  constructor(readonly paths: TshPaths) {}

  /** Creates TSH_HOME and its subdirectories 0700. */
  ensureDirs(profile?: string): void {
    const dirs = [this.paths.home, this.paths.profilesDir()];
    if (profile) dirs.push(dirname(this.paths.keysDir(profile)), this.paths.keysDir(profile));
    for (const d of dirs) ensurePrivateDir(d, this.paths.penv.platform);
  }

  /** Runs `fn` holding TSH_HOME's lock, so two logins never interleave their writes. */
  locked<T>(fn: () => Promise<T>): Promise<T> {
    this.ensureDirs();
    // Long enough for another login's keychain write; stale after a killed tsh.
    return withLockFileAsync(this.paths.lock(), { what: 'the tsh profile directory', waitMs: 60_000, staleMs: 120_000 }, fn);
  }

  /** The named profile, or the current one; undefined when there is none. */
  load(name?: string): Profile | undefined {
    const n = name ?? this.currentName();
    if (!n) return undefined;
    const file = this.paths.profile(n);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new UserError('PROFILE_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw corrupt(file, n, 'not JSON', err);
    }
    const shape = parseShape(ProfileSchema, json);
    if (!shape.ok) throw corrupt(file, n, `${shape.field}: ${shape.reason}`);
    return shape.value;
  }

  /** Every profile on disk, sorted by name. */
  list(): Profile[] {
    let files: string[];
    try {
      files = readdirSync(this.paths.profilesDir());
    } catch {
      return [];
    }
    return files
      .filter((f) => f.endsWith('.json'))
      .map((f) => this.load(f.slice(0, -5)))
      .filter((p): p is Profile => p !== undefined)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Writes a profile atomically and makes it the current one. Call inside `locked`. @throws UserError PROFILE_INVALID when it does not have the declared shape */
  save(profile: Profile): void {
    safeName(profile.name);
    const shape = parseShape(ProfileSchema, profile);
    if (!shape.ok) throw new UserError('PROFILE_INVALID', `refusing to save the profile ${printable(profile.name)}: ${printable(`${shape.field}: ${shape.reason}`, 200)}`);
    this.ensureDirs(profile.name);
    writeFileAtomic(this.paths.profile(profile.name), JSON.stringify(profile, null, 2) + '\n', 0o600);
    writeFileAtomic(this.paths.currentProfile(), profile.name + '\n', 0o600);
  }

  /** Removes a profile's files (profile JSON and key directory). Call inside `locked`. */
  remove(name: string): void {
    rmSync(this.paths.profile(name), { force: true });
    rmSync(this.paths.keysDir(name), { recursive: true, force: true });
    if (this.currentName() === name) {
      try {
        unlinkSync(this.paths.currentProfile());
      } catch {
        // already gone
      }
    }
  }

  /** The name in current-profile, if the file exists. */
  currentName(): string | undefined {
    const f = this.paths.currentProfile();
    if (!existsSync(f)) return undefined;
    const name = readFileSync(f, 'utf8').trim();
    return name === '' ? undefined : name;
  }
}

/** A stored profile that cannot be used: names the file, the problem and the fix. */
function corrupt(file: string, name: string, problem: string, cause?: unknown): UserError {
  return new UserError('PROFILE_CORRUPT', `${file} is damaged or was written by another version: ${printable(problem, 200)}`, {
    ...(cause !== undefined ? { cause } : {}),
    hint: `run \`tsh logout --proxy=${printable(name)}\` and then \`tsh login --proxy=${printable(name)}\` to replace it`,
  });
}
