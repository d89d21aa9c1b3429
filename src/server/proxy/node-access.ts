/**
 * The proxy's ONE decision "may this certificate reach node N as login L",
 * and the one relay that carries a session once it may. Every way into a
 * node goes through here: the SSH port's `proxy:HOST:PORT` subsystem and
 * `direct-tcpip` channels (ssh-proxy.ts), the TLS route on the web port
 * (tls-route.ts), and the web UI's terminal (web/terminal.ts: a
 * SessionRequester, the web session's logins and roles instead of a
 * certificate; it dials and relays itself, as an SSH client of the node).
 * So roles, labels, logins, per-user limits and the audit log cannot differ
 * between the paths.
 *
 * Order, per connection: the transport verified the certificate (SSH: the
 * user CA, type, validity, critical options, signature; TLS: the X.509 user
 * CA and the same SSH certificate checks on the identity it carries), then
 * `identify` (roles from the certificate against the current config) and
 * `admitConnection` (proxy.limits.max_connections_per_user). Per node
 * session: `authorizeNodeRoute` (login among the certificate's principals,
 * the node by name or address, its labels against the roles' selectors,
 * the port, max_sessions_per_user and the node dial caps; a refusal is
 * audited as `access.denied`), then `dialNode`, then `relay`
 * (`session.start` stored before any byte moves, `session.end` after).
 *
 * Locks (auth/locks.ts): `connectionLock` at authentication (user, login,
 * role, certificate) and again in `authorizeNodeRoute` for every node
 * session (the node too: locks come and go while a connection is open);
 * `relay` registers every session in `rt.sessions` (active-sessions.ts) so a
 * lock ends it, telling the user through `RelayClient.notify` where the
 * path has a way to.
 *
 * Routing goes through the live node inventory (nodes/inventory.ts, through
 * runtime.ts `inventoryNodes`): the static `nodes:` list plus joined nodes.
 */
