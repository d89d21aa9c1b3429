/**
 * Types for the one ssh2 internal module Jumpgate reads: the constants that
 * patches/ssh2+1.17.0.patch extends (ssh2 1.17.0 has no "exports" map, so
 * the deep path resolves in Node, tsx and esbuild alike).
 */
declare module 'ssh2/lib/protocol/constants.js' {
  const constants: {
    /** Set by the Jumpgate patch: "jumpgate-ssh2-certs/<version>". */
    CERT_PATCH?: string;
    /** Set by the Jumpgate patch: algorithm name -> [type in the blob, signature algorithm, hash]. */
    CERT_ALGOS?: Record<string, [string, string, string | undefined]>;
    SUPPORTED_SERVER_HOST_KEY: string[];
    DEFAULT_SERVER_HOST_KEY: string[];
  };
  export default constants;
}

/** Whether ssh2's optional native crypto addon loaded (it decides which ciphers are fast, and whether chacha20 is usable as a client). */
declare module 'ssh2/lib/protocol/crypto.js' {
  const crypto: { bindingAvailable: boolean };
  export default crypto;
}

/** ssh2's packet sender (server-messages.ts writes USERAUTH_BANNER, which ssh2's Server sends only once, before authentication). */
declare module 'ssh2/lib/protocol/utils.js' {
  const utils: { sendPacket(proto: unknown, packet: Buffer, bypass?: boolean): boolean };
  export default utils;
}
