/**
 * The proxy's side of `jumpgate node start` (HTTPS API, api/schema.ts):
 *
 *   POST /v1/nodes/join       token + name + addr + labels + host PUBLIC key
 *                             → host certificate, user CA keys, KRL, node credential
 *   POST /v1/nodes/heartbeat  Bearer credential (checked against the inventory's cached
 *                             node; the store is read only on a miss or a mismatch);
 *                             the node is alive (kept in memory, stored with every other
 *                             node this proxy heard as ONE node_heartbeat item per
 *                             flush, not one write per heartbeat); held until the
 *                             trust material (user CA keys, KRL) changes or the
 *                             heartbeat interval passes (a long poll: changes reach
 *                             the node within a second, one request per interval,
 *                             a third of the TTL up to MAX_HEARTBEAT_HOLD_SECONDS;
 *                             held heartbeats sit in one list swept every second,
 *                             no timer each)
 *   POST /v1/nodes/renew      Bearer credential → new host certificate (same key) and
 *                             a new credential
 *
 * The node credential is 32 random bytes (base64url), bound to the node's
 * name; the server keeps only its SHA-256 in the node's item. It rotates with
 * every renewal (two thirds of node_agent.host_cert_ttl): the old one stays
 * valid until the new one is first used (an answer lost in transit does not
 * strand the node). A stolen credential is cut off by `tctl nodes rm NAME`:
 * the item goes, every call with it is refused, the node leaves the inventory.
 *
 * Limits: joins per source (JOIN_RATE_LIMIT), refused heartbeats/renewals per
 * source (the same limiter), bodies (web.ts MAX_BODY_BYTES), labels
 * (api/schema.ts MAX_NODE_LABELS), MAX_JOINED_NODES, and names: one node per
 * name, never the name of a static node, and no principal of the host
 * certificate naming another node (principalConflict).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { NodeHeartbeatResponse, NodeJoinResponse, NodeRenewResponse } from '../../api/types.js';
import { MAX_NODE_LABELS, NodeHeartbeatRequestSchema, NodeJoinRequestSchema, NodeRenewRequestSchema, parseShape } from '../../api/schema.js';
import { parseHostPort, formatHostPort } from '../../shared/address.js';
import { encodeKrl, parseKrl } from '../../sshcert/krl.js';
import { currentKrl } from '../auth/revocation.js';
import { encodeCertificateLine, formatPublicKeyLine, fingerprintSha256, parsePublicKeyLine, type PublicKey } from '../../sshcert/index.js';
import { ApiRequestError } from '../auth/login.js';
import { issueHostCertificate } from '../auth/issuer.js';
import { RateLimiter } from '../limits.js';
import type { ServerRuntime } from '../runtime.js';
import { useToken } from './tokens.js';
import type { HeartbeatBatch, Inventory, JoinedNode } from './inventory.js';

/** Joins per source: a token is 192 bits, this only keeps a flood cheap. Refused heartbeats take from the same bucket. */
export const JOIN_RATE_LIMIT = { perMinute: 30, burst: 20 };
/**
 * Node item writes one node's heartbeats may cause (a new address or labels), per node: beyond it the heartbeat
 * still counts (liveness) but the change waits for a later heartbeat (the agent sends its labels every time). A node
 * flipping its labels on every heartbeat (a stale state is answered at once) made a store write each time, and on
 * PostgreSQL a change every proxy re-reads.
 */
export const NODE_CHANGE_RATE_LIMIT = { perMinute: 12, burst: 10 };
/** Most joined nodes one cluster keeps (live or not); `tctl nodes rm` makes room. */
export const MAX_JOINED_NODES = 10_000;
/**
 * Longest a heartbeat is held waiting for a change (the interval is a third of
 * the TTL, at most this). Each answered heartbeat is one HTTPS request, so the
 * longer the hold, the cheaper 1,000 nodes are. The HTTPS server's
 * requestTimeout does not bound it: Node's request timers stop once the
 * request has arrived (a heartbeat's body arrives at once); a balancer in
 * front must allow this much idle time on a request (HAProxy `timeout server`),
 * which 60 s stays within for the common defaults.
 */
