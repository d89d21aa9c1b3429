/**
 * Plain ssh with the generated block uses exactly the cluster's certificate,
 * whatever else the agent holds, and works from any process of the user:
 * - with the key in the OS keychain (a real Secret Service: gnome-keyring in
 *   a private D-Bus session) and seven other keys in a real ssh-agent before
 *   the certificate, `ssh node1` and `ssh -J` through the proxy still log in
 *   (without IdentitiesOnly ssh offers the seven first: "Too many
 *   authentication failures");
 * - with a TSH_HOME outside the home directory, ssh run with an environment
 *   that lacks TSH_HOME (an IDE, another shell) still finds the login.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { builtProgram, requireTool, run, tempDir, type RunResult } from '../helpers/tools.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { startSshAgent, type SshAgent } from '../helpers/ssh-agent.js';
import { fakeLogin } from '../helpers/tsh-home.js';
import { lastJsonLine, runInKeyringSession } from '../client/keyring-session.js';

describe('plain ssh: exactly the cluster certificate, from any process', () => {
  const tmp = tempDir('ssh-identity');
  let cluster: ProxyCluster;
  let agent: SshAgent;
  let ssh: string;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    const keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    const sshAdd = requireTool('ssh-add', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    cluster = await startProxyCluster(tmp.dir);
    agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
    // Seven keys the cluster knows nothing about, loaded before the certificate.
    for (let i = 0; i < 7; i++) {
      const key = join(tmp.dir, `other-${i}`);
      const g = await run(keygen, ['-q', '-t', 'ed25519', '-N', '', '-C', `other-${i}`, '-f', key]);
      assert.equal(g.code, 0, g.stderr);
      const a = await run(sshAdd, ['-q', key], { env: { ...process.env, SSH_AUTH_SOCK: agent.sock } });
      assert.equal(a.code, 0, a.stderr);
    }
  });

  after(async () => {
    await agent?.stop();
    await cluster?.stop();
    tmp.cleanup();
  });

  test('keychain keystore, seven other keys in the agent: plain ssh node1 and ssh -J log in with the certificate', async () => {
    const r = await runInKeyringSession('test/e2e/fixtures/keychain-ssh.ts', {
      components: 'secrets',
      args: [cluster.configFile, String(cluster.sshPort)],
      env: { SSH_AUTH_SOCK: agent.sock },
      timeoutMs: 90_000,
    });
    const got = lastJsonLine<{ keystore: string; keyFileExists: boolean; block: string; plain: RunResult; jump: RunResult }>(r);
    assert.equal(got.keystore, 'keychain');
    assert.equal(got.keyFileExists, false, 'the private key is in the keychain, not on disk');
    assert.equal(got.plain.code, 0, `plain ssh: ${got.plain.stderr}\n--- block ---\n${got.block}\n--- server ---\n${cluster.log()}`);
    assert.equal(got.plain.stdout, 'plain-ok\n');
    assert.equal(got.jump.code, 0, `ssh -J: ${got.jump.stderr}\n--- server ---\n${cluster.log()}`);
    assert.equal(got.jump.stdout, 'jump-ok\n');
    // The node saw the certificate, not one of the other keys.
    await cluster.node.waitForLog(/Accepted publickey for root from 127\.0\.0\.1 port \d+ ssh2: ED25519-CERT/);
  });

  test('a custom TSH_HOME: ssh run without TSH_HOME in its environment (another process) still works, plain and -J', async () => {
    const home = join(tmp.dir, 'home-custom');
    const login = await fakeLogin({ config: cluster.config, home, tshHome: join(tmp.dir, 'elsewhere', 'tsh'), username: 'root', roles: ['user'] });
    const env: NodeJS.ProcessEnv = { ...login.env };
    delete env['TSH_HOME'];
    const base = ['-F', login.sshConfigFile, '-o', 'BatchMode=yes'];
    const plain = await run(ssh, [...base, 'root@node1', 'echo plain-ok'], { env, timeoutMs: 30_000 });
    assert.equal(plain.code, 0, `${plain.stderr}\n--- server ---\n${cluster.log()}`);
    assert.equal(plain.stdout, 'plain-ok\n');
    const jump = await run(ssh, [...base, '-J', `root@localhost:${cluster.sshPort}`, 'root@node1', 'echo jump-ok'], { env, timeoutMs: 30_000 });
    assert.equal(jump.code, 0, `${jump.stderr}\n--- server ---\n${cluster.log()}`);
    assert.equal(jump.stdout, 'jump-ok\n');
  });
});
