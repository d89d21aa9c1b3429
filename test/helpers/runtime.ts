import { join } from 'node:path';
import type { ServerConfig } from '../../src/config/index.js';
import { AuditLog } from '../../src/server/auth/audit.js';
import { openCaStore, type CaStore } from '../../src/server/auth/ca.js';
import { LockService } from '../../src/server/auth/locks.js';
import { ActiveSessions } from '../../src/server/proxy/active-sessions.js';
import type { ServerRuntime } from '../../src/server/runtime.js';
import { DirBackend } from '../../src/server/storage/dir/index.js';

/** A data directory's state opened the way the server opens it: the dir backend, its CAs (created on first use) and its audit log. */
export interface DirState {
  store: DirBackend;
  ca: CaStore;
  audit: AuditLog;
  clock: () => Date;
  /** Flushes the audit log and closes the store. */
  close(): Promise<void>;
}

/** Opens `dataDir` as the dir backend with server id `serverId` (default `test`); warnings go to `warn`. */
export async function openDirState(dataDir: string, opts: { clock?: () => Date; warn?: (line: string) => void; serverId?: string; reserveBytes?: number } = {}): Promise<DirState> {
  const clock = opts.clock ?? (() => new Date());
  const warn = opts.warn ?? (() => {});
  const serverId = opts.serverId ?? 'test';
  const store = new DirBackend(dataDir, { serverId, clock, warn });
  const ca = await openCaStore({ ca: store.ca, location: join(dataDir, 'ca') }, clock, warn);
  const audit = new AuditLog(store.audit, clock, { serverId, location: store.audit.path, warn, ...(opts.reserveBytes !== undefined ? { reserveBytes: opts.reserveBytes } : {}) });
  return {
    store,
    ca,
    audit,
    clock,
    close: async () => {
      await audit.close();
      await store.close();
    },
  };
}

/** A ServerRuntime for in-process service tests: the dir backend in the config's data dir (real CAs and audit log), log lines collected. */
export async function testRuntime(config: ServerConfig, logs: string[] = []): Promise<ServerRuntime> {
  const state = await openDirState(config.dataDir, { warn: (l) => logs.push(l) });
  // Not started: in-process tests add locks through it by refresh(); the server starts its own (server/index.ts).
  const locks = new LockService({ store: state.store, audit: state.audit, clock: state.clock, warn: (l) => logs.push(l) });
  return {
    config,
    store: state.store,
    serverId: 'test',
    ca: state.ca,
    audit: state.audit,
    locks,
    sessions: new ActiveSessions(),
    clock: state.clock,
    env: {},
    log: { info: (l) => logs.push(l), warn: (l) => logs.push(l), debug: (l) => logs.push(l) },
  };
}
