/**
 * What a user sees when things are not quite right, end to end with the
 * built bin/tsh, the real `jumpgate start`, the development IdP, headless
 * Chromium and OpenSSH: the hint printed after expiry works as printed,
 * `tsh login` with no flags reuses the profile's settings, wrong --proxy
 * values get messages naming the address and the fix, a clock that is
 * behind is named as such, and a closed pipe ends tsh quietly.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import type { Browser } from 'playwright-core';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { launchBrowser, loginInBrowser } from '../helpers/browser.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { freePort } from '../helpers/sshd.js';
import { builtProgram, REPO, requireTool, run, tempDir, type RunResult } from '../helpers/tools.js';

const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy', 'TSH_PROXY'];

describe('tsh for people: hints that work as printed, clear errors, clocks, pipes', () => {
  const tmp = tempDir('tsh-ux');
  const login = userInfo().username;
  let idp: DevIdp;
  let cluster: ProxyCluster;
  let browser: Browser;
  let faketime: string;
  let homes = 0;

  before(async () => {
    requireTool('ssh', 'apt-get install -y openssh-client');
    faketime = requireTool('faketime', 'apt-get install -y faketime');
    builtProgram('tsh');
    const webPort = await freePort();
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: 'ux-secret',
      redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`],
      accounts: [...DEMO_ACCOUNTS, { login, claims: { preferred_username: login, email_verified: true } }],
    });
    mkdirSync(join(tmp.dir, 'cluster'));
    cluster = await startProxyCluster(join(tmp.dir, 'cluster'), { webPort, oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: 'ux-secret' } });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await Promise.all([cluster?.stop(), idp?.close()]);
    tmp.cleanup();
  });

  /** A fresh home; no proxy variables; xdg-open "opens" URLs with true(1) (the test's Chromium does the browsing). */
  function freshEnv(): { home: string; env: NodeJS.ProcessEnv } {
    const home = join(tmp.dir, `home${++homes}`);
    mkdirSync(home);
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh'), BROWSER: 'true' };
    for (const k of [...PROXY_VARS, 'DISPLAY', 'WAYLAND_DISPLAY', 'SSH_AUTH_SOCK']) delete env[k];
    return { home, env };
  }
  const withBrowserEnv = (f: FakeLogin): NodeJS.ProcessEnv => ({ ...f.env, BROWSER: 'true' });
  const tsh = (env: NodeJS.ProcessEnv, args: string[], prefix: string[] = []): Promise<RunResult> =>
    prefix.length > 0 ? run(prefix[0]!, [...prefix.slice(1), process.execPath, builtProgram('tsh'), ...args], { env, timeoutMs: 30_000 }) : run(process.execPath, [builtProgram('tsh'), ...args], { env, timeoutMs: 30_000 });

  /**
   * Runs a shell command line (a command a hint printed, exactly as printed)
   * and does the browser part for the login URL it prints.
   */
  async function runPrintedLogin(commandLine: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
    const child = spawn('sh', ['-c', commandLine], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.resume();
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const deadline = Date.now() + 20_000;
    let m: RegExpExecArray | null;
    while (!(m = /^(http:\/\/(?:127\.0\.0\.1|localhost):\d+\/[0-9a-f]{32})$/m.exec(stderr))) {
      if (child.exitCode !== null) return { code: child.exitCode, stderr };
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${commandLine} printed no URL:\n${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await loginInBrowser(browser, { url: m[1]!, login });
    const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
    if (code === null) child.kill('SIGKILL');
    return { code, stderr };
  }

  /** The `tsh login …` command in a hint: the text between backquotes. */
  function printedLogin(stderr: string): string {
    const m = /`([^`]*\btsh login [^`]*)`/.exec(stderr);
    assert.ok(m, `no tsh login command in:\n${stderr}`);
    return m[1]!;
  }

  const expiredLogin = (name: string) =>
    fakeLogin({
      config: cluster.config,
      home: join(tmp.dir, name),
      username: login,
      roles: ['user'],
      ttlSeconds: 3600,
      signedAt: new Date(Date.now() - 2 * 3600 * 1000),
    });

  test('after expiry, plain ssh prints a tsh login command (with --insecure) that works as printed, and ssh works again', async () => {
    const f = await expiredLogin('home-expired');
    const sshArgs = ['-F', f.sshConfigFile, '-o', 'BatchMode=yes', `${login}@node1`, 'echo again-ok'];
    const failed = await run('ssh', sshArgs, { env: f.env, timeoutMs: 30_000 });
    assert.notEqual(failed.code, 0);
    const cmd = printedLogin(failed.stderr);
    assert.match(cmd, new RegExp(`^\\S*tsh login --proxy=localhost:${cluster.webPort} --insecure$`), 'the proxy, and --insecure because the profile was made with it');
    const status = await tsh(f.env, ['status']);
    assert.equal(status.code, 4);
    assert.equal(printedLogin(status.stderr), cmd, 'tsh status prints the same command');
    assert.equal(printedLogin((await tsh(f.env, ['ls'])).stderr), cmd, 'tsh ls too');
    assert.equal(printedLogin((await tsh(f.env, ['ssh', 'node1', 'true'])).stderr), cmd, 'tsh ssh too');

    const relogin = await runPrintedLogin(cmd, withBrowserEnv(f));
    assert.equal(relogin.code, 0, relogin.stderr);
    const again = await run('ssh', sshArgs, { env: f.env, timeoutMs: 30_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.trim(), 'again-ok');
  });

  test('tsh login with no flags logs in again to the current profile with its remembered --insecure and --user; --proxy takes an https:// URL', async () => {
    const { home, env } = freshEnv();
    const first = await runPrintedLogin(`${builtProgram('tsh')} login --proxy=https://LOCALHOST:${cluster.webPort}/ --insecure --user=${login} --browser=none`, env);
    assert.equal(first.code, 0, first.stderr);
    const profile = JSON.parse(readFileSync(join(home, '.tsh', 'profiles', 'localhost.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(profile['webProxyAddr'], `localhost:${cluster.webPort}`);
    assert.equal(profile['insecure'], true);
    assert.equal(profile['user'], login);
    // One plain line about the keychain on this headless box, no D-Bus error text.
    assert.match(first.stderr, /^no OS keychain available \(no Secret Service\); keeping the private key in .*; --debug says why$/m);
    assert.doesNotMatch(first.stderr, /DBus|D-Bus|AccessDenied|org\.freedesktop/);

    const second = await runPrintedLogin(`${builtProgram('tsh')} login --browser=none`, env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, new RegExp(`^Using --insecure --user=${login} from the last login to localhost`, 'm'));
    assert.equal((await tsh(env, ['status'])).code, 0);
  });

  test('--bind-addr fixes the callback address (loopback only) and the URL uses it', async () => {
    const { env } = freshEnv();
    const port = await freePort();
    const r = await runPrintedLogin(`${builtProgram('tsh')} login --proxy=localhost:${cluster.webPort} --insecure --browser=none --bind-addr=localhost:${port}`, env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^http://localhost:${port}/[0-9a-f]{32}$`, 'm'));
    for (const bad of ['0.0.0.0:8765', '192.0.2.1:8765', 'localhost']) {
      const refused = await tsh(env, ['login', `--proxy=localhost:${cluster.webPort}`, '--insecure', '--browser=none', `--bind-addr=${bad}`]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /--bind-addr: /);
    }
  });

  test('wrong --proxy values get a message naming the address and the fix', async () => {
    const { env } = freshEnv();
    const http: Server = createHttpServer((_req, res) => res.end('plain'));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const httpPort = (http.address() as { port: number }).port;
    const closedPort = await freePort();
    try {
      const cases: [string[], number, RegExp, RegExp][] = [
        [[`--proxy=localhost:${cluster.sshPort}`, '--insecure'], 1, new RegExp(`localhost:${cluster.sshPort} is an SSH port, not the proxy's web address`), /localhost:3080/],
        [[`--proxy=127.0.0.1:${httpPort}`, '--insecure'], 1, new RegExp(`127\\.0\\.0\\.1:${httpPort} answers plain HTTP, not HTTPS`), /--proxy/],
        [[`--proxy=127.0.0.1:${closedPort}`], 1, new RegExp(`nothing is listening at 127\\.0\\.0\\.1:${closedPort} \\(connection refused\\)`), /jumpgate start/],
        [[`--proxy=localhost:${cluster.webPort}`], 1, new RegExp(`the HTTPS certificate of localhost:${cluster.webPort} is not trusted`), new RegExp(`NODE_EXTRA_CA_CERTS.*\`\\S*tsh login --proxy=localhost:${cluster.webPort} --insecure\``)],
        [[`--proxy=http://localhost:${cluster.webPort}`], 2, /plain http:\/\/: the Jumpgate proxy serves its API over HTTPS only/, /https:\/\//],
        [[`--proxy=https://localhost:${cluster.webPort}/v1/ping`], 2, /has a path, query or fragment/, /--proxy=https:\/\/jump\.example\.com:3080/],
      ];
      for (const [args, code, message, hint] of cases) {
        const r = await tsh(env, ['login', '--browser=none', ...args]);
        assert.equal(r.code, code, `${args.join(' ')}:\n${r.stderr}`);
        const lines = r.stderr.trim().split('\n');
        const at = lines.findIndex((l) => l.startsWith('error: '));
        assert.ok(at >= 0, r.stderr);
        assert.match(lines[at]!, message, args.join(' '));
        assert.match(lines.slice(at + 1).join('\n'), hint, args.join(' '));
        assert.doesNotMatch(r.stderr, /wrong version number|IPv6|ECONNREFUSED|\n\s+at /, 'no raw library text, no stack');
      }
    } finally {
      await new Promise((r) => http.close(r));
    }
  });

  test('logged out: the hint shows an example that is clearly one, not a literal HOST', async () => {
    const { env } = freshEnv();
    for (const args of [['status'], ['ls'], ['config'], ['ssh', 'node1'], ['login', '--browser=none']]) {
      const r = await tsh(env, args);
      assert.ok(r.code === 4 || r.code === 2, `${args.join(' ')}: ${r.code}\n${r.stderr}`);
      assert.doesNotMatch(r.stderr, /--proxy=HOST\b/, args.join(' '));
      assert.match(r.stderr, /e\.g\. jump\.example\.com:3080/, args.join(' '));
    }
  });

  test('a clock behind the proxy: "not valid yet" naming the clock beyond TSH_CLOCK_LEEWAY, a note within it, a warning at login', async () => {
    const f = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-clock'), username: login, roles: ['user'] });
    const slow = await tsh(f.env, ['status'], [faketime, '-f', '-10m']);
    assert.equal(slow.code, 4, slow.stderr);
    assert.match(slow.stdout, /not valid yet: this machine's clock is at least \d+m\d*s? behind/);
    assert.doesNotMatch(slow.stdout + slow.stderr, /EXPIRED|expired/);
    assert.match(slow.stderr, /^error: the certificate for localhost is not valid yet \(from .*\): this machine's clock is at least \d+m\S* behind the proxy's$/m);
    assert.match(slow.stderr, /timedatectl set-ntp true.*TSH_CLOCK_LEEWAY/);

    const ssh = await run(faketime, ['-f', '-10m', 'ssh', '-F', f.sshConfigFile, '-o', 'BatchMode=yes', `${login}@node1`, 'true'], { env: f.env, timeoutMs: 30_000 });
    assert.notEqual(ssh.code, 0);
    assert.match(ssh.stderr, /not valid yet .*this machine's clock is at least \d+m\S* behind/);
    // tsh ssh checks both hops' host certificates with the same leeway (plain ssh checks the node's with its own clock).
    const tolerant = await tsh({ ...f.env, TSH_CLOCK_LEEWAY: '15m' }, ['ssh', `${login}@node1`, 'echo leeway-ok'], [faketime, '-f', '-10m']);
    assert.equal(tolerant.code, 0, tolerant.stderr);
    assert.equal(tolerant.stdout.trim(), 'leeway-ok');

    const bit = await tsh(f.env, ['status'], [faketime, '-f', '-3m']);
    assert.equal(bit.code, 0, bit.stderr);
    assert.match(bit.stdout, /valid for \S+; this machine's clock is at least \d+m?\d*s? behind/);
    assert.doesNotMatch(bit.stdout, /\x1b\[/, 'no colour when piped');
    const green = await tsh({ ...f.env, FORCE_COLOR: '1' }, ['status']);
    assert.match(green.stdout, /\[\x1b\[32mvalid for \S+\x1b\[39m\]/, 'FORCE_COLOR: validity in green');
    const red = await tsh({ ...f.env, FORCE_COLOR: '1' }, ['status'], [faketime, '-f', '+25h']);
    assert.equal(red.code, 4);
    assert.match(red.stdout, /\[\x1b\[31mEXPIRED\x1b\[39m\]/, 'expired in red');
    assert.match(red.stderr, /^\x1b\[31merror:\x1b\[39m /m, 'errors in red');
    const none = await tsh({ ...f.env, FORCE_COLOR: '1', NO_COLOR: '1' }, ['status']);
    assert.match(none.stdout, /\x1b\[32m/, 'FORCE_COLOR wins over NO_COLOR, as in Node');

    const { env } = freshEnv();
    const r = await runPrintedLogin(`${faketime} -f -3m ${builtProgram('tsh')} login --proxy=localhost:${cluster.webPort} --insecure --browser=none`, env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: this machine's clock is about (2m5\d|3m0\d)s behind the proxy's/);
  });

  test('a closed pipe ends tsh quietly with 141, in help, config and a long tsh ssh output', async () => {
    const f = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-pipe'), username: login, roles: ['user'] });
    const closedEarly = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [builtProgram('tsh'), ...args], { env: f.env, stdio: ['ignore', 'pipe', 'pipe'] });
        child.stdout.destroy(); // the reader is gone before tsh writes anything
        let stderr = '';
        child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        child.on('close', (code) => resolve({ code, stderr }));
      });
    for (const args of [['--help'], ['config'], ['status'], ['--version']]) {
      const r = await closedEarly(args);
      assert.ok(r.code === 141 || r.code === 0, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
      assert.equal(r.stderr, '', args.join(' '));
    }
    // The reader goes away in the middle: head -1 on a long remote output.
    const child = spawn(process.execPath, [builtProgram('tsh'), 'ssh', `${login}@node1`, 'seq 1 2000000'], { env: f.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    assert.equal(code, 141, stderr);
    assert.doesNotMatch(stderr, /EPIPE|node:events|\n\s+at /, 'no EPIPE stack trace');
    void REPO;
  });
});
