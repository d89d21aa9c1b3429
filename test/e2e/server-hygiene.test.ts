/**
 * Server hygiene with the real programs: a whole login with `--debug` on
 * both sides leaves no secret in the server's log, tsh's stderr or the
 * audit log; a CA key file readable by others is fixed to 0600 at
 * `jumpgate start`, with a warning that says what to do.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { loopbackDispatcher, walkLogin } from '../helpers/headless-login.js';
import { freePort } from '../helpers/sshd.js';
import { builtProgram, tempDir } from '../helpers/tools.js';

const SECRET = 'hygiene-client-secret-7f3a9c1e';

describe('server hygiene (real jumpgate start --debug, tsh login --debug, dev IdP)', () => {
  const tmp = tempDir('hygiene');
  let idp: DevIdp;
  let cluster: Cluster;
  let yaml: string;
  const insecure = loopbackDispatcher(60);

  before(async () => {
    builtProgram('tsh');
    const webPort = await freePort();
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: SECRET, redirectUris: [`https://127.0.0.1:${webPort}/v1/login/oidc/callback`], accounts: DEMO_ACCOUNTS });
    yaml = `cluster_name: hygiene.test
data_dir: ./data
proxy: { web_listen_addr: "127.0.0.1:${webPort}", ssh_listen_addr: "127.0.0.1:0" }
auth:
  oidc:
    issuer: ${idp.issuer}
    client_id: jumpgate
    client_secret: ${SECRET}
    claims_to_roles: [{ claim: email_verified, value: true, roles: [user] }]
roles:
  user: { logins: ["{{username}}"], node_labels: { "*": "*" } }
`;
    cluster = await startCluster(tmp.dir, yaml, { args: ['--debug'] });
  });

  after(async () => {
    await cluster?.stop();
    await idp?.close();
    await insecure.close();
    tmp.cleanup();
  });

  test('a login with --debug on both sides logs no client secret, token, authorization code, private key or sealed answer', { timeout: 60_000 }, async () => {
    const home = join(tmp.dir, 'home');
    mkdirSync(home);
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh') };
    for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'SSH_AUTH_SOCK']) delete env[k];
    const child = spawn(process.execPath, [builtProgram('tsh'), 'login', `--proxy=127.0.0.1:${cluster.webPort}`, '--insecure', '--browser=none', '--keystore=file', '--debug'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    let m: RegExpExecArray | null;
    const deadline = Date.now() + 15_000;
    while (!(m = /^(http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32})$/m.exec(stderr))) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `tsh printed no URL:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // The browser's walk in three legs, keeping what travels through it: the code, then the sealed answer.
    const atProxy = await walkLogin(m[1]!, { dispatcher: insecure, stopAt: (u) => u.pathname === '/v1/login/oidc/callback' });
    const code = atProxy.url.searchParams.get('code');
    const state = atProxy.url.searchParams.get('state');
    assert.ok(code && state);
    const atTsh = await walkLogin(atProxy.url, { dispatcher: insecure, stopAt: (u) => u.searchParams.has('response') });
    const sealed = atTsh.url.searchParams.get('response');
    assert.ok(sealed && sealed.length > 100);
    const page = await walkLogin(atTsh.url, { dispatcher: insecure });
    assert.match(page.text ?? '', /You are logged in/);
    assert.equal(await exited, 0, stderr);

    const keyFile = join(home, '.tsh', 'keys', '127.0.0.1', 'alice');
    const keyBody = readFileSync(keyFile, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'));
    const logs = {
      'server log': cluster.log(),
      'tsh stderr': stderr,
      'tsh stdout': stdout,
      'audit log': readFileSync(join(cluster.dataDir, 'audit.log'), 'utf8'),
    };
    assert.match(logs['server log'], /DEBUG /, 'the server really ran with --debug');
    assert.match(logs['tsh stderr'], /127\.0\.0\.1/, 'tsh really ran with --debug');
    for (const [where, text] of Object.entries(logs)) {
      assert.ok(!text.includes(SECRET), `${where} holds the client secret`);
      assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/, `${where} holds a JWT (ID or access token)`);
      assert.doesNotMatch(text, /PRIVATE KEY/, `${where} holds a private key`);
      for (const line of keyBody) assert.ok(!text.includes(line), `${where} holds a line of the user's private key`);
      assert.ok(!text.includes(code), `${where} holds the authorization code`);
      assert.ok(!text.includes(sealed.slice(0, 40)), `${where} holds the sealed answer`);
    }
    // The CA keys too.
    for (const type of ['user', 'host']) {
      const dir = join(cluster.dataDir, 'ca', type);
      for (const f of readdirSync(dir).filter((n) => n.endsWith('.key'))) {
        for (const line of readFileSync(join(dir, f), 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'))) {
          for (const [where, text] of Object.entries(logs)) assert.ok(!text.includes(line), `${where} holds a line of the ${type} CA key`);
        }
      }
    }
  });

  test('a CA key readable by others is set back to 0600 at start, with a warning naming the file and the rotation', { timeout: 60_000 }, async () => {
    const dir = join(cluster.dataDir, 'ca', 'user');
    const key = join(dir, readdirSync(dir).find((n) => n.endsWith('.key'))!);
    await cluster.stop();
    chmodSync(key, 0o644);
    cluster = await startCluster(tmp.dir, yaml, { args: ['--debug'] });
    assert.equal(statSync(key).mode & 0o777, 0o600);
    const warning = cluster.log().split('\n').find((l) => l.includes(key));
    assert.ok(warning, cluster.log());
    assert.match(warning, / WARN .*was readable by others \(mode 644\); set it to 0600.*tctl auth rotate --type=user/);
  });
});
