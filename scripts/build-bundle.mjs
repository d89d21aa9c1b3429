// The one esbuild configuration for Jumpgate's programs, shared by
// `npm run build` (dist/<program>.cjs, run by bin/<program> under the user's
// Node) and `npm run build:bin` (dist/sea/<program>.cjs, the script inside a
// single executable). Each program becomes one CommonJS file so start-up reads
// one file instead of resolving hundreds of modules.
import { build } from 'esbuild';

export const PROGRAMS = ['tsh', 'tctl', 'jumpgate'];

/**
 * esbuild options for one program.
 * - default: exports `main(argv)`; the bin shim calls it.
 * - `sea: true`: the file calls `main(process.argv.slice(2))` itself (a
 *   single executable runs its script directly, argv = [exe, exe, ...args]),
 *   and `@napi-rs/keyring` is replaced by src/cli/sea-keyring.ts, which loads
 *   the keychain addon the executable carries as an asset: inside a single
 *   executable `require()` reaches only Node's built-in modules.
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
          plugins: [absentInSea],
        }
      : { entryPoints: [`src/cli/${name}.ts`], sourcemap: 'linked' }),
    outfile: outfile ?? (sea ? `dist/sea/${name}.cjs` : `dist/${name}.cjs`),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'warning',
    metafile,
    // Native addons and packages that load files relative to themselves stay external.
    // ssh2's optional native crypto addon (*.node) and cpu-features stay out: ssh2
    // require()s them inside try/catch and falls back to node:crypto.
    external: sea ? [] : ['@napi-rs/keyring', 'cpu-features', '*.node'],
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
    b.onResolve({ filter: /(\.node$|^cpu-features$)/ }, (args) => ({ path: args.path, namespace: 'absent-in-sea' }));
    b.onLoad({ filter: /.*/, namespace: 'absent-in-sea' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not part of a single executable`)});`,
      loader: 'js',
    }));
  },
};

/** Bundles every program (or `programs`); resolves with esbuild's results in the same order. */
export function bundlePrograms({ sea = false, programs = PROGRAMS, metafile = false } = {}) {
  return Promise.all(programs.map((name) => build(bundleOptions(name, { sea, metafile }))));
}
