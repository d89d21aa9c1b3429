/**
 * The single executables (`npm run build:bin`, pkg.config.json), as users get
 * them: the linux-x64 tsh, tctl and jumpgate run with no Node.js source in
 * sight — versions, `tsh config`, and a whole login + ssh round trip where
 * every Jumpgate process is an executable: tctl makes the node's host
 * certificate, `jumpgate start` serves, `tsh login` goes through the
 * development IdP in headless Chromium and keeps the key in a real Secret
 * Service (gnome-keyring) through the addon the executable carries, then
 * plain OpenSSH (ProxyCommand = the executable) and `tsh ssh` reach a private
 * sshd. The other platforms' tsh executables are built too and checked by
 * their headers (ELF, Mach-O, PE), their fuse, their script and their
 * platform's keychain addon.
 *
 * The build reuses up-to-date executables (scripts/build-bin.mjs): a few
 * seconds when nothing changed, about a minute from a cold cache.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { loadServerConfig } from '../../src/config/index.js';
import { VERSION } from '../../src/version.js';
import { launchBrowser, loginInBrowser } from '../helpers/browser.js';
import { startSshAgent, type SshAgent } from '../helpers/ssh-agent.js';
import { freePort, startSshd, type SshdNode } from '../helpers/sshd.js';
import { fakeLogin } from '../helpers/tsh-home.js';
import { REPO, requireTool, run, tempDir, type RunResult } from '../helpers/tools.js';
import { requireKeyringTools } from '../client/keyring-session.js';

const BIN = join(REPO, 'dist', 'bin');
/** Node's SeaFlags (src/node_sea.h): the blob's second uint32 (after the magic 0x143da20). */
const SEA_FLAG_USE_CODE_CACHE = 1 << 2;
const exe = (program: 'tsh' | 'tctl' | 'jumpgate') => join(BIN, 'linux-x64', program);
const pkgConfig = JSON.parse(readFileSync(join(REPO, 'pkg.config.json'), 'utf8')) as {
  targets: Record<string, { node: string; keyring: string; format: string; arch: string; suffix?: string }>;
};

