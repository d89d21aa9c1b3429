/**
 * TEMPORARY (until the storage backends land on main): the server's HTTPS
 * API in-process with headless logins on a throwaway in-memory ItemBackend,
 * with the same config, CA, audit log, OIDC connector and web API as
 * `jumpgate start`. Deleted once `rt.store.items` exists.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { loadServerConfig } from '../../src/config/index.js';
import { createHttpDispatcher } from '../../src/net/index.js';
import { AuditLog } from '../../src/server/auth/audit.js';
import { CaStore } from '../../src/server/auth/ca.js';
import { HeadlessLoginService } from '../../src/server/auth/headless-login.js';
import { LoginService } from '../../src/server/auth/login.js';
import { OidcConnector } from '../../src/server/auth/oidc.js';
import { startWebApi } from '../../src/server/proxy/web.js';
import type { ServerRuntime } from '../../src/server/runtime.js';
import type { Item, ItemBackend, ItemKind } from '../../src/server/storage/backend.js';
import { loadTlsMaterial } from '../../src/server/tls.js';
import { formatHostPort } from '../../src/shared/address.js';
import { ensurePrivateDir } from '../../src/util/private-dir.js';
import { API } from '../../src/api/types.js';

class MemoryItems implements ItemBackend {
  private readonly m = new Map<string, Item>();
  private n = 0;
  constructor(private readonly now: () => number) {}
  private live(kind: ItemKind, key: string): Item | undefined {
    const i = this.m.get(`${kind}\0${key}`);
    if (i && i.expiresAt !== undefined && i.expiresAt <= this.now()) {
      this.m.delete(`${kind}\0${key}`);
      return undefined;
    }
    return i;
  }
  async create<T>(kind: ItemKind, key: string, value: T, expiresAt?: number): Promise<boolean> {
    if (this.live(kind, key)) return false;
    await this.put(kind, key, value, expiresAt);
    return true;
  }
  async put<T>(kind: ItemKind, key: string, value: T, expiresAt?: number): Promise<void> {
    this.m.set(`${kind}\0${key}`, { kind, key, value: JSON.parse(JSON.stringify(value)), ...(expiresAt !== undefined ? { expiresAt } : {}), revision: String(++this.n) });
  }
  async get<T>(kind: ItemKind, key: string): Promise<Item<T> | undefined> {
    return this.live(kind, key) as Item<T> | undefined;
  }
  async list<T>(kind: ItemKind): Promise<Item<T>[]> {
    return [...this.m.values()].filter((i) => i.kind === kind && this.live(kind, i.key)).sort((a, b) => (a.key < b.key ? -1 : 1)) as Item<T>[];
  }
  async delete(kind: ItemKind, key: string): Promise<boolean> {
    return (await this.take(kind, key)) !== undefined;
  }
  async take<T>(kind: ItemKind, key: string): Promise<Item<T> | undefined> {
    const i = this.live(kind, key);
    this.m.delete(`${kind}\0${key}`);
    return i as Item<T> | undefined;
  }
}

export interface HeadlessServer {
  webPort: number;
  dataDir: string;
  log(): string;
  audit(): Array<Record<string, unknown>>;
  headless: HeadlessLoginService;
  stop(): Promise<void>;
}

/** Writes `yaml` into `dir`/jumpgate.yaml and serves its HTTPS API (no SSH proxy) with headless logins. */
export async function startHeadlessServer(dir: string, yaml: string, opts: { clock?: () => Date } = {}): Promise<HeadlessServer> {
  const file = join(dir, 'jumpgate.yaml');
  writeFileSync(file, yaml);
  const config = loadServerConfig(file);
  ensurePrivateDir(config.dataDir);
  const clock = opts.clock ?? (() => new Date());
  let text = '';
  const line = (level: string) => (l: string) => (text += `${level} ${l}\n`);
  const log = { info: line('INFO'), warn: line('WARN'), debug: line('DEBUG') };
  const rt: ServerRuntime = { config, ca: new CaStore(config.dataDir, clock), audit: new AuditLog(config.dataDir, clock), clock, log, env: {} };
  let webPort = config.proxy.webListenAddr.port;
  const publicAddrs = () => ({ web: formatHostPort({ host: config.proxy.publicAddr.host, port: config.proxy.publicAddr.port || webPort }), ssh: '127.0.0.1:3023' });
  const oidc = new OidcConnector(config.auth.oidc!, { configFile: file, dispatcher: createHttpDispatcher({ env: {} }), redirectUri: () => `https://${publicAddrs().web}${API.oidcCallback}` });
  const login = new LoginService(rt, oidc, publicAddrs);
  const headless = new HeadlessLoginService(rt, new MemoryItems(() => clock().getTime()), oidc, publicAddrs);
  const web = await startWebApi(config.proxy.webListenAddr, { rt, tls: loadTlsMaterial(config, log, clock()), login, headless, publicAddrs });
  webPort = web.port;
  return {
    webPort,
    dataDir: config.dataDir,
    log: () => text,
    audit: () => {
      try {
        return readFileSync(join(config.dataDir, 'audit.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      } catch {
        return [];
      }
    },
    headless,
    stop: async () => {
      await web.close();
      rt.audit.close();
    },
  };
}
