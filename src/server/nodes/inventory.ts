/**
 * The live inventory: the static `nodes:` of the config plus the nodes that
 * joined (`node` items in the state store, written by node-service.ts) and
 * heartbeated within `node_agent.heartbeat_ttl`. Routing (proxy/routing.ts),
 * `tsh ls` (the nodes@jumpgate.dev subsystem), the login answer, role label
 * matching and `tctl nodes ls` all read it.
 *
 * The joined nodes are a cached snapshot so routing stays synchronous and
 * never waits on the database: refreshed when another process changes a node
 * (`store.watch` topic `item:node`, at most once every REFRESH_DEBOUNCE_MS; other proxies'
 * heartbeat batches, topic `item:node_heartbeat`, are merged alone), every third of
 * the heartbeat TTL (the dir backend pushes no item changes; `tctl
 * nodes rm` runs in another process), and at once for this process's own
 * heartbeats (which reach the store as one `node_heartbeat` batch per proxy
 * every few seconds: node-service.ts, readJoinedNodes).
 */
import type { NodeConfig, ServerConfig } from '../../config/index.js';
import { parseHostPort } from '../../shared/address.js';
import type { ItemBackend, StateBackend } from '../storage/backend.js';

/**
 * How long a change to `item:node` waits before the cache re-reads every node
 * (changes meanwhile ride along): with 1,000 nodes each storing a heartbeat
 * every half TTL, `item:node` changes all the time and a re-read costs tens of
 * milliseconds. Chosen so a removal still reaches every proxy within
 * CHANGE_VISIBILITY_MS (5 s): the dir backend's 0.5 s poll + this + the read.
 */
export const REFRESH_DEBOUNCE_MS = 3_000;

/** A joined node as stored (the `node` item's value; key = the lower-case name). */
export interface JoinedNode {
  name: string;
  /** host:port the proxy dials. */
  addr: string;
  /** Labels as routed on: the node's own (static and command labels), then the token's over them. */
  labels: Record<string, string>;
  /** The labels of the token it joined with (they win over what the node sends). */
  token_labels: Record<string, string>;
  /** Id of that token. */
  token: string;
  /** ISO 8601. */
  joined_at: string;
  /** Milliseconds since the epoch. */
  last_heartbeat: number;
  /** SHA-256 (hex) of the current node credential, then of the previous one until the new one is used. */
  credentials: string[];
  /** The node's host public key (OpenSSH line): renewals certify only it. */
  host_key: string;
  cert_serial: string;
  /** ISO 8601. */
  cert_valid_before: string;
}

/** One inventory entry: a NodeConfig plus where it came from. */
export interface InventoryNode extends NodeConfig {
  source: 'static' | 'joined';
  /** Joined nodes: the last heartbeat. */
  lastHeartbeat?: Date;
}

/** The static list as inventory entries. */
export function staticNodes(config: ServerConfig): InventoryNode[] {
  return config.nodes.map((n) => ({ ...n, source: 'static' as const }));
}

/** A stored joined node as an inventory entry (undefined when its address no longer parses). */
export function joinedEntry(n: JoinedNode): InventoryNode | undefined {
  try {
    return { name: n.name, addr: parseHostPort(n.addr), labels: n.labels, source: 'joined', lastHeartbeat: new Date(n.last_heartbeat) };
  } catch {
    return undefined;
  }
}

/** Whether a joined node's last heartbeat is within the TTL at `nowMs`. */
export function isLive(n: Pick<JoinedNode, 'last_heartbeat'>, config: ServerConfig, nowMs: number): boolean {
  return nowMs - n.last_heartbeat < config.nodeAgent.heartbeatTtlSeconds * 1000;
}

/**
 * One proxy's heartbeats (the `node_heartbeat` item, key = that proxy's
 * instance id, expiring after the TTL): lower-case node name → milliseconds
 * since the epoch of the last heartbeat it took. Written by node-service.ts
 * every few seconds as ONE item, so liveness costs one store write per proxy
 * per flush instead of one fsync per node.
 */
export interface HeartbeatBatch {
  beats: Record<string, number>;
}

/**
 * Reads every joined node from the store (tctl, and the cache's refresh), its
 * `last_heartbeat` the newest of the node item's and every proxy's heartbeat
 * batch (a batch naming a node without a node item is ignored: removed).
 */
export async function readJoinedNodes(items: ItemBackend): Promise<JoinedNode[]> {
  const newest = await newestHeartbeats(items);
  return (await items.list<JoinedNode>('node')).map((i) => {
    const beat = newest.get(i.value.name.toLowerCase());
    return beat !== undefined && beat > i.value.last_heartbeat ? { ...i.value, last_heartbeat: beat } : i.value;
  });
}

/**
 * Every proxy's heartbeat batch merged: lower-case node name → the newest
 * heartbeat (ms since the epoch) any proxy took. Entries that are not safe
 * integers are skipped (the batches are the store's, not a node's, input).
 */
export async function newestHeartbeats(items: ItemBackend): Promise<Map<string, number>> {
  const newest = new Map<string, number>();
  for (const b of await items.list<HeartbeatBatch>('node_heartbeat')) {
    const beats = b.value?.beats;
    if (typeof beats !== 'object' || beats === null) continue;
    for (const [name, ms] of Object.entries(beats)) {
      if (typeof ms === 'number' && Number.isSafeInteger(ms) && ms > (newest.get(name) ?? 0)) newest.set(name, ms);
    }
  }
  return newest;
}