/** Runs scripts/build-bin.mjs; fails with everything it printed. */
async function buildBin(args: string[]): Promise<string> {
  const r = await run(process.execPath, [join(REPO, 'scripts', 'build-bin.mjs'), ...args], { cwd: REPO, timeoutMs: 600_000 });
  assert.equal(r.code, 0, `build-bin ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stderr;
}

/** Waits until `text()` matches, or fails showing it. */
async function waitFor(text: () => string, re: RegExp, what: string, child: ChildProcess, timeoutMs = 20_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = re.exec(text());
    if (m) return m;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${what} never came (exit ${child.exitCode}):\n${text()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('single executables (npm run build:bin): the linux-x64 programs without Node, and every platform by its headers', () => {
  const tmp = tempDir('sea-e2e');
  let built: string[] = [];
  let idp: DevIdp | undefined;
  let node: SshdNode | undefined;
  let server: ChildProcess | undefined;
  let serverLog = '';
  let agent: SshAgent | undefined;
  let browser: Browser | undefined;
  let configFile = '';
  let webPort = 0;
  let buildSeconds = 0;

  before(async () => {
    requireTool('ssh', 'apt-get install -y openssh-client');
    requireKeyringTools();
    const t0 = Date.now();
    // tsh for every target (header checks), tctl and jumpgate for linux-x64 (run below).
    built = [await buildBin(['--program=tsh']), await buildBin(['--target=linux-x64', '--program=tctl,jumpgate'])];
    buildSeconds = (Date.now() - t0) / 1000;
    process.stdout.write(`# build:bin for the test took ${buildSeconds.toFixed(1)} s\n`); // a diagnostic, not a check
  });

  after(async () => {
    await browser?.close();
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
    await Promise.all([node?.stop(), idp?.close(), agent?.stop()]);
    tmp.cleanup();
  });

  test('the executables print their versions, and no Node warning', async () => {
    for (const program of ['tsh', 'tctl', 'jumpgate'] as const) {
      for (const args of [['version'], ['--version']]) {
        const r = await run(exe(program), args);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `${program} ${VERSION}\n`);
        assert.equal(r.stderr, '', 'nothing on stderr (no experimental-feature or require() warnings)');
      }
    }
  });

  test('a closed stdout ends the executables quietly (141, as git and gh), not with an EPIPE stack trace', async () => {
    for (const [program, args] of [['tsh', ['--help']], ['tsh', ['version']], ['tctl', ['--help']], ['jumpgate', ['configure']]] as const) {
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(exe(program), [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        child.stdout.destroy(); // the reader (head -1) is gone
        let stderr = '';
        child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        child.on('close', (code) => resolve({ code, stderr }));
      });
      assert.equal(r.code, 141, `${program} ${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr, '', `${program} ${args.join(' ')}`);
    }
    const piped = await run('sh', ['-c', `'${exe('tsh')}' --help | head -1`]);
    assert.equal(piped.stdout, 'Usage: tsh [options] [command]\n');
    assert.equal(piped.stderr, '');
  });

  test('every target has a tsh whose headers, SEA fuse, script and keychain addon are its own; SHA256SUMS matches', () => {
    const sums = readFileSync(join(BIN, 'SHA256SUMS'), 'utf8');
    const seen: string[] = [];
    for (const [target, t] of Object.entries(pkgConfig.targets)) {
      const file = `${target}/tsh${t.suffix ?? ''}`;
      if (!sums.includes(`  ${file}\n`)) {
        // A target the registry has no Node build for is reported by the build, loudly.
        assert.match(built[0]!, new RegExp(`NOT BUILT[\\s\\S]*${target}: ${t.node}@\\S+ is not on the npm registry`), `${file} is neither built nor reported missing`);
        continue;
      }
      const b = readFileSync(join(BIN, file));
      const h = headers(b);
      assert.deepEqual({ format: h.format, arch: h.arch }, { format: t.format, arch: t.arch }, file);
      assert.ok(b.includes('NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2:1'), `${file}: the SEA fuse is set`);
      assert.ok(b.includes('Jumpgate client: log in once a day through single sign-on'), `${file}: carries the tsh script`);
      const addon = readFileSync(join(REPO, 'dist', '.node-cache', `${t.keyring.replace('/', '+')}@${keyringVersion()}`, addonName(t.keyring)));
      assert.equal(headers(addon).format, t.format, `${file}: the cached keychain addon is a ${t.format} file`);
      assert.ok(b.includes(addon), `${file}: carries its platform's keychain addon`);
      // Nothing stale that would break re-signing: postject drops the Mach-O signature, the build clears the PE certificate entry.
      assert.equal(h.signed, false, `${file}: no stale code signature`);
      const sha = /^([0-9a-f]{64}) {2}/.exec(sums.split('\n').find((l) => l.endsWith(`  ${file}`)) ?? '')?.[1];
      assert.equal(sha, sha256(b), `${file}: SHA256SUMS`);
      // V8's code cache (useCodeCache) only in this machine's own target's blob: Node's docs forbid it across platforms (build-bin.mjs codeCacheFor).
      const flags = readFileSync(join(REPO, 'dist', 'sea', target, 'tsh.blob')).readUInt32LE(4);
      assert.equal((flags & SEA_FLAG_USE_CODE_CACHE) !== 0, target === 'linux-x64', `${file}: blob flags ${flags.toString(2)}`);
      seen.push(target);
    }
    assert.ok(seen.includes('linux-x64') && seen.includes('win-x64') && seen.some((t) => t.startsWith('darwin-')), `built: ${seen.join(', ')}`);
    assert.match(built[0]!, /macOS: the darwin executables are UNSIGNED[\s\S]*codesign --sign - --force/);
    assert.match(built[0]!, /Windows: the \.exe files carry NO Authenticode signature/);
  });

  test('tsh config and tsh status from the executable read a TSH_HOME, and the ProxyCommand runs the executable itself', async () => {
    const dir = join(tmp.dir, 'fake');
    mkdirSync(dir);
    const file = join(dir, 'jumpgate.yaml');
    writeFileSync(
      file,
      ['cluster_name: sea.test', `data_dir: ${join(dir, 'data')}`, 'proxy:', '  web_listen_addr: 127.0.0.1:3080', '  ssh_listen_addr: 127.0.0.1:3023', 'roles:', '  user:', '    logins: ["{{username}}"]', '    node_labels: { env: test }', 'nodes:', '  - { name: node1, addr: "127.0.0.1:22", labels: { env: test } }', ''].join('\n'),
    );
    const user = await fakeLogin({ config: loadServerConfig(file), home: join(dir, 'home'), username: 'carol', roles: ['user'], sshConfig: false });
    const config = await run(exe('tsh'), ['config'], { env: user.env });
    assert.equal(config.code, 0, config.stderr);
    assert.ok(config.stdout.includes(`    ProxyCommand ${exe('tsh')} proxy ssh --relogin=never --tsh-home=${user.env['TSH_HOME']} --proxy=`), `the block runs the executable, not node:\n${config.stdout}`);
    assert.match(config.stdout, /^Match host node1,/m);
    const status = await run(exe('tsh'), ['status', '--format=json'], { env: user.env });
    assert.equal(status.code, 0, status.stderr);
    assert.equal((JSON.parse(status.stdout) as { profiles: { user: string }[] }).profiles[0]!.user, 'carol');
  });

  test('round trip with executables only: tctl signs the node, jumpgate serves, tsh logs in (key in gnome-keyring), plain ssh and tsh ssh reach the node', async () => {
    requireTool('sshd', 'apt-get install -y openssh-server');
    const dir = join(tmp.dir, 'cluster');
    mkdirSync(dir);
    const sshPort = await freePort();
    webPort = await freePort();
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: 'sea-secret', redirectUris: [`https://127.0.0.1:${webPort}/v1/login/oidc/callback`], accounts: DEMO_ACCOUNTS });
    const yaml = (nodePort: number) =>
      [
        'cluster_name: sea.test',
        `data_dir: ${join(dir, 'data')}`,
        'proxy:',
        `  web_listen_addr: 127.0.0.1:${webPort}`,
        `  ssh_listen_addr: 127.0.0.1:${sshPort}`,
        'auth:',
        '  oidc:',
        `    issuer: ${idp!.issuer}`,
        '    client_id: jumpgate',
        '    client_secret: sea-secret',
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
    configFile = join(dir, 'jumpgate.yaml');
    writeFileSync(configFile, yaml(22));

    // The node: its host certificate and the user CA from the tctl executable.
    const hostKey = join(dir, 'node_host_key');
    let r = await run(exe('tctl'), ['--config', configFile, 'auth', 'sign', '--host=node1,localhost,127.0.0.1', '--format=openssh', `--out=${hostKey}`]);
    assert.equal(r.code, 0, r.stderr);
    r = await run(exe('tctl'), ['--config', configFile, 'auth', 'export', '--type=user']);
    assert.equal(r.code, 0, r.stderr);
    const userCa = join(dir, 'user_ca.pub');
    writeFileSync(userCa, r.stdout);
    node = await startSshd({ dir, hostKey, hostCertificate: `${hostKey}-cert.pub`, trustedUserCaKeys: userCa });
    writeFileSync(configFile, yaml(node.port));

    server = spawn(exe('jumpgate'), ['start', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } });
    server.stdout!.on('data', (b: Buffer) => (serverLog += b.toString()));
    server.stderr!.on('data', (b: Buffer) => (serverLog += b.toString()));
    await waitFor(() => serverLog, new RegExp(`^ready web=${webPort} ssh=${sshPort}$`, 'm'), 'jumpgate start (executable): its ready line', server);

    agent = await startSshAgent(join(dir, 'agent.sock'));
    browser = await launchBrowser();

    // One D-Bus session with an unlocked gnome-keyring for every tsh step, like a desktop login.
    const home = join(dir, 'home');
    const runtime = join(dir, 'run');
    mkdirSync(home, { mode: 0o700 });
    mkdirSync(runtime, { mode: 0o700 });
    const script = [
      'set -e',
      'eval "$(printf pw | gnome-keyring-daemon --unlock --components=secrets)"',
      `"$TSH" login --proxy=127.0.0.1:${webPort} --insecure --browser=none --keystore=keychain`,
      'echo "== keychain: $(secret-tool lookup service jumpgate username 127.0.0.1/alice | head -1)"',
      'echo "== ssh: $(ssh -F "$HOME/.ssh/config" -o BatchMode=yes root@node1 \'echo $(id -un) via openssh\')"',
      'echo "== tsh ssh: $("$TSH" ssh root@node1 echo via tsh ssh)"',
      'echo "== status:"; "$TSH" status --format=json',
    ].join('\n');
    const session = spawn('dbus-run-session', ['--', 'bash', '-c', script], {
      cwd: dir,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, XDG_RUNTIME_DIR: runtime, TSH_HOME: join(home, '.tsh'), SSH_AUTH_SOCK: agent.sock, TSH: exe('tsh') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    session.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    session.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const done = new Promise<number | null>((resolve) => session.on('close', (code) => resolve(code)));
    try {
      const url = await waitFor(() => err, /^(http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32})$/m, 'the login URL from tsh login (executable)', session);
      const page = await loginInBrowser(browser, { url: url[1]!, login: 'alice' });
      assert.match(page, /You are logged in/);
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([done, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 60_000)))]);
      clearTimeout(timer);
      const shown = `--- stdout ---\n${out}\n--- stderr ---\n${err}\n--- jumpgate ---\n${serverLog}\n--- sshd ---\n${node.log().slice(-3000)}`;
      assert.equal(code, 0, shown);
      assert.match(err, /Logged in to sea\.test as alice/, shown);
      assert.doesNotMatch(err, /no OS keychain|did not load/, 'the keychain addon loaded from the executable');
      assert.match(out, /^== keychain: -----BEGIN OPENSSH PRIVATE KEY-----$/m, 'the private key is in the Secret Service');
      assert.match(out, /^== ssh: root via openssh$/m);
      assert.match(out, /^== tsh ssh: via tsh ssh$/m);
      const status = JSON.parse(out.slice(out.indexOf('== status:') + '== status:'.length)) as { profiles: { user: string; valid: boolean }[] };
      assert.equal(status.profiles[0]!.user, 'alice');
      const sshConfig = readFileSync(join(home, '.ssh', 'config'), 'utf8');
      assert.ok(sshConfig.includes(`    ProxyCommand ${exe('tsh')} proxy ssh `), `the login wrote a block that runs the executable:\n${sshConfig}`);
      await node.waitForLog(/Accepted publickey for root from 127\.0\.0\.1 port \d+ ssh2: ED25519-CERT/);
    } finally {
      if (session.exitCode === null) session.kill('SIGKILL');
    }
  });
});

