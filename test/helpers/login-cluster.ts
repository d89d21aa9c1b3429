/**
 * A proxy cluster users log in to for real: the development IdP (with the
 * account the tests run as, so the node's sshd takes its certificate), the
 * built `jumpgate start` with an OpenSSH node (proxy-cluster.ts), a tsh home
 * whose environment holds no proxy or agent variables, and `tsh login` with
 * the browser's part walked over HTTP (headless-login.ts). Shared by the TLS
 * routing e2e files (on and off).
 */
import { mkdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import type { Agent } from 'undici';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { loopbackDispatcher, tshLoginOverHttp } from './headless-login.js';
import { startProxyCluster, type ProxyCluster } from './proxy-cluster.js';
import { freePort } from './sshd.js';
import { builtProgram, run, type RunResult } from './tools.js';

/** Variables the tsh home's environment drops: a proxy, an agent, a TSH_PROXY from the test's own shell. */
export const LOGIN_CLUSTER_ENV_DROP = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'SSH_AUTH_SOCK', 'TSH_PROXY'];

export interface LoginCluster {
  idp: DevIdp;
  cluster: ProxyCluster;
  /** The tsh home (HOME and TSH_HOME point into it through `env`). */
  home: string;
  /** tsh's environment; callers may add to it (HTTPS_PROXY) before logging in. */
  env: NodeJS.ProcessEnv;
  /** The account the tests run as: the IdP user and the node login. */
  login: string;
  /** The browser's HTTPS client (the proxy's certificate is self-signed). */
  insecure: Agent;
  /** Runs the built tsh with `args` (default environment: `env`). */
  tsh(args: string[], e?: NodeJS.ProcessEnv, input?: string): Promise<RunResult>;
  /** `tsh login --proxy=localhost:WEB --keystore=file --add-keys-to-agent=no`, the browser's part over HTTP; asserts exit 0. */
  tshLogin(e?: NodeJS.ProcessEnv): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts the IdP and the cluster under `dir` (cluster/ and home/ inside it);
 * `proxyYaml` lines go under `proxy:` (e.g. `  tls_routing: false`).
 */
export async function startLoginCluster(dir: string, o: { secret: string; proxyYaml?: string[] }): Promise<LoginCluster> {
  const login = userInfo().username;
  const webPort = await freePort();
  const idp = await startDevIdp({
    clientId: 'jumpgate',
    clientSecret: o.secret,
    redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`],
    accounts: [...DEMO_ACCOUNTS, { login, claims: { preferred_username: login, email_verified: true } }],
  });
  for (const d of ['cluster', 'home']) mkdirSync(join(dir, d));
  let cluster: ProxyCluster;
  try {
    cluster = await startProxyCluster(join(dir, 'cluster'), {
      webPort,
      oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: o.secret },
      ...(o.proxyYaml ? { proxyYaml: o.proxyYaml } : {}),
    });
  } catch (err) {
    await idp.close();
    throw err;
  }
  const home = join(dir, 'home');
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh') };
  for (const k of LOGIN_CLUSTER_ENV_DROP) delete env[k];
  const insecure = loopbackDispatcher(1);
  return {
    idp,
    cluster,
    home,
    env,
    login,
    insecure,
    tsh: (args, e = env, input) => run(process.execPath, [builtProgram('tsh'), ...args], { env: e, timeoutMs: 30_000, ...(input !== undefined ? { input } : {}) }),
    tshLogin: async (e = env) => {
      const { code, stderr } = await tshLoginOverHttp({ proxy: `localhost:${cluster.webPort}`, env: e, args: ['--keystore=file', '--add-keys-to-agent=no'], account: login, dispatcher: insecure });
      assert.equal(code, 0, stderr);
    },
    stop: async () => {
      await Promise.all([cluster.stop(), idp.close()]);
      await insecure.close();
    },
  };
}
