/**
 * `jumpgate start`: the auth service and the proxy service in one process.
 * Order matters: the config is already valid, the CAs and TLS material are
 * loaded (or created) before anything listens, so nothing is half-started.
 */
import type { Server as HttpsServer } from 'node:https';
import type { ServerConfig, HostPort } from '../config/index.js';
import { formatHostPort } from '../shared/address.js';
import { createHttpDispatcher } from '../net/index.js';
import { AuditLog } from './auth/audit.js';
import { CaStore } from './auth/ca.js';
import { ensurePrivateDir } from '../util/private-dir.js';
import { LoginService } from './auth/login.js';
import type { PendingLimits } from './auth/pending-logins.js';
import { OidcConnector } from './auth/oidc.js';
import { startWebApi, type WebLimits } from './proxy/web.js';
import { loadTlsMaterial, type TlsMaterial } from './tls.js';
import type { RunningService, ServerLog, ServerRuntime } from './runtime.js';
import { API } from '../api/types.js';

export interface StartOptions {
  clock: () => Date;
  log: ServerLog;
  env: Record<string, string | undefined>;
  /** Starts the SSH proxy service (server/proxy/ssh-proxy.ts). */
  startSshProxy: (rt: ServerRuntime, listen: HostPort) => Promise<RunningService>;
  /** Overrides of the HTTPS API's limits (tests use short timeouts); default WEB_LIMITS. */
  webLimits?: Partial<WebLimits>;
  /** Overrides the login start rate limit; default LOGIN_RATE_LIMIT. */
  loginRate?: { perMinute: number; burst: number };
  /** Overrides the pending-login caps; default PENDING_LIMITS. */
  pendingLimits?: PendingLimits;
  /** Free bytes kept for real audit events; default AUDIT_RESERVE_BYTES (tests on a small tmpfs lower it). */
  auditReserveBytes?: number;
}

export interface RunningServer {
  rt: ServerRuntime;
  tls: TlsMaterial;
  webPort: number;
  sshPort: number;
  /** host:port clients use (ports substituted when the config said 0). */
  publicAddrs(): { web: string; ssh: string };
  login: LoginService;
  /** The HTTPS API's server and the limits it runs with (tests inspect both). */
  web: { server: HttpsServer; limits: WebLimits };
  close(): Promise<void>;
}

/** Starts every service of one cluster; on any failure, stops what had started. */
export async function startServer(config: ServerConfig, opts: StartOptions): Promise<RunningServer> {
  ensurePrivateDir(config.dataDir);
  const rt: ServerRuntime = {
    config,
    // A new CA or a key file that had to be fixed: both are news an admin must see.
    ca: new CaStore(config.dataDir, opts.clock, (m) => opts.log.warn(m)),
    audit: new AuditLog(config.dataDir, opts.clock, { warn: (m) => opts.log.warn(m), ...(opts.auditReserveBytes !== undefined ? { reserveBytes: opts.auditReserveBytes } : {}) }),
    clock: opts.clock,
    log: opts.log,
    env: opts.env,
  };
  rt.ca.get('user');
  rt.ca.get('host');
  const tls = loadTlsMaterial(config, opts.log, opts.clock());

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

  const started: RunningService[] = [];
  let web: Awaited<ReturnType<typeof startWebApi>> | undefined;
  try {
    web = await startWebApi(config.proxy.webListenAddr, { rt, tls, login, publicAddrs, ...(opts.webLimits ? { limits: opts.webLimits } : {}) });
    started.push(web);
    webPort = web.port;
    const ssh = await opts.startSshProxy(rt, config.proxy.sshListenAddr);
    started.push(ssh);
    sshPort = ssh.port;
  } catch (err) {
    await Promise.allSettled(started.map((s) => s.close()));
    rt.audit.close();
    throw err;
  }
  return {
    rt,
    tls,
    webPort,
    sshPort,
    publicAddrs,
    login,
    web: { server: web.server, limits: web.limits },
    close: async () => {
      await Promise.allSettled(started.map((s) => s.close()));
      rt.audit.close();
    },
  };
}