function keyringVersion(): string {
  return (JSON.parse(readFileSync(join(REPO, 'node_modules', '@napi-rs', 'keyring', 'package.json'), 'utf8')) as { version: string }).version;
}

/** The addon file inside a @napi-rs/keyring-<platform> package: keyring.<platform>.node. */
function addonName(pkg: string): string {
  return `keyring.${pkg.replace('@napi-rs/keyring-', '')}.node`;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * Format and CPU from the headers alone, written out here rather than taken
 * from the build script so the test checks the build independently:
 * ELF (e_machine 62 x86-64, 183 aarch64), Mach-O 64 (magic 0xfeedfacf, CPU
 * type 0x01000007 x86_64, 0x0100000c arm64; LC_CODE_SIGNATURE = 0x1d), PE
 * ("MZ", e_lfanew → "PE\0\0", machine 0x8664; certificate table = data directory 4).
 */
function headers(b: Buffer): { format: string; arch: string; signed: boolean } {
  if (b.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
    return { format: 'elf', arch: ({ 62: 'x64', 183: 'arm64' } as Record<number, string>)[b.readUInt16LE(18)] ?? 'other', signed: false };
  }
  if (b.subarray(0, 4).equals(Buffer.from([0xcf, 0xfa, 0xed, 0xfe]))) {
    let signed = false;
    for (let i = 0, off = 32; i < b.readUInt32LE(16); i++, off += b.readUInt32LE(off + 4)) if (b.readUInt32LE(off) === 0x1d) signed = true;
    return { format: 'macho', arch: ({ 0x01000007: 'x64', 0x0100000c: 'arm64' } as Record<number, string>)[b.readUInt32LE(4)] ?? 'other', signed };
  }
  if (b.toString('latin1', 0, 2) === 'MZ') {
    const pe = b.readUInt32LE(0x3c);
    assert.equal(b.toString('latin1', pe, pe + 4), 'PE\0\0', 'a PE signature where e_lfanew points');
    const optional = pe + 24;
    const certEntry = optional + (b.readUInt16LE(optional) === 0x20b ? 112 : 96) + 4 * 8;
    return { format: 'pe', arch: b.readUInt16LE(pe + 4) === 0x8664 ? 'x64' : 'other', signed: b.readUInt32LE(certEntry + 4) !== 0 };
  }
  return { format: 'unknown', arch: 'unknown', signed: false };
}
