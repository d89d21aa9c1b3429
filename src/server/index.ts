/**
 * `jumpgate start`: the auth service and the proxy service in one process.
 * Order matters: the config is already valid; the state store is opened
 * (an unreachable one stops the start, naming its location), the CAs and TLS
 * material are loaded (or created) before anything listens, so nothing is
 * half-started.
 */
import type { Server as HttpsServer } from 'node:https';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { ServerConfig, HostPort } from '../config/index.js';
import { formatHostPort } from '../shared/address.js';
import { createHttpDispatcher } from '../net/index.js';
import { AuditLog } from './auth/audit.js';
import { openCaStore } from './auth/ca.js';
import { LockService, lockedMessage } from './auth/locks.js';
import { ActiveSessions } from './proxy/active-sessions.js';
import { LoginService } from './auth/login.js';
import { HeadlessLoginService } from './auth/headless-login.js';
import { ensurePrivateDir } from '../util/private-dir.js';
import type { PendingLimits } from './auth/pending-logins.js';
import { openStateBackend, type StateBackend } from './storage/index.js';
import { OidcConnector } from './auth/oidc.js';
import { startWebApi, type WebLimits } from './proxy/web.js';
import { NodeAccess } from './proxy/node-access.js';
import { TlsRoute } from './proxy/tls-route.js';
import { loadTlsMaterial, type TlsMaterial } from './tls.js';
import type { RunningService, ServerLog, ServerRuntime } from './runtime.js';
import { API } from '../api/types.js';
import { Inventory } from './nodes/inventory.js';
import { NodeService } from './nodes/node-service.js';
import { WebApp } from './web/app.js';
import { WebSessions } from './web/sessions.js';
import { WebTerminals } from './web/terminal.js';
import { SECURITY_HEADERS } from './proxy/web.js';

export interface StartOptions {
  clock: () => Date;
  log: ServerLog;
  env: Record<string, string | undefined>;
  /** Starts the SSH proxy service (server/proxy/ssh-proxy.ts) with the process's one NodeAccess (shared with the TLS route). */
  startSshProxy: (rt: ServerRuntime, listen: HostPort, opts: { access: NodeAccess }) => Promise<RunningService>;
  /** Overrides of the HTTPS API's limits (tests use short timeouts); default WEB_LIMITS. */
  webLimits?: Partial<WebLimits>;
  /** Overrides the login start rate limit; default LOGIN_RATE_LIMIT. */
  loginRate?: { perMinute: number; burst: number };
  /** Overrides the pending-login caps; default PENDING_LIMITS. */
  pendingLimits?: PendingLimits;
  /** Free bytes kept for real audit events; default AUDIT_RESERVE_BYTES (tests on a small tmpfs lower it). */
  auditReserveBytes?: number;
  /** A state store already open (tests); default: openStateBackend(config). startServer closes it on stop either way. */
  store?: StateBackend;
  /** This process's id on its audit events; default serverIdOf(config, pid). */
  serverId?: string;
  /** For the default server id. */
  pid?: number;
  /** The built web UI (default dist/webui next to the bundle: server/web/app.ts defaultWebUiDir). */
  webUiDir?: string;
}

export interface RunningServer {
  rt: ServerRuntime;
  tls: TlsMaterial;
  webPort: number;
  sshPort: number;
  /** host:port clients use (ports substituted when the config said 0). */
  publicAddrs(): { web: string; ssh: string };
  login: LoginService;
  /** Headless logins (tsh login --headless), their state in `rt.store.items`. */
  headless: HeadlessLoginService;
  /** The live inventory and the node API (server/nodes/). */
  inventory: Inventory;
  nodes: NodeService;
  /** The web UI (/web): sessions, pages and API, running terminals (lock enforcement ends them: terminals.endWhere). */
  webUi: { sessions: WebSessions; app: WebApp; terminals: WebTerminals };
  /** The HTTPS API's server and the limits it runs with (tests inspect both). */
  web: { server: HttpsServer; limits: WebLimits };
  close(): Promise<void>;
}

/**
 * The id a server stamps on its audit events (`server_id`):
 * `<hostname>:<web port>` when the config names the web port (unique per
 * host), else `<hostname>:pid<pid>` (port 0: the real port is known only
 * after listening, and the id is needed before).
 */
export function serverIdOf(config: ServerConfig, pid: number, host: string = hostname()): string {
  const port = config.proxy.webListenAddr.port;
  return port !== 0 ? `${host}:${port}` : `${host}:pid${pid}`;
}

