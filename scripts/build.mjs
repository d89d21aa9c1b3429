// Bundles each program into one CommonJS file in dist/ so start-up reads one
// file instead of resolving hundreds of modules. Type checking is `npm run typecheck`.
import { build } from 'esbuild';

const programs = ['tsh', 'tctl', 'jumpgate'];

await Promise.all(
  programs.map((name) =>
    build({
      entryPoints: [`src/cli/${name}.ts`],
      outfile: `dist/${name}.cjs`,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      sourcemap: 'linked',
      logLevel: 'warning',
      // Native addons and packages that load files relative to themselves stay external.
      // ssh2's optional native crypto addon (*.node) stays out; ssh2 falls back to node:crypto.
      external: ['@napi-rs/keyring', 'cpu-features', '*.node'],
    }),
  ),
);
