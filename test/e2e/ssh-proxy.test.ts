/**
 * After a login, users reach nodes through the proxy: plain OpenSSH (ssh,
 * scp, rsync, ssh -J) with only the generated ~/.ssh/config block, and
 * `tsh ssh` (commands, exit status, a PTY driven by tmux). The real
 * `jumpgate start`, a private sshd node, the built tsh; the login itself is
 * replaced by fakeLogin (the same files, signed by the same issuer).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { builtProgram, echoesThrough, requireTool, run, tempDir, type RunResult, waitFor } from '../helpers/tools.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { startSshAgent } from '../helpers/ssh-agent.js';
import { freePort } from '../helpers/sshd.js';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';

const LOGIN = 'root'; // sshd as root logs in as anyone; the tests run as root in CI

describe('the SSH proxy end to end (jumpgate start + sshd + ssh/scp/rsync/tmux + tsh)', () => {
  const tmp = tempDir('ssh-proxy-e2e');
  let cluster: ProxyCluster;
  let user: FakeLogin;
  let expired: FakeLogin;
  let ssh: string;
  let scp: string;
  let rsync: string;
  let tmux: string;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    scp = requireTool('scp', 'apt-get install -y openssh-client');
    rsync = requireTool('rsync', 'apt-get install -y rsync');
    tmux = requireTool('tmux', 'apt-get install -y tmux');
    builtProgram('tsh');
    cluster = await startProxyCluster(tmp.dir);
    user = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-user'), username: LOGIN, roles: ['user'] });
    // Signed two hours ago for one hour: expired an hour ago.
    expired = await fakeLogin({
      config: cluster.config,
      home: join(tmp.dir, 'home-expired'),
      username: LOGIN,
      roles: ['user'],
      ttlSeconds: 3600,
      signedAt: new Date(Date.now() - 2 * 3600 * 1000),
    });
  });

  after(async () => {
    await cluster?.stop();
    tmp.cleanup();
  });

  /** Plain OpenSSH with nothing but the generated config file. */
  function sshWith(who: FakeLogin, args: string[], input?: string | Buffer): Promise<RunResult> {
    return run(ssh, ['-F', who.sshConfigFile, '-o', 'BatchMode=yes', ...args], { env: who.env, timeoutMs: 30_000, ...(input !== undefined ? { input } : {}) });
  }
  function tsh(who: FakeLogin, args: string[]): Promise<RunResult> {
    return run(process.execPath, [builtProgram('tsh'), ...args], { env: who.env, timeoutMs: 30_000 });
  }
  const events = (name: string) => cluster.audit().filter((e) => e['event'] === name);

  test('plain ssh reaches node1 with only the generated config, trusting only the host CA', async () => {
    const config = readFileSync(user.sshConfigFile, 'utf8');
    assert.match(config, /^ {4}StrictHostKeyChecking yes$/m);
    assert.match(config, /^ {4}ProxyCommand \S+ \S+\/bin\/tsh proxy ssh --relogin=never --tsh-home=\S+ --proxy=localhost:\d+ %r@%h:%p$/m);
    const knownHosts = readFileSync(user.paths.knownHosts(), 'utf8');
    assert.match(knownHosts, /^@cert-authority node1,\*\.e2e\.test,\[localhost\]:\d+ ssh-ed25519 \S+ jumpgate-cluster=e2e\.test$/m);

    const r = await sshWith(user, ['node1', 'id -un']);
    assert.equal(r.code, 0, `ssh failed:\n${r.stderr}\n--- server ---\n${cluster.log()}`);
    assert.equal(r.stdout.trim(), LOGIN);
    assert.equal(readFileSync(user.paths.knownHosts(), 'utf8'), knownHosts, 'ssh learned no host key (no trust on first use)');
    // The node authenticated the certificate again.
    await cluster.node.waitForLog(new RegExp(`Accepted publickey for ${LOGIN} from 127\\.0\\.0\\.1 port \\d+ ssh2: ED25519-CERT`));
  });

  test('scp of a 10 MB file there and back matches by checksum, and the session is audited with its bytes', async () => {
    const src = join(tmp.dir, 'ten-mb');
    const back = join(tmp.dir, 'ten-mb.back');
    const data = randomBytes(10 * 1024 * 1024);
    writeFileSync(src, data);
    const remote = join(tmp.dir, 'remote-dir');
    mkdirSync(remote);
    const opts = ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', '-q'];
    let r = await run(scp, [...opts, src, `node1:${remote}/copy`], { env: user.env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    r = await run(scp, [...opts, `node1:${remote}/copy`, back], { env: user.env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(readFileSync(back)), sha(data));

    const ends = events('session.end');
    assert.ok(ends.some((e) => (e['bytes_to_node'] as number) > 10_000_000), 'an upload session counted > 10 MB to the node');
    assert.ok(ends.some((e) => (e['bytes_from_node'] as number) > 10_000_000), 'a download session counted > 10 MB from the node');
    const start = events('session.start').at(-1)!;
    assert.equal(start['user'], LOGIN);
    assert.equal(start['login'], LOGIN);
    assert.equal(start['node'], 'node1');
    assert.match(String(start['client_addr']), /^127\.0\.0\.1:\d+$/);
    assert.ok(typeof ends.at(-1)!['duration_ms'] === 'number');
  });

  test('rsync -e ssh copies a tree through the proxy', async () => {
    const src = join(tmp.dir, 'tree');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'alpha\n');
    writeFileSync(join(src, 'sub', 'b.bin'), randomBytes(200_000));
    const dest = join(tmp.dir, 'tree-copy');
    const r = await run(rsync, ['-a', '-e', `${ssh} -F ${user.sshConfigFile} -o BatchMode=yes`, `${src}/`, `node1:${dest}/`], { env: user.env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(dest, 'a.txt'), 'utf8'), 'alpha\n');
    assert.deepEqual(readFileSync(join(dest, 'sub', 'b.bin')), readFileSync(join(src, 'sub', 'b.bin')));
  });

  test('ssh -J through the proxy works (direct-tcpip), the proxy presenting its own host certificate', async () => {
    const r = await sshWith(user, ['-J', `${LOGIN}@localhost:${cluster.sshPort}`, `${LOGIN}@node1`, 'echo jumped']);
    assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log()}`);
    assert.equal(r.stdout, 'jumped\n');
    assert.ok(events('session.start').some((e) => e['via'] === 'direct-tcpip'));
  });

  test("tsh ssh returns the remote command's exit status and keeps stdout and stderr apart", async () => {
    const r = await tsh(user, ['ssh', 'node1', 'echo to-out; echo to-err >&2; exit 7']);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, 'to-out\n');
    assert.match(r.stderr, /to-err/);
    assert.doesNotMatch(r.stdout, /to-err/);
    const killed = await tsh(user, ['ssh', `${LOGIN}@node1`, 'kill -TERM $$']);
    assert.equal(killed.code, 128 + 15, killed.stderr);
  });

  test('tsh ssh runs an interactive shell in a PTY (tmux sends keys and reads the screen)', async () => {
    const sock = join(tmp.dir, 'tmux.sock');
    const tmuxEnv = { ...user.env, TERM: 'xterm-256color' };
    const t = (args: string[]) => run(tmux, ['-S', sock, ...args], { env: tmuxEnv, timeoutMs: 10_000 });
    const cmd = [process.execPath, builtProgram('tsh'), 'ssh', 'node1'].map((w) => `'${w}'`).join(' ');
    const envPrefix = `TSH_HOME='${user.env['TSH_HOME']}' HOME='${user.env['HOME']}'`;
    let r = await t(['new-session', '-d', '-s', 'pty', '-x', '100', '-y', '30', `env ${envPrefix} ${cmd}; echo TSH-EXITED-$?; sleep 30`]);
    assert.equal(r.code, 0, r.stderr);
    const screen = async () => (await t(['capture-pane', '-p', '-t', 'pty'])).stdout;
    const waitFor = async (re: RegExp) => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const s = await screen();
        if (re.test(s)) return s;
        if (Date.now() > deadline) assert.fail(`the screen never showed ${re}:\n${s}\n--- server ---\n${cluster.log()}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    try {
      // The remote shell is on a terminal: tty names it, stty reads its size from the window tmux gave tsh.
      await t(['send-keys', '-t', 'pty', 'tty; stty size; echo $((6*7))-MARK', 'Enter']);
      const s = await waitFor(/^42-MARK$/m);
      assert.match(s, /^\/dev\/pts\/\d+$/m);
      assert.match(s, /^30 100$/m);
      await t(['resize-window', '-t', 'pty', '-x', '90', '-y', '25']);
      await t(['send-keys', '-t', 'pty', 'stty size', 'Enter']);
      await waitFor(/^25 90$/m);
      await t(['send-keys', '-t', 'pty', 'exit 3', 'Enter']);
      await waitFor(/TSH-EXITED-3/);
    } finally {
      await t(['kill-server']);
    }
  });

  test('tsh ssh -L forwards a local port through the node', async () => {
    const echo = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const echoPort = (echo.address() as { port: number }).port;
    const local = await freePort();
    const child = spawn(process.execPath, [builtProgram('tsh'), 'ssh', '-L', `${local}:127.0.0.1:${echoPort}`, 'node1', 'sleep 20'], { env: user.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    try {
      await echoesThrough(local, 'through the tunnel', () => err);
    } finally {
      child.kill('SIGTERM');
      echo.close();
    }
  });

  test('tsh ssh -A forwards the agent only when the roles allow it', async () => {
    const refused = await tsh(user, ['ssh', '-A', 'node1', 'true']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /your roles do not allow agent forwarding \(-A\)/);
    const agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
    try {
      const withAgent = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-agent'), username: LOGIN, roles: ['agent'], sshConfig: false });
      const r = await run(process.execPath, [builtProgram('tsh'), 'ssh', '-A', 'node1', 'ssh-add -l; echo status=$?'], {
        env: { ...withAgent.env, SSH_AUTH_SOCK: agent.sock },
        timeoutMs: 30_000,
      });
      assert.equal(r.code, 0, r.stderr);
      // 1 = an agent answered with no identities; 2 would mean no agent reached the node.
      assert.match(r.stdout, /status=1/);
    } finally {
      await agent.stop();
    }
  });

  test('a login the roles do not grant is refused with the reason, by plain ssh and by tsh (exit 4)', async () => {
    const r = await sshWith(user, ['nobody@node1', 'true']);
    assert.equal(r.code, 255);
    assert.match(r.stderr, /your roles do not grant the login "nobody" \(your logins: root\)/);
    const t = await tsh(user, ['ssh', 'nobody@node1', 'true']);
    assert.equal(t.code, 4);
    assert.match(t.stderr, /your roles do not grant the login "nobody"/);
    // Straight to the proxy (no tsh in front): refused at authentication, and audited.
    const direct = await sshWith(user, ['-J', `nobody@localhost:${cluster.sshPort}`, 'node1', 'true']);
    assert.equal(direct.code, 255);
    assert.match(direct.stderr, /Permission denied/);
    await waitForEvent(() => events('access.denied').some((e) => e['code'] === 'CERT_PRINCIPAL_MISMATCH'));
  });

  test('a login the node has no account for: tsh says to check the account on the node, not to log in again (exit 4)', async () => {
    const ghost = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-ghost'), username: 'nosuchuser-jg', roles: ['user'], sshConfig: false });
    const t = await tsh(ghost, ['ssh', 'nosuchuser-jg@node1', 'true']);
    assert.equal(t.code, 4, t.stderr);
    assert.match(t.stderr, /node1 refused your certificate for the login "nosuchuser-jg"/);
    assert.match(t.stderr, /check on node1 that the account "nosuchuser-jg" exists and that its sshd trusts the cluster's user CA/);
  });

  test('an unknown host and a node the roles do not select are refused with the same reason', async () => {
    for (const host of ['node9.e2e.test', 'secret1.e2e.test']) {
      const r = await sshWith(user, [host, 'true']);
      assert.equal(r.code, 255);
      assert.match(r.stderr, new RegExp(`no node "${host.replace(/\./g, '\\.')}" that you may reach in cluster e2e\\.test; \`tsh ls\` lists yours`));
    }
    const t = await tsh(user, ['ssh', 'secret1', 'true']);
    assert.equal(t.code, 1);
    assert.match(t.stderr, /error: no node "secret1" that you may reach/);
    const j = await sshWith(user, ['-J', `${LOGIN}@localhost:${cluster.sshPort}`, 'secret1', 'true']);
    assert.equal(j.code, 255);
    assert.match(j.stderr, /open failed: administratively prohibited: no node "secret1" that you may reach/);
    const denied = events('access.denied').filter((e) => e['stage'] === 'routing');
    assert.ok(denied.some((e) => e['code'] === 'UNKNOWN_NODE' && e['node'] === 'node9.e2e.test'));
    assert.ok(denied.some((e) => e['code'] === 'NODE_DENIED' && e['node'] === 'secret1'));
  });

  test('an expired certificate is refused with one line saying to run tsh login (exit 4 from tsh)', async () => {
    const r = await sshWith(expired, ['node1', 'true']);
    assert.equal(r.code, 255);
    const lines = r.stderr.split(/\r?\n/).filter((l) => l.startsWith('error:'));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^error: your certificate for localhost expired at \S+; run `\S*tsh login --proxy=localhost:\d+ --insecure` to get a new one$/);
    const t = await tsh(expired, ['ssh', 'node1', 'true']);
    assert.equal(t.code, 4);
    assert.match(t.stderr, /expired/);
    const p = await tsh(expired, ['proxy', 'ssh', 'root@node1:22']);
    assert.equal(p.code, 4);
  });

  test('tsh ls lists the nodes the roles reach, with label filters and JSON', async () => {
    const r = await tsh(user, ['ls', '--format=json']);
    assert.equal(r.code, 0, r.stderr);
    const nodes = JSON.parse(r.stdout) as Array<{ name: string; labels: Record<string, string> }>;
    assert.deepEqual(nodes.map((n) => n.name), ['node1']);
    assert.deepEqual(nodes[0]!.labels, { env: 'test' });
    const none = await tsh(user, ['ls', 'env=prod']);
    assert.equal(none.code, 0);
    assert.match(none.stderr, /no node you may reach matches those labels/);
    const text = await tsh(user, ['ls']);
    assert.match(text.stdout, /^Node\s+Address\s+Labels\nnode1\s+127\.0\.0\.1:\d+\s+env=test\n$/);
  });

  test('tsh config prints exactly the block the login installed', async () => {
    const r = await tsh(user, ['config']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, readFileSync(user.sshConfigFile, 'utf8'));
  });
});

const waitForEvent = (fn: () => boolean): Promise<void> => waitFor(fn, 'the audit event');
