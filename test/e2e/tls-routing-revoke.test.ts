/**
 * `tsh logout --revoke` behind an HTTP proxy that allows the web port only
 * (README "One port for everything"): the revocation takes the TLS route
 * like tsh ls and tsh ssh, so it works where the SSH proxy port is
 * unreachable. A real jumpgate, the development IdP and a squid that refuses
 * CONNECT to the SSH port.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { startSquid, type Squid } from '../helpers/squid.js';
import { freePort } from '../helpers/sshd.js';
import { browserlessLogin, loopbackDispatcher } from '../helpers/headless-login.js';
import { builtProgram, requireTool, run, tempDir } from '../helpers/tools.js';

const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'SSH_AUTH_SOCK', 'TSH_PROXY'];
const login = userInfo().username;

describe('tsh logout --revoke through the web port only', () => {
  const tmp = tempDir('tls-revoke');
  let idp: DevIdp;
  let cluster: ProxyCluster;
  let squid: Squid;
  let home: string;
  let env: NodeJS.ProcessEnv;
  const insecure = loopbackDispatcher(1);

  before(async () => {
    const webPort = await freePort();
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: 'tls-revoke-secret',
      redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`],
      accounts: [...DEMO_ACCOUNTS, { login, claims: { preferred_username: login, email_verified: true } }],
    });
    chmodSync(tmp.dir, 0o755); // squid runs as `proxy`
    for (const d of ['squid', 'cluster', 'home']) mkdirSync(join(tmp.dir, d));
    cluster = await startProxyCluster(join(tmp.dir, 'cluster'), { webPort, oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: 'tls-revoke-secret' } });
    squid = await startSquid({ dir: join(tmp.dir, 'squid'), denyConnectPorts: [cluster.sshPort] });
    home = join(tmp.dir, 'home');
    env = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh') };
    for (const k of PROXY_VARS) delete env[k];
    env['HTTPS_PROXY'] = squid.url;
  });

  after(async () => {
    await Promise.all([cluster?.stop(), idp?.close(), squid?.stop()]);
    await insecure.close();
    tmp.cleanup();
  });

  test('the certificate is locked through the TLS route (squid refuses the SSH port) and listed in the KRL', async () => {
    const child = spawn(process.execPath, [builtProgram('tsh'), 'login', `--proxy=localhost:${cluster.webPort}`, '--insecure', '--browser=none', '--keystore=file', '--add-keys-to-agent=no', '--no-ssh-config'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const done = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (b: Buffer) => {
        stderr += b.toString();
        const m = /^(http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32})$/m.exec(stderr);
        if (m) resolve(m[1]!);
      });
      void done.then((code) => reject(new Error(`tsh login exited ${code} before printing a URL:\n${stderr}`)));
    });
    await browserlessLogin(url, insecure, login);
    assert.equal(await done, 0, stderr);
    const kept = join(tmp.dir, 'kept-cert.pub');
    copyFileSync(join(home, '.tsh', 'keys', 'localhost', `${login}-cert.pub`), kept);

    const out = await run(process.execPath, [builtProgram('tsh'), 'logout', '--revoke', '--debug'], { env, timeoutMs: 30_000 });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /revocation through the TLS route on the web port/);
    assert.match(out.stderr, /Revoked certificate \d+ \(lock [0-9a-f]{16}/);
    assert.ok(cluster.audit().some((e) => e['event'] === 'lock.created' && e['target'] === 'cert' && e['user'] === login));

    const krl = join(tmp.dir, 'revoked.krl');
    const exp = await run(process.execPath, [builtProgram('tctl'), '--config', cluster.configFile, 'auth', 'export', '--type=krl', `--out=${krl}`], { timeoutMs: 20_000 });
    assert.equal(exp.code, 0, exp.stderr);
    const keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    assert.match((await run(keygen, ['-Q', '-f', krl, kept])).stdout, /: REVOKED$/m);
    assert.doesNotMatch(squid.accessLog(), new RegExp(`CONNECT [^ ]+:${cluster.sshPort} `), 'nothing may have gone to the SSH port');
  });
});
