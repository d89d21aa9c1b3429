/**
 * Faults with real processes: `kill -9` of `jumpgate start` in the middle of
 * a login, of many concurrent certificate issuances and of a busy SSH
 * session; two `tsh login` at once on one TSH_HOME; a full disk under
 * TSH_HOME. After each: the CA is the same key, the audit log parses line by
 * line and holds every certificate a client received, clients get a clear
 * error and can log in again, the user's files are whole.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { loadCredentials } from '../../src/client/credentials.js';
import { FileStore } from '../../src/client/keystore.js';
import { TshPaths } from '../../src/client/paths.js';
import { ProfileStore } from '../../src/client/profile.js';
import { openDirState } from '../helpers/runtime.js';
import { fingerprintSha256 } from '../../src/sshcert/index.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { browserlessLogin, headlessLogin, loopbackDispatcher, startHeadlessLogin, startTshLogin, tshEnv, walkLogin, type TshLoginRun } from '../helpers/headless-login.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { freePort } from '../helpers/sshd.js';
import { fakeLogin } from '../helpers/tsh-home.js';
import { builtProgram, requireTool, run, tempDir } from '../helpers/tools.js';

const SECRET = 'faults-secret';

function clusterYaml(webPort: number, sshPort: number, issuer: string): string {
  return `cluster_name: faults.test
data_dir: ./data
proxy:
  web_listen_addr: 127.0.0.1:${webPort}
  ssh_listen_addr: 127.0.0.1:${sshPort}
auth:
  oidc:
    issuer: ${issuer}
    client_id: jumpgate
    client_secret: ${SECRET}
    claims_to_roles: [{ claim: email_verified, value: true, roles: [user] }]
roles:
  user: { logins: ["{{username}}"], node_labels: { "*": "*" } }
`;
}

/** Fingerprints of every trusted key of both CAs, read from the data directory. */
async function caFingerprints(dataDir: string): Promise<string[]> {
  const state = await openDirState(dataDir);
  await state.close();
  return (['user', 'host'] as const).flatMap((t) => state.ca.get(t).trusted.map((k) => `${t} ${fingerprintSha256(k.publicKey.blob)}`));
}

/** Every audit line parses on its own and the file ends with a newline: no torn write. */
function auditIntact(dataDir: string): Array<Record<string, unknown>> {
  const text = readFileSync(join(dataDir, 'audit.log'), 'utf8');
  assert.ok(text.endsWith('\n'), 'the audit log ends with a whole line');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line, i) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch {
        assert.fail(`audit line ${i + 1} is torn: ${JSON.stringify(line.slice(0, 200))}`);
      }
    });
}

async function kill9(c: Cluster): Promise<void> {
  process.kill(c.pid, 'SIGKILL');
  assert.equal(await c.exited, 'SIGKILL');
}

/** `tsh login --browser=none` in `home`; `url` resolves with the URL it prints for the browser. */
const tshLogin = (home: string, webPort: number): TshLoginRun => startTshLogin({ proxy: `127.0.0.1:${webPort}`, env: tshEnv(home), args: ['--keystore=file'] });

/** The user's login state as every tsh command reads it (profile + key + certificate, key matching the certificate). */
async function credentialsOf(home: string) {
  const paths = new TshPaths({ env: { TSH_HOME: join(home, '.tsh') }, homedir: home, platform: process.platform });
  return loadCredentials({ store: new ProfileStore(paths), keystore: async () => new FileStore(paths), now: new Date() });
}

