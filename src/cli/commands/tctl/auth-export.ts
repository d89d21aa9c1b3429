import { formatPublicKeyLine } from '../../../sshcert/index.js';
import { UsageError } from '../../../errors.js';
import type { CaType } from '../../../server/auth/ca.js';
import { buildKrl } from '../../../server/auth/revocation.js';
import { writeFileAtomic } from '../../../util/atomic-write.js';
import type { Deps } from '../../deps.js';
import type { ServerContext } from '../../server-context.js';

export interface AuthExportOptions {
  type: CaType | 'krl';
  /** --type=krl: write the KRL to this file (atomically, 0644) instead of stdout. */
  out?: string;
  /** known_hosts patterns for the host CA line; `*` when absent. */
  hosts?: string[];
}

/**
 * Prints the CA public keys still trusted (the signing key and any in their
 * grace period): user CA as TrustedUserCAKeys lines, host CA as
 * `@cert-authority` known_hosts lines.
 */
export async function run(opts: AuthExportOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  if (opts.type === 'krl') return exportKrl(opts, ctx, deps);
  const type = opts.type;
  const set = ctx.ca.get(type);
  const lines = set.trusted.map((k) => {
    const comment = `jumpgate ${type} CA ${ctx.config.clusterName} ${k.id}`;
    const line = formatPublicKeyLine(k.publicKey, comment);
    return type === 'user' ? line : `@cert-authority ${(opts.hosts ?? ['*']).join(',')} ${line}`;
  });
  deps.io.stdout.write(lines.join('\n') + '\n');
}

/**
 * `--type=krl`: the OpenSSH key revocation list of the certificates the
 * locks cover now (server/auth/revocation.ts), binary, for sshd's
 * `RevokedKeys`; to stdout (refused when it is a terminal) or `--out`.
 */
async function exportKrl(opts: AuthExportOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  if (opts.out === undefined && deps.io.stdoutIsTTY) {
    throw new UsageError('USAGE_BINARY_TO_TTY', 'the KRL is binary; redirect it (`tctl auth export --type=krl > revoked.krl`) or use --out=FILE');
  }
  const krl = await buildKrl({ store: ctx.store, ca: ctx.ca, now: ctx.clock(), warn: (l) => deps.io.stderr.write(`${l}\n`) });
  if (opts.out !== undefined) {
    writeFileAtomic(opts.out, krl, 0o644);
    deps.io.stderr.write(`wrote ${opts.out} (${krl.length} bytes): use it as sshd's RevokedKeys\n`);
    return;
  }
  deps.io.stdout.write(krl);
}