export const MAX_HEARTBEAT_HOLD_SECONDS = 60;
/**
 * How often the trust material is compared with the last one (changes reach
 * held heartbeats this fast) and held heartbeats past their interval are
 * answered (one shared sweep, not a timer per held request).
 */
export const STATE_CHECK_MS = 1_000;

/** How often the KRL is rebuilt from the locks (auth/revocation.ts currentKrl): lock changes reach nodes within this plus a second. */
export const KRL_REFRESH_MS = 3_000;

/** Longest gap between two stores of this proxy's heartbeat batch (flushHeartbeats). */
export const HEARTBEAT_FLUSH_MAX_MS = 10_000;

/** The KRL before the first build: revokes nothing. */
const EMPTY_KRL = encodeKrl({ version: 0n, generatedDate: 0n, comment: 'jumpgate locks', certificates: [], explicitKeys: [], sha256: [] });

/** What a KRL revokes, without its header (version and date change on every build). */
function krlContent(krl: Buffer): string {
  const k = parseKrl(krl);
  return JSON.stringify({ c: k.certificates.map((c) => ({ ca: c.caKey?.toString('base64'), s: c.serials.map(String), r: (c.ranges ?? []).map((r) => r.map(String)), k: c.keyIds })), e: k.explicitKeys.map((b) => b.toString('base64')), h: k.sha256.map((b) => b.toString('base64')) });
}

/** What nodes are sent to keep sshd current, and its state id. */
interface Trust {
  state: string;
  user_ca: string[];
  krl: string;
}

export interface NodeServiceDeps {
  rt: ServerRuntime;
  inventory: Inventory;
  /** The current KRL bytes (PROTOCOL.krl); default: auth/revocation.ts currentKrl, rebuilt every KRL_REFRESH_MS. */
  krl?: () => Buffer;
}

/** The node API (see the top of this file). */
export class NodeService {
  readonly limiter = new RateLimiter(JOIN_RATE_LIMIT.perMinute, JOIN_RATE_LIMIT.burst);
  /** Stored changes per node name (NODE_CHANGE_RATE_LIMIT). */
  private readonly changeLimiter = new RateLimiter(NODE_CHANGE_RATE_LIMIT.perMinute, NODE_CHANGE_RATE_LIMIT.burst);
  private trust: Trust;
  /**
   * The held heartbeats, in the order they came: as each is held for the same
   * interval, also the order of their deadlines, so the sweep (sweepHeld,
   * every STATE_CHECK_MS) stops at the first one not yet due. A Set keeps
   * insertion order and deletes in O(1) (a node that hangs up).
   */
  private held = new Set<HeldHeartbeat>();
  /** The held heartbeat of each node (lower-case name): at most one per node (heartbeat). */
  private heldByNode = new Map<string, HeldHeartbeat>();
  private timer: NodeJS.Timeout;
  private krlTimer: NodeJS.Timeout | undefined;
  /** Lower-case name → last heartbeat (ms) this proxy took: stored as this proxy's node_heartbeat batch. */
  private heard = new Map<string, number>();
  private heardChanged = false;
  private flushing: Promise<void> = Promise.resolve();
  private flushTimer: NodeJS.Timeout;
  /** This process's key of its node_heartbeat item. */
  private readonly instance = randomBytes(8).toString('hex');
  /** The KRL sent to nodes: replaced only when what it revokes changes (so nodes are not woken by a new date). */
  private krl: { bytes: Buffer; content: string } = { bytes: EMPTY_KRL, content: krlContent(EMPTY_KRL) };

  constructor(private readonly deps: NodeServiceDeps) {
    this.trust = this.currentTrust();
    this.timer = setInterval(() => {
      this.checkTrust();
      this.sweepHeld();
    }, STATE_CHECK_MS);
    this.timer.unref();
    this.flushTimer = setInterval(() => void this.flushHeartbeats(), this.heartbeatFlushMs);
    this.flushTimer.unref();
    if (!deps.krl) {
      void this.refreshKrl();
      this.krlTimer = setInterval(() => void this.refreshKrl(), KRL_REFRESH_MS);
      this.krlTimer.unref();
    }
  }

