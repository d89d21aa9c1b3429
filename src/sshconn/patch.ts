import ssh2 from 'ssh2';
import type { ServerHostKeyAlgorithm } from 'ssh2';
import ssh2Constants from 'ssh2/lib/protocol/constants.js';
import { UserError } from '../errors.js';

/**
 * The marker patches/ssh2+1.17.0.patch puts into ssh2's constants. Bump it
 * (here and in the patch) whenever the patch changes behaviour, so a stale
 * node_modules is caught by assertSsh2Patched instead of by a failed login.
 */
export const SSH2_PATCH_MARKER = 'jumpgate-ssh2-certs/1';

const ED25519_CERT = 'ssh-ed25519-cert-v01@openssh.com';

let checked: true | undefined;

/** A certificate-shaped blob: type, nonce, key. Enough for ssh2's key parser, never signed. */
function probeBlob(): Buffer {
  const parts = [Buffer.from(ED25519_CERT), Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
  return Buffer.concat(
    parts.flatMap((p) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(p.length, 0);
      return [len, p];
    }),
  );
}

/** The parts of an ssh2 module the patch check looks at. */
export interface Ssh2Modules {
  ssh2: { utils: { parseKey: typeof ssh2.utils.parseKey } };
  constants: { CERT_PATCH?: string };
}

/**
 * What is missing from an ssh2 installation for certificates: the patch's
 * marker and one behaviour (ssh2 parses a certificate blob as a certificate).
 * Empty when patched. Exported for the test that feeds it an unpatched copy.
 */
export function ssh2PatchProblems(mods: Ssh2Modules): string[] {
  const problems: string[] = [];
  if (mods.constants.CERT_PATCH !== SSH2_PATCH_MARKER) {
    problems.push(`marker is ${JSON.stringify(mods.constants.CERT_PATCH ?? null)}, expected "${SSH2_PATCH_MARKER}"`);
  }
  const blob = probeBlob();
  const parsed = mods.ssh2.utils.parseKey(blob);
  if (parsed instanceof Error || Array.isArray(parsed) || (parsed.type as string) !== ED25519_CERT || !parsed.getPublicSSH().equals(blob)) {
    problems.push('ssh2 does not parse OpenSSH certificates');
  }
  return problems;
}

/** The error assertSsh2Patched throws for a list of problems. */
export function unpatchedError(problems: string[]): UserError {
  return new UserError(
    'SSH2_UNPATCHED',
    `the installed ssh2 lacks Jumpgate's OpenSSH certificate patch (${problems.join('; ')}): ` +
      'run npm ci (patch-package applies patches/ssh2+1.17.0.patch)',
    { hint: 'reinstall from the repository root; a bundled build must be rebuilt after that' },
  );
}

/**
 * Throws unless node_modules/ssh2 carries Jumpgate's certificate patch
 * (patches/ssh2+1.17.0.patch, applied by patch-package on `npm ci`).
 * Checks the marker and one behaviour; the result is cached, so calling it
 * per connection is free.
 */
export function assertSsh2Patched(): void {
  if (checked) return;
  const problems = ssh2PatchProblems({ ssh2, constants: ssh2Constants });
  if (problems.length > 0) throw unpatchedError(problems);
  checked = true;
}

/**
 * The `algorithms.serverHostKey` list an ssh2 Client needs with
 * `hostCertVerifier`: the certificate algorithms first (PROTOCOL.certkeys,
 * OpenSSH's order; SHA-1 ssh-rsa-cert-v01 left out), then ssh2's plain
 * defaults, so a server without a certificate still completes the key
 * exchange and the verifier can say why it is refused.
 */
export function clientHostKeyAlgorithms(): ServerHostKeyAlgorithm[] {
  assertSsh2Patched();
  const certs = Object.keys(ssh2Constants.CERT_ALGOS ?? {}).filter(
    (a) => a !== 'ssh-rsa-cert-v01@openssh.com' && ssh2Constants.SUPPORTED_SERVER_HOST_KEY.includes(a),
  );
  // @types/ssh2 does not know the certificate names the patch adds.
  return [...certs, ...ssh2Constants.DEFAULT_SERVER_HOST_KEY] as ServerHostKeyAlgorithm[];
}
