/**
 * The table of browser logins waiting for the IdP's callback, keyed by the
 * OIDC `state`, with caps one source or one network cannot get around by
 * waiting: a flood evicts its own entries, not a real user's.
 *
 * - per source (limits.ts `sourceKey`: an IPv4 address, an IPv6 /64):
 *   `perSource` pending; one more evicts that source's oldest.
 * - per prefix (`prefixKey`: IPv4 /24, IPv6 /48, all of loopback as one):
 *   `perPrefix`; one more evicts the oldest entry of the source holding the
 *   most in that prefix (a user with one pending login keeps it while
 *   anyone in the prefix holds two).
 * - in total `total`; one more evicts, in the prefix holding the most, the
 *   oldest entry of its heaviest source.
 * - per entry at most `entryBytes` (what the caller measured: the key, the
 *   callback URL, the OIDC checks): bounds the table's memory to about
 *   total × entryBytes.
 */
import { prefixKey, sourceKey } from '../limits.js';
import type { PendingLimits } from '../storage/backend.js';

export type { PendingLimits };

/** Defaults (documented in SECURITY.md "Limits"). */
export const PENDING_LIMITS: Readonly<PendingLimits> = {
  total: 10_000,
  perPrefix: 1_000,
  perSource: 20,
  entryBytes: 4 * 1024,
};

interface Slot<T> {
  entry: T;
  source: string;
  prefix: string;
}

/** Pending entries; `T` carries its own expiry (ms since the epoch). */
export class PendingLogins<T extends { expiresAt: number }> {
  private readonly byState = new Map<string, Slot<T>>();
  /** prefix → source → states in insertion (= age) order. */
  private readonly tree = new Map<string, Map<string, Set<string>>>();
  private readonly prefixCounts = new Map<string, number>();

  constructor(readonly limits: PendingLimits = PENDING_LIMITS) {}

  /**
   * Adds `entry` under `state` for peer address `addr`, under `limits`
   * (default: the table's own). Returns the entries evicted to make room
   * (oldest first; the caller audits them). The caller checks
   * `limits.entryBytes` first.
   */
  add(state: string, entry: T, addr: string, limits: PendingLimits = this.limits): T[] {
    const source = sourceKey(addr);
    const prefix = prefixKey(addr);
    const evicted: T[] = [];
    const sources = this.tree.get(prefix);
    if ((sources?.get(source)?.size ?? 0) >= limits.perSource) {
      evicted.push(this.evictOldest(prefix, source));
    } else if ((this.prefixCounts.get(prefix) ?? 0) >= limits.perPrefix) {
      evicted.push(this.evictOldest(prefix, this.heaviestSource(prefix)));
    } else if (this.byState.size >= limits.total) {
      const heavy = this.heaviestPrefix();
      evicted.push(this.evictOldest(heavy, this.heaviestSource(heavy)));
    }
    this.byState.set(state, { entry, source, prefix });
    let s = this.tree.get(prefix);
    if (!s) this.tree.set(prefix, (s = new Map()));
    let states = s.get(source);
    if (!states) s.set(source, (states = new Set()));
    states.add(state);
    this.prefixCounts.set(prefix, (this.prefixCounts.get(prefix) ?? 0) + 1);
    return evicted;
  }

  /** Removes and returns the entry of `state` (single use), if any. */
  take(state: string): T | undefined {
    const slot = this.byState.get(state);
    if (!slot) return undefined;
    this.remove(state, slot);
    return slot.entry;
  }

  /** Removes and returns every entry whose `expiresAt` is before `nowMs`. */
  sweep(nowMs: number): T[] {
    const gone: T[] = [];
    for (const [state, slot] of this.byState) {
      if (nowMs > slot.entry.expiresAt) {
        this.remove(state, slot);
        gone.push(slot.entry);
      }
    }
    return gone;
  }

  get size(): number {
    return this.byState.size;
  }

  /** Pending entries of `addr`'s source and prefix (tests, metrics). */
  countFor(addr: string): { source: number; prefix: number } {
    const prefix = prefixKey(addr);
    return { source: this.tree.get(prefix)?.get(sourceKey(addr))?.size ?? 0, prefix: this.prefixCounts.get(prefix) ?? 0 };
  }

  private heaviestPrefix(): string {
    let best = '';
    let most = -1;
    for (const [p, n] of this.prefixCounts) if (n > most) [best, most] = [p, n];
    return best;
  }

  /** The source of `prefix` with the most entries; on a tie, the one whose oldest entry is oldest (earlier in the table). */
  private heaviestSource(prefix: string): string {
    let best = '';
    let most = -1;
    for (const [src, states] of this.tree.get(prefix) ?? []) if (states.size > most) [best, most] = [src, states.size];
    return best;
  }

  private evictOldest(prefix: string, source: string): T {
    const state = this.tree.get(prefix)!.get(source)!.values().next().value as string;
    return this.take(state)!;
  }

  private remove(state: string, slot: Slot<T>): void {
    this.byState.delete(state);
    const sources = this.tree.get(slot.prefix)!;
    const states = sources.get(slot.source)!;
    states.delete(state);
    if (states.size === 0) sources.delete(slot.source);
    if (sources.size === 0) this.tree.delete(slot.prefix);
    const n = (this.prefixCounts.get(slot.prefix) ?? 1) - 1;
    if (n <= 0) this.prefixCounts.delete(slot.prefix);
    else this.prefixCounts.set(slot.prefix, n);
  }
}