  /** Rebuilds the KRL from the locks; keeps the last one when the store cannot be read. */
  async refreshKrl(): Promise<void> {
    try {
      const bytes = Buffer.from(await currentKrl(this.rt));
      const content = krlContent(bytes);
      if (content !== this.krl.content) this.krl = { bytes, content };
    } catch (err) {
      this.rt.log.warn(`nodes: cannot rebuild the revocation list (nodes keep the last one): ${(err as Error).message}`);
    }
  }

  /** How often the heartbeats this proxy took are stored: a sixth of the TTL, 1 s to HEARTBEAT_FLUSH_MAX_MS. */
  get heartbeatFlushMs(): number {
    return Math.max(1_000, Math.min(HEARTBEAT_FLUSH_MAX_MS, (this.rt.config.nodeAgent.heartbeatTtlSeconds * 1000) / 6));
  }

  /**
   * Stores the nodes this proxy heard within the TTL as its one node_heartbeat
   * item (expiring after the TTL); nothing when no heartbeat came since the
   * last flush. A failed write is logged and retried at the next flush.
   * Flushes run one after another (the timer's and an explicit one), so an
   * older batch never lands over a newer one.
   */
  flushHeartbeats(): Promise<void> {
    const next = this.flushing.then(() => this.flushOnce());
    this.flushing = next;
    return next;
  }

  private async flushOnce(): Promise<void> {
    if (!this.heardChanged) return;
    this.heardChanged = false;
    const now = this.rt.clock().getTime();
    const ttlMs = this.rt.config.nodeAgent.heartbeatTtlSeconds * 1000;
    const beats: Record<string, number> = {};
    for (const [name, ms] of this.heard) {
      if (now - ms >= ttlMs) this.heard.delete(name);
      else beats[name] = ms;
    }
    try {
      await this.rt.store.items.put<HeartbeatBatch>('node_heartbeat', this.instance, { beats }, now + ttlMs);
    } catch (err) {
      this.heardChanged = true;
      this.rt.log.warn(`nodes: cannot store the heartbeats of ${this.heard.size} nodes (other proxies may show them offline): ${(err as Error).message}`);
    }
  }

  private get rt(): ServerRuntime {
    return this.deps.rt;
  }

  /** Seconds between heartbeats: a third of the TTL (at most MAX_HEARTBEAT_HOLD_SECONDS). */
  get heartbeatIntervalSeconds(): number {
    return Math.max(1, Math.min(MAX_HEARTBEAT_HOLD_SECONDS, Math.floor(this.rt.config.nodeAgent.heartbeatTtlSeconds / 3)));
  }

  private currentTrust(): Trust {
    const userCa = this.rt.ca.get('user').trusted.map((k) => formatPublicKeyLine(k.publicKey, `jumpgate user CA ${this.rt.config.clusterName}`));
    const krl = (this.deps.krl?.() ?? this.krl.bytes).toString('base64');
    const state = createHash('sha256').update(userCa.join('\n')).update('\0').update(krl).digest('base64url').slice(0, 22);
    return { state, user_ca: userCa, krl };
  }

  /** Compares the trust material with the last; wakes every held heartbeat when it changed. */
  checkTrust(): void {
    let next: Trust;
    try {
      next = this.currentTrust();
    } catch (err) {
      this.rt.log.warn(`nodes: cannot build the trust material: ${(err as Error).message}`);
      return;
    }
    if (next.state === this.trust.state) return;
    this.trust = next;
    const waiting = [...this.held];
    this.held.clear();
    for (const h of waiting) h.wake();
  }

  /** Answers the held heartbeats whose interval has passed (at most STATE_CHECK_MS late). */
  sweepHeld(): void {
    const now = this.rt.clock().getTime();
    for (const h of this.held) {
      if (h.deadline > now) break; // the rest came later
      this.held.delete(h);
      h.wake();
    }
  }

  /** How many heartbeats are held now. */
  get heldCount(): number {
    return this.held.size;
  }

