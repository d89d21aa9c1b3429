/**
 * Recording mode end to end (`auth.session_recording: proxy`): the real
 * `jumpgate start` ends each SSH session itself and opens its own session to
 * a private OpenSSH node with a per-session certificate. Plain OpenSSH (ssh
 * in tmux, scp, sftp, rsync, ssh -L) with only the generated config and the
 * `@cert-authority` line must behave as without recording; the node's sshd
 * log must show the per-session certificate, never the user's.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { builtProgram, echoesThrough, requireTool, run, runProgram, tempDir, type RunResult, waitFor } from '../helpers/tools.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { freePort } from '../helpers/sshd.js';
import { startSshAgent } from '../helpers/ssh-agent.js';

const LOGIN = 'root'; // sshd as root logs in as anyone; the tests run as root in CI
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

describe('recording mode: the proxy terminates SSH and opens its own session to the node', () => {
  const tmp = tempDir('session-recording-e2e');
  let cluster: ProxyCluster;
  let user: FakeLogin;
  let ssh: string;
  let scp: string;
  let sftp: string;
  let rsync: string;
  let tmux: string;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    scp = requireTool('scp', 'apt-get install -y openssh-client');
    sftp = requireTool('sftp', 'apt-get install -y openssh-client');
    rsync = requireTool('rsync', 'apt-get install -y rsync');
    tmux = requireTool('tmux', 'apt-get install -y tmux');
    cluster = await startProxyCluster(tmp.dir, { authYaml: ['  session_recording: proxy'] });
    user = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-user'), username: LOGIN, roles: ['user'] });
  });

  after(async () => {
    await cluster?.stop();
    tmp.cleanup();
  });

  function sshWith(args: string[], input?: string | Buffer): Promise<RunResult> {
    return run(ssh, ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', ...args], { env: user.env, timeoutMs: 30_000, ...(input !== undefined ? { input } : {}) });
  }
  const events = (name: string) => cluster.audit().filter((e) => e['event'] === name);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  /** Established TCP connections to the node's sshd port (/proc/net/tcp: remote port in hex, state 01); only the proxy dials it. */
  const nodeConnections = async () => {
    const port = cluster.node.port.toString(16).toUpperCase().padStart(4, '0');
    const rows = ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((f) => readFileSync(f, 'utf8').split('\n').slice(1));
    return rows.filter((l) => {
      const cols = l.trim().split(/\s+/);
      return cols[2]?.endsWith(`:${port}`) && cols[3] === '01';
    }).length;
  };

  test('plain ssh -tt in tmux: a shell on the node, output on the screen, `exit 7` exits 7, and only the @cert-authority line is trusted', async () => {
    const knownHosts = readFileSync(user.paths.knownHosts(), 'utf8');
    assert.match(readFileSync(user.sshConfigFile, 'utf8'), /^ {4}StrictHostKeyChecking yes$/m);
    const sock = join(tmp.dir, 'tmux.sock');
    const t = (args: string[]) => run(tmux, ['-S', sock, ...args], { env: { ...user.env, TERM: 'xterm-256color' }, timeoutMs: 10_000 });
    // tmux runs this in a shell: $? is ssh's exit status.
    const cmd = `env HOME='${user.env['HOME']}' TSH_HOME='${user.env['TSH_HOME']}' ${ssh} -F '${user.sshConfigFile}' -tt node1; echo SSH-EXITED-$?; sleep 30`;
    let r = await t(['new-session', '-d', '-s', 'rec', '-x', '100', '-y', '30', cmd]);
    assert.equal(r.code, 0, r.stderr);
    const waitScreen = async (re: RegExp) => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const s = (await t(['capture-pane', '-p', '-t', 'rec'])).stdout;
        if (re.test(s)) return s;
        if (Date.now() > deadline) assert.fail(`the screen never showed ${re}:\n${s}\n--- server ---\n${cluster.log()}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    try {
      await t(['send-keys', '-t', 'rec', 'tty; stty size; echo $((6*7))-MARK', 'Enter']);
      const s = await waitScreen(/^42-MARK$/m);
      assert.match(s, /^\/dev\/pts\/\d+$/m);
      assert.match(s, /^30 100$/m);
      await t(['resize-window', '-t', 'rec', '-x', '90', '-y', '25']);
      await t(['send-keys', '-t', 'rec', 'stty size', 'Enter']);
      await waitScreen(/^25 90$/m);
      await t(['send-keys', '-t', 'rec', 'exit 7', 'Enter']);
      await waitScreen(/SSH-EXITED-7/);
    } finally {
      await t(['kill-server']);
    }
    assert.equal(readFileSync(user.paths.knownHosts(), 'utf8'), knownHosts, 'ssh learned no host key (no trust on first use)');
    // The proxy presented a certificate for node1 from the host CA, made on demand.
    assert.ok(events('cert.issued').some((e) => e['cert_type'] === 'host' && e['via'] === 'recording-proxy' && (e['principals'] as string[]).includes('node1.e2e.test')));
    const start = events('session.start').find((e) => e['mode'] === 'recording');
    assert.ok(start, 'session.start in recording mode');
    assert.match(String(start['session_id']), new RegExp(`^${UUID}$`));
    await waitFor(() => events('session.end').some((e) => e['session_id'] === start['session_id']), 'session.end of the tmux session');
    // The recording: asciicast v2 in the store, named in session.start and session.end, readable by the real asciinema.
    const name = `${String(start['session_id'])}.cast`;
    assert.equal(start['recording'], name);
    assert.equal(events('session.end').find((e) => e['session_id'] === start['session_id'])!['recording'], name);
    const cast = readFileSync(join(cluster.dataDir, 'recordings', name), 'utf8').trimEnd().split('\n');
    const header = JSON.parse(cast[0]!) as Record<string, unknown>;
    assert.equal(header['version'], 2);
    assert.equal(header['width'], 100);
    assert.equal(header['height'], 30);
    const evs = cast.slice(1).map((l) => JSON.parse(l) as [number, string, string]);
    assert.ok(evs.some(([, k, d]) => k === 'o' && d.includes('42-MARK')), 'the output is recorded');
    assert.ok(evs.some(([, k, d]) => k === 'r' && d === '90x25'), 'the resize is recorded');
    assert.ok(!evs.some(([, k]) => k === 'i'), 'no input without record_input');
    const asciinema = requireTool('asciinema', 'apt-get install -y asciinema');
    const played = await run('script', ['-qec', `${asciinema} cat ${join(cluster.dataDir, 'recordings', name)}`, '/dev/null'], { timeoutMs: 20_000 });
    assert.equal(played.code, 0, played.stderr);
    assert.match(played.stdout, /42-MARK/);
    // Listed and replayed by the user through the proxy's HTTPS API (tsh recordings ls, tsh play).
    const ls = await runProgram('tsh', ['recordings', 'ls', '--format=json'], { env: user.env });
    assert.equal(ls.code, 0, ls.stderr);
    assert.ok((JSON.parse(ls.stdout) as Array<{ session_id: string }>).some((r) => r.session_id === start['session_id']), ls.stdout);
    const text = await runProgram('tsh', ['play', String(start['session_id']), '--format=text'], { env: user.env });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /42-MARK/);
    assert.doesNotMatch(text.stdout, /\x1b/, 'no raw escape sequence in the text form');
  });

  test("the node sees the per-session certificate (key id user/session/ID, from the proxy's address), never the user's own", async () => {
    const r = await sshWith(['node1', 'echo on-node; exit 7']);
    assert.equal(r.code, 7, `${r.stderr}\n--- server ---\n${cluster.log()}`);
    assert.equal(r.stdout, 'on-node\n');
    const log = await cluster.node.waitForLog(new RegExp(`Accepted publickey for ${LOGIN} from 127\\.0\\.0\\.1 port \\d+ ssh2: ED25519-CERT SHA256:\\S+ ID ${LOGIN}/session/${UUID} `));
    assert.doesNotMatch(log, new RegExp(`ID ${LOGIN} \\(serial`), "the user's own certificate never reached the node");
    const issued = events('cert.issued').filter((e) => e['via'] === 'session');
    assert.ok(issued.length > 0);
    const last = issued.at(-1)!;
    assert.deepEqual(last['principals'], [LOGIN]);
    assert.match(String(last['session_id']), new RegExp(`^${UUID}$`));
    const ttl = Date.parse(String(last['valid_before'])) - Date.parse(String(last['time']));
    assert.ok(ttl > 0 && ttl <= 10 * 60_000, `valid for minutes, not ${ttl} ms`);
    const exec = events('session.exec').at(-1)!;
    assert.equal(exec['command'], 'echo on-node; exit 7');
    assert.equal(exec['pty'], false);
  });

  test('tsh ssh through the recording proxy: stdout and stderr apart, the exit status, and a signal death (exit-signal)', async () => {
    const tsh = (args: string[]) => run(process.execPath, [builtProgram('tsh'), ...args], { env: user.env, timeoutMs: 30_000 });
    const r = await tsh(['ssh', 'node1', 'echo to-out; echo to-err >&2; exit 3']);
    assert.equal(r.code, 3, `${r.stderr}\n--- server ---\n${cluster.log()}`);
    assert.equal(r.stdout, 'to-out\n');
    assert.match(r.stderr, /to-err/);
    const killed = await tsh(['ssh', 'node1', 'kill -TERM $$']);
    assert.equal(killed.code, 128 + 15, killed.stderr);
  });

  test('scp of 5 MB there (SFTP protocol) and back (legacy scp -O) is byte-exact and audited with path and size', async () => {
    const src = join(tmp.dir, 'five-mb');
    const back = join(tmp.dir, 'five-mb.back');
    const data = randomBytes(5 * 1024 * 1024);
    writeFileSync(src, data);
    const remote = join(tmp.dir, 'remote');
    mkdirSync(remote);
    const opts = ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', '-q'];
    let r = await run(scp, [...opts, src, `node1:${remote}/copy`], { env: user.env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log()}`);
    r = await run(scp, [...opts, '-O', `node1:${remote}/copy`, back], { env: user.env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log()}`);
    assert.equal(sha(readFileSync(back)), sha(data));
    await waitFor(() => events('session.sftp').some((e) => e['path'] === `${remote}/copy` && e['bytes_written'] === data.length), 'the upload as a session.sftp event');
    const put = events('session.sftp').find((e) => e['path'] === `${remote}/copy`)!;
    assert.equal(put['action'], 'open');
    assert.ok((put['flags'] as string[]).includes('write'));
    const legacy = events('session.scp').at(-1)!;
    assert.equal(legacy['direction'], 'download');
    assert.equal(legacy['path'], `${remote}/copy`);
  });

  test('sftp put and get are audited with the path, the direction and the size', async () => {
    const local = join(tmp.dir, 'sftp-local');
    writeFileSync(local, randomBytes(300_000));
    const batch = join(tmp.dir, 'sftp-batch');
    writeFileSync(batch, [`put ${local} ${tmp.dir}/sftp-remote`, `get ${tmp.dir}/sftp-remote ${local}.back`, `rename ${tmp.dir}/sftp-remote ${tmp.dir}/sftp-renamed`, `rm ${tmp.dir}/sftp-renamed`, ''].join('\n'));
    const r = await run(sftp, ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', '-b', batch, 'node1'], { env: user.env, timeoutMs: 30_000 });
    assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log()}`);
    assert.deepEqual(readFileSync(`${local}.back`), readFileSync(local));
    await waitFor(() => events('session.sftp').some((e) => e['action'] === 'remove'), 'the sftp events');
    const ops = events('session.sftp').filter((e) => String(e['path']).startsWith(`${tmp.dir}/sftp-`));
    assert.ok(ops.some((e) => e['action'] === 'open' && e['path'] === `${tmp.dir}/sftp-remote` && e['bytes_written'] === 300_000), 'put');
    assert.ok(ops.some((e) => e['action'] === 'open' && e['path'] === `${tmp.dir}/sftp-remote` && e['bytes_read'] === 300_000), 'get');
    assert.ok(ops.some((e) => e['action'] === 'rename' && e['target'] === `${tmp.dir}/sftp-renamed`), 'rename');
    assert.ok(ops.some((e) => e['action'] === 'remove' && e['path'] === `${tmp.dir}/sftp-renamed`), 'rm');
  });

  test('rsync over ssh copies a tree byte-exact', async () => {
    const src = join(tmp.dir, 'tree');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'alpha\n');
    writeFileSync(join(src, 'sub', 'b.bin'), randomBytes(200_000));
    const dest = join(tmp.dir, 'tree-copy');
    const r = await run(rsync, ['-a', '-e', `${ssh} -F ${user.sshConfigFile} -o BatchMode=yes`, `${src}/`, `node1:${dest}/`], { env: user.env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(join(dest, 'sub', 'b.bin')), readFileSync(join(src, 'sub', 'b.bin')));
  });

  test('ssh -L forwards a local port through the node', async () => {
    const echo = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const echoPort = (echo.address() as { port: number }).port;
    const local = await freePort();
    const child = spawn(ssh, ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', '-N', '-L', `${local}:127.0.0.1:${echoPort}`, 'node1'], { env: user.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    try {
      await echoesThrough(local, 'through the tunnel', () => `${err}\n--- server ---\n${cluster.log()}`);
    } finally {
      child.kill('SIGTERM');
      echo.close();
    }
  });

  test('no node connection outlives its session: a clean exit and a client killed mid-session both close it', async () => {
    const r = await sshWith(['node1', 'true']);
    assert.equal(r.code, 0, r.stderr);
    const child = spawn(ssh, ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', 'node1', 'sleep 60'], { env: user.env, stdio: 'ignore' });
    const open = async (want: (n: number) => boolean, what: string) => {
      const deadline = Date.now() + 15_000;
      let n = await nodeConnections();
      while (!want(n)) {
        if (Date.now() > deadline) assert.fail(`${what}: ${n} connections from the proxy to the node`);
        await new Promise((res) => setTimeout(res, 100));
        n = await nodeConnections();
      }
    };
    try {
      await open((n) => n >= 1, 'the running session has its node connection'); // the counter sees them
    } finally {
      child.kill('SIGKILL');
    }
    await open((n) => n === 0, 'left open after the client was killed');
  });

  test('ssh -A forwards the agent to the node only when a role allows it', async () => {
    const agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
    try {
      const refused = await run(ssh, ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', '-A', 'node1', 'ssh-add -l; echo status=$?'], { env: { ...user.env, SSH_AUTH_SOCK: agent.sock }, timeoutMs: 30_000 });
      assert.equal(refused.code, 0, refused.stderr);
      assert.match(refused.stdout, /status=2/, 'no agent on the node for a role without forward_agent');
      const withAgent = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-agent'), username: LOGIN, roles: ['agent'] });
      const r = await run(ssh, ['-F', withAgent.sshConfigFile, '-o', 'BatchMode=yes', '-A', 'node1', 'ssh-add -l; echo status=$?'], { env: { ...withAgent.env, SSH_AUTH_SOCK: agent.sock }, timeoutMs: 30_000 });
      assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log()}`);
      // 1 = the user's (empty) agent answered through proxy and node; 2 would mean no agent reached the node.
      assert.match(r.stdout, /status=1/);
    } finally {
      await agent.stop();
    }
  });

  // Last: it kills the server.
  test('a recording survives kill -9 of the server mid-session (at most the last second is lost)', async () => {
    const child = spawn(ssh, ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', '-tt', 'node1'], { env: user.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', () => {});
    const gone = new Promise<void>((res) => child.once('exit', () => res()));
    try {
      child.stdin!.write('echo $((1000+337))-BEFORE-KILL\n');
      await waitFor(() => /1337-BEFORE-KILL/.test(out), 'the output before the kill', 20_000);
      const start = events('session.start').at(-1)!;
      const file = join(cluster.dataDir, 'recordings', String(start['recording']));
      // The writer flushes every 500 ms: the output is in the file within about a second.
      await waitFor(() => {
        try {
          return readFileSync(file, 'utf8').includes('1337-BEFORE-KILL');
        } catch {
          return false;
        }
      }, 'the output in the recording', 5_000);
      process.kill(cluster.pid, 'SIGKILL');
      await cluster.exited;
      const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
      assert.equal((JSON.parse(lines[0]!) as { version: number }).version, 2);
      for (const l of lines.slice(1)) JSON.parse(l); // every line whole: no torn event
      assert.ok(lines.some((l) => l.includes('1337-BEFORE-KILL')));
      await gone;
    } finally {
      child.kill('SIGKILL');
    }
  });
});
