import type { ServerConfig } from '../../src/config/index.js';
import { AuditLog } from '../../src/server/auth/audit.js';
import { CaStore } from '../../src/server/auth/ca.js';
import type { ServerRuntime } from '../../src/server/runtime.js';

/** A ServerRuntime for in-process service tests: real CAs and audit log in the config's data dir, log lines collected. */
export function testRuntime(config: ServerConfig, logs: string[] = []): ServerRuntime {
  const clock = () => new Date();
  return {
    config,
    ca: new CaStore(config.dataDir, clock),
    audit: new AuditLog(config.dataDir, clock),
    clock,
    env: {},
    log: { info: (l) => logs.push(l), warn: (l) => logs.push(l), debug: (l) => logs.push(l) },
  };
}