  /** The rate limit of joins, before the body is read. @throws ApiRequestError 429 */
  admit(clientAddr: string): void {
    const over = this.limiter.take(clientAddr, this.rt.clock().getTime());
    if (!over) return;
    this.failed('rate_limit', `more than ${this.limiter.burst} node joins or refused node calls at once or ${this.limiter.perMinute} a minute`, clientAddr);
    throw new ApiRequestError(429, 'RATE_LIMITED', `too many node joins from your address; try again in ${over.retryAfterSeconds} s`, over.retryAfterSeconds);
  }

  private failed(stage: 'join' | 'heartbeat' | 'renew' | 'rate_limit', reason: string, clientAddr: string, claimed?: string): void {
    this.rt.audit.unauthenticated({ event: 'node.failure', stage, reason, client_addr: clientAddr, ...(claimed !== undefined ? { claimed_node: claimed } : {}) }, clientAddr);
  }

  /**
   * POST /v1/nodes/join (see the top of this file).
   * @throws ApiRequestError 400 NODE_BAD_REQUEST (naming the field), 401 BAD_TOKEN, 409 NODE_NAME_TAKEN, 507 TOO_MANY_NODES; AuditUnavailableError
   */
  async join(body: unknown, clientAddr: string): Promise<NodeJoinResponse> {
    const p = parseShape(NodeJoinRequestSchema, body);
    if (!p.ok) {
      this.failed('join', `${p.field}: ${p.reason}`, clientAddr);
      throw new ApiRequestError(400, 'NODE_BAD_REQUEST', `invalid join request: ${p.field}: ${p.reason}`);
    }
    const req = p.value;
    const key = req.name.toLowerCase();
    const publicKey = this.parseKey(req.public_key);
    const addr = parseHostPort(req.addr);
    if (this.rt.config.nodes.some((n) => n.name.toLowerCase() === key)) {
      this.failed('join', 'name of a static node', clientAddr, req.name);
      throw new ApiRequestError(409, 'NODE_NAME_TAKEN', `"${req.name}" is a node of the server's static nodes: list; join under another --name, or remove it from the config`);
    }
    if (await this.rt.store.items.get('node', key)) {
      this.failed('join', 'name already joined', clientAddr, req.name);
      throw new ApiRequestError(409, 'NODE_NAME_TAKEN', `a node named "${req.name}" has already joined; use another --name, or remove the old one first with \`tctl nodes rm ${req.name}\``);
    }
    const conflict = await this.principalConflict(req.name, addr.host);
    if (conflict) {
      this.failed('join', 'principal of another node', clientAddr, req.name);
      throw new ApiRequestError(409, 'NODE_NAME_TAKEN', conflict);
    }
    if (this.deps.inventory.joinedCount() >= MAX_JOINED_NODES) {
      throw new ApiRequestError(507, 'TOO_MANY_NODES', `this cluster already has ${MAX_JOINED_NODES} joined nodes; remove old ones with \`tctl nodes rm\``);
    }
    const token = await useToken(req.token, this.rt.store.items);
    if (!token) {
      this.failed('join', 'unknown, used or expired token', clientAddr, req.name);
      throw new ApiRequestError(401, 'BAD_TOKEN', 'the join token is unknown, expired or already used; make a new one with `tctl tokens add --type=node`');
    }
    const labels = { ...req.labels, ...token.labels };
    if (Object.keys(labels).length > MAX_NODE_LABELS) throw new ApiRequestError(400, 'NODE_BAD_REQUEST', `invalid join request: labels: more than ${MAX_NODE_LABELS} with the token's`);
    const cert = await issueHostCertificate(
      { names: [req.name, addr.host], publicKey, ttlSeconds: this.rt.config.nodeAgent.hostCertTtlSeconds, via: 'node-join' },
      { config: this.rt.config, ca: this.rt.ca, audit: this.rt.audit, clock: this.rt.clock },
    );
    const credential = randomBytes(32).toString('base64url');
    const now = this.rt.clock();
    const node: JoinedNode = {
      name: req.name,
      addr: formatHostPort(addr),
      labels,
      token_labels: token.labels,
      token: token.id,
      joined_at: now.toISOString(),
      last_heartbeat: now.getTime(),
      credentials: [hashCredential(credential)],
      host_key: formatPublicKeyLine(publicKey),
      cert_serial: cert.serial.toString(),
      cert_valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
    };
    if (!(await this.rt.store.items.create('node', key, node))) {
      throw new ApiRequestError(409, 'NODE_NAME_TAKEN', `a node named "${req.name}" joined at the same moment; use another --name`);
    }
    this.deps.inventory.noteStored(node);
    await this.rt.audit.emit({ event: 'node.joined', node: req.name, node_addr: node.addr, client_addr: clientAddr, token: token.id, labels, key_fingerprint: fingerprintSha256(publicKey.blob) });
    this.rt.log.info(`nodes: ${req.name} joined from ${clientAddr} (token ${token.id})`);
    return {
      cluster_name: this.rt.config.clusterName,
      host_certificate: encodeCertificateLine(cert, req.name),
      credential,
      heartbeat_interval_seconds: this.heartbeatIntervalSeconds,
      ...this.trust,
    };
  }

