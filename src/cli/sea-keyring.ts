/**
 * Stands in for `@napi-rs/keyring` inside a single executable: the bundler
 * aliases the package to this module for `npm run build:bin`
 * (scripts/build-bundle.mjs), so client/keystore.ts's lazy
 * `import('@napi-rs/keyring')` gets the addon the executable carries as its
 * `keyring.node` asset, built for that executable's platform. Evaluated only
 * when that import runs: commands that never touch the keychain never load it.
 */
import { loadAddonAsset } from './sea.js';

const binding = loadAddonAsset('keyring.node') as Record<string, unknown>;

export const AsyncEntry = binding['AsyncEntry'];
export const Entry = binding['Entry'];
export const findCredentials = binding['findCredentials'];
export const findCredentialsAsync = binding['findCredentialsAsync'];
export const LinuxStore = binding['LinuxStore'];
