/**
 * Behind a corporate HTTP proxy (a real squid on loopback): `tsh login` and
 * plain `ssh` through the generated config go through it, the server's own
 * calls to the IdP honour HTTPS_PROXY/HTTP_PROXY too, NO_PROXY host:port
 * lets SSH bypass a proxy that refuses the SSH port, and proxy
 * authentication works with credentials in the URL and fails clearly without.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import type { Browser } from 'playwright-core';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { launchBrowser } from '../helpers/browser.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { startSquid, type Squid } from '../helpers/squid.js';
import { freePort } from '../helpers/sshd.js';
import { tshLoginWithBrowser } from '../helpers/tsh-login.js';
import { builtProgram, run, tempDir } from '../helpers/tools.js';

const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'SSH_AUTH_SOCK'];

describe('behind a corporate HTTP proxy (squid)', () => {
  const tmp = tempDir('proxy-env');
  let idp: DevIdp;
  let cluster: ProxyCluster;
  let browser: Browser;
  let open: Squid; // allows everything
  let noSsh: Squid; // refuses CONNECT to the SSH proxy's port
  let authed: Squid; // requires Basic credentials
  let serverSquid: Squid; // the server's own outbound proxy
  let homes = 0;
  const login = userInfo().username;

  before(async () => {
    const webPort = await freePort();
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: 'proxy-e2e-secret',
      redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`],
      // The IdP's demo user logs in as the local account, which the node accepts.
      accounts: [...DEMO_ACCOUNTS, { login, claims: { preferred_username: login, email_verified: true } }],
    });
    // squid drops to user `proxy`, which must be able to reach its directories under ours.
    chmodSync(tmp.dir, 0o755);
    for (const d of ['server-squid', 'open', 'no-ssh', 'authed', 'cluster']) mkdirSync(join(tmp.dir, d));
    serverSquid = await startSquid({ dir: join(tmp.dir, 'server-squid') });
    const clean: NodeJS.ProcessEnv = { ...process.env };
    for (const k of PROXY_VARS) delete clean[k];
    // The server reaches the IdP (http://127.0.0.1:...) only through its proxy.
    // This file covers the SSH port behind an HTTP proxy (NO_PROXY=host:port, a proxy refusing that port): TLS routing
    // off, so ssh takes the SSH port; the one-port path through squid is test/e2e/tls-routing.test.ts.
    cluster = await startProxyCluster(join(tmp.dir, 'cluster'), {
      proxyYaml: ['  tls_routing: false'],
      webPort,
      oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: 'proxy-e2e-secret' },
      env: { ...clean, HTTPS_PROXY: serverSquid.url, HTTP_PROXY: serverSquid.url },
    });
    [open, noSsh, authed] = await Promise.all([
      startSquid({ dir: join(tmp.dir, 'open') }),
      startSquid({ dir: join(tmp.dir, 'no-ssh'), denyConnectPorts: [cluster.sshPort] }),
      startSquid({ dir: join(tmp.dir, 'authed'), basicAuth: { user: 'alice', password: 'pr0xy pass' } }),
    ]);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await Promise.all([cluster?.stop(), idp?.close(), open?.stop(), noSsh?.stop(), authed?.stop(), serverSquid?.stop()]);
    tmp.cleanup();
  });

  /** A fresh user home with these proxy variables; nothing else proxy-related inherited. */
  function userEnv(vars: Record<string, string>): { home: string; env: NodeJS.ProcessEnv } {
    const home = join(tmp.dir, `home${++homes}`);
    mkdirSync(home);
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh') };
    for (const k of PROXY_VARS) delete env[k];
    return { home, env: { ...env, ...vars } };
  }

  async function loginAs(env: NodeJS.ProcessEnv) {
    const r = await tshLoginWithBrowser({ proxy: `localhost:${cluster.webPort}`, login, browser, env, args: ['--keystore=file'] });
    assert.equal(r.code, 0, r.stderr);
    return r;
  }

  function plainSsh(home: string, env: NodeJS.ProcessEnv) {
    return run('ssh', ['-F', join(home, '.ssh', 'config'), '-o', 'BatchMode=yes', `${login}@node1`, 'echo through-the-proxy'], { env, timeoutMs: 30_000 });
  }

  test('tsh login and plain ssh via the generated config both go through HTTPS_PROXY; so do the server\'s IdP calls', async () => {
    const { home, env } = userEnv({ HTTPS_PROXY: open.url });
    await loginAs(env);
    const ssh = await plainSsh(home, env);
    assert.equal(ssh.code, 0, ssh.stderr);
    assert.equal(ssh.stdout.trim(), 'through-the-proxy');
    await open.waitForAccessLog(new RegExp(`CONNECT localhost:${cluster.webPort} `));
    await open.waitForAccessLog(new RegExp(`CONNECT localhost:${cluster.sshPort} `));
    const idpPort = new URL(idp.issuer).port;
    await serverSquid.waitForAccessLog(new RegExp(`CONNECT 127\\.0\\.0\\.1:${idpPort} `));
  });

  test('a proxy that refuses the SSH port: NO_PROXY=host:port sends SSH direct while HTTPS still uses the proxy', async () => {
    const { home, env } = userEnv({ HTTPS_PROXY: noSsh.url, NO_PROXY: `localhost:${cluster.sshPort}` });
    await loginAs(env);
    await noSsh.waitForAccessLog(new RegExp(`CONNECT localhost:${cluster.webPort} `));
    const ssh = await plainSsh(home, env);
    assert.equal(ssh.code, 0, ssh.stderr);
    assert.doesNotMatch(noSsh.accessLog(), new RegExp(`CONNECT localhost:${cluster.sshPort} `), 'SSH bypassed the proxy');
  });

  test('without that NO_PROXY entry the error names the proxy and the refused port, and says what to add', async () => {
    const { home, env } = userEnv({ HTTPS_PROXY: noSsh.url, NO_PROXY: `localhost:${cluster.sshPort}` });
    await loginAs(env);
    const ssh = await plainSsh(home, { ...env, NO_PROXY: '' });
    assert.equal(ssh.code, 255);
    assert.match(
      ssh.stderr,
      new RegExp(`the proxy refused CONNECT to localhost:${cluster.sshPort}; add localhost:${cluster.sshPort} to NO_PROXY if that port is reachable directly`),
    );
    assert.match(ssh.stderr, new RegExp(`127\\.0\\.0\\.1:${noSsh.port}`), 'names the proxy');
  });

  test('a proxy requiring Basic authentication works with user:pass in the URL and gives the 407 message without', async () => {
    const { home, env } = userEnv({ HTTPS_PROXY: authed.url });
    assert.match(authed.url, /^http:\/\/alice:[^@]+@127\.0\.0\.1:\d+$/);
    await loginAs(env);
    const ssh = await plainSsh(home, env);
    assert.equal(ssh.code, 0, ssh.stderr);
    await authed.waitForAccessLog(new RegExp(`CONNECT localhost:${cluster.sshPort} alice`));

    const bare = `http://127.0.0.1:${authed.port}`;
    const noCreds = await plainSsh(home, { ...env, HTTPS_PROXY: bare });
    assert.equal(noCreds.code, 255);
    assert.match(noCreds.stderr, new RegExp(`the proxy ${bare.replace(/[.]/g, '\\.')} requires credentials`));
    assert.match(noCreds.stderr, /set HTTPS_PROXY=http:\/\/USER:PASSWORD@127\.0\.0\.1:\d+/);
    assert.doesNotMatch(noCreds.stderr + ssh.stderr, /pr0xy/, 'the password never appears');

    const direct = await run(process.execPath, [builtProgram('tsh'), 'login', `--proxy=localhost:${cluster.webPort}`, '--insecure', '--browser=none'], {
      env: { ...env, HTTPS_PROXY: bare },
      timeoutMs: 20_000,
    });
    assert.equal(direct.code, 1, 'tsh login without credentials fails before any browser step');
    assert.match(direct.stderr, /requires credentials/);
  });
});
