// Bundles each program into one CommonJS file in dist/ so start-up reads one
// file instead of resolving hundreds of modules. Type checking is `npm run typecheck`.
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
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

// ssh2's native crypto addon (built by its install script when a compiler is
// there) is required as ./crypto/build/Release/sshcrypto.node relative to the
// bundle: put it there. With it ssh2 encrypts in C++ (chacha20-poly1305 and
// AES-GCM); without it tsh and the proxy still work through node:crypto,
// slower (src/client/proxy-conn.ts picks the ciphers accordingly).
const addon = 'node_modules/ssh2/lib/protocol/crypto/build/Release/sshcrypto.node';
if (existsSync(addon)) {
  mkdirSync('dist/crypto/build/Release', { recursive: true });
  copyFileSync(addon, 'dist/crypto/build/Release/sshcrypto.node');
}
