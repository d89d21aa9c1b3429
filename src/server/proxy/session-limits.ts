/**
 * What one authenticated user can make the SSH proxy, and the nodes behind
 * it, hold (`proxy.limits`, README "SSH proxy limits"). The pre-authentication
 * limits (per source address, per connection) are in ssh-proxy.ts; these
 * start once a certificate is accepted.
 *
 * | limit (proxy.limits.*)               | counts                                                       | refused with |
 * |--------------------------------------|--------------------------------------------------------------|--------------|
 * | max_connections_per_user             | authenticated SSH connections of one user                    | a USERAUTH banner, then the login is refused |
 * | max_channels_per_connection          | open channels on one connection: session (used or not) and direct-tcpip, counted from the open request | the channel open failure reason |
 * | max_sessions_per_user                | node sessions of one user over all connections: from the `proxy:` request or direct-tcpip open until the relay ends | `jumpgate proxy: …` / the open failure reason |
 * | max_concurrent_node_dials_per_user   | one user's node connections that may still be authenticating at one node | same |
 * | max_concurrent_node_dials_per_node   | every user's node connections that may still be authenticating at one node | same |
 *
 * "May still be authenticating": the user's SSH session to the node is
 * end-to-end encrypted, so the proxy cannot see when the node accepts the
 * login. It counts a node connection from the moment it starts dialling until
 * the connection closes or `node_login_grace_time` has passed (sshd's
 * LoginGraceTime: by then sshd has authenticated it or cut it off). That is
 * an upper bound of what the node's sshd counts against MaxStartups
 * (default 10:30:100: random drops from 10 unauthenticated connections on),
 * so one user can never hold more than max_concurrent_node_dials_per_user of
 * them, however slow their dials or their authentication. A node is its
 * address (host:port): inventory names sharing one sshd share its count.
 *
 * Refusals are audited as `access.denied` with `stage: "limit"`, aggregated:
 * the first refusal of a kind for a user (and node) at once, then at most one
 * event a minute carrying `refused`, the number refused since the last one.
 */
import type { ProxyLimits } from '../../config/index.js';
import { formatDuration } from '../../config/index.js';
import type { AccessDeniedEvent, AuditEvent } from '../auth/audit.js';

export type LimitCode = 'LIMIT_CONNECTIONS' | 'LIMIT_CHANNELS' | 'LIMIT_SESSIONS' | 'LIMIT_NODE_DIALS_USER' | 'LIMIT_NODE_DIALS_NODE';

/** A refusal: `message` is for the user (no "jumpgate proxy:" prefix), `code` for the audit log. */
export interface LimitRefusal {
  code: LimitCode;
  message: string;
}

/** A counted thing (a connection, channel, session or dial); `release` is idempotent. */
export interface Slot {
  release(): void;
}

/** Who asks, for the audit event. */
export interface Requester {
  user: string;
  login: string;
  clientAddr: string;
}

/** How often the aggregated refusal events of one kind, user and node are written. */
export const LIMIT_AUDIT_EVERY_MS = 60_000;