import { coalesceWrites } from '../../util/coalesce-writes.js';
import { connect as netConnect, type NetConnectOpts, type Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { formatHostPort, type NodeConfig } from '../../config/index.js';
import type { Certificate } from '../../sshcert/index.js';
import type { AuditEvent } from '../auth/audit.js';
import { lockedMessage, type Lock } from '../auth/locks.js';
import { printable } from '../../util/printable.js';
import type { EndReason } from './active-sessions.js';
import { inventoryNodes, type ServerRuntime } from '../runtime.js';
import { certificateSelectors, routeToNode, type Refusal } from './routing.js';
import { isRefusal, SessionLimiter, type LimitRefusal, type Slot } from './session-limits.js';

/** How long dialling a node may take. */
export const NODE_DIAL_TIMEOUT_MS = 10_000;
/** How long the proxy waits for a session.end to be stored before closing a client stream the node ended anyway. */
const SESSION_END_AUDIT_WAIT_MS = 5_000;
/**
 * Stream buffers on the relay. Node's default (16 KiB) makes the relay stall
 * between SSH window adjustments; 1 MiB was measured to lift a 1 GiB transfer
 * from ~150 to ~190-250 MB/s (FACTS.md). It is a ceiling, not an allocation:
 * a stream holds only what is queued, so an idle session costs nothing for it
 * (npm run load: 1,000 idle sessions, same RSS with 16 KiB and with 1 MiB).
 */
export const RELAY_BUFFER_BYTES = 1 << 20;

/** How a session reached the proxy (the `via` of session.start). */
export type Via = 'subsystem' | 'direct-tcpip' | 'tls-routing' | 'web';

/** Who asks: the certificate's key id, the login asked for, the client's address (host:port). */
export interface Who {
  user: string;
  login: string;
  clientAddr: string;
}

/** An authenticated requester: `who` plus the verified SSH certificate and its roles' label selectors. */
export interface Requester {
  who: Who;
  cert: Certificate;
  selectors: Record<string, string | string[]>[];
}

/**
 * A requester without an SSH certificate of its own: a web session
 * (web/terminal.ts). `principals` are the logins its roles grant now,
 * `roles` its roles, `selectors` their label selectors; no serial (a
 * certificate lock cannot name it).
 */
export interface SessionRequester {
  who: Who;
  principals: readonly string[];
  roles: string[];
  selectors: Record<string, string | string[]>[];
}

/** A refusal of a node session: `code` for the audit log, `message` for the user (no prefix). */
export interface RouteRefusal {
  ok: false;
  code: Refusal['code'] | LimitRefusal['code'] | 'LOGIN_DENIED' | 'ACCESS_LOCKED';
  message: string;
}

/** A node session the proxy allows: the node and its limit slot (release it when the session ends). */
export interface RouteGrant {
  ok: true;
  node: NodeConfig;
  slot: Slot;
}

/**
 * The client side of a relay: the byte stream plus how to tell the user the
 * session was refused after it was granted (the audit log could not store
 * session.start). SSH channels write to stderr and exit 1; the TLS route has
 * already answered and just closes.
 */
export interface RelayClient {
  stream: Duplex;
  refuse(message: string): void;
  /** Tells the user something while the session runs (SSH session channels: stderr); absent where the path has no side channel (direct-tcpip, TLS). */
  notify?(message: string): void;
  /** Called once session.start is stored, before any byte moves (the TLS route sends its "accepted" line here). */
  onStart?(): void;
  /**
   * The node could not be dialled (relay given the dial still under way):
   * tell the user; `reason` is short ("connection refused"). Called instead
   * of onStart and refuse.
   */
  unreachable?(reason: string): void;
}

/**
 * One per proxy process, shared by the SSH port and the TLS route (the
 * per-user limits count both). `close()` stops the limiter's timers.
 */
export class NodeAccess {
  readonly limiter: SessionLimiter;
  /** What a lock matches of a requester beyond `Who` (roles, certificate serial), kept from authorizeNodeRoute for relay's registration. */
  private readonly subjects = new WeakMap<Who, { roles: string[]; serial: bigint }>();

  constructor(private readonly rt: ServerRuntime) {
    this.limiter = new SessionLimiter(() => rt.config.proxy.limits, (e) => void auditOrWarn(rt, e, 'proxy'));
  }

  /** The roles' label selectors of a verified certificate, or why it grants nothing (routing.ts certificateSelectors). */
  identify(cert: Certificate): { roles: string[]; selectors: Record<string, string | string[]>[] } | Refusal {
    return certificateSelectors(this.rt.config, cert);
  }

  /**
   * The lock (auth/locks.ts) that refuses this certificate as `login` now
   * (user, login, role or certificate lock), or undefined. Call at
   * authentication; refuse with `lockedMessage(lock)`.
   */
  connectionLock(cert: Certificate, login: string, roles: readonly string[]): Lock | undefined {
    return this.rt.locks.check({ user: cert.keyId, roles, logins: [login], serial: cert.serial });
  }

  /** proxy.limits.max_connections_per_user: a slot for an authenticated connection, or the refusal (audited, aggregated). */
  admitConnection(who: Who): Slot | LimitRefusal {
    return this.limiter.admitConnection(who);
  }

  /**
   * May `req` reach `host`:`port` as `req.who.login`? Checks the login
   * against the certificate's principals, resolves the node and its labels
   * against the roles (routing.ts routeToNode), then the per-user session
   * and dial caps. A refusal by routing or login is audited here
   * (`access.denied`, stage routing; `requested` names what was asked when
   * it was not a host, e.g. a malformed subsystem); the limiter audits its
   * own. Never throws.
   */
  authorizeNodeRoute(req: Requester | SessionRequester, host: string, port: number, requested: string = host): RouteGrant | RouteRefusal {
    const { who, selectors } = req;
    const principals = 'cert' in req ? req.cert.principals : req.principals;
    if (!principals.includes(who.login)) {
      const what = 'cert' in req ? 'your certificate does not allow' : 'your roles do not allow';
      const refusal: RouteRefusal = { ok: false, code: 'LOGIN_DENIED', message: `${what} the login "${printable(who.login, 64)}" (it allows ${principals.join(', ') || 'none'})` };
      this.deny(who, requested, refusal);
      return refusal;
    }
    const route = routeToNode(this.rt.config, selectors, host, port, inventoryNodes(this.rt));
    if (!route.ok) {
      this.deny(who, requested, route);
      return route;
    }
    let roles: string[];
    let serial: bigint | undefined;
    if ('cert' in req) {
      const sel = certificateSelectors(this.rt.config, req.cert);
      roles = 'ok' in sel ? [] : sel.roles;
      serial = req.cert.serial;
    } else roles = req.roles;
    const lock = this.rt.locks.check({ user: who.user, roles, logins: [who.login], node: route.node.name, ...(serial !== undefined ? { serial } : {}) });
    if (lock) {
      const refusal: RouteRefusal = { ok: false, code: 'ACCESS_LOCKED', message: lockedMessage(lock) };
      this.deny(who, route.node.name, refusal);
      return refusal;
    }
    this.subjects.set(who, { roles, serial: serial ?? 0n });
    const slot = this.limiter.admitNodeSession(who, formatHostPort(route.node.addr), route.node.name);
    if (isRefusal(slot)) return { ok: false, code: slot.code, message: slot.message };
    return { ok: true, node: route.node, slot };
  }

  /** Audits a refusal decided before authorizeNodeRoute (a request that names no host). */
  deny(who: Who, requested: string, refusal: { code: string; message: string }): void {
    void auditOrWarn(this.rt, {
      event: 'access.denied',
      stage: 'routing',
      user: who.user,
      login: who.login,
      node: requested,
      client_addr: who.clientAddr,
      code: refusal.code,
      reason: refusal.message,
    }, 'proxy');
  }

  /** Opens TCP to a node's sshd (see dialNode). */
  dial(node: NodeConfig): Promise<Socket> {
    return dialNode(node);
  }

  /** Joins the client and the node socket (or its dial, still under way: see relay) and audits the session. */
  relay(who: Who, node: NodeConfig, via: Via, client: RelayClient, sock: Socket | Promise<Socket>, slot: Slot): Promise<void> {
    return relay(this.rt, who, this.subjects.get(who) ?? { roles: [], serial: 0n }, node, via, client, sock, slot);
  }

  close(): void {
    this.limiter.close();
  }
}

/**
 * For events of something that already happened or is refused anyway: a full
 * disk or a lost database is a WARN, never a crash or an unhandled rejection
 * in an event handler. Resolves when the event is stored or the warning written.
 */
export function auditOrWarn(rt: ServerRuntime, event: AuditEvent, who = 'ssh proxy'): Promise<void> {
  return rt.audit.emit(event).catch((err: Error) => rt.log.warn(`${who}: ${err.message}`));
}

/**
 * Opens TCP to a node's sshd. Directly, never through HTTPS_PROXY: nodes sit
 * on the proxy's own network (that is what a bastion is for), the inventory
 * addresses are internal, and a corporate HTTP proxy in the server's
 * environment is meant for its calls out (the IdP), not for them.
 * Rejects with a short reason ("connection refused", "no answer within 10 s").
 */
export function dialNode(node: NodeConfig): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // highWaterMark is passed through to the stream (Node >= 18); @types/node omits it from the connect options.
    const sock = netConnect({ host: node.addr.host, port: node.addr.port, noDelay: true, highWaterMark: RELAY_BUFFER_BYTES } as NetConnectOpts);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer within ${NODE_DIAL_TIMEOUT_MS / 1000} s`));
    }, NODE_DIAL_TIMEOUT_MS);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(err.code === 'ECONNREFUSED' ? 'connection refused' : err.code === 'EHOSTUNREACH' ? 'host unreachable' : err.message));
    });
  });
}

/**
 * Joins a client stream (an SSH channel, or the TLS route's socket) and a
 * node socket with back-pressure both ways (pipe: a full socket pauses the
 * other side), counts the bytes, audits the session from start to end, and
 * releases the session's limit slot (session-limits.ts) when it ends.
 *
 * Audit order: session.start is stored before any byte moves (neither stream
 * is read until then: both buffer); refused if it cannot be (fail closed).
 * Given the node's dial still under way (the TLS route), session.start is
 * stored WHILE the node is dialled (a remote node's TCP handshake overlaps
 * the audit write) and the client hears onStart once both are done; a dial
 * that fails after session.start was stored is closed by a session.end with
 * no bytes, and the client told through `unreachable`.
 * When the node hangs up first, session.end is stored (waiting at most
 * SESSION_END_AUDIT_WAIT_MS) before the client's stream is ended; when the
 * client goes first, it is written after. Never rejects.
 */
async function relay(rt: ServerRuntime, who: Who, subject: { roles: string[]; serial: bigint }, node: NodeConfig, via: Via, client: RelayClient, dialed: Socket | Promise<Socket>, slot: Slot): Promise<void> {
  const sessionId = randomUUID();
  const started = Date.now();
  let toNode = 0;
  let fromNode = 0;
  const chan = client.stream;
  // Either side may go away while session.start is being stored: note it now, act on it after.
  let clientGone = false;
  let nodeGone = false;
  const onClientClose = () => (clientGone = true);
  const onNodeClose = () => (nodeGone = true);
  chan.once('close', onClientClose);
  chan.on('error', (err: Error) => rt.log.debug(`proxy: session ${sessionId}: client: ${err.message}`));
  // Listeners go on in the same microtask as the dial's resolution: no event of the node socket is missed.
  const dialing = Promise.resolve(dialed).then((s) => {
    s.once('close', onNodeClose);
    s.on('error', (err) => rt.log.debug(`proxy: session ${sessionId}: node socket: ${err.message}`));
    return s;
  });
  const [stored, connected] = await Promise.allSettled([
    rt.audit.emit({
      event: 'session.start',
      session_id: sessionId,
      user: who.user,
      login: who.login,
      node: node.name,
      node_addr: formatHostPort(node.addr),
      client_addr: who.clientAddr,
      via,
    }),
    dialing,
  ]);
  if (connected.status === 'rejected') {
    slot.release();
    const reason = (connected.reason as Error).message;
    rt.log.warn(`proxy: ${who.user}: cannot reach ${node.name} (${formatHostPort(node.addr)}): ${reason}`);
    // session.start is stored: close it (before the client hears why), so every start has its end.
    if (stored.status === 'fulfilled') {
      await auditOrWarn(rt, { event: 'session.end', session_id: sessionId, user: who.user, login: who.login, node: node.name, client_addr: who.clientAddr, bytes_to_node: 0, bytes_from_node: 0, duration_ms: Date.now() - started }, 'proxy');
    } else rt.log.warn(`proxy: ${who.user}: session to ${node.name} refused: ${(stored.reason as Error).message}`);
    if (!clientGone && client.unreachable) client.unreachable(reason);
    else chan.end();
    return;
  }
  const sock = connected.value;
  if (stored.status === 'rejected') {
    const err = stored.reason as Error;
    // Fail closed: no session the audit log does not hold.
    slot.release();
    rt.log.warn(`proxy: ${who.user}: session to ${node.name} refused: ${err.message}`);
    sock.destroy();
    if (!clientGone) client.refuse('the proxy cannot write its audit log; the session was refused');
    else chan.end();
    return;
  }
  chan.removeListener('close', onClientClose);
  sock.removeListener('close', onNodeClose);
  // A lock ends the session through the registry: tell the user why (where the path can), hang up on the node; nodeDone stores session.end, then closes the client's stream.
  let endReason: EndReason | undefined;
  const unregister = rt.sessions.register({
    id: sessionId,
    user: who.user,
    login: who.login,
    node: node.name,
    roles: subject.roles,
    serial: subject.serial,
    clientAddr: who.clientAddr,
    end: (reason) => {
      if (endReason) return;
      endReason = reason;
      rt.log.info(`proxy: session ${sessionId} of ${who.user} on ${node.name} ended by lock ${reason.lockId}`);
      if (!chan.writableEnded) client.notify?.(reason.message);
      sock.destroy();
    },
  });
  if (!clientGone) client.onStart?.();
  chan.on('data', (b: Buffer) => (toNode += b.length));
  sock.on('data', (b: Buffer) => (fromNode += b.length));
  // Chunks read in one tick (the TLS route's decrypted records) leave in one write (util/coalesce-writes.ts).
  coalesceWrites(chan, sock);
  coalesceWrites(sock, chan);
  chan.pipe(sock);
  // Not `end: true`: the client's stream is ended only once session.end is stored (nodeDone).
  sock.pipe(chan, { end: false });

  let ended: Promise<void> | undefined;
  const end = (): Promise<void> => {
    ended ??= (() => {
      slot.release();
      unregister();
      return auditOrWarn(rt, {
        event: 'session.end',
        session_id: sessionId,
        user: who.user,
        login: who.login,
        node: node.name,
        client_addr: who.clientAddr,
        bytes_to_node: toNode,
        bytes_from_node: fromNode,
        duration_ms: Date.now() - started,
        ...(endReason ? { reason: endReason.reason, lock_id: endReason.lockId } : {}),
      }, 'proxy');
    })();
    return ended;
  };
  // The node hung up: what it said is already queued on the client stream (its
  // data came before its end); store session.end, then end the client stream
  // (ssh2 sends EOF and CLOSE; TLS sends close_notify). A reset socket never emits 'end', hence 'close'.
  let nodeEnded = false;
  let clientClosed = false;
  const nodeDone = () => {
    if (nodeEnded) return;
    nodeEnded = true;
    const stored = clientClosed ? end() : Promise.race([end(), new Promise<void>((r) => setTimeout(r, SESSION_END_AUDIT_WAIT_MS).unref())]);
    void stored.then(() => {
      if (!chan.writableEnded) chan.end();
      // Ended by a lock: the client's stream goes now, whatever the client does with its half.
      if (endReason) chan.destroy();
    });
  };
  sock.once('end', nodeDone);
  sock.once('close', nodeDone);
  // The client went away: let the socket flush what it already took, then give up on it.
  const clientDone = () => {
    clientClosed = true;
    sock.end();
    setTimeout(() => sock.destroy(), 5_000).unref();
    void end();
  };
  chan.once('close', clientDone);
  if (clientGone) clientDone();
  if (nodeGone) nodeDone();
}
