// The one esbuild configuration for Jumpgate's programs, shared by
// `npm run build` (dist/, run by bin/<program> under the user's Node) and
// `npm run build:bin` (dist/sea/, the scripts inside a single executable).
//
// Each program is one CommonJS file, so start-up reads one file instead of
// resolving hundreds of modules, except for the big third-party packages in
// VENDOR: each of those is a file of its own (dist/vendor/<name>.cjs), required
// the first time a command's code touches it. Measured reason: V8 must at least
// pre-parse every byte of the file it loads, and undici + ssh2 were 1.7 of the
// 2.2 MB of dist/tsh.cjs; `tsh status` and `tsh version` never run them.
import { build } from 'esbuild';
import { resolve } from 'node:path';

export const PROGRAMS = ['tsh', 'tctl', 'jumpgate'];

/**
 * Big packages kept out of the programs' files: chunk name → the module
 * specifiers the sources import from it. Deep imports of one package must sit
 * in the same chunk as the package (src/sshconn/patch.ts changes the very
 * ssh2 objects the client and server then use).
 */
export const VENDOR = {
  ssh2: ['ssh2', 'ssh2/lib/protocol/crypto.js', 'ssh2/lib/protocol/constants.js', 'ssh2/lib/protocol/utils.js'],
  undici: ['undici'],
  'node-forge': ['node-forge'],
  // The postgres storage backend (jumpgate, tctl): loaded only when storage.type is postgres.
  pg: ['pg'],
};

const SEA_LOADER = resolve('src/cli/sea.ts');

/**
 * esbuild options for one program.
 * - default: exports `main(argv)`; the bin shim calls it. A VENDOR package is
 *   `require('./vendor/<chunk>.cjs')[specifier]`, evaluated when first used.
 * - `sea: true`: the file calls `main(process.argv.slice(2))` itself (a
 *   single executable runs its script directly, argv = [exe, exe, ...args]);
 *   VENDOR chunks are assets of the executable, compiled when first used
 *   (src/cli/sea.ts loadVendorAsset); `@napi-rs/keyring` is replaced by
 *   src/cli/sea-keyring.ts, which loads the keychain addon the executable
 *   carries as an asset: inside a single executable `require()` reaches only
 *   Node's built-in modules.
 */
export function bundleOptions(name, { sea = false, outfile, metafile = false } = {}) {
  return {
    ...(sea
      ? {
          stdin: {
            contents: `import { main } from './src/cli/${name}.ts';\nvoid main(process.argv.slice(2));\n`,
            resolveDir: '.',
            sourcefile: `sea-${name}-entry.ts`,
            loader: 'ts',
          },
          alias: { '@napi-rs/keyring': './src/cli/sea-keyring.ts' },
          plugins: [vendorChunks(true), absentInSea],
        }
      : { entryPoints: [`src/cli/${name}.ts`], sourcemap: 'linked', plugins: [vendorChunks(false)] }),
    outfile: outfile ?? (sea ? `dist/sea/${name}.cjs` : `dist/${name}.cjs`),
    ...common(sea),
    metafile,
  };
}

/** esbuild options for one VENDOR chunk: an object of the chunk's specifiers' exports. */
export function vendorOptions(chunk, { sea = false, outfile, metafile = false } = {}) {
  const specs = VENDOR[chunk];
  return {
    stdin: {
      contents: `module.exports = {\n${specs.map((s) => `  ${JSON.stringify(s)}: require(${JSON.stringify(s)}),`).join('\n')}\n};\n`,
      resolveDir: '.',
      sourcefile: `vendor-${chunk}.cjs`,
      loader: 'js',
    },
    outfile: outfile ?? (sea ? `dist/sea/vendor/${chunk}.cjs` : `dist/vendor/${chunk}.cjs`),
    ...common(sea),
    ...(sea ? { plugins: [absentInSea] } : {}),
    metafile,
  };
}

function common(sea) {
  return {
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'warning',
    // Native addons and packages that load files relative to themselves stay external.
    // ssh2's optional native crypto addon (*.node) and cpu-features stay out: ssh2
    // require()s them inside try/catch and falls back to node:crypto.
    // pg's optional native binding (pg-native, not installed) is required only by its `native` getter.
    external: sea ? [] : ['@napi-rs/keyring', 'cpu-features', '*.node', 'pg-native'],
  };
}

/** Bundles every program (or `programs`) and the VENDOR chunks; resolves with esbuild's results (programs first). */
export function bundlePrograms({ sea = false, programs = PROGRAMS, metafile = false } = {}) {
  return Promise.all([
    ...programs.map((name) => build(bundleOptions(name, { sea, metafile }))),
    ...Object.keys(VENDOR).map((chunk) => build(vendorOptions(chunk, { sea, metafile }))),
  ]);
}

/** Which VENDOR chunks a built program's file uses (for a single executable's assets). */
export function vendorChunksUsedBy(bundleText) {
  return Object.keys(VENDOR).filter((chunk) => bundleText.includes(`"${vendorMarker(chunk)}"`) || bundleText.includes(`"./vendor/${chunk}.cjs"`));
}

/** How a single executable's script names a chunk: src/cli/sea.ts loadVendorAsset takes it and reads asset vendor/<chunk>.cjs. */
function vendorMarker(chunk) {
  return `jumpgate-vendor:${chunk}`;
}

/** Replaces each VENDOR specifier by a module that fetches it from its chunk. */
function vendorChunks(sea) {
  const bySpec = new Map(Object.entries(VENDOR).flatMap(([chunk, specs]) => specs.map((s) => [s, chunk])));
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const filter = new RegExp(`^(${[...bySpec.keys()].map(escape).join('|')})$`);
  return {
    name: 'vendor-chunks',
    setup(b) {
      b.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'vendor-chunk' }));
      b.onResolve({ filter: /^\.\/vendor\// }, (args) => (args.namespace === 'vendor-chunk' ? { path: args.path, external: true } : undefined));
      b.onLoad({ filter: /.*/, namespace: 'vendor-chunk' }, (args) => {
        const chunk = bySpec.get(args.path);
        const marker = JSON.stringify(vendorMarker(chunk));
        return sea
          ? {
              contents: `module.exports = require(${JSON.stringify(SEA_LOADER)}).loadVendorAsset(${marker})[${JSON.stringify(args.path)}];\n`,
              loader: 'js',
              resolveDir: '.',
            }
          : { contents: `module.exports = require(${JSON.stringify(`./vendor/${chunk}.cjs`)})[${JSON.stringify(args.path)}];\n`, loader: 'js' };
      });
    },
  };
}

/**
 * In a single executable ssh2's optional addons (its crypto binding, cpu-features)
 * become modules that throw, exactly like a missing addon: ssh2 catches that and
 * uses node:crypto. Left as require() calls, the executable's built-in-only
 * require() would also print a warning about them on every run.
 */
const absentInSea = {
  name: 'absent-in-sea',
  setup(b) {
    b.onResolve({ filter: /(\.node$|^cpu-features$|^pg-native$)/ }, (args) => ({ path: args.path, namespace: 'absent-in-sea' }));
    b.onLoad({ filter: /.*/, namespace: 'absent-in-sea' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not part of a single executable`)});`,
      loader: 'js',
    }));
  },
};