/** Starts every service of one cluster; on any failure, stops what had started. */
export async function startServer(config: ServerConfig, opts: StartOptions): Promise<RunningServer> {
  const serverId = opts.serverId ?? serverIdOf(config, opts.pid ?? process.pid);
  // A new CA or a key file that had to be fixed: both are news an admin must see.
  const warn = (m: string) => opts.log.warn(m);
  ensurePrivateDir(config.dataDir); // TLS material lives there whatever the store
  const store = opts.store ?? (await openStateBackend(config, { serverId, clock: opts.clock, warn }));
  let rt: ServerRuntime;
  let tls: TlsMaterial;
  let unwatch = () => {};
  let locks: LockService | undefined;
  try {
    const ca = await openCaStore(store.kind === 'dir' ? { ca: store.ca, location: join(store.location, 'ca') } : store, opts.clock, warn);
    const audit = new AuditLog(store.audit, opts.clock, {
      serverId,
      location: store.kind === 'dir' ? join(store.location, 'audit.log') : store.location,
      warn,
      ...(opts.auditReserveBytes !== undefined ? { reserveBytes: opts.auditReserveBytes } : {}),
    });
    // The locks are known before anything listens; a lock change ends the matching running sessions.
    locks = new LockService({ store, audit, clock: opts.clock, warn });
    const sessions = new ActiveSessions();
    await locks.start();
    const lockSvc = locks;
    locks.onChange(() => {
      const n = sessions.endLocked((s) => lockSvc.check({ user: s.user, roles: s.roles, logins: [s.login], node: s.node, serial: s.serial }), lockedMessage);
      if (n > 0) opts.log.info(`locks: ended ${n} running session(s)`);
    });
    rt = {
      config,
      store,
      serverId,
      ca,
      audit,
      locks,
      sessions,
      clock: opts.clock,
      log: opts.log,
      env: opts.env,
    };
    // Another process's CA change (tctl auth rotate, another proxy) reaches this one's snapshot.
    unwatch = store.watch((topic) => {
      if (topic === 'ca:user' || topic === 'ca:host') ca.refresh(topic === 'ca:user' ? 'user' : 'host').catch((err: Error) => opts.log.warn(`cannot re-read the ${topic.slice(3)} CA: ${err.message}`));
    });
    tls = loadTlsMaterial(config, opts.log, opts.clock());
  } catch (err) {
    unwatch();
    locks?.close();
    await store.close();
    throw err;
  }
  const inventory = new Inventory({ config, store, clock: opts.clock, log: opts.log });
  try {
    await inventory.start();
  } catch (err) {
    unwatch();
    await store.close();
    throw err;
  }
  rt.inventory = inventory;
  const nodes = new NodeService({ rt, inventory });
  const shutdown = async () => {
    nodes.close();
    inventory.close();
    unwatch();
    rt.locks.close();
    await rt.audit.close();
    await store.close();
  };

  let webPort = config.proxy.webListenAddr.port;
  let sshPort = config.proxy.sshListenAddr.port;
  const publicAddrs = () => ({
    web: formatHostPort({ host: config.proxy.publicAddr.host, port: config.proxy.publicAddr.port || webPort }),
    ssh: formatHostPort({ host: config.proxy.sshPublicAddr.host, port: config.proxy.sshPublicAddr.port || sshPort }),
  });
  const oidc = config.auth.oidc
    ? new OidcConnector(config.auth.oidc, {
        configFile: config.file,
        dispatcher: createHttpDispatcher({ env: opts.env, log: (l) => opts.log.debug(l), warn: (l) => opts.log.warn(l) }),
        redirectUri: () => `https://${publicAddrs().web}${API.oidcCallback}`,
      })
    : undefined;
  const login = new LoginService(rt, oidc, publicAddrs, opts.loginRate, opts.pendingLimits);
  const headless = new HeadlessLoginService(rt, rt.store.items, oidc, publicAddrs);
  const sessions = new WebSessions(rt, rt.store.items, oidc);
  // One authorisation, one set of per-user limits, for the SSH port, the web port's TLS route and the web terminal.
  const access = new NodeAccess(rt);
  const webUi = { sessions, app: new WebApp({ rt, sessions, ...(opts.webUiDir ? { webUiDir: opts.webUiDir } : {}) }), terminals: new WebTerminals(rt, sessions, access, SECURITY_HEADERS) };
  const started: RunningService[] = [{ port: 0, close: async () => access.close() }];
  let web: Awaited<ReturnType<typeof startWebApi>> | undefined;
  try {
    // proxy.tls_routing: SSH through the web port too, authorised by the same NodeAccess as the SSH port.
    const route = new TlsRoute(rt, tls, access);
    web = await startWebApi(config.proxy.webListenAddr, { rt, tls, login, headless, web: webUi, publicAddrs, nodes, route, ...(opts.webLimits ? { limits: opts.webLimits } : {}) });
    started.push(web);
    webPort = web.port;
    const ssh = await opts.startSshProxy(rt, config.proxy.sshListenAddr, { access });
    started.push(ssh);
    sshPort = ssh.port;
  } catch (err) {
    await Promise.allSettled(started.map((s) => s.close()));
    await shutdown();
    throw err;
  }
  return {
    rt,
    tls,
    webPort,
    sshPort,
    publicAddrs,
    login,
    headless,
    inventory,
    nodes,
    webUi,
    web: { server: web.server, limits: web.limits },
    close: async () => {
      webUi.terminals.close();
      await Promise.allSettled(started.map((s) => s.close()));
      await shutdown();
    },
  };
}
