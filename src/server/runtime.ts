/**
 * What every service of the running server shares: the config, the state
 * store (server/storage) and what is built on it (the CAs, the audit log),
 * the server's id, the clock and a logger. `startServer` (server/index.ts) builds
 * one and hands it to the web API and the SSH proxy.
 */
import type { ServerConfig } from '../config/index.js';
import type { AuditLog } from './auth/audit.js';
import type { CaStore } from './auth/ca.js';
import type { LockService } from './auth/locks.js';
import type { ActiveSessions } from './proxy/active-sessions.js';
import { printable } from '../util/printable.js';
import type { StateBackend } from './storage/backend.js';

/**
 * Server log lines (stderr); `debug` only with --debug. Never pass secrets.
 * The logger escapes what it is given (textLog): callers interpolate key ids,
 * addresses and IdP text as they are.
 */
export interface ServerLog {
  info(line: string): void;
  warn(line: string): void;
  debug(line: string): void;
}

/** Longest server log line (characters after escaping); the rest is cut with "…". */
export const MAX_LOG_LINE_CHARS = 4_096;

/**
 * The server's text log: `<ISO time> <LEVEL> <line>\n` through `write`.
 * Every line is escaped here, the one place, so no caller can forget: control
 * characters (newline, carriage return, ESC of an ANSI sequence, C1 codes)
 * become `\xNN`, Unicode line separators, bidi controls and zero-width characters `\u{XXXX}` (util/printable), so a key id or claim with a newline cannot forge a second
 * log line or recolour a terminal; a multi-line text (a stack trace) stays
 * one line. Lines are cut at MAX_LOG_LINE_CHARS.
 */
export function textLog(opts: { write: (text: string) => void; clock: () => Date; debug: boolean }): ServerLog {
  const line = (level: string) => (text: string) => opts.write(`${opts.clock().toISOString()} ${level} ${printable(String(text), MAX_LOG_LINE_CHARS)}\n`);
  return { info: line('INFO'), warn: line('WARN'), debug: opts.debug ? line('DEBUG') : () => {} };
}

export interface ServerRuntime {
  config: ServerConfig;
  /** The state store (dir or postgres): pending logins, items; the CAs and the audit log go through it too. */
  store: StateBackend;
  /** This process's id, stamped on its audit events (`server_id`). */
  serverId: string;
  ca: CaStore;
  audit: AuditLog;
  /** The locks in force (auth/locks.ts), in memory, following the store: every new login, connection and channel is checked against them. */
  locks: LockService;
  /** The live relayed sessions (proxy/active-sessions.ts): a lock ends the matching ones. Every relay registers here. */
  sessions: ActiveSessions;
  clock: () => Date;
  log: ServerLog;
  env: Record<string, string | undefined>;
}

/** A started listener: the port it really bound (config may say 0) and how to stop it. */
export interface RunningService {
  port: number;
  close(): Promise<void>;
}
