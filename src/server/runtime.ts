/**
 * What every service of the running server shares: the config, the CAs, the
 * audit log, the clock and a logger. `startServer` (server/index.ts) builds
 * one and hands it to the web API and the SSH proxy.
 */
import type { ServerConfig } from '../config/index.js';
import type { AuditLog } from './auth/audit.js';
import type { CaStore } from './auth/ca.js';

/** Server log lines (stderr); `debug` only with --debug. Never pass secrets. */
export interface ServerLog {
  info(line: string): void;
  warn(line: string): void;
  debug(line: string): void;
}

export interface ServerRuntime {
  config: ServerConfig;
  ca: CaStore;
  audit: AuditLog;
  clock: () => Date;
  log: ServerLog;
  env: Record<string, string | undefined>;
}

/** A started listener: the port it really bound (config may say 0) and how to stop it. */
export interface RunningService {
  port: number;
  close(): Promise<void>;
}
