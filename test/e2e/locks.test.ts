/**
 * Locks end to end (issue 17): the real `jumpgate start`, `tctl lock` and
 * `tctl auth export --type=krl`, a private OpenSSH node, plain ssh through
 * the generated config (ProxyCommand tsh proxy ssh), logins through the real
 * oidc-provider walked over HTTP, `tsh logout --revoke`, a second private
 * sshd with `RevokedKeys`, and `ssh-keygen -Q`. Then two proxies on
 * PostgreSQL behind HAProxy: a lock added through tctl ends a session on the
 * proxy it did not go through.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { headlessLogin, loopbackDispatcher } from '../helpers/headless-login.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { freePort, startSshd, type SshdNode } from '../helpers/sshd.js';
import { builtProgram, requireTool, run, runProgram, tempDir, type RunResult } from '../helpers/tools.js';
import { startHaCluster, sshArgs, ROOT_ACCOUNT, type HaCluster } from '../helpers/ha-cluster.js';
import { parseKrl } from '../../src/sshcert/index.js';

const SECRET = 'locks-secret';
const MESSAGE = 'laptop reported stolen: call IT on 555-0100';

/** Polls an async condition every 200 ms until it holds or `ms` pass; fails naming `what`. */
async function eventually<T>(fn: () => Promise<T | undefined>, what: string, ms = 8_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A held plain-ssh session: runs `echo started; exec sleep 120` and resolves
 * once "started" arrives; `ended` resolves with the exit code, stderr and the
 * time it exited.
 */
async function heldSession(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ ended: Promise<{ code: number | null; stderr: string; at: number }>; kill(): void }> {
  const child = spawn(cmd, [...args, 'echo started; exec sleep 120'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const ended = new Promise<{ code: number | null; stderr: string; at: number }>((resolve) => child.on('close', (code) => resolve({ code, stderr: err, at: Date.now() })));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('started')) resolve();
    });
    void ended.then((r) => reject(new Error(`the session ended before it started (exit ${r.code}): ${r.stderr}`)));
  });
  return { ended, kill: () => child.kill('SIGKILL') };
}

