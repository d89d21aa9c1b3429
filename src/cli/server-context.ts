import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { loadServerConfig, type ServerConfig } from '../config/index.js';
import { AuditLog } from '../server/auth/audit.js';
import { openCaStore, type CaStore } from '../server/auth/ca.js';
import { openStateBackend, type StateBackend } from '../server/storage/index.js';
import type { Deps } from './deps.js';

/** Where tctl and jumpgate look for the config when --config is not given. */
export const DEFAULT_CONFIG_PATH = '/etc/jumpgate.yaml';

/** What server-side commands work on: the config, its state store, and the CAs and audit log in it. */
export interface ServerContext {
  config: ServerConfig;
  store: StateBackend;
  ca: CaStore;
  audit: AuditLog;
  clock: () => Date;
  close(): Promise<void>;
}

/**
 * Resolves --config (then $JUMPGATE_CONFIG, then /etc/jumpgate.yaml) and
 * opens its state store (storage:, server id `tctl@<hostname>`) and the CAs
 * in it (created on first use, as the server would).
 * @throws StoreUnavailableError naming the store when it cannot be reached; UserError CA_CORRUPT.
 */
export async function openServerContext(configFlag: string | undefined, deps: Deps): Promise<ServerContext> {
  const file = resolve(deps.cwd, configFlag ?? deps.env['JUMPGATE_CONFIG'] ?? DEFAULT_CONFIG_PATH);
  const config = loadServerConfig(file);
  const warn = (m: string) => deps.io.stderr.write(`${m}\n`);
  const serverId = `tctl@${hostname()}`;
  const store = await openStateBackend(config, { serverId, clock: deps.clock, warn });
  try {
    const ca = await openCaStore(store.kind === 'dir' ? { ca: store.ca, location: join(store.location, 'ca') } : store, deps.clock, warn);
    const audit = new AuditLog(store.audit, deps.clock, { serverId, location: store.kind === 'dir' ? join(store.location, 'audit.log') : store.location, warn });
    return {
      config,
      store,
      ca,
      audit,
      clock: deps.clock,
      close: async () => {
        await audit.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
