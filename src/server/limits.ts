/**
 * One rule for every per-source limit of the server (HTTPS connections, login
 * starts, OIDC callbacks, pending logins, unauthenticated SSH connections) and
 * the keys that aggregate unauthenticated failures in the audit log.
 *
 * - `sourceKey`: who "one client" is. IPv4 by its address (a /32); an
 *   IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) as that IPv4 address; IPv6 by
 *   its /64 (one host or one LAN usually holds a whole /64, RFC 7421), zone
 *   ids dropped.
 * - `prefixKey`: the network a client sits in, for caps that one attacker
 *   with many addresses must not get around: IPv4 by its /24, IPv6 by its /48
 *   (a site's allocation). Loopback is one host whatever the address: all of
 *   127.0.0.0/8 is one prefix, and so is ::1.
 *
 * Pure apart from the clock times passed in.
 */
import { isIP } from 'node:net';

/** The per-source key of a peer address (see the module comment): `10.1.2.3`, `2001:db8:1:2::/64`. */
export function sourceKey(addr: string): string {
  const v4 = ipv4Of(addr);
  if (v4) return v4;
  const groups = ipv6Groups(addr);
  if (!groups) return addr;
  return `${groups.slice(0, 4).join(':')}::/64`;
}

/** The network prefix of a peer address: `10.1.2.0/24`, `127.0.0.0/8`, `2001:db8:1::/48`, `::1/128`. */
export function prefixKey(addr: string): string {
  const v4 = ipv4Of(addr);
  if (v4) {
    const [a, b, c] = v4.split('.');
    return a === '127' ? '127.0.0.0/8' : `${a}.${b}.${c}.0/24`;
  }
  const groups = ipv6Groups(addr);
  if (!groups) return addr;
  if (groups.every((g, i) => g === (i === 7 ? '1' : '0'))) return '::1/128';
  return `${groups.slice(0, 3).join(':')}::/48`;
}

/** The IPv4 address of `addr`, also when written IPv4-mapped (`::ffff:10.1.2.3`, `::ffff:a01:203`). */
function ipv4Of(addr: string): string | undefined {
  if (isIP(addr) === 4) return addr;
  const g = ipv6Groups(addr);
  if (!g || g.slice(0, 5).some((x) => x !== '0') || g[5] !== 'ffff') return undefined;
  const [hi, lo] = [parseInt(g[6]!, 16), parseInt(g[7]!, 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** The eight groups of an IPv6 address, lower case without leading zeros; undefined if it is not one. */
function ipv6Groups(addr: string): string[] | undefined {
  const bare = addr.split('%')[0]!;
  if (isIP(bare) !== 6) return undefined;
  const [head = '', tail] = bare.toLowerCase().split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail (::a.b.c.d forms other than ::ffff:) is two groups.
  const expand = (gs: string[]) =>
    gs.flatMap((g) => {
      if (!g.includes('.')) return [g];
      const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
      return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
    });
  const hh = expand(h);
  const tt = expand(t);
  const groups = tail === undefined ? hh : [...hh, ...new Array<string>(Math.max(0, 8 - hh.length - tt.length)).fill('0'), ...tt];
  return groups.map((g) => (parseInt(g, 16) || 0).toString(16));
}

/** A token bucket of one source. */
export interface Bucket {
  tokens: number;
  updatedAt: number;
}

/** A refused take: when the next token comes back. */
export interface RateRefusal {
  retryAfterSeconds: number;
}

/**
 * Token buckets keyed by `sourceKey`: each source holds `burst` tokens,
 * refilled at `perMinute`. The table of sources is bounded (`maxBuckets`):
 * full buckets carry no state and are forgotten first, then the oldest.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly perMinute: number,
    readonly burst: number,
    private readonly maxBuckets = MAX_RATE_BUCKETS,
  ) {}

  /** Takes one token for `addr` at `nowMs` (ms since the epoch): undefined when allowed, else when to retry. */
  take(addr: string, nowMs: number): RateRefusal | undefined {
    const key = sourceKey(addr);
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxBuckets) this.prune(nowMs);
      b = { tokens: this.burst, updatedAt: nowMs };
      this.buckets.set(key, b);
    }
    const perMs = this.perMinute / 60_000;
    b.tokens = Math.min(this.burst, b.tokens + Math.max(0, nowMs - b.updatedAt) * perMs);
    b.updatedAt = nowMs;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return undefined;
    }
    return { retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000)) };
  }

  /** How many sources are tracked (tests). */
  get size(): number {
    return this.buckets.size;
  }

  private prune(nowMs: number): void {
    const perMs = this.perMinute / 60_000;
    for (const [k, b] of this.buckets) if (b.tokens + (nowMs - b.updatedAt) * perMs >= this.burst) this.buckets.delete(k);
    for (const k of this.buckets.keys()) {
      if (this.buckets.size < this.maxBuckets * 0.9) break;
      this.buckets.delete(k);
    }
  }
}

/** Sources a RateLimiter tracks at most. */
export const MAX_RATE_BUCKETS = 100_000;

/**
 * Open things (connections) per key of the peer address (default
 * `sourceKey`; `prefixKey` for per-prefix caps, a constant for a total), at
 * most `max` each: `acquire` says whether one more may open and, when it
 * may, returns its release (idempotent).
 */
export class SourceCounter {
  private readonly open = new Map<string, number>();

  constructor(
    readonly max: number,
    private readonly keyOf: (addr: string) => string = sourceKey,
  ) {}

  /** One more for `addr`: its release, or undefined when its key already holds `max`. */
  acquire(addr: string): (() => void) | undefined {
    const key = this.keyOf(addr);
    const n = this.open.get(key) ?? 0;
    if (n >= this.max) return undefined;
    this.open.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left <= 0) this.open.delete(key);
      else this.open.set(key, left);
    };
  }

  /** What `addr`'s source holds now. */
  count(addr: string): number {
    return this.open.get(this.keyOf(addr)) ?? 0;
  }
}
