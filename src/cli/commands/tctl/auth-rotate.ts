import { fingerprintSha256 } from '../../../sshcert/index.js';
import type { CaType } from '../../../server/auth/ca.js';
import type { Deps } from '../../deps.js';
import type { ServerContext } from '../../server-context.js';

/** Long enough for every 24-hour user certificate signed by the old key to expire. */
export const DEFAULT_GRACE_SECONDS = 30 * 3600;

export interface AuthRotateOptions {
  type: CaType;
  graceSeconds: number;
}

/** Makes a new signing key; the old one stays trusted until the grace period ends. */
export async function run(opts: AuthRotateOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  const before = ctx.ca.get(opts.type).active;
  const after = await ctx.ca.rotate(opts.type, opts.graceSeconds);
  const until = new Date(ctx.clock().getTime() + opts.graceSeconds * 1000).toISOString();
  await ctx.audit.emit({
    event: 'ca.rotated',
    ca_type: opts.type,
    old_key: fingerprintSha256(before.publicKey.blob),
    new_key: fingerprintSha256(after.active.publicKey.blob),
    old_trusted_until: until,
  });
  // A user certificate issued from now on is signed by the new key, which a node trusts only once its
  // TrustedUserCAKeys holds it: the export is due at once, not by the end of the grace period.
  const next =
    opts.type === 'user'
      ? 'NOW update TrustedUserCAKeys on every node with `tctl auth export --type=user`: new logins get certificates from the new key, which nodes that do not list it refuse'
      : `re-sign node host keys with \`tctl auth sign --host=...\` before ${until}; clients fetch the new @cert-authority line at their next login`;
  deps.io.stderr.write(
    `rotated the ${opts.type} CA: new key ${fingerprintSha256(after.active.publicKey.blob)} signs from now on; ` +
      `old key ${fingerprintSha256(before.publicKey.blob)} stays trusted until ${until}.\nnext: ${next}.\n`,
  );
}
