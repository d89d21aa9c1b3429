/**
 * What a Node single-executable build (`npm run build:bin`, pkg.config.json)
 * carries besides its script. In a single executable `require()` reaches only
 * Node's built-in modules, so the rest travels as SEA assets (the `assets` of
 * the blob's config):
 *
 * - third-party chunks (scripts/build-bundle.mjs VENDOR: ssh2, undici,
 *   node-forge), compiled the first time a command uses them (loadVendorAsset),
 *   so `tsh status` never pays for parsing them;
 * - native addons (the keychain's), loaded from a file with `process.dlopen`:
 *
 * - POSIX: written into a fresh private directory (mkdtemp, 0700), opened,
 *   then deleted at once: the mapping outlives the file, and nothing is left
 *   in the shared /tmp for another user to swap.
 * - Windows: a loaded DLL cannot be deleted, so the file is kept under the
 *   user's own %TEMP% at a name derived from its SHA-256
 *   (`jumpgate-native-<hash>\<name>`), checked against that hash before every
 *   use and rewritten when it differs: one copy per build, not one per run
 *   (the ProxyCommand runs tsh for every ssh connection).
 *
 * https://nodejs.org/docs/latest-v20.x/api/single-executable-applications.html#assets
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import Module from 'node:module';
import { dirname, join } from 'node:path';
import { getAsset, getRawAsset, isSea } from 'node:sea';
import { runInThisContext } from 'node:vm';

/** What loading an addon asset touches, so tests can pin the platform and the asset. */
export interface AddonLoadEnv {
  platform: NodeJS.Platform;
  tmpdir: string;
  /** The asset's bytes (node:sea getRawAsset in a single executable). */
  getAsset: (name: string) => ArrayBuffer | Uint8Array;
  /** process.dlopen */
  dlopen: (module: { exports: unknown }, filename: string) => void;
}

/** The real single executable's assets and loader. */
export function seaAddonLoadEnv(): AddonLoadEnv {
  return {
    platform: process.platform,
    tmpdir: tmpdir(),
    getAsset: (name) => {
      if (!isSea()) throw new Error(`the native addon ${name} is carried only by single-executable builds`);
      // Raw: no copy of the addon (it is written out once); a string only for string assets.
      return getRawAsset(name) as ArrayBuffer;
    },
    dlopen: (module, filename) => process.dlopen(module, filename),
  };
}

/**
 * Loads the native addon stored as asset `name` and returns its exports.
 * Throws with the reason when the asset is missing or the addon does not load
 * (a build for another platform, a missing system library).
 */
export function loadAddonAsset(name: string, env: AddonLoadEnv = seaAddonLoadEnv()): unknown {
  const asset = env.getAsset(name);
  const bytes = asset instanceof Uint8Array ? asset : new Uint8Array(asset);
  const module = { exports: {} as unknown };
  if (env.platform === 'win32') {
    env.dlopen(module, windowsAddonFile(name, bytes, env.tmpdir));
    return module.exports;
  }
  const dir = mkdtempSync(join(env.tmpdir, 'jumpgate-native-'));
  try {
    const file = join(dir, name);
    writeFileSync(file, bytes, { mode: 0o700 });
    env.dlopen(module, file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return module.exports;
}

/** The addon's file under the user's %TEMP%, (re)written unless it already holds exactly these bytes. */
export function windowsAddonFile(name: string, bytes: Uint8Array, temp: string): string {
  const hash = createHash('sha256').update(bytes).digest('hex');
  const dir = join(temp, `jumpgate-native-${hash.slice(0, 16)}`);
  const file = join(dir, name);
  let existing: Buffer | undefined;
  try {
    existing = readFileSync(file);
  } catch {
    // not there yet
  }
  if (existing && createHash('sha256').update(existing).digest('hex') === hash) return file;
  mkdirSync(dir, { recursive: true });
  // Write beside it, then rename: a second tsh starting at the same moment never opens half a file.
  const part = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.part`;
  writeFileSync(part, bytes);
  try {
    renameSync(part, file);
  } catch (err) {
    rmSync(part, { force: true });
    // Another tsh holds a good copy open (Windows refuses to replace a loaded DLL): use it if it is ours.
    const now = readFileSync(file);
    if (createHash('sha256').update(now).digest('hex') !== hash) throw err;
  }
  return file;
}

const vendorCache = new Map<string, unknown>();

/**
 * The exports of a third-party chunk the executable carries as asset
 * `vendor/<chunk>.cjs` (scripts/build-bundle.mjs VENDOR), compiled and run
 * the first time a command needs it, once per process. `id` is
 * `jumpgate-vendor:<chunk>`, as the build writes it. The chunk's require()
 * is the executable's own (Node's built-in modules): chunks bundle the rest.
 */
export function loadVendorAsset(id: string): Record<string, unknown> {
  const chunk = id.replace(/^jumpgate-vendor:/, '');
  let exports = vendorCache.get(chunk) as Record<string, unknown> | undefined;
  if (exports) return exports;
  const key = `vendor/${chunk}.cjs`;
  const source = getAsset(key, 'utf8');
  const filename = join(dirname(process.execPath), key);
  const wrapper = runInThisContext(Module.wrap(source), { filename }) as (e: unknown, r: NodeJS.Require, m: { exports: unknown }, f: string, d: string) => void;
  const module = { exports: {} as unknown };
  wrapper.call(module.exports, module.exports, require, module, filename, dirname(filename));
  exports = module.exports as Record<string, unknown>;
  vendorCache.set(chunk, exports);
  return exports;
}
