/**
 * The registry of live sessions this proxy relays, so something outside the
 * relay (a lock, auth/locks.ts) can end them. Every relay registers its
 * session when it starts (after session.start is stored) and unregisters
 * when it ends; the SSH proxy's relays (subsystem, direct-tcpip) do today,
 * the recording proxy and the TLS route register theirs the same way.
 *
 * A session is described by what a lock matches (user, login, node, roles,
 * the certificate's serial) and carries one action, `end(reason)`: tell the
 * user why where the channel allows it (stderr of a session channel), close
 * the channel and the node connection, and have the relay's session.end
 * audit event carry `reason` and `lock_id`. `end` must be idempotent.
 */
import type { Lock } from '../auth/locks.js';

/** Why the proxy ended a session. */
export interface EndReason {
  reason: 'locked';
  lockId: string;
  /** What the user sees (already escaped for a terminal: locks.ts lockedMessage). */
  message: string;
}

/** A session as the registry knows it. */
export interface ActiveSession {
  /** session.start's `session_id`. */
  id: string;
  /** The certificate's key id (the user). */
  user: string;
  /** The Unix login on the node. */
  login: string;
  /** The inventory node's name. */
  node: string;
  /** The certificate's roles (roles@jumpgate.dev). */
  roles: readonly string[];
  /** The certificate's serial (cert locks: tsh logout --revoke). */
  serial: bigint;
  clientAddr: string;
  /** Ends the session (idempotent); see the top of this file. */
  end(reason: EndReason): void;
}

/** The live sessions of one proxy process. */
export class ActiveSessions {
  private readonly sessions = new Map<string, ActiveSession>();

  /** Adds `s`; returns the function that removes it (call it when the session ends, however it ends). */
  register(s: ActiveSession): () => void {
    this.sessions.set(s.id, s);
    return () => {
      if (this.sessions.get(s.id) === s) this.sessions.delete(s.id);
    };
  }

  /** How many are live (tests, metrics). */
  get size(): number {
    return this.sessions.size;
  }

  /** A snapshot of the live sessions. */
  list(): ActiveSession[] {
    return [...this.sessions.values()];
  }

  /**
   * Ends every session for which `match` names a lock; returns how many.
   * `match` is `LockService.check` with the session as the subject.
   */
  endLocked(match: (s: ActiveSession) => Lock | undefined, message: (lock: Lock) => string): number {
    let n = 0;
    for (const s of this.list()) {
      const lock = match(s);
      if (!lock) continue;
      n++;
      s.end({ reason: 'locked', lockId: lock.id, message: message(lock) });
    }
    return n;
  }
}
