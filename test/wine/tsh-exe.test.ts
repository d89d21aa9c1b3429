/**
 * The real Windows build under Wine (npm run test:wine; .ci/run runs it after
 * npm test): scripts/build-bin.mjs makes the win-x64 tsh.exe and tctl.exe,
 * tsh.exe is installed as C:/Program Files/Jumpgate/tsh.exe (a path with a
 * space) in a cached Wine prefix set to Windows 10, and each step of a
 * Windows user's day runs against a real `jumpgate start`, the development
 * IdP, headless Chromium and a private OpenSSH node, all on 127.0.0.1:
 * login, status, ls, config (Windows paths; a ProxyCommand that Windows'
 * OpenSSH hands to CreateProcessW, checked through CreateProcessW itself),
 * ssh with the remote exit status, tctl.exe auth export, logout.
 *
 * What Wine cannot show (README, "Windows"): the Credential Manager (Wine 8
 * cannot load the keychain addon, so the file key store and its notice are
 * what runs here), the OpenSSH agent service's pipe, and Windows' own ssh.exe.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { VERSION } from '../../src/version.js';
import { launchBrowser, loginInBrowser } from '../helpers/browser.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { freePort, startSshd, type SshdNode } from '../helpers/sshd.js';
import { REPO, run, runProgram, tempDir } from '../helpers/tools.js';
import { openWine, requireWine, win32OpenSshProxyCommandLine, WINE_INSTALL, type Wine } from '../helpers/wine.js';

const INSTALL_DIR = 'C:/Program Files/Jumpgate';
const TSH = `${INSTALL_DIR}/tsh.exe`;
const TCTL = `${INSTALL_DIR}/tctl.exe`;

/** One line per step in the CI log (the TAP reporter shows it as a `# wine: ...` comment). */
function step(line: string): void {
  process.stdout.write(`wine: ${line}\n`);
}