  /**
   * POST /v1/nodes/heartbeat: records the heartbeat, then answers at once when
   * the node's `state` is not the current one, else when it changes or after
   * the heartbeat interval (checked every STATE_CHECK_MS). `onClose` is given
   * a callback to run when the request's connection goes away: the hold then
   * ends at once (nothing is sent).
   * @throws ApiRequestError 400, 401 NODE_CREDENTIAL_REFUSED, 409 NODE_NAME_TAKEN (a new address host naming another node)
   */
  async heartbeat(body: unknown, authorization: string | undefined, clientAddr: string, onClose: (release: () => void) => void): Promise<NodeHeartbeatResponse> {
    const p = parseShape(NodeHeartbeatRequestSchema, body);
    if (!p.ok) throw new ApiRequestError(400, 'NODE_BAD_REQUEST', `invalid heartbeat: ${p.field}: ${p.reason}`);
    const req = p.value;
    const { node, retired } = await this.authenticate(req.name, authorization, clientAddr, 'heartbeat');
    const labels = { ...req.labels, ...node.token_labels };
    if (Object.keys(labels).length > MAX_NODE_LABELS) throw new ApiRequestError(400, 'NODE_BAD_REQUEST', `invalid heartbeat: labels: more than ${MAX_NODE_LABELS} with the token's`);
    const now = this.rt.clock().getTime();
    const addr = parseHostPort(req.addr);
    if (addr.host.toLowerCase() !== parseHostPort(node.addr).host.toLowerCase()) {
      // The next renewal certifies the new host: it must not name another node either.
      const conflict = await this.principalConflict(node.name, addr.host);
      if (conflict) {
        this.failed('heartbeat', 'principal of another node', clientAddr, node.name);
        throw new ApiRequestError(409, 'NODE_NAME_TAKEN', conflict);
      }
    }
    const updated: JoinedNode = { ...node, addr: formatHostPort(addr), labels, last_heartbeat: now };
    // Liveness needs no store write per heartbeat: this proxy keeps it in memory and stores every node it heard as
    // ONE node_heartbeat item every HEARTBEAT_FLUSH (other proxies and tctl merge it: inventory.ts readJoinedNodes).
    // The node item itself is written only when what it says changed (address, labels, a retired credential).
    // A retired credential is always stored; an address or label change within NODE_CHANGE_RATE_LIMIT (else a later heartbeat stores it).
    const moved = updated.addr !== node.addr || !sameLabels(updated.labels, node.labels);
    const changed = retired || (moved && !this.changeLimiter.take(`node:${node.name.toLowerCase()}`, now));
    this.heard.set(node.name.toLowerCase(), now);
    this.heardChanged = true;
    if (changed) {
      await this.rt.store.items.put('node', node.name.toLowerCase(), updated);
      this.deps.inventory.noteStored(updated);
    } else {
      this.deps.inventory.noteHeartbeat(moved ? { ...node, last_heartbeat: now } : updated);
    }
    if (req.state === this.trust.state) {
      const key = node.name.toLowerCase();
      // One held heartbeat per node: a second one (a restarted agent, or a stolen credential opening many) answers
      // the one before at once, so a node holds at most one connection here however many it opens.
      const before = this.heldByNode.get(key);
      if (before && this.held.delete(before)) before.wake();
      await new Promise<void>((resolve) => {
        const h: HeldHeartbeat = {
          deadline: now + this.heartbeatIntervalSeconds * 1000,
          wake: () => {
            if (this.heldByNode.get(key) === h) this.heldByNode.delete(key);
            resolve();
          },
        };
        this.held.add(h);
        this.heldByNode.set(key, h);
        onClose(() => {
          if (this.held.delete(h)) h.wake();
        });
      });
    }
    const t = this.trust;
    return req.state === t.state ? { state: t.state, heartbeat_interval_seconds: this.heartbeatIntervalSeconds } : { ...t, heartbeat_interval_seconds: this.heartbeatIntervalSeconds };
  }