describe('locks on one proxy (dir storage): sessions, ssh, logins, TTL, KRL on a direct sshd, tsh logout --revoke', () => {
  const tmp = tempDir('locks-e2e');
  const insecure = loopbackDispatcher(41);
  let idp: DevIdp;
  let cluster: ProxyCluster;
  let root: FakeLogin;
  let alice: FakeLogin;
  let ssh: string;
  let keygen: string;
  let direct: SshdNode | undefined;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    builtProgram('tctl');
    const webPort = await freePort();
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: SECRET,
      redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`],
      accounts: [...DEMO_ACCOUNTS, ROOT_ACCOUNT],
    });
    mkdirSync(join(tmp.dir, 'cluster'));
    cluster = await startProxyCluster(join(tmp.dir, 'cluster'), {
      webPort,
      oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: SECRET },
      // ops: another user (alice) with two logins on the node: root and nobody.
      rolesYaml: ['  ops:', '    logins: [root, nobody]', '    node_labels: { env: test }'],
    });
    root = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-root'), username: 'root', roles: ['user'] });
    alice = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-alice'), username: 'alice', roles: ['ops'] });
  });

  after(async () => {
    await Promise.all([cluster?.stop(), idp?.close(), direct?.stop(), insecure.close()]);
    tmp.cleanup();
  });

  const tctl = (args: string[]) => runProgram('tctl', ['--config', cluster.configFile, ...args], { timeoutMs: 20_000 });
  const sshAs = (who: FakeLogin, args: string[]): Promise<RunResult> => run(ssh, ['-F', who.sshConfigFile, '-o', 'BatchMode=yes', ...args], { env: who.env, timeoutMs: 30_000 });
  /**
   * A session that runs no login shell (root's ~/.bashrc costs seconds here):
   * the node's sftp subsystem with stdin closed starts and ends at once, exit 0.
   */
  const shortSsh = (who: FakeLogin, dest: string) => sshAs(who, ['-s', dest, 'sftp']);
  const events = (name: string) => cluster.audit().filter((e) => e['event'] === name);
  async function addLock(args: string[]): Promise<string> {
    const r = await tctl(['lock', 'add', ...args]);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    assert.match(id, /^[0-9a-f]{16}$/);
    return id;
  }
  async function rmLock(id: string): Promise<void> {
    const r = await tctl(['lock', 'rm', id]);
    assert.equal(r.code, 0, r.stderr);
  }
  /** ssh until it is refused with the lock's text (a lock reaches the proxy within 5 s). */
  const refusedSoon = (who: FakeLogin, dest: string, re: RegExp) =>
    eventually(async () => {
      const r = await shortSsh(who, dest);
      return r.code !== 0 && re.test(r.stderr) ? r : undefined;
    }, `ssh ${dest} refused with ${re}`);
  const worksSoon = (who: FakeLogin, dest: string, ms?: number) =>
    eventually(
      async () => {
        const r = await shortSsh(who, dest);
        return r.code === 0 ? r : undefined;
      },
      `ssh ${dest} working again`,
      ms,
    );

  test('a user lock ends the running ssh session within 5 s with its message, refuses the next ssh and the next login; removing it restores both', async () => {
    const session = await heldSession(ssh, ['-F', root.sshConfigFile, '-o', 'BatchMode=yes', 'node1'], root.env);
    try {
      const id = await addLock(['--user=root', `--message=${MESSAGE}`]);
      const locked = Date.now();
      const ended = await Promise.race([session.ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 8_000))]);
      assert.ok(ended, 'the running session was not ended within 8 s');
      assert.ok(ended.at - locked < 5_000, `the session ended ${ended.at - locked} ms after tctl lock add (must be under 5 s)`);
      assert.notEqual(ended.code, 0);
      assert.ok(ended.stderr.includes(MESSAGE), `the user sees the lock's message:\n${ended.stderr}`);

      await eventually(async () => (events('session.end').some((e) => e['reason'] === 'locked' && e['lock_id'] === id) ? true : undefined), 'session.end with reason locked');
      assert.equal(events('lock.created').filter((e) => e['lock_id'] === id && e['target'] === 'user' && e['target_value'] === 'root').length, 1);

      // The next ssh: refused at the proxy, the message on plain ssh's stderr.
      const next = await shortSsh(root, 'node1');
      assert.equal(next.code, 255);
      assert.ok(next.stderr.includes(MESSAGE), next.stderr);
      assert.match(next.stderr, new RegExp(`lock ${id}`));
      // The next login: refused before anything is signed.
      await assert.rejects(headlessLogin(cluster.webPort, insecure, 'root'), (err: Error) => /ACCESS_LOCKED/.test(err.message) && err.message.includes(MESSAGE));
      const issuedBefore = events('cert.issued').length;
      // Another user is not affected.
      assert.equal((await shortSsh(alice, 'root@node1')).code, 0);

      const ls = await tctl(['lock', 'ls', '--format=json']);
      assert.equal(ls.code, 0, ls.stderr);
      const listed = JSON.parse(ls.stdout) as Array<Record<string, string>>;
      assert.ok(listed.some((l) => l['id'] === id && l['target'] === 'user' && l['value'] === 'root' && l['message'] === MESSAGE));

      await rmLock(id);
      await worksSoon(root, 'node1');
      const again = await headlessLogin(cluster.webPort, insecure, 'root');
      assert.ok(again.certificate);
      assert.equal(events('cert.issued').length, issuedBefore + 1);
      assert.equal(events('lock.deleted').filter((e) => e['lock_id'] === id).length, 1);
      assert.equal((await tctl(['lock', 'rm', id])).code, 1, 'a removed lock cannot be removed twice');
    } finally {
      session.kill();
    }
  });

  test("a login-only lock refuses that login and leaves the user's other login working", async () => {
    const id = await addLock(['--login=nobody', '--message=no more nobody']);
    const r = await refusedSoon(alice, 'nobody@node1', /no more nobody/);
    assert.match(r.stderr, /login=nobody/);
    const other = await shortSsh(alice, 'root@node1');
    assert.equal(other.code, 0, other.stderr);
    await rmLock(id);
  });

  test('a lock with a TTL expires by itself, audited lock.expired once', async () => {
    // 12 s: long enough that a loaded machine's first refused ssh still falls inside it (one ssh can take seconds there).
    const id = await addLock(['--node=node1', '--ttl=12s', '--message=maintenance']);
    await refusedSoon(root, 'node1', /maintenance/);
    await worksSoon(root, 'node1', 30_000);
    await eventually(async () => (events('lock.expired').some((e) => e['lock_id'] === id) ? true : undefined), 'lock.expired');
    // Give the proxy more poll rounds: it must not audit the expiry twice.
    await new Promise((r) => setTimeout(r, 2_500));
    assert.equal(events('lock.expired').filter((e) => e['lock_id'] === id).length, 1);
    const ls = await tctl(['lock', 'ls', '--format=json']);
    assert.ok(!(JSON.parse(ls.stdout) as Array<{ id: string }>).some((l) => l.id === id), 'an expired lock is not listed');
  });

  test("tctl auth export --type=krl: a private sshd with RevokedKeys refuses the locked user's certificate on a direct connection and accepts another user's; ssh-keygen -Q agrees", async () => {
    const id = await addLock(['--user=root', '--message=krl test']);
    const krlFile = join(tmp.dir, 'revoked.krl');
    const exported = await tctl(['auth', 'export', '--type=krl', `--out=${krlFile}`]);
    assert.equal(exported.code, 0, exported.stderr);
    const krl = parseKrl(readFileSync(krlFile));
    assert.ok(krl.certificates.some((c) => c.keyIds.includes('root')), 'the user lock is a KEY_ID entry');
    assert.ok(krl.certificates.some((c) => c.serials.includes(root.cert.serial)), "and the user's recorded certificate is listed by serial");
    // stdout works too (not a terminal here).
    const piped = await tctl(['auth', 'export', '--type=krl']);
    assert.equal(piped.code, 0, piped.stderr);

    const rootCert = root.paths.certificate(root.profile.name, 'root');
    const aliceCert = alice.paths.certificate(alice.profile.name, 'alice');
    const q = async (cert: string) => (await run(keygen, ['-Q', '-f', krlFile, cert])).stdout.trim();
    assert.match(await q(rootCert), /: REVOKED$/);
    assert.match(await q(aliceCert), /: ok$/);

    const dir = join(tmp.dir, 'direct');
    mkdirSync(dir);
    direct = await startSshd({ dir, hostKey: cluster.hostKeyFile, hostCertificate: `${cluster.hostKeyFile}-cert.pub`, trustedUserCaKeys: cluster.userCaFile, extra: [`RevokedKeys ${krlFile}`] });
    const directSsh = (who: FakeLogin, user: string) =>
      run(
        ssh,
        [
          '-F', 'none', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes',
          '-i', who.paths.privateKey(who.profile.name, user), '-o', `CertificateFile=${who.paths.certificate(who.profile.name, user)}`,
          '-p', String(direct!.port), '-s', 'root@127.0.0.1', 'sftp',
        ],
        { env: who.env, timeoutMs: 20_000 },
      );
    const refused = await directSsh(root, 'root');
    assert.equal(refused.code, 255, refused.stdout);
    await direct.waitForLog(/revoked|REVOKED/i);
    const accepted = await directSsh(alice, 'alice');
    assert.equal(accepted.code, 0, accepted.stderr);
    await rmLock(id);
  });

  test('tsh logout --revoke locks the profile certificate: the old certificate, kept aside, is refused at the proxy and listed in the KRL', async () => {
    const erin = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-erin'), username: 'erin', roles: ['ops'] });
    const keptKey = join(tmp.dir, 'erin-key');
    copyFileSync(erin.paths.privateKey(erin.profile.name, 'erin'), keptKey);
    copyFileSync(erin.paths.certificate(erin.profile.name, 'erin'), `${keptKey}-cert.pub`);
    assert.equal((await shortSsh(erin, 'root@node1')).code, 0);

    const out = await runProgram('tsh', ['logout', '--revoke'], { env: erin.env, timeoutMs: 20_000 });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, new RegExp(`Revoked certificate ${erin.cert.serial} \\(lock [0-9a-f]{16}`));
    assert.match(out.stderr, /Logged out erin/);
    assert.equal(events('lock.created').filter((e) => e['target'] === 'cert' && e['target_value'] === erin.cert.serial.toString() && e['user'] === 'erin').length, 1);

    // Straight to the proxy's SSH port with the kept key and certificate: refused at authentication, with the lock's text.
    const viaProxy = await run(
      ssh,
      ['-F', 'none', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes', '-i', keptKey, '-p', String(cluster.sshPort), 'root@localhost', 'true'],
      { timeoutMs: 20_000 },
    );
    assert.equal(viaProxy.code, 255);
    assert.match(viaProxy.stderr, new RegExp(`access locked \\(cert=${erin.cert.serial}`));
    const krlFile = join(tmp.dir, 'revoked2.krl');
    assert.equal((await tctl(['auth', 'export', '--type=krl', `--out=${krlFile}`])).code, 0);
    assert.match((await run(keygen, ['-Q', '-f', krlFile, `${keptKey}-cert.pub`])).stdout, /: REVOKED$/m);
  });
});

