import { resolve } from 'node:path';
import { loadServerConfig, type ServerConfig } from '../config/index.js';
import { AuditLog } from '../server/auth/audit.js';
import { CaStore } from '../server/auth/ca.js';
import { ensurePrivateDir } from '../util/private-dir.js';
import type { Deps } from './deps.js';

/** Where tctl and jumpgate look for the config when --config is not given. */
export const DEFAULT_CONFIG_PATH = '/etc/jumpgate.yaml';

/** What server-side commands work on: the config, the CAs and the audit log of one data directory. */
export interface ServerContext {
  config: ServerConfig;
  ca: CaStore;
  audit: AuditLog;
  clock: () => Date;
  close(): void;
}

/** Resolves --config (then $JUMPGATE_CONFIG, then /etc/jumpgate.yaml) and opens the data directory. */
export function openServerContext(configFlag: string | undefined, deps: Deps): ServerContext {
  const file = resolve(deps.cwd, configFlag ?? deps.env['JUMPGATE_CONFIG'] ?? DEFAULT_CONFIG_PATH);
  const config = loadServerConfig(file);
  ensurePrivateDir(config.dataDir);
  const warn = (m: string) => deps.io.stderr.write(`${m}\n`);
  const ca = new CaStore(config.dataDir, deps.clock, warn);
  const audit = new AuditLog(config.dataDir, deps.clock);
  return { config, ca, audit, clock: deps.clock, close: () => audit.close() };
}