describe('faults: kill -9, concurrent logins, a full disk (real jumpgate, dev IdP, tsh)', () => {
  const tmp = tempDir('faults');
  let idp: DevIdp;
  let cluster: Cluster;
  let webPort: number;
  let yaml: string;
  const insecure = loopbackDispatcher(20);

  before(async () => {
    builtProgram('tsh');
    const sshPort = await freePort();
    webPort = await freePort();
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: SECRET, redirectUris: [`https://127.0.0.1:${webPort}/v1/login/oidc/callback`], accounts: DEMO_ACCOUNTS });
    yaml = clusterYaml(webPort, sshPort, idp.issuer);
    cluster = await startCluster(tmp.dir, yaml);
  });

  after(async () => {
    await cluster?.stop();
    await idp?.close();
    await insecure.close();
    tmp.cleanup();
  });

  const restart = async () => {
    cluster = await startCluster(tmp.dir, yaml);
  };

  test('kill -9 between login start and the callback: the login is void, the browser is told to start again, tsh can log in again', { timeout: 60_000 }, async () => {
    const before = await caFingerprints(cluster.dataDir);
    const home = join(tmp.dir, 'home-interrupted');
    mkdirSync(home);
    const tsh = tshLogin(home, webPort);
    const atProxy = (u: URL) => u.pathname === '/v1/login/oidc/callback';
    // The person signs in at the IdP; the IdP is about to send the browser back to the proxy.
    const interrupted = await browserlessLogin(await tsh.url, insecure, 'alice', atProxy);
    const headless = await startHeadlessLogin(webPort, insecure);
    const headlessAt = await walkLogin(headless.loginUrl, { dispatcher: insecure, stopAt: atProxy });
    await kill9(cluster);
    await restart();
    assert.deepEqual(await caFingerprints(cluster.dataDir), before, 'the same CA keys after the restart');
    for (const at of [interrupted.url, headlessAt.url]) {
      const page = await walkLogin(at, { dispatcher: insecure });
      assert.equal(page.status, 400);
      assert.match(page.text ?? '', /This login link is no longer valid.*Run tsh login again to start a new login/s);
    }
    tsh.child.kill('SIGTERM');
    await tsh.done;
    const events = auditIntact(cluster.dataDir);
    assert.ok(!events.some((e) => e['event'] === 'cert.issued' && e['cert_type'] === 'user'), 'no certificate for the interrupted logins');
    const again = tshLogin(home, webPort);
    const end = await browserlessLogin(await again.url, insecure);
    assert.match(end.text ?? '', /You are logged in/);
    assert.equal((await again.done).code, 0);
    assert.equal((await credentialsOf(home)).profile.username, 'alice');
  });

  test('kill -9 during many concurrent issuances: every certificate a client received is in the audit log, no line is torn', { timeout: 90_000 }, async () => {
    const before = await caFingerprints(cluster.dataDir);
    const received: bigint[] = [];
    const errors: string[] = [];
    let stop = false;
    const dispatchers = Array.from({ length: 8 }, (_, i) => loopbackDispatcher(40 + i));
    const workers = dispatchers.map(async (d) => {
      while (!stop) {
        try {
          received.push((await headlessLogin(webPort, d)).serial);
        } catch (err) {
          errors.push(String((err as Error & { code?: string }).code ?? (err as Error).message));
          return;
        }
      }
    });
    while (received.length < 24) {
      assert.ok(errors.length < dispatchers.length, `every worker failed before the kill: ${errors.join('; ')}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await kill9(cluster);
    stop = true;
    await Promise.all(workers);
    await Promise.all(dispatchers.map((d) => d.close()));
    assert.ok(errors.length > 0, 'logins were in flight when the server died');
    for (const e of errors) assert.match(e, /ECONNRESET|ECONNREFUSED|UND_ERR_SOCKET|other side closed|socket hang up|UND_ERR_CLOSED/, 'in-flight logins fail as network errors');
    const issued = new Set(auditIntact(cluster.dataDir).filter((e) => e['event'] === 'cert.issued').map((e) => String(e['serial'])));
    const missing = received.filter((s) => !issued.has(s.toString()));
    assert.deepEqual(missing, [], `each of the ${received.length} certificates clients received was audited before they got it`);

    // While it is down, tsh says so; after the restart, logins work with the same CA.
    const home = join(tmp.dir, 'home-down');
    mkdirSync(home);
    const down = tshLogin(home, webPort);
    const r = await down.done;
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`nothing is listening at 127\\.0\\.0\\.1:${webPort} \\(connection refused\\)`));
    await restart();
    assert.deepEqual(await caFingerprints(cluster.dataDir), before);
    const after = await headlessLogin(webPort, insecure);
    assert.ok(auditIntact(cluster.dataDir).some((e) => e['event'] === 'cert.issued' && e['serial'] === after.serial.toString()));
  });

  test('two tsh login at once on one TSH_HOME leave one consistent profile: the key matches the certificate', { timeout: 60_000 }, async () => {
    const home = join(tmp.dir, 'home-twice');
    mkdirSync(home);
    const a = tshLogin(home, webPort);
    const b = tshLogin(home, webPort);
    const [ua, ub] = await Promise.all([a.url, b.url]);
    const pages = await Promise.all([browserlessLogin(ua, insecure, 'alice'), browserlessLogin(ub, insecure, 'bob')]);
    for (const p of pages) assert.match(p.text ?? '', /You are logged in/);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    const creds = await credentialsOf(home); // throws CERT_KEY_MISMATCH if the writes interleaved
    assert.ok(['alice', 'bob'].includes(creds.profile.username));
    assert.equal(creds.cert.keyId, creds.profile.username, 'the profile names the user the certificate was issued to');
    const config = readFileSync(join(home, '.ssh', 'config'), 'utf8');
    assert.equal(config.match(/^# BEGIN Jumpgate /gm)?.length ?? 0, 1, `one managed block:\n${config}`);
    const status = await run(process.execPath, [builtProgram('tsh'), 'status'], { env: { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh') } });
    assert.equal(status.code, 0, status.stderr);
  });

  test('a full disk under TSH_HOME fails the login with DISK_FULL and leaves the previous login intact', { timeout: 90_000 }, async (t) => {
    assert.equal(process.getuid?.(), 0, 'this test mounts a tmpfs: run it as root (CI does)');
    const home = join(tmp.dir, 'home-full');
    mkdirSync(home);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', home]);
    t.after(() => execFileSync('umount', ['-l', home]));
    const first = tshLogin(home, webPort);
    await browserlessLogin(await first.url, insecure);
    assert.equal((await first.done).code, 0);
    const before = await credentialsOf(home);
    const files = (dir: string): Record<string, string> =>
      Object.fromEntries(
        readdirSync(dir, { recursive: true, withFileTypes: true })
          .filter((d) => d.isFile())
          .map((d) => [join(d.parentPath, d.name), readFileSync(join(d.parentPath, d.name), 'utf8')]),
      );
    const snapshot = files(home);
    // Fill the file system to the last byte.
    const filler = join(home, 'filler');
    for (const size of [4096, 1]) {
      try {
        for (;;) writeFileSync(filler, Buffer.alloc(size), { flag: 'a' });
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      }
    }
    const second = tshLogin(home, webPort);
    await browserlessLogin(await second.url, insecure, 'bob');
    const r = await second.done;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the disk is full; the previous file is unchanged/);
    const now = files(home);
    delete now[filler];
    assert.deepEqual(now, snapshot, 'every file under HOME is as the first login left it (and no temp file is left)');
    const still = await credentialsOf(home);
    assert.equal(still.certLine, before.certLine);
    rmSync(filler);
    const third = tshLogin(home, webPort);
    await browserlessLogin(await third.url, insecure, 'bob');
    assert.equal((await third.done).code, 0);
    assert.equal((await credentialsOf(home)).profile.username, 'bob');
  });
});

describe('faults: kill -9 during a busy SSH session (jumpgate + OpenSSH node)', () => {
  const tmp = tempDir('faults-ssh');
  let pc: ProxyCluster;
  let restarted: Cluster | undefined;

  before(async () => {
    requireTool('ssh', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    pc = await startProxyCluster(tmp.dir, { clusterName: 'faults-ssh.test' });
  });
  after(async () => {
    await restarted?.stop();
    await pc?.stop();
    tmp.cleanup();
  });

  test('the session ends with an error at once, the CA survives, and a new session works after the restart', { timeout: 90_000 }, async () => {
    const user = await fakeLogin({ config: pc.config, home: join(tmp.dir, 'home'), username: 'root', roles: ['user'] });
    const before = await caFingerprints(pc.dataDir);
    const ssh = spawn('ssh', ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', 'node1', 'cat /dev/zero'], { env: user.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let bytes = 0;
    let stderr = '';
    ssh.stdout.on('data', (b: Buffer) => (bytes += b.length));
    ssh.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((r) => ssh.on('exit', (code) => r(code)));
    const deadline = Date.now() + 20_000;
    while (bytes < 32 * 1024 * 1024) {
      assert.ok(Date.now() < deadline && ssh.exitCode === null, `the session never got busy (${bytes} bytes): ${stderr}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    process.kill(pc.pid, 'SIGKILL');
    assert.equal(await pc.exited, 'SIGKILL');
    const t0 = Date.now();
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
    if (code === 'hung') ssh.kill('SIGKILL');
    assert.notEqual(code, 'hung', 'ssh noticed the dead proxy');
    assert.equal(code, 255, `ssh exits 255 (connection lost) after ${Date.now() - t0} ms: ${stderr}`);
    const events = auditIntact(pc.dataDir);
    assert.ok(events.some((e) => e['event'] === 'session.start'), 'the session start was audited before the kill');

    restarted = await startCluster(pc.dir, readFileSync(pc.configFile, 'utf8'));
    assert.deepEqual(await caFingerprints(pc.dataDir), before);
    const again = await run('ssh', ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', 'node1', 'echo still-here'], { env: user.env, timeoutMs: 30_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.trim(), 'still-here');
    assert.ok(existsSync(user.paths.knownHosts()));
  });
});
