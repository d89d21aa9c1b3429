// Bundles each program into one CommonJS file in dist/, and the big
// third-party packages into dist/vendor/ (scripts/build-bundle.mjs holds the
// esbuild configuration, shared with npm run build:bin). Type checking is
// `npm run typecheck`.
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { bundlePrograms } from './build-bundle.mjs';
import { buildWebUi } from './build-webui.mjs';

await Promise.all([bundlePrograms(), buildWebUi()]);

// ssh2's native crypto addon (built by its install script when a compiler is
// there) is required as ./crypto/build/Release/sshcrypto.node relative to the
// file holding ssh2, dist/vendor/ssh2.cjs: put it there. With it ssh2 encrypts
// in C++ (chacha20-poly1305 and AES-GCM); without it tsh and the proxy still
// work through node:crypto, slower (src/client/proxy-conn.ts picks the
// ciphers accordingly).
const addon = 'node_modules/ssh2/lib/protocol/crypto/build/Release/sshcrypto.node';
rmSync('dist/crypto', { recursive: true, force: true }); // where it went while ssh2 was inside the programs' files
if (existsSync(addon)) {
  mkdirSync('dist/vendor/crypto/build/Release', { recursive: true });
  copyFileSync(addon, 'dist/vendor/crypto/build/Release/sshcrypto.node');
}