  /**
   * POST /v1/nodes/renew: a new host certificate for the node's key and a new credential.
   * @throws ApiRequestError 400 (a key other than the joined one), 401 NODE_CREDENTIAL_REFUSED; AuditUnavailableError
   */
  async renew(body: unknown, authorization: string | undefined, clientAddr: string): Promise<NodeRenewResponse> {
    const p = parseShape(NodeRenewRequestSchema, body);
    if (!p.ok) throw new ApiRequestError(400, 'NODE_BAD_REQUEST', `invalid renewal: ${p.field}: ${p.reason}`);
    const { node } = await this.authenticate(p.value.name, authorization, clientAddr, 'renew');
    const publicKey = this.parseKey(p.value.public_key);
    if (formatPublicKeyLine(publicKey) !== node.host_key) {
      throw new ApiRequestError(400, 'NODE_KEY_CHANGED', `a renewal certifies the key ${node.name} joined with; to use a new host key, remove the node (\`tctl nodes rm ${node.name}\`) and join again`);
    }
    const addr = parseHostPort(node.addr);
    const cert = await issueHostCertificate(
      { names: [node.name, addr.host], publicKey, ttlSeconds: this.rt.config.nodeAgent.hostCertTtlSeconds, via: 'node-renew' },
      { config: this.rt.config, ca: this.rt.ca, audit: this.rt.audit, clock: this.rt.clock },
    );
    const credential = randomBytes(32).toString('base64url');
    const used = hashCredential(bearer(authorization)!);
    const updated: JoinedNode = {
      ...node,
      credentials: [hashCredential(credential), used],
      cert_serial: cert.serial.toString(),
      cert_valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
      last_heartbeat: this.rt.clock().getTime(),
    };
    await this.rt.store.items.put('node', node.name.toLowerCase(), updated);
    this.deps.inventory.noteStored(updated);
    return { host_certificate: encodeCertificateLine(cert, node.name), credential };
  }

  /** The stored node whose credential `authorization` carries; the newest credential's first use retires the previous. */
  private async authenticate(name: string, authorization: string | undefined, clientAddr: string, stage: 'heartbeat' | 'renew'): Promise<{ node: JoinedNode; retired: boolean }> {
    const refuse = (why: string) => {
      const over = this.limiter.take(clientAddr, this.rt.clock().getTime());
      this.failed(stage, why, clientAddr, name);
      if (over) throw new ApiRequestError(429, 'RATE_LIMITED', `too many refused node calls from your address; try again in ${over.retryAfterSeconds} s`, over.retryAfterSeconds);
      return new ApiRequestError(401, 'NODE_CREDENTIAL_REFUSED', `the node credential of "${name}" is not valid here (was the node removed with \`tctl nodes rm\`?); join again with a new token from \`tctl tokens add --type=node\``);
    };
    const secret = bearer(authorization);
    if (!secret) throw refuse('no node credential');
    const given = Buffer.from(hashCredential(secret), 'hex');
    // The inventory's cached copy first (no store read per heartbeat); the store on a miss or a mismatch (a node
    // this proxy has not seen yet, a credential rotated through another proxy). A removal reaches the cache within
    // CHANGE_VISIBILITY_MS (inventory.ts: watch item:node), so `tctl nodes rm` still cuts the node off on every proxy.
    let node = this.deps.inventory.cached(name);
    let match = node ? credentialIndex(node, given) : -1;
    if (match < 0) {
      const item = await this.rt.store.items.get<JoinedNode>('node', name.toLowerCase());
      if (!item) {
        this.deps.inventory.forget(name);
        throw refuse('unknown node');
      }
      node = item.value;
      match = credentialIndex(node, given);
      if (match < 0) throw refuse('wrong node credential');
      this.deps.inventory.noteStored(node);
    }
    if (match === 0 && node!.credentials.length > 1) return { node: { ...node!, credentials: [node!.credentials[0]!] }, retired: true };
    return { node: node!, retired: false };
  }

