/**
 * `tsh login --headless` end to end: the real built tsh, the real
 * `jumpgate start` (dir state store; and two of them sharing PostgreSQL),
 * the real development IdP (oidc-provider), real
 * headless Chromium as "the other device" (a browser context of its own), a
 * real ssh-agent. Only the person's clicks are automated.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { launchBrowser } from '../helpers/browser.js';
import { freePort } from '../helpers/sshd.js';
import { startSshAgent, type SshAgent } from '../helpers/ssh-agent.js';
import { builtProgram, requireTool, run, tempDir, waitFor } from '../helpers/tools.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

/** An IdP account whose name is HTML: the approval page must show it as text. */
const EVE = { login: 'eve', claims: { preferred_username: '<img src=x onerror=alert(1)>', email: 'eve@example.test', email_verified: true, groups: [] } };

function clusterYaml(webPort: number, issuer: string, loginTimeout = '10m'): string {
  return `cluster_name: headless.test
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
    logins: [guest]
    node_labels: { env: dev }
nodes:
  - { name: node1, addr: "127.0.0.1:2222", labels: { env: dev } }
`;
}

/**
 * Free ports are picked before the IdP starts (its redirect URIs name them)
 * and bound only later by `jumpgate start`: another test may take one
 * meanwhile. Each cluster gets a few candidates, all registered at the IdP,
 * and starts on the first one still free.
 */
const CANDIDATES = 3;
async function candidatePorts(): Promise<number[]> {
  return Promise.all(Array.from({ length: CANDIDATES }, () => freePort()));
}
async function startOnAPort(dir: string, ports: number[], yamlFor: (port: number) => string): Promise<Cluster> {
  for (const [i, port] of ports.entries()) {
    try {
      return await startCluster(dir, yamlFor(port));
    } catch (err) {
      if (i === ports.length - 1 || !/already in use/.test((err as Error).message)) throw err;
    }
  }
  throw new Error('no candidate port');
}
const redirects = (ports: number[]) => ports.map((p) => `https://127.0.0.1:${p}/v1/login/oidc/callback`);

interface Tsh {
  child: ChildProcess;
  home: string;
  stderr(): string;
  /** The URL and the code, each read from a line of its own. */
  url: string;
  code: string;
  exit: Promise<number | null>;
}

/** Listening TCP sockets (IPv4 and IPv6) held by process `pid`: its socket inodes that /proc/net/tcp* lists in state 0A (LISTEN). */
function listeningSockets(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const out: string[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && inodes.has(f[9]!)) out.push(`${table} ${f[1]}`);
    }
  }
  return out;
}

// One Chromium for the file (starting it takes seconds on a loaded machine): every test opens a context of its own.
let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