/** The running server's inventory cache (see the top of this file). */
export class Inventory {
  private joined = new Map<string, JoinedNode>();
  private timer: NodeJS.Timeout | undefined;
  private unwatch: () => void = () => {};
  private pending: NodeJS.Timeout | undefined;
  private pendingBeats: NodeJS.Timeout | undefined;
  private readonly staticList: InventoryNode[];

  constructor(
    private readonly deps: { config: ServerConfig; store: StateBackend; clock: () => Date; log: { warn(line: string): void } },
  ) {
    this.staticList = staticNodes(deps.config);
  }

  /** Loads the joined nodes and starts following changes. */
  async start(): Promise<void> {
    await this.refresh();
    const everyMs = Math.max(1_000, (this.deps.config.nodeAgent.heartbeatTtlSeconds * 1000) / 3);
    this.timer = setInterval(() => void this.refreshQuietly(), everyMs);
    this.timer.unref();
    this.unwatch = this.deps.store.watch((topic) => {
      if (topic === 'item:node' && !this.pending) {
        this.pending = setTimeout(() => {
          this.pending = undefined;
          void this.refreshQuietly();
        }, REFRESH_DEBOUNCE_MS);
        this.pending.unref();
      } else if (topic === 'item:node_heartbeat' && !this.pendingBeats) {
        // Another proxy's heartbeats (or this one's): merged without re-reading every node, so a node heartbeating
        // through another proxy stays live here within a flush + REFRESH_DEBOUNCE_MS, not only at the timer.
        this.pendingBeats = setTimeout(() => {
          this.pendingBeats = undefined;
          void this.mergeHeartbeats().catch((err: Error) => this.deps.log.warn(`inventory: cannot read the heartbeat batches (keeping the last): ${err.message}`));
        }, REFRESH_DEBOUNCE_MS);
        this.pendingBeats.unref();
      }
    });
  }

  /** Takes the newer heartbeats of every proxy's batch (newestHeartbeats) into the cached nodes. */
  async mergeHeartbeats(): Promise<void> {
    for (const [key, ms] of await newestHeartbeats(this.deps.store.items)) {
      const n = this.joined.get(key);
      if (n && ms > n.last_heartbeat) this.joined.set(key, { ...n, last_heartbeat: ms });
    }
  }

  /** Re-reads the joined nodes from the store. */
  async refresh(): Promise<void> {
    const next = new Map<string, JoinedNode>();
    for (const n of await readJoinedNodes(this.deps.store.items)) {
      // Heartbeats this proxy took but did not store yet (node-service.ts) are newer than the stored ones.
      const key = n.name.toLowerCase();
      const mine = this.joined.get(key);
      next.set(key, mine && mine.last_heartbeat > n.last_heartbeat && mine.joined_at === n.joined_at ? { ...n, last_heartbeat: mine.last_heartbeat } : n);
    }
    this.joined = next;
  }

  private async refreshQuietly(): Promise<void> {
    try {
      await this.refresh();
    } catch (err) {
      this.deps.log.warn(`inventory: cannot re-read the joined nodes (keeping the last list): ${(err as Error).message}`);
    }
  }

  /** This process stored `n` (join, heartbeat, renewal) or read it from the store. */
  noteStored(n: JoinedNode): void {
    this.joined.set(n.name.toLowerCase(), n);
  }

  /**
   * This process took a heartbeat of `n` without storing it: kept in memory
   * only, and only while the node is still cached (a refresh that found it
   * removed wins over a heartbeat already past its credential check).
   */
  noteHeartbeat(n: JoinedNode): void {
    const key = n.name.toLowerCase();
    if (this.joined.has(key)) this.joined.set(key, n);
  }

  /**
   * The cached joined node `name` (lower-cased here), live or not, as of the
   * last refresh or this process's last write: node-service.ts checks
   * credentials against it and reads the store only on a miss or a mismatch.
   * A removal (`tctl nodes rm`, any proxy) drops it at the next refresh
   * (watch `item:node`: within CHANGE_VISIBILITY_MS).
   */
  cached(name: string): JoinedNode | undefined {
    return this.joined.get(name.toLowerCase());
  }

  /** This process found `name` gone (removed by tctl nodes rm). */
  forget(name: string): void {
    this.joined.delete(name.toLowerCase());
  }

  /** The static list, then the live joined nodes by name. */
  nodes(): InventoryNode[] {
    const now = this.deps.clock().getTime();
    const live: InventoryNode[] = [];
    for (const n of this.joined.values()) {
      if (!isLive(n, this.deps.config, now)) continue;
      const e = joinedEntry(n);
      if (e) live.push(e);
    }
    live.sort((a, b) => a.name.localeCompare(b.name));
    return [...this.staticList, ...live];
  }

  /** How many joined nodes are stored (live or not): the cap on joins counts them. */
  joinedCount(): number {
    return this.joined.size;
  }

  close(): void {
    clearInterval(this.timer);
    clearTimeout(this.pending);
    clearTimeout(this.pendingBeats);
    this.unwatch();
  }
}
