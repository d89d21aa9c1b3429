/**
 * Nodes that manage themselves, end to end on loopback: the real `jumpgate
 * start` (heartbeat_ttl 3s, host_cert_ttl 1m), `tctl tokens add`, the real
 * `jumpgate node start` beside a private sshd configured ONLY from the files
 * the agent writes (its own PidFile, so the agent's SIGHUP reloads it), the
 * built tsh and plain OpenSSH. One cluster for the file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startSquid } from '../helpers/squid.js';
import { builtProgram, requireTool, run, runProgram, tempDir, waitFor } from '../helpers/tools.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { freePort, startSshd, type SshdNode } from '../helpers/sshd.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { loadServerConfig, type ServerConfig } from '../../src/config/index.js';
import { parseCertificateLine } from '../../src/sshcert/index.js';

const LOGIN = 'root'; // sshd as root logs in as anyone; the tests run as root in CI

interface AgentProc {
  child: ChildProcess;
  out(): string;
  err(): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

describe('jumpgate node start: join, heartbeats, renewal, CA rotation (real sshd, tsh, ssh)', () => {
  const tmp = tempDir('node-agent-e2e');
  let cluster: Cluster;
  let config: ServerConfig;
  let sshd: SshdNode | undefined;
  let agent: AgentProc | undefined;
  let sshdPort: number;
  let token: string;
  let user: FakeLogin;
  let ssh: string;
  const dataDir = join(tmp.dir, 'node-data');
  const sshdDir = join(tmp.dir, 'sshd');
  const pidFile = join(sshdDir, 'sshd.pid');
  let kernel: string;

  /** The agent; by default to 127.0.0.1 with --insecure, or (`pinned`) to the proxy's name with --ca-file = its self-signed certificate. */
  function startAgent(args: string[], dir = dataDir, name = 'agent1', o: { env?: NodeJS.ProcessEnv; pinned?: boolean } = {}): AgentProc {
    const trust = o.pinned ? [`--proxy=localhost:${cluster.webPort}`, `--ca-file=${join(tmp.dir, 'data', 'tls', 'self-signed-cert.pem')}`] : [`--proxy=127.0.0.1:${cluster.webPort}`, '--insecure'];
    const child = spawn(
      process.execPath,
      [builtProgram('jumpgate'), 'node', 'start', trust[0]!, `--name=${name}`, `--addr=127.0.0.1:${sshdPort}`, `--data-dir=${dir}`,
        '--labels=team=ops,env=dev', '--label-cmd', 'kernel=uname -r', `--sshd-pid-file=${pidFile}`, trust[1]!, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], ...(o.env ? { env: o.env } : {}) },
    );
    let out = '';
    let err = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return {
      child,
      out: () => out,
      err: () => err,
      exited,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        await exited;
      },
    };
  }
  const tsh = (who: FakeLogin, args: string[]) => run(process.execPath, [builtProgram('tsh'), ...args], { env: who.env, timeoutMs: 30_000 });
  const sshWith = (who: FakeLogin, args: string[]) => run(ssh, ['-F', who.sshConfigFile, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', ...args], { env: who.env, timeoutMs: 30_000 });
  const lsNames = async (who: FakeLogin): Promise<Array<{ name: string; labels: Record<string, string> }>> => {
    const r = await tsh(who, ['ls', '--format=json']);
    assert.equal(r.code, 0, r.stderr);
    const parsed = JSON.parse(r.stdout) as unknown;
    return (Array.isArray(parsed) ? parsed : (parsed as { nodes: [] }).nodes) as Array<{ name: string; labels: Record<string, string> }>;
  };
  const certSerial = () => parseCertificateLine(readFileSync(join(dataDir, 'host_key-cert.pub'), 'utf8')).cert.serial;
  const presentedSerial = async () => {
    const r = await run(requireTool('ssh-keyscan', 'apt-get install -y openssh-client'), ['-c', '-p', String(sshdPort), '127.0.0.1'], { timeoutMs: 10_000 });
    // `ssh-keyscan -c` prints the certificate lines without a host name.
    const line = r.stdout.split('\n').find((l) => l.startsWith('ssh-ed25519-cert-v01@openssh.com '));
    return line ? parseCertificateLine(line).cert.serial : undefined; // none while sshd re-executes itself after SIGHUP
  };
  async function eventually(what: string, ms: number, fn: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + ms;
    const t0 = Date.now();
    while (Date.now() < deadline) {
      if (await fn()) return void (process.env['NODE_E2E_TIMES'] && console.log(`${what}: ${Date.now() - t0} ms`));
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.fail(`${what} within ${ms} ms\n--- agent ---\n${agent?.err()}\n--- server ---\n${cluster.log().slice(-3000)}`);
  }

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    kernel = (await run('uname', ['-r'])).stdout.trim();
    const webPort = await freePort();
    const sshPort = await freePort();
    cluster = await startCluster(
      tmp.dir,
      [
        'cluster_name: e2e.test',
        `data_dir: ${join(tmp.dir, 'data')}`,
        'proxy:',
        `  web_listen_addr: 127.0.0.1:${webPort}`,
        `  public_addr: localhost:${webPort}`,
        `  ssh_listen_addr: 127.0.0.1:${sshPort}`,
        `  ssh_public_addr: localhost:${sshPort}`,
        'node_agent:',
        '  heartbeat_ttl: 3s',
        '  host_cert_ttl: 1m',
        'roles:',
        '  user:',
        '    logins: ["{{username}}"]',
        '    node_labels: { env: test }',
        '',
      ].join('\n'),
    );
    config = loadServerConfig(cluster.configFile);
    sshdPort = await freePort();
    mkdirSync(sshdDir, { recursive: true });
  });

  after(async () => {
    await agent?.stop();
    await sshd?.stop();
    await cluster?.stop();
    tmp.cleanup();
  });

  test('a token joins a node once; the agent writes the files sshd runs on, private key 0600, data dir 0700', async () => {
    const t = await runProgram('tctl', ['--config', cluster.configFile, 'tokens', 'add', '--type=node', '--labels=env=test', '--ttl=10m', '--format=json']);
    assert.equal(t.code, 0, t.stderr);
    const added = JSON.parse(t.stdout) as { token: string; id: string; command: string };
    token = added.token;
    assert.match(added.command, new RegExp(`^jumpgate node start --token=${token} --proxy=localhost:${cluster.webPort} `));
    const ls = await runProgram('tctl', ['--config', cluster.configFile, 'tokens', 'ls']);
    assert.match(ls.stdout, new RegExp(`^${added.id} +node +single `, 'm'));
    assert.ok(!ls.stdout.includes(token), 'tokens ls never shows a token');

    agent = startAgent([`--token=${token}`]);
    await waitFor(() => /^RevokedKeys /m.test(agent!.out()), 'the agent printing the sshd_config lines', 15_000).catch(() => assert.fail(agent!.err()));
    for (const [k, f] of [['HostKey', 'host_key'], ['HostCertificate', 'host_key-cert.pub'], ['TrustedUserCAKeys', 'user_ca.pub'], ['RevokedKeys', 'revoked.krl']]) {
      assert.match(agent.out(), new RegExp(`^${k} ${join(dataDir, f!)}$`, 'm'));
    }
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dataDir, 'host_key')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dataDir, 'credential.json')).mode & 0o777, 0o600);
    const cert = parseCertificateLine(readFileSync(join(dataDir, 'host_key-cert.pub'), 'utf8')).cert;
    assert.deepEqual(cert.principals, ['agent1', 'agent1.e2e.test', '127.0.0.1']);
    const keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    const q = await run(keygen, ['-Q', '-f', join(dataDir, 'revoked.krl'), join(dataDir, 'host_key-cert.pub')]);
    assert.equal(q.code, 0, `ssh-keygen -Q reads the KRL: ${q.stdout}${q.stderr}`);

    // sshd from nothing but the agent's files.
    sshd = await startSshd({
      dir: sshdDir,
      port: sshdPort,
      hostKey: join(dataDir, 'host_key'),
      hostCertificate: join(dataDir, 'host_key-cert.pub'),
      trustedUserCaKeys: join(dataDir, 'user_ca.pub'),
      pidFile,
      extra: [`RevokedKeys ${join(dataDir, 'revoked.krl')}`],
    });

    // The same token again: refused, nothing written.
    const second = startAgent([`--token=${token}`], join(tmp.dir, 'node2-data'), 'agent2');
    assert.equal(await second.exited, 1, second.err());
    assert.match(second.err(), /join token is unknown, expired or already used/);
    assert.ok(!existsSync(join(tmp.dir, 'node2-data', 'credential.json')));
    const events = cluster.audit();
    assert.ok(events.some((e) => e['event'] === 'node.joined' && e['node'] === 'agent1' && e['token'] === added.id));
    assert.ok(events.some((e) => e['event'] === 'node.failure' && e['stage'] === 'join'));
    assert.ok(!JSON.stringify(events).includes(token), 'the audit log never holds a token');
  });

  test('the node is in tsh ls with its token, static and command labels; plain ssh reaches it with StrictHostKeyChecking yes', async () => {
    user = await fakeLogin({ config, home: join(tmp.dir, 'home-user'), username: LOGIN, roles: ['user'] });
    const nodes = await lsNames(user);
    const n = nodes.find((x) => x.name === 'agent1');
    assert.ok(n, JSON.stringify(nodes));
    assert.deepEqual(n.labels, { env: 'test', team: 'ops', kernel }, 'the token label env=test wins over the agent\'s env=dev');
    const r = await sshWith(user, ['agent1.e2e.test', 'id -un']);
    assert.equal(r.code, 0, `ssh failed:\n${r.stderr}\n--- sshd ---\n${sshd!.log().slice(-2000)}`);
    assert.equal(r.stdout.trim(), LOGIN);
    const tctlLs = await runProgram('tctl', ['--config', cluster.configFile, 'nodes', 'ls']);
    assert.match(tctlLs.stdout, /^agent1 +127\.0\.0\.1:\d+ +joined \(online\) +\d{4}-/m);
  });

  test('a stopped agent leaves tsh ls after the heartbeat TTL; restarted without a token it is back', async () => {
    await agent!.stop();
    await eventually('agent1 leaving tsh ls', 10_000, async () => !(await lsNames(user)).some((x) => x.name === 'agent1'));
    agent = startAgent([]);
    await eventually('agent1 back in tsh ls', 10_000, async () => (await lsNames(user)).some((x) => x.name === 'agent1'));
    assert.match(agent.err(), /using the credential in .*credential\.json \(no token needed\)/);
  });

  test('tctl auth rotate --type=user --grace-period=0: the node trusts the new CA within 15 s and a fresh login reaches it', async () => {
    const before = readFileSync(join(dataDir, 'user_ca.pub'), 'utf8');
    const r = await runProgram('tctl', ['--config', cluster.configFile, 'auth', 'rotate', '--type=user', '--grace-period=0']);
    assert.equal(r.code, 0, r.stderr);
    const exported = (await runProgram('tctl', ['--config', cluster.configFile, 'auth', 'export', '--type=user'])).stdout.trim().split(' ')[1]!;
    const started = Date.now();
    await eventually('user_ca.pub holding the new CA', 15_000, async () => readFileSync(join(dataDir, 'user_ca.pub'), 'utf8').includes(exported));
    assert.notEqual(readFileSync(join(dataDir, 'user_ca.pub'), 'utf8'), before);
    assert.ok(!readFileSync(join(dataDir, 'user_ca.pub'), 'utf8').includes(before.split(' ')[1]!), 'the old CA is gone (grace 0)');
    const fresh = await fakeLogin({ config, home: join(tmp.dir, 'home-fresh'), username: LOGIN, roles: ['user'] });
    let last = '';
    await eventually('a fresh login reaching agent1', 15_000 - (Date.now() - started), async () => {
      const r = await sshWith(fresh, ['agent1.e2e.test', 'true']);
      last = r.stderr;
      return r.code === 0;
    }).catch((err: Error) => assert.fail(`${err.message}\n--- ssh ---\n${last}\n--- sshd ---\n${sshd!.log().slice(-3000)}`));
  });

  test('the host certificate renews at two thirds of its life while sshd keeps answering: an open session stays up, a new one sees the new serial', async () => {
    const first = certSerial();
    await eventually('sshd presenting the current certificate', 10_000, async () => (await presentedSerial()) === certSerial());
    const fresh = await fakeLogin({ config, home: join(tmp.dir, 'home-renew'), username: LOGIN, roles: ['user'] });
    // Open across the renewal (at two thirds of the current certificate's life), and a little beyond.
    const cert = parseCertificateLine(readFileSync(join(dataDir, 'host_key-cert.pub'), 'utf8')).cert;
    const renewAt = (Number(cert.validAfter) + (Number(cert.validBefore - cert.validAfter) * 2) / 3) * 1000;
    const holdSeconds = Math.ceil((renewAt - Date.now()) / 1000) + 4;
    const open = run(ssh, ['-F', fresh.sshConfigFile, '-o', 'BatchMode=yes', 'agent1.e2e.test', `sleep ${holdSeconds}; echo still-up`], { env: fresh.env, timeoutMs: (holdSeconds + 20) * 1000 });
    await eventually('the host certificate renewed', 30_000, async () => certSerial() !== first);
    await eventually('sshd presenting the renewed certificate', 10_000, async () => (await presentedSerial()) === certSerial());
    const done = await open;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stdout.trim(), 'still-up');
    assert.match(agent!.err(), /renewed the host certificate: serial \d+/);
  });

  test('through an HTTP proxy (HTTPS_PROXY = a real squid) with --ca-file pinning the proxy\'s certificate: the agent heartbeats and stays online', async () => {
    const squidDir = tempDir('node-agent-squid'); // squid runs as `proxy`: not under tmp.dir (0700)
    const squid = await startSquid({ dir: squidDir.dir });
    try {
      await agent!.stop();
      const env = { ...process.env, HTTPS_PROXY: squid.url, NO_PROXY: '', no_proxy: '', NODE_EXTRA_CA_CERTS: '' };
      agent = startAgent([], dataDir, 'agent1', { env, pinned: true });
      const beats = new Set<string>();
      await eventually('three heartbeats from agent1 through squid', 15_000, async () => {
        const r = await runProgram('tctl', ['--config', cluster.configFile, 'nodes', 'ls', '--format=json']);
        const n = (JSON.parse(r.stdout) as Array<{ name: string; status?: string; last_heartbeat?: string }>).find((x) => x.name === 'agent1');
        if (n?.status === 'online' && n.last_heartbeat) beats.add(n.last_heartbeat);
        return beats.size >= 3;
      });
      assert.match(agent.err(), new RegExp(`net: localhost:${cluster.webPort} through HTTP proxy http://127\\.0\\.0\\.1:${squid.port} \\(from HTTPS_PROXY\\)`));
      await agent.stop();
      await squid.waitForAccessLog(new RegExp(`CONNECT localhost:${cluster.webPort} `), 10_000);
    } finally {
      await squid.stop();
      squidDir.cleanup();
    }
  });
  test('removed with tctl nodes rm: restarted without a token it names credential.json to remove; with a new token (same data dir) it joins again and is online', async () => {
    await agent?.stop();
    const rm = await runProgram('tctl', ['--config', cluster.configFile, 'nodes', 'rm', 'agent1']);
    assert.equal(rm.code, 0, rm.stderr);
    agent = startAgent([]);
    assert.notEqual(await agent.exited, 0, 'a refused saved credential without a token ends the agent');
    assert.match(agent.err(), /NODE_CREDENTIAL_REFUSED/);
    assert.match(agent.err(), /remove .*credential\.json .*--token=TOKEN/);
    const t = await runProgram('tctl', ['--config', cluster.configFile, 'tokens', 'add', '--type=node', '--labels=env=test', '--ttl=10m', '--format=json']);
    agent = startAgent([`--token=${(JSON.parse(t.stdout) as { token: string }).token}`]);
    await eventually('agent1 online again in tctl nodes ls after joining again', 15_000, async () => {
      const r = await runProgram('tctl', ['--config', cluster.configFile, 'nodes', 'ls', '--format=json']);
      return (JSON.parse(r.stdout) as Array<{ name: string; status?: string }>).some((x) => x.name === 'agent1' && x.status === 'online');
    });
    assert.match(agent.err(), /refused the credential in .*credential\.json .*joining with the given token/);
  });
});