describe('locks across two proxies on PostgreSQL', () => {
  const tmp = tempDir('locks-ha');
  let c: HaCluster;
  let ssh: string;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    c = await startHaCluster({ dir: tmp.dir, proxies: 2, storage: 'postgres', haproxy: true });
  });
  after(async () => {
    await c?.stop();
    tmp.cleanup();
  });

  test('a lock added through tctl on the shared store ends a session on the second proxy within 5 s, and new connections on the first are refused', async () => {
    // The session goes through proxy 2's own SSH port (ProxyJump), not HAProxy.
    const args = sshArgs(c, 'node1', [], c.jumpAlias(1));
    const session = await heldSession(ssh, args, process.env);
    try {
      const added = await c.tctl(['lock', 'add', '--user=root', '--message=ha lock']);
      assert.equal(added.code, 0, added.stderr);
      const locked = Date.now();
      const ended = await Promise.race([session.ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 8_000))]);
      assert.ok(ended, 'the session on the second proxy was not ended within 8 s');
      assert.ok(ended.at - locked < 5_000, `ended ${ended.at - locked} ms after the lock (must be under 5 s)`);
      // (This ssh_config says LogLevel ERROR, so ssh does not print the proxy's banner; the one-proxy test checks the text.)
      const first = await run(ssh, sshArgs(c, 'node1', ['true'], c.jumpAlias(0)), { timeoutMs: 20_000 });
      assert.equal(first.code, 255, first.stderr);
      assert.match(first.stderr, /Permission denied/);
      const id = added.stdout.trim();
      const removed = await c.tctl(['lock', 'rm', id]);
      assert.equal(removed.code, 0, removed.stderr);
    } finally {
      session.kill();
    }
  });
});
