/**
 * The proxy's answer to `tsh logout --revoke`, one JSON line, the same on
 * both paths (SSH port subsystem: revoke.ts; TLS route: node-route.ts
 * revokeVia). Apart from revoke.ts so the TLS path loads no ssh2.
 */
import * as v from 'valibot';
import { UserError } from '../errors.js';

/** The proxy's answer: the lock that now refuses the certificate. */
const RevokeAnswerSchema = v.object({
  lock_id: v.pipe(v.string(), v.regex(/^[0-9a-f]{16}$/)),
  serial: v.pipe(v.string(), v.regex(/^[0-9]{1,20}$/)),
  expires: v.nullable(v.pipe(v.string(), v.isoTimestamp())),
});
export type RevokeAnswer = v.InferOutput<typeof RevokeAnswerSchema>;

/**
 * Parses the answer line; `said` is the proxy's (escaped) reason when it gave one.
 * @throws UserError REVOKE_FAILED when there is no answer or it does not fit the shape
 */
export function parseRevokeAnswer(text: string, said: string): RevokeAnswer {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UserError('REVOKE_FAILED', said || 'the proxy gave no answer to the revocation', { hint: 'the certificate may still be valid: ask an administrator for `tctl lock add --user=YOU`' });
  }
  const parsed = v.safeParse(RevokeAnswerSchema, json);
  if (!parsed.success) throw new UserError('REVOKE_FAILED', `the proxy's answer to the revocation is unreadable (${parsed.issues[0]?.message ?? 'invalid'})`);
  return parsed.output;
}
