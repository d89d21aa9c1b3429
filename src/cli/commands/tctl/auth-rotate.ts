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
  const next =
    opts.type === 'user'
      ? 'update TrustedUserCAKeys on every node with `tctl auth export --type=user`'
      : 're-sign node host keys with `tctl auth sign --host=...`; clients fetch the new @cert-authority line at their next login';
  deps.io.stderr.write(
    `rotated the ${opts.type} CA: new key ${fingerprintSha256(after.active.publicKey.blob)} signs from now on; ` +
      `old key ${fingerprintSha256(before.publicKey.blob)} stays trusted until ${until}.\nnext: ${next} before then.\n`,
  );
}
