/**
 * Glue between ssh2 (patched: patches/ssh2+1.17.0.patch) and OpenSSH
 * certificates (PROTOCOL.certkeys), shared by the proxy's SSH server and
 * tsh's SSH client. No CLI, no I/O beyond what ssh2 does.
 */
export { assertSsh2Patched, clientHostKeyAlgorithms, SSH2_PATCH_MARKER } from './patch.js';
export { MAX_BANNER_CHARS, sendAuthBanner } from './server-messages.js';
export { certConnectConfig, certIdentity, hostCertKey, type CertConnectConfig, type CertKey } from './identity.js';
export {
  hostCertVerifier,
  verifyUserCertAuth,
  type HostCertVerifier,
  type HostCertVerifierOptions,
  type UserCertAuthOptions,
} from './verify.js';
