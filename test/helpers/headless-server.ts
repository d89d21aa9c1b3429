/**
 * `startServer` in-process (the same wiring as `jumpgate start`: the dir
 * state store in the config's data_dir, CAs, audit log, OIDC connector, the
 * HTTPS API with headless logins) with a pinned or real clock and the SSH
 * proxy left out, for the headless login service and fuzz tests.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadServerConfig } from '../../src/config/index.js';
import type { HeadlessLoginService } from '../../src/server/auth/headless-login.js';
import { startServer } from '../../src/server/index.js';

export interface HeadlessServer {
  webPort: number;
  dataDir: string;
  log(): string;
  audit(): Array<Record<string, unknown>>;
  headless: HeadlessLoginService;
  stop(): Promise<void>;
}

/** Writes `yaml` into `dir`/jumpgate.yaml and starts its HTTPS API (no SSH proxy) in this process. */
export async function startHeadlessServer(dir: string, yaml: string, opts: { clock?: () => Date } = {}): Promise<HeadlessServer> {
  const file = join(dir, 'jumpgate.yaml');
  writeFileSync(file, yaml);
  const config = loadServerConfig(file);
  let text = '';
  const line = (level: string) => (l: string) => void (text += `${level} ${l}\n`);
  const server = await startServer(config, {
    clock: opts.clock ?? (() => new Date()),
    log: { info: line('INFO'), warn: line('WARN'), debug: line('DEBUG') },
    env: {},
    startSshProxy: async () => ({ port: 0, close: async () => {} }),
  });
  return {
    webPort: server.webPort,
    dataDir: config.dataDir,
    log: () => text,
    audit: () => {
      try {
        return readFileSync(join(config.dataDir, 'audit.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      } catch {
        return [];
      }
    },
    headless: server.headless,
    stop: () => server.close(),
  };
}
