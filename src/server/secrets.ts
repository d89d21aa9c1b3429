/**
 * Bearer secrets the server hands out (headless poll secrets and approval
 * tokens, web session cookies and CSRF tokens, join tokens, node
 * credentials) are stored only as their digest and compared in constant
 * time: one definition of both, so no store holds a usable secret and no
 * comparison leaks its length-prefix by timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** SHA-256 of `secret` (UTF-8) as 64 lowercase hex digits: what is stored instead of the secret. */
export function secretDigest(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Whether two secrets (or digests) are equal, in time independent of where they differ; false when their lengths differ. */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}
