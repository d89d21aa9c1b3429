import { formatPublicKeyLine } from '../../../sshcert/index.js';
import type { CaType } from '../../../server/auth/ca.js';
import type { Deps } from '../../deps.js';
import type { ServerContext } from '../../server-context.js';

export interface AuthExportOptions {
  type: CaType;
  /** known_hosts patterns for the host CA line; `*` when absent. */
  hosts?: string[];
}

/**
 * Prints the CA public keys still trusted (the signing key and any in their
 * grace period): user CA as TrustedUserCAKeys lines, host CA as
 * `@cert-authority` known_hosts lines.
 */
export function run(opts: AuthExportOptions, ctx: ServerContext, deps: Deps): void {
  const set = ctx.ca.get(opts.type);
  const lines = set.trusted.map((k) => {
    const comment = `jumpgate ${opts.type} CA ${ctx.config.clusterName} ${k.id}`;
    const line = formatPublicKeyLine(k.publicKey, comment);
    return opts.type === 'user' ? line : `@cert-authority ${(opts.hosts ?? ['*']).join(',')} ${line}`;
  });
  deps.io.stdout.write(lines.join('\n') + '\n');
}
