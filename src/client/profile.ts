/**
 * tsh profiles: what one login to one cluster left behind (addresses, user,
 * logins, expiry, where the key is). The certificate itself is the truth for
 * validity; the profile only remembers where things are.
 */
import { existsSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { ensurePrivateDir } from '../util/private-dir.js';
import { withLockFileAsync } from '../util/lockfile.js';
import { safeName, type TshPaths } from './paths.js';

export type KeystoreKind = 'keychain' | 'file';

export interface Profile {
  version: 1;
  /** The proxy's public host name: the profile's key. */
  name: string;
  /** host:port of the proxy's HTTPS API. */
  webProxyAddr: string;
  /** host:port of the proxy's SSH service. */
  sshProxyAddr: string;
  clusterName: string;
  username: string;
  logins: string[];
  roles: string[];
  /** ISO time the certificate expires. */
  validBefore: string;
  keystore: KeystoreKind;
  /** TLS verification of the proxy was skipped at login (--insecure); the next `tsh login` reuses it. */
  insecure: boolean;
  /** The --user given at login (the identity provider's login hint); the next `tsh login` reuses it. */
  user?: string;
  /** Nodes the user could reach at login, for the ssh_config Host patterns. */
  nodeNames: string[];
}

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
    try {
      const p = JSON.parse(text) as Profile;
      if (p.version !== 1 || typeof p.name !== 'string' || typeof p.username !== 'string') throw new Error('unexpected content');
      return p;
    } catch (err) {
      throw new UserError('PROFILE_CORRUPT', `${file} is damaged (${(err as Error).message})`, {
        cause: err,
        hint: `run \`tsh login --proxy=${n}\` again to replace it`,
      });
    }
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

  /** Writes a profile atomically and makes it the current one. Call inside `locked`. */
  save(profile: Profile): void {
    safeName(profile.name);
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
