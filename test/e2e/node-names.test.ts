/**
 * The name `tsh ls` shows is a name that works, in every spelling: a node
 * named in mixed case (WebServer01), reached
 * by plain ssh through the generated block, by `ssh -J` through the proxy and
 * by `tsh ssh`, as typed, lower-case, upper-case and in the long
 * `name.<cluster>` form; by its address (with and without the port) through
 * `tsh ssh`. A loopback address is this machine: the block never routes it
 * (a proxy must not take over `ssh 127.0.0.x`), so plain ssh to it stays local;
 * private node addresses are routed (unit tests: ssh-config, known-hosts).
 * ssh lower-cases the host name before it matches
 * `Match host`, looks it up in known_hosts and checks it against the host
 * certificate, so all of that must be lower-case (the issuer signs it so).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { builtProgram, requireTool, run, tempDir, type RunResult } from '../helpers/tools.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';

const LOGIN = 'root'; // sshd as root logs in as anyone; the tests run as root in CI

describe('node names in every spelling (plain ssh, ssh -J, tsh ssh against a node named WebServer01)', () => {
  const tmp = tempDir('node-names');
  let cluster: ProxyCluster;
  let user: FakeLogin;
  let ssh: string;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    // 127.0.0.2: a node address tsh ssh reaches through the proxy; the block never routes loopback (this machine).
    cluster = await startProxyCluster(tmp.dir, { clusterName: 'names.e2e.test', nodes: [{ name: 'WebServer01', env: 'test' }], nodeHost: '127.0.0.2' });
    user = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home'), username: LOGIN, roles: ['user'] });
  });

  after(async () => {
    await cluster?.stop();
    tmp.cleanup();
  });

  function sshWith(args: string[]): Promise<RunResult> {
    return run(ssh, ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', ...args], { env: user.env, timeoutMs: 30_000 });
  }
  function tsh(args: string[]): Promise<RunResult> {
    return run(process.execPath, [builtProgram('tsh'), ...args], { env: user.env, timeoutMs: 30_000 });
  }

  const spellings = ['WebServer01', 'webserver01', 'webserver01.names.e2e.test', 'WEBSERVER01.Names.E2E.Test'];

  test('tsh ls shows the inventory name', async () => {
    const r = await tsh(['ls', '--format=json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as Array<{ name: string }>).map((n) => n.name), ['WebServer01']);
  });

  for (const host of spellings) {
    test(`plain ssh ${host}: routed by the block, host certificate trusted`, async () => {
      const r = await sshWith([`${LOGIN}@${host}`, 'echo reached']);
      assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log()}`);
      assert.equal(r.stdout, 'reached\n');
    });

    test(`ssh -J through the proxy to ${host}`, async () => {
      const r = await sshWith(['-J', `${LOGIN}@localhost:${cluster.sshPort}`, `${LOGIN}@${host}`, 'echo jumped']);
      assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log()}`);
      assert.equal(r.stdout, 'jumped\n');
    });

    test(`tsh ssh ${host}`, async () => {
      const r = await tsh(['ssh', `${LOGIN}@${host}`, 'echo via-tsh']);
      assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log()}`);
      assert.equal(r.stdout, 'via-tsh\n');
    });
  }

  test('ssh -J with the proxy host typed in capitals still trusts the proxy through the block', async () => {
    const r = await sshWith(['-J', `${LOGIN}@LOCALHOST:${cluster.sshPort}`, `${LOGIN}@webserver01`, 'echo jumped']);
    assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log()}`);
  });

  // The address tsh ls shows (127.0.0.2:PORT), with and without the port.
  const addressForms = (): Array<[string, string[]]> => [
    ['127.0.0.2', []],
    [`127.0.0.2 -p ${cluster.node.port}`, ['-p', String(cluster.node.port)]],
  ];

  test('tsh ssh by the node address, with and without its port; plain ssh to a loopback address is not routed (it stays this machine)', async () => {
    for (const [what, port] of addressForms()) {
      const viaTsh = await tsh(['ssh', ...port, `${LOGIN}@127.0.0.2`, 'echo by-address']);
      assert.equal(viaTsh.code, 0, `tsh ssh ${what}: ${viaTsh.stderr}\n--- server ---\n${cluster.log()}`);
      assert.equal(viaTsh.stdout, 'by-address\n');
    }
    for (const host of ['127.0.0.2', 'localhost', '127.0.0.1']) {
      const g = await sshWith(['-G', host]);
      assert.equal(g.code, 0, g.stderr);
      assert.doesNotMatch(g.stdout, /^proxycommand /m, `${host} must not go through the proxy`);
    }
  });

  test('the known_hosts patterns and the block are lower-case', () => {
    assert.match(readFileSync(user.paths.knownHosts(), 'utf8'), /^@cert-authority webserver01,\*\.names\.e2e\.test,\[localhost\]:\d+ /m);
    assert.match(readFileSync(user.sshConfigFile, 'utf8'), /^Match host webserver01,\*\.names\.e2e\.test,!localhost$/m);
  });
});
