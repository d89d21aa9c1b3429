/**
 * Plain OpenSSH with an EXPIRED certificate logs in again (issue 13, item 2),
 * all real: oidc-provider, `jumpgate start`, an OpenSSH node, headless
 * Chromium reached the way tsh reaches a browser (BROWSER, through
 * xdg-open), and `ssh -F <the managed ~/.ssh/config> root@node1`:
 * - `--relogin=never`: ssh fails with one line holding the `tsh login`
 *   command; that command, run exactly as printed from a shell without
 *   TSH_HOME, logs in, and the same ssh then works;
 * - `--relogin=auto` (file keystore, and the keychain with the agent): the
 *   block's `Match exec` logs in again before ssh reads the key files, then
 *   ssh works; ssh's stdout carries only the remote command's output;
 * - three ssh processes at once: one browser login (one login.success in
 *   the audit log), all three work; when that one login fails, all three
 *   fail with the one `tsh login` line and no second login is started;
 * - a relogin lock left by a tsh killed with -9 does not block the next one.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { startSshAgent } from '../helpers/ssh-agent.js';
import { lastJsonLine, runInKeyringSession } from '../client/keyring-session.js';
import { freePort } from '../helpers/sshd.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { REPO, builtProgram, requireTool, run, tempDir, waitFor, type RunResult } from '../helpers/tools.js';

const SECRET = 'relogin-secret';
const LOGIN = userInfo().username; // the node's sshd accepts the account the tests run as
const DAY = 24 * 3600 * 1000;

describe('plain ssh with an expired certificate logs in again (real IdP, Chromium, jumpgate, OpenSSH)', () => {
  const tmp = tempDir('relogin');
  let idp: DevIdp;
  let cluster: ProxyCluster;
  let ssh: string;
  let homes = 0;
  const browserLog = join(tmp.dir, 'browser-calls');
  const browserScript = join(tmp.dir, 'browser.sh');
  const hangingBrowser = join(tmp.dir, 'browser-hang.sh');

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    requireTool('chromium', 'apt-get install -y chromium');
    builtProgram('tsh');
    const webPort = await freePort();
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: SECRET,
      redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`],
      // `refused`: the cluster maps no role to it, so its logins fail (at the proxy, after the IdP).
      accounts: [
        { login: LOGIN, claims: { preferred_username: LOGIN, email_verified: true } },
        { login: 'refused', claims: { preferred_username: 'refused', email_verified: false } },
      ],
    });
    mkdirSync(join(tmp.dir, 'cluster'));
    cluster = await startProxyCluster(join(tmp.dir, 'cluster'), { webPort, oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: SECRET } });
    // What xdg-open runs for BROWSER: the person's part in real headless Chromium.
    const fixture = (extra: string) =>
      `#!/bin/sh\ncd '${REPO}' && ${extra}exec '${process.execPath}' --import tsx test/e2e/fixtures/browser-login.ts "$1" >> '${join(tmp.dir, 'browser.out')}' 2>&1\n`;
    writeFileSync(browserScript, fixture(''));
    writeFileSync(hangingBrowser, fixture('BROWSER_LOGIN_HANG=1 '));
    chmodSync(browserScript, 0o755);
    chmodSync(hangingBrowser, 0o755);
  });

  after(async () => {
    await Promise.all([cluster?.stop(), idp?.close()]);
    tmp.cleanup();
  });

  /** A login whose certificate expired a day ago (file keystore), its block written as a login with (auto) or without (never) a browser writes it. */
  async function expiredLogin(relogin: 'auto' | 'never'): Promise<{ login: FakeLogin; env: NodeJS.ProcessEnv }> {
    const home = join(tmp.dir, `home${++homes}`);
    mkdirSync(home);
    // TSH_HOME not the default: the block and the hints must carry it.
    const login = await fakeLogin({ config: cluster.config, home, tshHome: join(home, 'tsh-elsewhere'), username: LOGIN, roles: ['user'], signedAt: new Date(Date.now() - 2 * DAY), ttlSeconds: 3600, relogin });
    const env: NodeJS.ProcessEnv = { ...login.env, BROWSER: browserScript, BROWSER_LOGIN_LOG: browserLog, BROWSER_LOGIN_ACCOUNT: LOGIN };
    // ssh started from anywhere: no TSH_HOME, no display (BROWSER is how the browser opens).
    for (const k of ['TSH_HOME', 'DISPLAY', 'WAYLAND_DISPLAY', 'SSH_CONNECTION', 'SSH_AUTH_SOCK']) delete env[k];
    return { login, env };
  }

  const sshNode = (login: FakeLogin, env: NodeJS.ProcessEnv, command: string): Promise<RunResult> =>
    run(ssh, ['-F', login.sshConfigFile, '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', `${LOGIN}@node1`, command], { env, timeoutMs: 120_000 });
  const logins = () => cluster.audit().filter((e) => e['event'] === 'login.success' && e['user'] === LOGIN).length;
  const browserCalls = () => (existsSync(browserLog) ? readFileSync(browserLog, 'utf8').split('\n').filter(Boolean).length : 0);
  const diag = (r: RunResult) => `exit ${r.code}\n--- stderr ---\n${r.stderr}\n--- browser ---\n${existsSync(join(tmp.dir, 'browser.out')) ? readFileSync(join(tmp.dir, 'browser.out'), 'utf8') : ''}\n--- server ---\n${cluster.log()}`;

  test('--relogin=never: one line with the tsh login command; run as printed (no TSH_HOME), it logs in and the same ssh works', async () => {
    const { login, env } = await expiredLogin('never');
    assert.match(readFileSync(login.sshConfigFile, 'utf8'), /ProxyCommand .* proxy ssh --relogin=never /);
    const before = logins();
    const first = await sshNode(login, env, 'echo never-ok');
    assert.equal(first.code, 255, diag(first));
    assert.equal(logins(), before, 'no login without --relogin=auto');
    const lines = first.stderr.split('\n').filter((l) => l.includes('tsh login'));
    assert.equal(lines.length, 1, first.stderr);
    assert.match(lines[0]!, /^error: your certificate for localhost expired at .*; run `(.+)` to get a new one$/);
    const command = /`(.+)`/.exec(lines[0]!)![1]!;
    assert.match(command, / login --proxy=localhost:\d+ --insecure --tsh-home=\S+tsh-elsewhere$/);
    // Exactly as printed, through a shell, from an environment without TSH_HOME; the browser opens through BROWSER.
    const relogin = await run('/bin/sh', ['-c', command], { env, timeoutMs: 120_000 });
    assert.equal(relogin.code, 0, diag(relogin));
    assert.equal(logins(), before + 1);
    const second = await sshNode(login, env, 'echo never-ok');
    assert.equal(second.code, 0, diag(second));
    assert.equal(second.stdout, 'never-ok\n');
  });

  test('--relogin=auto, file keystore: ssh logs in again by itself and works; stdout is only the remote output', async () => {
    const { login, env } = await expiredLogin('auto');
    const block = readFileSync(login.sshConfigFile, 'utf8');
    assert.match(block, /^Match host \S+ exec ".* proxy ssh --check-login --relogin=auto .*"$/m);
    assert.match(block, /ProxyCommand .* proxy ssh --relogin=auto /);
    const [before, calls] = [logins(), browserCalls()];
    const r = await sshNode(login, env, 'echo auto-ok');
    assert.equal(r.code, 0, diag(r));
    assert.equal(r.stdout, 'auto-ok\n', 'nothing but the remote command on stdout');
    assert.match(r.stderr, /logging in again through the browser/);
    assert.equal(logins(), before + 1);
    assert.equal(browserCalls(), calls + 1);
  });

  test('--relogin=auto, keychain keystore (ssh signs through the agent, which held the expired certificate): ssh logs in again by itself and works', async () => {
    const agent = await startSshAgent(join(tmp.dir, `agent${++homes}.sock`));
    try {
      const [before, calls] = [logins(), browserCalls()];
      const r = await runInKeyringSession('test/e2e/fixtures/keychain-relogin.ts', {
        components: 'secrets',
        args: [cluster.configFile, browserScript, LOGIN],
        env: { SSH_AUTH_SOCK: agent.sock, BROWSER_LOGIN_LOG: browserLog, BROWSER_LOGIN_ACCOUNT: LOGIN },
        timeoutMs: 180_000,
      });
      const got = lastJsonLine<{ keystore: string; block: string; certFile: string; agent: string; ssh: RunResult }>(r);
      assert.equal(got.keystore, 'keychain');
      assert.match(got.block, /^Match host \S+ exec ".* proxy ssh --check-login --relogin=auto .*"$/m);
      assert.equal(got.ssh.code, 0, `${diag(got.ssh)}\n--- session ---\n${r.stderr}`);
      assert.equal(got.ssh.stdout, 'keychain-ok\n');
      assert.equal(logins(), before + 1);
      assert.equal(browserCalls(), calls + 1);
      // The agent holds the new certificate (the file's), not only the expired one.
      assert.ok(got.agent.includes(got.certFile.split(' ')[1]!), `agent:\n${got.agent}`);
    } finally {
      await agent.stop();
    }
  });

  test('keychain keystore, valid certificate the agent no longer holds (ssh-add -D): ssh works again without a login', async () => {
    const agent = await startSshAgent(join(tmp.dir, `agent${++homes}.sock`));
    try {
      const [before, calls] = [logins(), browserCalls()];
      const r = await runInKeyringSession('test/e2e/fixtures/keychain-relogin.ts', {
        components: 'secrets',
        args: [cluster.configFile, browserScript, LOGIN, 'agent-cleared'],
        env: { SSH_AUTH_SOCK: agent.sock, BROWSER_LOGIN_LOG: browserLog, BROWSER_LOGIN_ACCOUNT: LOGIN },
        timeoutMs: 120_000,
      });
      const got = lastJsonLine<{ certFile: string; agent: string; ssh: RunResult }>(r);
      assert.equal(got.ssh.code, 0, `${diag(got.ssh)}\n--- session ---\n${r.stderr}`);
      assert.equal(got.ssh.stdout, 'keychain-ok\n');
      assert.match(got.ssh.stderr, /no longer held your certificate .* added it again from the keychain/);
      assert.equal(logins(), before, 'no new login');
      assert.equal(browserCalls(), calls);
      assert.ok(got.agent.includes(got.certFile.split(' ')[1]!), `agent:\n${got.agent}`);
    } finally {
      await agent.stop();
    }
  });

  test('three ssh processes at once with an expired certificate: one login, all three work', async () => {
    const { login, env } = await expiredLogin('auto');
    const [before, calls] = [logins(), browserCalls()];
    const rs = await Promise.all([1, 2, 3].map((i) => sshNode(login, env, `echo parallel-${i}`)));
    for (const [i, r] of rs.entries()) {
      assert.equal(r.code, 0, diag(r));
      assert.equal(r.stdout, `parallel-${i + 1}\n`);
    }
    assert.equal(browserCalls(), calls + 1, 'one browser login');
    assert.equal(logins(), before + 1, 'one login.success');
  });

  test('three ssh processes at once and the one login fails: each says so in one line with the tsh login command; no second login', async () => {
    const { login, env } = await expiredLogin('auto');
    const refused = { ...env, BROWSER_LOGIN_ACCOUNT: 'refused' };
    const calls = browserCalls();
    const rs = await Promise.all([1, 2, 3].map((i) => sshNode(login, refused, `echo parallel-${i}`)));
    for (const r of rs) {
      assert.equal(r.code, 255, diag(r));
      assert.equal(r.stdout, '');
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('error: '));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /^error: your certificate for localhost expired at \S+, and logging in again failed \(.+\); run `\S+ login --proxy=localhost:\d+ --insecure --tsh-home=\S+` to get a new one$/);
    }
    assert.equal(browserCalls(), calls + 1, 'one browser login for the three');
    // The ProxyCommand with --relogin=never: exit 4, the line on stderr, nothing on stdout (ssh's transport).
    const never = await run(process.execPath, [builtProgram('tsh'), 'proxy', 'ssh', '--relogin=never', `--tsh-home=${login.paths.home}`, `--proxy=${login.profile.webProxyAddr}`, `${LOGIN}@node1:22`], { env });
    assert.equal(never.code, 4, never.stderr);
    assert.equal(never.stdout, '');
    assert.equal(never.stderr.trim().split('\n').length, 1, never.stderr);
  });

  test('a relogin lock left by a tsh killed with -9 does not block the next relogin', async () => {
    const { login, env } = await expiredLogin('auto');
    const lock = join(login.paths.home, '.relogin.lock');
    // A relogin whose person never finishes, killed while it holds the lock.
    const stuck = spawn(process.execPath, [builtProgram('tsh'), 'proxy', 'ssh', '--check-login', '--relogin=auto', `--tsh-home=${login.paths.home}`, `--proxy=${login.profile.webProxyAddr}`], {
      env: { ...env, BROWSER: hangingBrowser },
      stdio: 'ignore',
    });
    await waitFor(() => existsSync(lock), 'the stuck tsh takes the relogin lock', 30_000);
    stuck.kill('SIGKILL');
    await new Promise((r) => stuck.once('exit', r));
    assert.ok(existsSync(lock), 'kill -9 leaves the lock file behind');
    const before = logins();
    const r = await sshNode(login, env, 'echo after-kill');
    assert.equal(r.code, 0, diag(r));
    assert.equal(r.stdout, 'after-kill\n');
    assert.equal(logins(), before + 1);
  });
});