interface Pending {
  event: AccessDeniedEvent;
  refused: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Counts, per user and per node, what ssh-proxy.ts admits; one per proxy
 * service. `limits` is read on every call (the config's current values).
 */
export class SessionLimiter {
  private readonly connections = new Map<string, number>();
  private readonly sessions = new Map<string, number>();
  private readonly userNodeDials = new Map<string, number>();
  private readonly nodeDials = new Map<string, number>();
  private readonly audits = new Map<string, Pending>();
  private readonly dialTimers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly limits: () => ProxyLimits,
    private readonly emit: (event: AuditEvent) => void,
  ) {}

  /**
   * Admits an authenticated SSH connection of `who.user`
   * (max_connections_per_user); release it when the connection closes.
   */
  admitConnection(who: Requester): Slot | LimitRefusal {
    const max = this.limits().maxConnectionsPerUser;
    const open = this.connections.get(who.user) ?? 0;
    if (open >= max) {
      return this.refuse(who, undefined, 'LIMIT_CONNECTIONS', `you have ${open} SSH connections open to the proxy (limit ${max}, proxy.limits.max_connections_per_user); close some and try again`);
    }
    return take(this.connections, who.user);
  }

  /**
   * A per-connection channel counter (max_channels_per_connection). Each
   * `admit` is one channel from its open request until it closes.
   */
  channels(who: Requester): { admit(): Slot | LimitRefusal } {
    const open = new Map<string, number>();
    return {
      admit: () => {
        const max = this.limits().maxChannelsPerConnection;
        const n = open.get('') ?? 0;
        if (n >= max) {
          return this.refuse(who, undefined, 'LIMIT_CHANNELS', `this SSH connection already has ${n} channels open (limit ${max}, proxy.limits.max_channels_per_connection); close some, or open another connection`);
        }
        return take(open, '');
      },
    };
  }

  /**
   * Admits one node session of `who.user` to `node` (host:port, named
   * `nodeName` in messages): a session slot (max_sessions_per_user) and a dial
   * slot (both max_concurrent_node_dials_*). Release the session slot when
   * the relay ends or the dial fails; the dial slot releases itself after
   * node_login_grace_time, or earlier with the session.
   */
  admitNodeSession(who: Requester, node: string, nodeName: string): Slot | LimitRefusal {
    const l = this.limits();
    const sessions = this.sessions.get(who.user) ?? 0;
    if (sessions >= l.maxSessionsPerUser) {
      return this.refuse(who, nodeName, 'LIMIT_SESSIONS', `you have ${sessions} node sessions open through the proxy (limit ${l.maxSessionsPerUser}, proxy.limits.max_sessions_per_user); close some and try again`);
    }
    const grace = formatDuration(l.nodeLoginGraceSeconds);
    const userKey = `${who.user}\0${node}`;
    const mine = this.userNodeDials.get(userKey) ?? 0;
    if (mine >= l.maxNodeDialsPerUser) {
      return this.refuse(
        who,
        nodeName,
        'LIMIT_NODE_DIALS_USER',
        `you have ${mine} connections to ${nodeName} that may still be logging in (opened in the last ${grace} and still open; limit ${l.maxNodeDialsPerUser}, ` +
          `proxy.limits.max_concurrent_node_dials_per_user), so the node's sshd is spared more; close some or wait, then try again`,
      );
    }
    const all = this.nodeDials.get(node) ?? 0;
    if (all >= l.maxNodeDialsPerNode) {
      return this.refuse(
        who,
        nodeName,
        'LIMIT_NODE_DIALS_NODE',
        `${nodeName} has ${all} connections that may still be logging in (opened in the last ${grace}; limit ${l.maxNodeDialsPerNode}, ` +
          'proxy.limits.max_concurrent_node_dials_per_node); try again in a moment',
      );
    }
    const session = take(this.sessions, who.user);
    const dialUser = take(this.userNodeDials, userKey);
    const dialNode = take(this.nodeDials, node);
    const timer = setTimeout(() => endDial(), l.nodeLoginGraceSeconds * 1000);
    timer.unref();
    this.dialTimers.add(timer);
    const endDial = () => {
      clearTimeout(timer);
      this.dialTimers.delete(timer);
      dialUser.release();
      dialNode.release();
    };
    return {
      release: () => {
        endDial();
        session.release();
      },
    };
  }

  /** Writes the refusal counts still pending and stops the timers (the service is closing). */
  close(): void {
    for (const t of this.dialTimers) clearTimeout(t);
    this.dialTimers.clear();
    for (const [key, p] of this.audits) {
      if (p.timer) clearTimeout(p.timer);
      if (p.refused > 0) this.emit({ ...p.event, refused: p.refused });
      this.audits.delete(key);
    }
  }

  /** What is counted now (tests, --debug). */
  counts(): { connections: number; sessions: number; dials: number } {
    const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    return { connections: sum(this.connections), sessions: sum(this.sessions), dials: sum(this.nodeDials) };
  }

  /**
   * Audits a refusal aggregated: the first of its kind (code, user, node) at
   * once; later ones counted and written as one event when the minute ends.
   */
  private refuse(who: Requester, node: string | undefined, code: LimitCode, message: string): LimitRefusal {
    const key = `${code}\0${who.user}\0${node ?? ''}`;
    const pending = this.audits.get(key);
    if (pending) {
      pending.refused++;
      return { code, message };
    }
    const event: AccessDeniedEvent = {
      event: 'access.denied',
      stage: 'limit',
      user: who.user,
      login: who.login,
      ...(node === undefined ? {} : { node }),
      client_addr: who.clientAddr,
      code,
      reason: message,
    };
    this.emit({ ...event, refused: 1 });
    const entry: Pending = { event, refused: 0, timer: undefined };
    const flush = () => {
      if (entry.refused === 0) {
        this.audits.delete(key);
        return;
      }
      this.emit({ ...entry.event, refused: entry.refused });
      entry.refused = 0;
      entry.timer = setTimeout(flush, LIMIT_AUDIT_EVERY_MS);
      entry.timer.unref();
    };
    entry.timer = setTimeout(flush, LIMIT_AUDIT_EVERY_MS);
    entry.timer.unref();
    this.audits.set(key, entry);
    return { code, message };
  }
}

/** Adds one to `counts[key]` and returns the slot that takes it back (once). */
function take(counts: Map<string, number>, key: string): Slot {
  counts.set(key, (counts.get(key) ?? 0) + 1);
  let released = false;
  return {
    release: () => {
      if (released) return;
      released = true;
      const left = (counts.get(key) ?? 1) - 1;
      if (left > 0) counts.set(key, left);
      else counts.delete(key);
    },
  };
}

/** Whether an admit call refused. */
export function isRefusal(x: Slot | LimitRefusal): x is LimitRefusal {
  return 'code' in x;
}