/** Polls `text()` until `re` matches, or fails showing it. */
async function waitFor(text: () => string, re: RegExp, what: string, timeoutMs = 60_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = re.exec(text());
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`${what} never came:\n${text()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('without wine64 this suite fails with the command that installs it (it never skips)', () => {
  assert.throws(() => requireWine({ candidates: [join(REPO, 'no-such-dir', 'wine64')], path: join(REPO, 'no-such-dir') }), {
    message: `wine64 is not installed; install it with: ${WINE_INSTALL}`,
  });
  assert.equal(WINE_INSTALL, 'apt-get install -y wine64');
});

describe('the win-x64 tsh.exe and tctl.exe under Wine, against a real cluster on loopback', { timeout: 900_000 }, () => {
  const tmp = tempDir('wine-e2e');
  let wine: Wine;
  let idp: DevIdp | undefined;
  let node: SshdNode | undefined;
  let cluster: Cluster | undefined;
  let browser: Browser | undefined;
  let webPort = 0;
  let sshConfigBlock = '';
  const shown = (r: { code: number | null; stdout: string; stderr: string }) => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}\n--- jumpgate ---\n${cluster?.log() ?? ''}`;

  before(async () => {
    // Wine first: without it the test fails here, with the install command, before a two-minute build.
    wine = await openWine({ scratch: join(tmp.dir, 'wine') });
    step(`${wine.version}, prefix ${wine.prefix} ${wine.prefixCreated ? 'made' : 'reused'} in ${wine.prefixSeconds.toFixed(1)} s`);

    const t0 = Date.now();
    const built = await run(process.execPath, [join(REPO, 'scripts', 'build-bin.mjs'), '--target=win-x64', '--program=tsh,tctl'], { cwd: REPO, timeoutMs: 900_000 });
    assert.equal(built.code, 0, `build-bin --target=win-x64 failed:\n${built.stdout}\n${built.stderr}`);
    step(`build:bin --target=win-x64 --program=tsh,tctl: ${((Date.now() - t0) / 1000).toFixed(1)} s (${/(built|up to date)/.exec(built.stderr)?.[1] ?? '?'})`);

    // Installed where Windows users put programs: a directory with a space in its name.
    mkdirSync(wine.unixPath(INSTALL_DIR), { recursive: true });
    for (const exe of ['tsh.exe', 'tctl.exe']) {
      const from = join(REPO, 'dist', 'bin', 'win-x64', exe);
      const to = wine.unixPath(`${INSTALL_DIR}/${exe}`);
      if (!existsSync(to) || statSync(to).size !== statSync(from).size || !readFileSync(to).equals(readFileSync(from))) copyFileSync(from, to);
    }
    // The cached prefix keeps the Windows user's profile: start from a user who never logged in.
    for (const d of ['.tsh', '.ssh']) rmSync(join(wine.profileDir, d), { recursive: true, force: true });

    // The cluster: CA and node made by the Linux tctl, the server is the Linux `jumpgate start`.
    const dir = join(tmp.dir, 'cluster');
    mkdirSync(dir);
    webPort = await freePort();
    const sshPort = await freePort();
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: 'wine-secret', redirectUris: [`https://127.0.0.1:${webPort}/v1/login/oidc/callback`], accounts: DEMO_ACCOUNTS });
    // data_dir is relative (to the config's directory): the same file serves the Linux server and tctl.exe (Z:\...).
    const yaml = (nodePort: number) =>
      [
        'cluster_name: wine.test',
        'data_dir: ./data',
        'proxy:',
        `  web_listen_addr: 127.0.0.1:${webPort}`,
        `  ssh_listen_addr: 127.0.0.1:${sshPort}`,
        'auth:',
        '  oidc:',
        `    issuer: ${idp!.issuer}`,
        '    client_id: jumpgate',
        '    client_secret: wine-secret',
        '    scopes: [openid, email, profile]',
        '    username_claim: preferred_username',
        '    claims_to_roles:',
        '      - { claim: groups, value: admins, roles: [admin] }',
        'roles:',
        '  admin:',
        '    logins: ["{{username}}", root]',
        '    node_labels: { env: test }',
        'nodes:',
        `  - { name: node1, addr: "127.0.0.1:${nodePort}", labels: { env: test } }`,
        '',
      ].join('\n');
    const pre = join(dir, 'jumpgate.yaml');
    writeFileSync(pre, yaml(22));
    const hostKey = join(dir, 'node_host_key');
    let r = await runProgram('tctl', ['--config', pre, 'auth', 'sign', '--host=node1,localhost,127.0.0.1', '--format=openssh', `--out=${hostKey}`]);
    assert.equal(r.code, 0, r.stderr);
    r = await runProgram('tctl', ['--config', pre, 'auth', 'export', '--type=user']);
    assert.equal(r.code, 0, r.stderr);
    writeFileSync(join(dir, 'user_ca.pub'), r.stdout);
    node = await startSshd({ dir, hostKey, hostCertificate: `${hostKey}-cert.pub`, trustedUserCaKeys: join(dir, 'user_ca.pub') });
    cluster = await startCluster(dir, yaml(node.port));
    browser = await launchBrowser();
    step(`cluster up: jumpgate web=${cluster.webPort} ssh=${cluster.sshPort}, node1 sshd on ${node.port}, IdP ${idp.issuer}`);
  });

  after(async () => {
    // Wine first: the tsh.exe that CreateProcessW started still holds a session through the proxy.
    if (wine) {
      await wine.stop();
      for (const d of ['.tsh', '.ssh']) rmSync(join(wine.profileDir, d), { recursive: true, force: true });
    }
    await browser?.close();
    await cluster?.stop();
    await Promise.all([node?.stop(), idp?.close()]);
    tmp.cleanup();
  });

  test('tsh.exe login: browser sign-in through the IdP; the file key store under %USERPROFILE% with a notice that is true on Windows', async () => {
    const t0 = Date.now();
    const p = wine.start(TSH, ['login', `--proxy=127.0.0.1:${webPort}`, '--insecure', '--browser=none']);
    const url = await waitFor(p.stderr, /^(http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32})\r?$/m, 'the login URL from tsh.exe login', 180_000);
    const page = await loginInBrowser(browser!, { url: url[1]!, login: 'alice' });
    assert.match(page, /You are logged in/);
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([p.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 120_000)))]);
    clearTimeout(timer);
    const out = { code: code === 'timeout' ? null : code, stdout: p.stdout(), stderr: p.stderr() };
    if (code === 'timeout') p.kill();
    assert.equal(out.code, 0, shown(out));
    assert.match(out.stderr, /^Logged in to wine\.test as alice \(roles: admin\)\.\r?$/m, shown(out));
    // Wine 8 cannot load the keychain addon (no bcryptprimitives.dll): the file store, and a notice that says what protects it on Windows.
    assert.match(
      out.stderr,
      /^no OS keychain available: the Windows Credential Manager is not usable; keeping the private key in %USERPROFILE%\\\.tsh\\keys\\… \(readable by your account, SYSTEM and Administrators: the ACL of your user profile directory\); --debug says why\r?$/m,
      shown(out),
    );
    // No agent pipe under Wine: the note names the Windows ssh config path, not ~/.ssh/config or eval "$(ssh-agent)".
    assert.match(out.stderr, /^note: the certificate is not in an ssh-agent \(.*openssh-ssh-agent.*\); plain ssh uses the key file named in %USERPROFILE%\\\.ssh\\config instead\.\r?$/m, shown(out));
    assert.doesNotMatch(out.stderr, /0600|0700|chmod|~\/|eval "\$\(ssh-agent\)"|Secret Service|D-Bus/, shown(out));
    assert.match(readFileSync(join(wine.profileDir, '.tsh', 'keys', '127.0.0.1', 'alice'), 'utf8'), /^-----BEGIN OPENSSH PRIVATE KEY-----/);
    assert.ok(existsSync(join(wine.profileDir, '.ssh', 'config')), 'the managed block went to %USERPROFILE%\\.ssh\\config');
    step(`login: exit 0 in ${((Date.now() - t0) / 1000).toFixed(1)} s; file key store under %USERPROFILE%\\.tsh; notice names the Credential Manager and the profile ACL`);
  });

  test('tsh.exe status and tsh.exe ls read the profile from %USERPROFILE%\\.tsh and reach the proxy', async () => {
    const status = await wine.run(TSH, ['status', '--format=json']);
    assert.equal(status.code, 0, shown(status));
    const s = JSON.parse(status.stdout) as { current: string; profiles: Array<{ user: string; logins: string[]; roles: string[]; valid: boolean }> };
    assert.equal(s.current, '127.0.0.1');
    assert.deepEqual({ user: s.profiles[0]!.user, valid: s.profiles[0]!.valid, roles: s.profiles[0]!.roles }, { user: 'alice', valid: true, roles: ['admin'] });
    assert.deepEqual([...s.profiles[0]!.logins].sort(), ['alice', 'root']);
    step(`status: exit 0, alice, logins ${s.profiles[0]!.logins.join(',')}, valid`);

    const ls = await wine.run(TSH, ['ls', '--format=json']);
    assert.equal(ls.code, 0, shown(ls));
    const nodes = JSON.parse(ls.stdout) as Array<{ name: string }>;
    assert.deepEqual(nodes.map((n) => n.name), ['node1']);
    step('ls: exit 0, node1');
  });

  test('tsh.exe config: Windows paths with forward slashes, the program double-quoted for its space, a command line CreateProcessW accepts', async () => {
    const r = await wine.run(TSH, ['config']);
    assert.equal(r.code, 0, shown(r));
    sshConfigBlock = r.stdout;
    const profile = `C:/users/${wine.profileDir.split('/').pop()}`;
    const proxyCommand = `"${TSH}" proxy ssh --relogin=never --tsh-home=${profile}/.tsh --proxy=127.0.0.1:${webPort} %r@%h:%p`;
    assert.ok(sshConfigBlock.includes(`    ProxyCommand ${proxyCommand}\n`), sshConfigBlock);
    assert.ok(sshConfigBlock.includes(`    UserKnownHostsFile "${profile}/.tsh/known_hosts"\n`), sshConfigBlock);
    assert.ok(sshConfigBlock.includes(`    IdentityFile "${profile}/.tsh/keys/127.0.0.1/alice"\n`), sshConfigBlock);
    assert.ok(sshConfigBlock.includes(`    CertificateFile "${profile}/.tsh/keys/127.0.0.1/alice-cert.pub"\n`), sshConfigBlock);
    assert.doesNotMatch(sshConfigBlock, /\\|'/, 'no backslash (Git Bash ssh eats them) and no POSIX single quotes');
    assert.ok(readFileSync(join(wine.profileDir, '.ssh', 'config'), 'utf8').replace(/\r\n/g, '\n').includes(sshConfigBlock), 'login wrote the same block');
    step(`config: ProxyCommand ${proxyCommand}`);

    // What Windows' OpenSSH does with it for `ssh root@node1`: expand the tokens, build the command line, CreateProcessW.
    const commandLine = win32OpenSshProxyCommandLine(proxyCommand, { host: 'node1', port: 22, user: 'root' });
    assert.equal(commandLine, `"${TSH}" proxy ssh --relogin=never --tsh-home=${profile}/.tsh --proxy=127.0.0.1:${webPort} root@node1:22`);
    const before = cluster!.audit().length;
    const started = await wine.createProcess(commandLine);
    assert.deepEqual(started, { ok: true }, `CreateProcessW refused ${commandLine}`);
    // The program it started is tsh.exe with the right arguments: the proxy opens a session to node1 for it.
    const deadline = Date.now() + 60_000;
    let session: Record<string, unknown> | undefined;
    while (!(session = cluster!.audit().slice(before).find((e) => e['event'] === 'session.start'))) {
      assert.ok(Date.now() < deadline, `no session.start after CreateProcessW(${commandLine}):\n${cluster!.log()}`);
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.deepEqual({ user: session['user'], login: session['login'], node: session['node'] }, { user: 'alice', login: 'root', node: 'node1' });
    step(`CreateProcessW("${commandLine.replace(/"/g, '\\"')}") started tsh.exe; the proxy audited session.start alice→root@node1`);

    // The check can fail: OpenSSH for Windows 7.7 wrapped a quoted program in a second pair of quotes, and CreateProcessW refuses that (error 87).
    const refused = await wine.createProcess(`"${commandLine}"`);
    assert.equal(refused.ok, false);
    assert.match((refused as { error: string }).error, /^refused 0x80070057/);
    step('CreateProcessW refuses the doubly quoted form of OpenSSH 7.7 (0x80070057, error 87), as on Windows');
  });

  test("tsh.exe ssh node1 'exit 7' exits 7", async () => {
    const r = await wine.run(TSH, ['ssh', 'node1', 'exit 7']);
    assert.equal(r.code, 7, shown(r));
    await node!.waitForLog(/Accepted publickey for root from 127\.0\.0\.1 port \d+ ssh2: ED25519-CERT/);
    step("ssh node1 'exit 7': exit 7 (as root, the local Windows user's name)");
  });

  test('tctl.exe auth export gives the same CA lines as the Linux tctl', async () => {
    const config = wine.windowsPath(cluster!.configFile);
    for (const type of ['user', 'host'] as const) {
      const win = await wine.run(TCTL, ['--config', config, 'auth', 'export', `--type=${type}`]);
      assert.equal(win.code, 0, shown(win));
      const linux = await runProgram('tctl', ['--config', cluster!.configFile, 'auth', 'export', `--type=${type}`]);
      assert.equal(linux.code, 0, linux.stderr);
      assert.equal(win.stdout.replace(/\r\n/g, '\n'), linux.stdout);
      assert.match(win.stdout, type === 'user' ? /^ssh-ed25519 AAAA/ : /^@cert-authority \* ssh-ed25519 AAAA/);
    }
    const version = await wine.run(TCTL, ['version']);
    assert.equal(version.stdout.trim(), `tctl ${VERSION}`);
    step('tctl.exe auth export --type=user and --type=host: the same lines as tctl on Linux');
  });

  test('tsh.exe logout removes the key; tsh.exe status then exits 4', async () => {
    const r = await wine.run(TSH, ['logout']);
    assert.equal(r.code, 0, shown(r));
    assert.match(r.stderr, /^Logged out alice from 127\.0\.0\.1\.\r?$/m);
    assert.equal(existsSync(join(wine.profileDir, '.tsh', 'keys', '127.0.0.1', 'alice')), false, 'the key file is gone');
    const status = await wine.run(TSH, ['status']);
    assert.equal(status.code, 4, shown(status));
    step('logout: exit 0, key removed; status: exit 4');
  });
});
