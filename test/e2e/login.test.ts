/**
 * `tsh login` end to end: the real `jumpgate start`, a real OpenID provider
 * (oidc-provider), real headless Chromium doing what a person does, the real
 * `tsh login --browser=none`, a real ssh-agent, and OpenSSH's tools to check
 * the result. Only the human step is automated.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import type { Browser } from 'playwright-core';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { launchBrowser, type LoginInBrowserOptions } from '../helpers/browser.js';
import { tshLoginWithBrowser } from '../helpers/tsh-login.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { freePort } from '../helpers/sshd.js';
import { startSshAgent, type SshAgent } from '../helpers/ssh-agent.js';
import { builtProgram, requireTool, run, tempDir } from '../helpers/tools.js';

function clusterYaml(webPort: number, issuer: string, loginTimeout = '10m'): string {
  return `cluster_name: login.test
data_dir: ./data
proxy:
  web_listen_addr: 127.0.0.1:${webPort}
  ssh_listen_addr: 127.0.0.1:0
auth:
  cert_ttl: 24h
  login_timeout: ${loginTimeout}
  oidc:
    issuer: ${issuer}
    client_id: jumpgate
    client_secret: e2e-secret
    scopes: [openid, email, profile]
    username_claim: preferred_username
    claims_to_roles:
      - { claim: groups, value: admins, roles: [admin] }
      - { claim: email_verified, value: true, roles: [user] }
roles:
  admin:
    logins: ["{{username}}", deploy]
    node_labels: { "*": "*" }
  user:
    logins: ["{{username}}"]
    node_labels: { env: dev }
    max_session_ttl: 1h
nodes:
  - { name: node1, addr: "127.0.0.1:2222", labels: { env: dev } }
  - { name: db1, addr: "127.0.0.1:2223", labels: { env: prod } }
`;
}

interface LoginRun {
  code: number | null;
  stderr: string;
  page: string;
  home: string;
}

describe('tsh login through OIDC in a real browser', () => {
  const tmp = tempDir('login-e2e');
  let idp: DevIdp;
  let main: Cluster;
  let short: Cluster;
  let idpDown: Cluster;
  let browser: Browser;
  let agent: SshAgent;
  let homes = 0;

  before(async () => {
    requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    const [mainPort, shortPort, downPort, deadIdpPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: 'e2e-secret',
      redirectUris: [mainPort, shortPort].map((p) => `https://127.0.0.1:${p}/v1/login/oidc/callback`),
      accounts: DEMO_ACCOUNTS,
    });
    for (const d of ['main', 'short', 'down']) mkdirSync(join(tmp.dir, d));
    [main, short, idpDown] = await Promise.all([
      startCluster(join(tmp.dir, 'main'), clusterYaml(mainPort, idp.issuer)),
      startCluster(join(tmp.dir, 'short'), clusterYaml(shortPort, idp.issuer, '1s')),
      startCluster(join(tmp.dir, 'down'), clusterYaml(downPort, `http://127.0.0.1:${deadIdpPort}`)),
    ]);
    browser = await launchBrowser();
    agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
  });

  after(async () => {
    await browser?.close();
    await Promise.all([main?.stop(), short?.stop(), idpDown?.stop(), idp?.close(), agent?.stop()]);
    tmp.cleanup();
  });

  /** Runs `tsh login --browser=none` in a fresh HOME and does the browser part as `login`. */
  async function tshLogin(
    cluster: Cluster,
    login: string,
    opts: { browser?: Omit<LoginInBrowserOptions, 'url' | 'login'>; beforeBrowser?: () => Promise<void>; killAfterPage?: boolean; args?: string[] } = {},
  ): Promise<LoginRun> {
    const home = join(tmp.dir, `home${++homes}`);
    mkdirSync(home);
    const r = await tshLoginWithBrowser({
      proxy: `127.0.0.1:${cluster.webPort}`,
      login,
      browser,
      env: { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh'), SSH_AUTH_SOCK: agent.sock },
      args: ['--keystore=file', ...(opts.args ?? [])],
      ...(opts.browser ? { browserOptions: opts.browser } : {}),
      ...(opts.beforeBrowser ? { beforeBrowser: opts.beforeBrowser } : {}),
      ...(opts.killAfterPage ? { killAfterPage: true } : {}),
    });
    return { ...r, home };
  }

  function certFile(home: string, user: string): string {
    return join(home, '.tsh', 'keys', '127.0.0.1', `${user}-cert.pub`);
  }

  async function validitySeconds(certPath: string): Promise<{ principals: string[]; seconds: number; text: string }> {
    const r = await run('ssh-keygen', ['-L', '-f', certPath], { env: { ...process.env, TZ: 'UTC' } });
    assert.equal(r.code, 0, r.stderr);
    const v = /Valid: from (\S+) to (\S+)/.exec(r.stdout);
    assert.ok(v, r.stdout);
    const principals = /Principals:\s*\n((?:\s{16}\S+\n)+)/.exec(r.stdout)?.[1]!.trim().split(/\s+/) ?? [];
    return { principals, seconds: (Date.parse(`${v[2]}Z`) - Date.parse(`${v[1]}Z`)) / 1000, text: r.stdout };
  }

  const events = (c: Cluster, event: string) => c.audit().filter((e) => e['event'] === event);
  /** User certificates only: the SSH proxy also records its own host certificate. */
  const userCerts = (c: Cluster) => events(c, 'cert.issued').filter((e) => e['cert_type'] === 'user');

  test('alice logs in: a 24-hour certificate for her key is in ssh-agent, with her name as principal', async () => {
    const r = await tshLogin(main, 'alice');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.page, /You are logged in/);
    assert.match(r.stderr, /Logged in to login\.test as alice/);
    const listed = await run('ssh-add', ['-L'], { env: { ...process.env, SSH_AUTH_SOCK: agent.sock } });
    const certLine = readFileSync(certFile(r.home, 'alice'), 'utf8').trim();
    assert.ok(listed.stdout.split('\n').some((l) => l.startsWith(certLine.split(' ').slice(0, 2).join(' '))), `ssh-add -L:\n${listed.stdout}`);
    const v = await validitySeconds(certFile(r.home, 'alice'));
    assert.deepEqual(v.principals, ['alice', 'deploy']);
    assert.equal(v.seconds, 24 * 3600 + 60, 'valid 24h from now (backdated 60 s for clock skew)');
    assert.match(v.text, /Key ID: "alice"/);
    const status = await run(process.execPath, [builtProgram('tsh'), 'status', '--format=json'], { env: { ...process.env, HOME: r.home, TSH_HOME: join(r.home, '.tsh') } });
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout) as { profiles: { user: string; valid: boolean; roles: string[] }[] };
    assert.equal(s.profiles[0]!.user, 'alice');
    assert.deepEqual(s.profiles[0]!.roles, ['admin']);
    assert.ok(existsSync(join(r.home, '.ssh', 'config')), 'the ssh config block is written');
    assert.match(readFileSync(join(r.home, '.tsh', 'known_hosts'), 'utf8'), /^@cert-authority \S+ ssh-ed25519 /m);
    const success = events(main, 'login.success').find((e) => e['user'] === 'alice');
    assert.ok(success, 'audit has login.success');
    assert.ok(events(main, 'cert.issued').some((e) => e['user'] === 'alice' && e['via'] === 'login'));
    const audit = readFileSync(join(main.dataDir, 'audit.log'), 'utf8');
    assert.doesNotMatch(audit, /PRIVATE KEY|eyJ[A-Za-z0-9_-]{10,}\.|e2e-secret/, 'no keys, tokens or secrets in the audit log');
  });

  test('--add-keys-to-agent=no leaves the agent alone and is remembered; tsh warns that ssh reads the passwd home, not this HOME', async () => {
    const r = await tshLogin(main, 'alice', { args: ['--add-keys-to-agent=no'] });
    assert.equal(r.code, 0, r.stderr);
    const certBlob = readFileSync(certFile(r.home, 'alice'), 'utf8').trim().split(' ')[1]!;
    const listed = await run('ssh-add', ['-L'], { env: { ...process.env, SSH_AUTH_SOCK: agent.sock } });
    assert.ok(!listed.stdout.includes(certBlob), 'the certificate is not in the agent');
    const profile = JSON.parse(readFileSync(join(r.home, '.tsh', 'profiles', '127.0.0.1.json'), 'utf8')) as { addKeysToAgent?: string };
    assert.equal(profile.addKeysToAgent, 'no');
    // HOME is a temp dir; ssh reads ~/.ssh/config under the passwd entry's home.
    assert.ok(r.stderr.includes(`warning: wrote the block into ${join(r.home, '.ssh', 'config')}, but OpenSSH reads ${join(userInfo().homedir, '.ssh', 'config')}`), r.stderr);
  });

  test('tsh logout removes the profile, the key, the certificate and the agent entry; status then exits 4', async () => {
    const r = await tshLogin(main, 'alice');
    assert.equal(r.code, 0, r.stderr);
    const env = { ...process.env, HOME: r.home, TSH_HOME: join(r.home, '.tsh'), SSH_AUTH_SOCK: agent.sock };
    const certLine = readFileSync(certFile(r.home, 'alice'), 'utf8').trim();
    const certBlob = certLine.split(' ')[1]!;
    const listed = async () => (await run('ssh-add', ['-L'], { env })).stdout;
    assert.ok((await listed()).includes(certBlob));
    const out = await run(process.execPath, [builtProgram('tsh'), 'logout'], { env });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /Logged out alice from 127\.0\.0\.1/);
    assert.ok(!(await listed()).includes(certBlob), 'the agent no longer holds the certificate');
    assert.ok(!existsSync(certFile(r.home, 'alice')));
    assert.ok(!existsSync(join(r.home, '.tsh', 'keys', '127.0.0.1', 'alice')), 'the private key file is gone');
    assert.ok(!existsSync(join(r.home, '.tsh', 'profiles', '127.0.0.1.json')));
    const status = await run(process.execPath, [builtProgram('tsh'), 'status'], { env });
    assert.equal(status.code, 4);
    assert.match(status.stderr, /not logged in/);
  });

  test("bob's role caps the certificate at its max_session_ttl of 1h", async () => {
    const r = await tshLogin(main, 'bob');
    assert.equal(r.code, 0, r.stderr);
    const v = await validitySeconds(certFile(r.home, 'bob'));
    assert.deepEqual(v.principals, ['bob']);
    assert.equal(v.seconds, 3600 + 60);
  });

  test('a user no claims_to_roles rule maps is refused, in the browser and in tsh (exit 4), with an audit event', async () => {
    const r = await tshLogin(main, 'mallory');
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /mallory is not mapped to any Jumpgate role/);
    assert.match(r.page, /Login failed/);
    assert.ok(!existsSync(certFile(r.home, 'mallory')));
    assert.ok(events(main, 'login.failure').some((e) => e['user'] === 'mallory' && /claims_to_roles/.test(String(e['reason']))));
  });

  test('a tampered authorization code at the proxy callback never issues a certificate', async () => {
    const issuedBefore = userCerts(main).length;
    const r = await tshLogin(main, 'alice', {
      browser: {
        rewriteRequest: (url) => {
          if (!url.pathname.endsWith('/v1/login/oidc/callback')) return undefined;
          url.searchParams.set('code', `${url.searchParams.get('code')}tampered`);
          return url;
        },
      },
    });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /login refused: the identity provider did not confirm the login/);
    assert.equal(userCerts(main).length, issuedBefore);
    assert.ok(events(main, 'login.failure').some((e) => /did not confirm/.test(String(e['reason']))));
  });

  test('a replayed proxy callback is rejected with a clear page and an audit event', async () => {
    const visited: string[] = [];
    const r = await tshLogin(main, 'alice', { browser: { visited } });
    assert.equal(r.code, 0, r.stderr);
    const callback = visited.find((u) => u.includes('/v1/login/oidc/callback'));
    assert.ok(callback, visited.join('\n'));
    const issuedBefore = userCerts(main).length;
    const replay = await getInsecure(callback);
    assert.equal(replay.status, 400);
    assert.match(replay.body, /no longer valid/);
    assert.equal(userCerts(main).length, issuedBefore);
    assert.ok(events(main, 'login.failure').some((e) => /already used/.test(String(e['reason']))));
  });

  test('a wrong state at the proxy callback is rejected', async () => {
    const r = await tshLogin(main, 'alice', {
      killAfterPage: true,
      browser: {
        rewriteRequest: (url) => {
          if (!url.pathname.endsWith('/v1/login/oidc/callback')) return undefined;
          url.searchParams.set('state', 'not-the-state-we-sent');
          return url;
        },
      },
    });
    assert.match(r.page, /This login link is no longer valid/);
    assert.notEqual(r.code, 0);
    assert.ok(!existsSync(certFile(r.home, 'alice')));
    // Audited in aggregate (an unknown state is a failure anyone can cause): the first from loopback this minute in full, later ones counted into failures.summary (test/e2e/floods.test.ts).
    assert.ok(events(main, 'login.failure').some((e) => e['stage'] === 'callback' && /unknown, expired or already used/.test(String(e['reason']))));
  });

  test('an answer altered on its way to the loopback listener is refused by tsh', async () => {
    const r = await tshLogin(main, 'alice', {
      browser: {
        rewriteRequest: (url) => {
          if (!/^\/[0-9a-f]{32}\/callback$/.test(url.pathname) || !url.searchParams.has('response')) return undefined;
          const sealed = url.searchParams.get('response')!;
          url.searchParams.set('response', sealed.slice(0, 60) + (sealed[60] === 'A' ? 'B' : 'A') + sealed.slice(61));
          return url;
        },
      },
    });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /altered or belongs to another login/);
    assert.match(r.page, /Login failed/);
    assert.ok(!existsSync(certFile(r.home, 'alice')));
  });

  test('an answer cut short on its way to the loopback listener is refused by tsh', async () => {
    const r = await tshLogin(main, 'alice', {
      browser: {
        rewriteRequest: (url) => {
          if (!/^\/[0-9a-f]{32}\/callback$/.test(url.pathname) || !url.searchParams.has('response')) return undefined;
          const sealed = url.searchParams.get('response')!;
          url.searchParams.set('response', sealed.slice(0, Math.floor(sealed.length / 2)));
          return url;
        },
      },
    });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /altered or belongs to another login/);
    assert.ok(!existsSync(certFile(r.home, 'alice')));
  });

  test('a login request that outlived auth.login_timeout is refused', async () => {
    const r = await tshLogin(short, 'alice', { beforeBrowser: () => new Promise((res) => setTimeout(res, 1_500)) });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /took longer than the server allows/);
    assert.ok(events(short, 'login.failure').some((e) => e['reason'] === 'login request expired'));
    assert.equal(userCerts(short).length, 0);
  });

  test('a callback target that is not on loopback is refused at login start', async () => {
    const res = await postInsecure(`https://127.0.0.1:${main.webPort}/v1/login/start`, {
      public_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
      callback_url: 'http://192.0.2.10:8080/callback',
      client_key: 'A'.repeat(43),
      client_nonce: 'B'.repeat(43),
    });
    assert.equal(res.status, 400);
    assert.match(res.body, /LOGIN_BAD_CALLBACK/);
    assert.match(res.body, /must point at 127\.0\.0\.1, localhost or \[::1\]/);
    assert.ok(events(main, 'login.failure').some((e) => e['stage'] === 'start' && /callback_url/.test(String(e['reason']))));
  });

  test('an unreachable identity provider gives a clear error', async () => {
    const r = await tshLogin(idpDown, 'alice');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot reach the identity provider at http:\/\/127\.0\.0\.1:\d+/);
  });
});

function getInsecure(url: string): Promise<{ status: number; body: string }> {
  return insecure(url, 'GET');
}

function postInsecure(url: string, body: unknown): Promise<{ status: number; body: string }> {
  return insecure(url, 'POST', JSON.stringify(body));
}

/** A plain HTTPS request to the test proxy (self-signed certificate). */
function insecure(url: string, method: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, rejectUnauthorized: false, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