  /**
   * Why a node called `name` at address host `host` may not have a host
   * certificate for those principals (name, name.<cluster>, host), or
   * undefined: none of them may be another node's name or name.<cluster>
   * (static or joined), and its names may not be another node's address host;
   * otherwise the host CA would vouch for this node as the other one (ssh
   * checks only that a principal matches what the user typed). Nodes sharing an
   * address host (one machine, several sshd ports) are allowed. Case-insensitive.
   */
  private async principalConflict(name: string, host: string): Promise<string | undefined> {
    const cluster = this.rt.config.clusterName.toLowerCase();
    const self = name.toLowerCase();
    const own = [self, `${self}.${cluster}`];
    const others: Array<{ name: string; host: string }> = this.rt.config.nodes.map((n) => ({ name: n.name, host: n.addr.host }));
    for (const i of await this.rt.store.items.list<JoinedNode>('node')) {
      if (i.key === self) continue;
      try {
        others.push({ name: i.value.name, host: parseHostPort(i.value.addr).host });
      } catch {
        others.push({ name: i.value.name, host: '' });
      }
    }
    const h = host.toLowerCase();
    for (const o of others) {
      const oName = o.name.toLowerCase();
      const oNames = [oName, `${oName}.${cluster}`];
      if (oNames.some((n) => own.includes(n) || n === h)) {
        return `"${name}" at ${host} would be certified under a name of the node "${o.name}"; join under another --name, and give --addr as this node's own address`;
      }
      if (o.host !== '' && own.includes(o.host.toLowerCase())) {
        return `"${name}" is the address of the node "${o.name}"; join under another --name`;
      }
    }
    return undefined;
  }

  private parseKey(line: string): PublicKey {
    try {
      return parsePublicKeyLine(line).key;
    } catch (err) {
      throw new ApiRequestError(400, 'NODE_BAD_REQUEST', `invalid request: public_key: ${(err as Error).message}`);
    }
  }

  /** Releases every held heartbeat and stops the state timer. */
  close(): void {
    clearInterval(this.timer);
    clearInterval(this.krlTimer);
    clearInterval(this.flushTimer);
    const waiting = [...this.held];
    this.held.clear();
    for (const h of waiting) h.wake();
  }
}

/** A heartbeat held until `deadline` (ms since the epoch) or a trust change; `wake` answers it. */
interface HeldHeartbeat {
  deadline: number;
  wake: () => void;
}

/** Which of the node's credential hashes `given` (SHA-256 bytes) is, compared in constant time; -1: none. */
function credentialIndex(node: JoinedNode, given: Buffer): number {
  return node.credentials.findIndex((h) => timingSafeEqual(Buffer.from(h, 'hex'), given));
}

/** Whether two label maps hold the same pairs (in any order). */
function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!Object.hasOwn(b, k) || a[k] !== b[k]) return false;
  return true;
}

function hashCredential(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** The credential of an `Authorization: Bearer <credential>` header (base64url, 43 characters), or undefined. */
function bearer(authorization: string | undefined): string | undefined {
  const m = /^Bearer ([A-Za-z0-9_-]{43})$/.exec(authorization ?? '');
  return m?.[1];
}