describe('tsh login --headless, approved on another device', () => {
  const tmp = tempDir('headless-e2e');
  let idp: DevIdp;
  let main: Cluster;
  let short: Cluster;
  let agent: SshAgent;
  let homes = 0;

  before(async () => {
    requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    const [mainPorts, shortPorts] = await Promise.all([candidatePorts(), candidatePorts()]);
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: 'e2e-secret',
      redirectUris: redirects([...mainPorts, ...shortPorts]),
      accounts: [...DEMO_ACCOUNTS, EVE],
    });
    for (const d of ['main', 'short']) mkdirSync(join(tmp.dir, d));
    [main, short] = await Promise.all([
      startOnAPort(join(tmp.dir, 'main'), mainPorts, (p) => clusterYaml(p, idp.issuer)),
      startOnAPort(join(tmp.dir, 'short'), shortPorts, (p) => clusterYaml(p, idp.issuer, '1s')),
    ]);
    agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
  });

  after(async () => {
    await Promise.all([main?.stop(), short?.stop(), idp?.close(), agent?.stop()]);
    tmp.cleanup();
  });

  /** Starts `tsh login --headless` in a fresh HOME and waits for its URL and code lines. */
  async function startTsh(cluster: Cluster, args: string[] = []): Promise<Tsh> {
    const home = join(tmp.dir, `home${++homes}`);
    mkdirSync(home);
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh'), SSH_AUTH_SOCK: agent.sock };
    for (const k of ['DISPLAY', 'WAYLAND_DISPLAY', 'BROWSER']) delete env[k];
    const child = spawn(process.execPath, [builtProgram('tsh'), 'login', '--headless', `--proxy=127.0.0.1:${cluster.webPort}`, '--insecure', '--keystore=file', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout!.resume();
    const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    let url: RegExpExecArray | null = null;
    let code: RegExpExecArray | null = null;
    await waitFor(() => {
      url = /^(https:\/\/127\.0\.0\.1:\d+\/web\/headless\/[A-Za-z0-9_-]{22})$/m.exec(stderr);
      code = /^([B-DF-HJ-NP-TV-Z]{4}-[B-DF-HJ-NP-TV-Z]{4})$/m.exec(stderr);
      return (url !== null && code !== null) || child.exitCode !== null;
    }, `tsh printing its URL and code (stderr so far: ${stderr})`, 20_000);
    assert.ok(url && code, `no URL and code lines:\n${stderr}`);
    return { child, home, stderr: () => stderr, url: url![1]!, code: code![1]!, exit };
  }

  /** The other device: a browser context of its own opens the URL and signs in at the IdP; ends on the approval page. */
  async function signInElsewhere(url: string, login: string): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(url);
    await page.fill('input[name="login"]', login);
    await page.fill('input[name="password"]', 'any-password');
    await Promise.all([page.waitForLoadState(), page.click('button[type="submit"]')]);
    const consent = page.locator('button[type="submit"]:has-text("Continue")');
    if (await consent.count()) await Promise.all([page.waitForLoadState(), consent.first().click()]);
    await page.waitForLoadState('load');
    return { context, page };
  }

  async function press(page: Page, button: 'Approve' | 'Deny'): Promise<string> {
    await Promise.all([page.waitForNavigation(), page.click(`button:has-text("${button}")`)]);
    return (await page.textContent('body')) ?? '';
  }

  const events = (c: Cluster, event: string) => c.audit().filter((e) => e['event'] === event);

  test('approved: the page names address, fingerprint, time, code and user; tsh (no listening socket) gets the certificate into the agent', async (ctx) => {
    const t0 = performance.now();
    const tsh = await startTsh(main);
    ctx.diagnostic(`tsh printed the URL and code after ${Math.round(performance.now() - t0)} ms`);
    // While tsh waits it holds no listening socket (a browser login's loopback listener would show here).
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(listeningSockets(tsh.child.pid!), [], 'tsh listens on nothing');
    const { context, page } = await signInElsewhere(tsh.url, 'alice');
    const text = (await page.textContent('body')) ?? '';
    assert.match(text, /Only approve if you started this login yourself, just now/);
    assert.ok(text.includes(tsh.code), `the page shows the code ${tsh.code}:\n${text}`);
    assert.match(text, /Requested from\s*127\.0\.0\.1/);
    assert.match(text, /Key fingerprint\s*SHA256:[A-Za-z0-9+/]{43}/);
    assert.match(text, /Signed in as\s*alice/);
    assert.match(text, /Requested at\s*\d{4}-\d{2}-\d{2}T\S+ \(\d+ s ago\)/);
    const csrf = await page.getAttribute('input[name="csrf"]', 'value');
    const done = await press(page, 'Approve');
    const approvedAt = performance.now();
    assert.match(done, /Login approved/);
    assert.equal(await tsh.exit, 0, tsh.stderr());
    ctx.diagnostic(`tsh finished ${Math.round(performance.now() - approvedAt)} ms after the Approve button`);
    assert.match(tsh.stderr(), /Logged in to headless\.test as alice/);
    // The fingerprint on the page is the key tsh saved.
    const pub = await run('ssh-keygen', ['-l', '-f', join(tsh.home, '.tsh', 'keys', '127.0.0.1', 'alice.pub')]);
    assert.ok(text.includes(pub.stdout.split(' ')[1]!), `page fingerprint is tsh's key (${pub.stdout})`);
    const certLine = readFileSync(join(tsh.home, '.tsh', 'keys', '127.0.0.1', 'alice-cert.pub'), 'utf8').trim();
    const listed = await run('ssh-add', ['-L'], { env: { ...process.env, SSH_AUTH_SOCK: agent.sock } });
    assert.ok(listed.stdout.includes(certLine.split(' ')[1]!), `the agent holds the certificate:\n${listed.stdout}`);
    const approved = events(main, 'headless.approved');
    assert.equal(approved.length, 1);
    assert.equal(approved[0]!['user'], 'alice');
    assert.equal(approved[0]!['client_addr'], '127.0.0.1');
    assert.equal(approved[0]!['approver_addr'], '127.0.0.1');
    assert.ok(events(main, 'headless.start').some((e) => e['request_id'] === approved[0]!['request_id']));

    // Reused: the same form again, and the URL again (a new sign-in): nothing more is issued.
    const again = await context.request.post(new URL(tsh.url).href, { form: { csrf: csrf!, decision: 'approve' }, headers: { origin: new URL(tsh.url).origin } });
    assert.match(await again.text(), /already used/);
    const reopened = await context.newPage();
    await reopened.goto(tsh.url);
    assert.match((await reopened.textContent('body')) ?? '', /no longer valid/);
    await context.close();
    const issued = events(main, 'cert.issued').filter((e) => e['via'] === 'headless');
    assert.equal(issued.length, 1, 'one certificate for one approval');
    assert.equal(events(main, 'headless.approved').length, 1);
  });

  test('denied: tsh says the login was denied and exits 4; the IdP user name is shown as text, not HTML', async () => {
    const tsh = await startTsh(main);
    const { context, page } = await signInElsewhere(tsh.url, 'eve');
    const html = await page.content();
    assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;'), 'the user name is escaped');
    assert.equal(await page.locator('img').count(), 0, 'no element came from the IdP text');
    assert.match(await press(page, 'Deny'), /Login denied/);
    await context.close();
    assert.equal(await tsh.exit, 4, tsh.stderr());
    assert.match(tsh.stderr(), /the login was denied on the approval page; nothing was issued/);
    const denied = events(main, 'headless.denied').at(-1)!;
    assert.equal(denied['user'], EVE.claims.preferred_username);
    assert.equal(denied['client_addr'], '127.0.0.1');
    assert.equal(denied['approver_addr'], '127.0.0.1');
    assert.ok(!events(main, 'cert.issued').some((e) => e['user'] === EVE.claims.preferred_username), 'nothing issued');
  });

  test('tsh login without --headless, in an SSH session with no display, suggests --headless (with a display it does not)', async () => {
    const home = join(tmp.dir, `home${++homes}`);
    mkdirSync(home);
    const attempt = async (extra: NodeJS.ProcessEnv) => {
      const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh'), SSH_AUTH_SOCK: agent.sock, ...extra };
      for (const k of ['DISPLAY', 'WAYLAND_DISPLAY']) if (!(k in extra)) delete env[k];
      const child = spawn(process.execPath, [builtProgram('tsh'), 'login', `--proxy=127.0.0.1:${main.webPort}`, '--insecure', '--browser=none', '--keystore=file'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      child.stdout!.resume();
      const exited = new Promise((r) => child.on('exit', r));
      await waitFor(() => /^http:\/\/127\.0\.0\.1:\d+\//m.test(stderr) || child.exitCode !== null, 'tsh login printing its URL', 20_000);
      child.kill('SIGTERM');
      await exited;
      return stderr;
    };
    assert.match(await attempt({ SSH_CONNECTION: '10.0.0.1 50000 10.0.0.2 22', SSH_TTY: '/dev/pts/1' }), /tip: this looks like an SSH session with no display.*`tsh login --headless`/);
    assert.doesNotMatch(await attempt({ SSH_CONNECTION: '10.0.0.1 50000 10.0.0.2 22', DISPLAY: 'localhost:10.0' }), /--headless/);
  });

  test('an expired request: tsh gives up with exit 1, and its URL leads nowhere', async () => {
    const tsh = await startTsh(short);
    assert.equal(await tsh.exit, 1, tsh.stderr());
    assert.match(tsh.stderr(), /was not approved before it expired/);
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(tsh.url);
    assert.match((await page.textContent('body')) ?? '', /no longer valid/);
    await context.close();
    assert.ok(events(short, 'headless.failure').some((e) => e['stage'] === 'expired'), 'the expiry is audited');
    assert.equal(events(short, 'cert.issued').filter((e) => e['cert_type'] === 'user').length, 0, 'no user certificate (the proxy signs its own host certificate)');
  });
});

describe('tsh login --headless across two proxies sharing PostgreSQL', () => {
  const tmp = tempDir('headless-pg');
  let pg: TestPostgres;
  let idp: DevIdp;
  let a: Cluster;
  let b: Cluster;
  let agent: SshAgent;

  before(async () => {
    // Never crashed here: without fsync. Started beside the IdP.
    const [portsA, portsB] = await Promise.all([candidatePorts(), candidatePorts()]);
    const started = startPostgres({ durable: false }).then((p) => (pg = p));
    started.catch(() => {}); // awaited below; an IdP failure first must not leave it unhandled
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: 'e2e-secret', redirectUris: redirects([...portsA, ...portsB]), accounts: DEMO_ACCOUNTS });
    const key = join(tmp.dir, 'storage.key');
    writeFileSync(key, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    await started;
    const storage = `storage:\n  type: postgres\n  conn_string: ${pg.connString}\n  encryption_key_file: ${key}\n`;
    for (const d of ['a', 'b']) mkdirSync(join(tmp.dir, d));
    // One after the other: the first creates the schema and the CAs, the second uses them.
    a = await startOnAPort(join(tmp.dir, 'a'), portsA, (p) => clusterYaml(p, idp.issuer) + storage);
    b = await startOnAPort(join(tmp.dir, 'b'), portsB, (p) => clusterYaml(p, idp.issuer) + storage);
    agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop(), idp?.close(), agent?.stop()]);
    await pg?.stop();
    tmp.cleanup();
  });

  test('started through proxy A, approved through proxy B: tsh (polling A) gets the certificate; one cert.issued in the shared audit', async () => {
    const home = join(tmp.dir, 'home');
    mkdirSync(home);
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh'), SSH_AUTH_SOCK: agent.sock };
    const child = spawn(process.execPath, [builtProgram('tsh'), 'login', '--headless', `--proxy=127.0.0.1:${a.webPort}`, '--insecure', '--keystore=file'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (x: Buffer) => (stderr += x.toString()));
    child.stdout!.resume();
    const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    await waitFor(() => /\/web\/headless\/[A-Za-z0-9_-]{22}$/m.test(stderr) || child.exitCode !== null, 'tsh printing its URL', 20_000);
    const url = new URL(/^(https:\S+\/web\/headless\/[A-Za-z0-9_-]{22})$/m.exec(stderr)![1]!);
    assert.equal(url.port, String(a.webPort));
    url.port = String(b.webPort); // the other proxy of the same cluster
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(url.href);
    await page.fill('input[name="login"]', 'alice');
    await page.fill('input[name="password"]', 'x');
    await Promise.all([page.waitForLoadState(), page.click('button[type="submit"]')]);
    const consent = page.locator('button[type="submit"]:has-text("Continue")');
    if (await consent.count()) await Promise.all([page.waitForLoadState(), consent.first().click()]);
    assert.match((await page.textContent('body')) ?? '', /Signed in as\s*alice/);
    await Promise.all([page.waitForNavigation(), page.click('button:has-text("Approve")')]);
    assert.match((await page.textContent('body')) ?? '', /Login approved/);
    await context.close();
    assert.equal(await exit, 0, stderr);
    assert.match(stderr, /Logged in to headless\.test as alice/);
    const audit = await run(process.execPath, [builtProgram('tctl'), 'audit', 'ls', '--format=json', '--config', a.configFile]);
    assert.equal(audit.code, 0, audit.stderr);
    const events = JSON.parse(audit.stdout) as Array<Record<string, unknown>>;
    const approved = events.filter((e) => e['event'] === 'headless.approved');
    assert.equal(approved.length, 1, audit.stdout);
    const started = events.find((e) => e['event'] === 'headless.start' && e['request_id'] === approved[0]!['request_id']);
    assert.ok(started && started['server_id'] !== approved[0]!['server_id'], 'started on one proxy, approved on the other');
    assert.equal(events.filter((e) => e['event'] === 'cert.issued' && e['via'] === 'headless').length, 1);
  });
});
