/**
 * A real OpenSSH node configured only from tctl's output, and the real ssh
 * client logging in with tctl-signed certificates: the foundation's promise
 * that Jumpgate's CA is one OpenSSH trusts, in both directions.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { requireTool, run, runProgram, tempDir, type RunResult } from '../helpers/tools.js';
import { startSshd, type SshdNode } from '../helpers/sshd.js';

const login = userInfo().username;

function configYaml(dataDir: string): string {
  return [
    'cluster_name: e2e.test',
    `data_dir: ${dataDir}`,
    'roles:',
    '  user:',
    '    logins: ["{{username}}"]',
    '    node_labels: { env: "*" }',
    '    max_session_ttl: 24h',
    'nodes:',
    '  - { name: node1, addr: "127.0.0.1:2222", labels: { env: test } }',
    '',
  ].join('\n');
}

describe('OpenSSH trusts the Jumpgate CA (tctl + sshd + ssh)', () => {
  const tmp = tempDir('tctl-e2e');
  const dir = tmp.dir;
  const config = join(dir, 'jumpgate.yaml');
  const otherConfig = join(dir, 'other.yaml');
  const knownHosts = join(dir, 'known_hosts');
  const userCaFile = join(dir, 'user_ca.pub');
  let node: SshdNode;
  let ssh: string;

  async function tctl(args: string[], cfg = config): Promise<RunResult> {
    const r = await runProgram('tctl', ['--config', cfg, ...args]);
    assert.equal(r.code, 0, `tctl ${args.join(' ')} failed:\n${r.stderr}`);
    return r;
  }

  async function signUser(name: string, extra: string[] = [], cfg = config): Promise<string> {
    const out = join(dir, `${name}-${Math.random().toString(36).slice(2, 8)}`);
    await tctl(['auth', 'sign', `--user=${name}`, '--roles=user', '--format=openssh', `--out=${out}`, ...extra], cfg);
    return out;
  }

  /** Plain OpenSSH, no agent, no config file: only the key, its certificate and our known_hosts. */
  function sshWith(key: string, as = login, hostsFile = knownHosts, extra: string[] = []): Promise<RunResult> {
    return run(ssh, [
      ...extra,
      '-F', 'none',
      '-i', key,
      '-o', `CertificateFile=${key}-cert.pub`,
      '-o', 'IdentitiesOnly=yes',
      '-o', 'IdentityAgent=none',
      '-o', `UserKnownHostsFile=${hostsFile}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'BatchMode=yes',
      '-o', 'HostKeyAlias=node1',
      '-o', 'ConnectTimeout=10',
      '-p', String(node.port),
      `${as}@127.0.0.1`,
      'id -un',
    ]);
  }

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    writeFileSync(config, configYaml(join(dir, 'data')));
    writeFileSync(otherConfig, configYaml(join(dir, 'other-data')));
    writeFileSync(userCaFile, (await tctl(['auth', 'export', '--type=user'])).stdout);
    writeFileSync(knownHosts, (await tctl(['auth', 'export', '--type=host'])).stdout);
    const hostKey = join(dir, 'host_key');
    await tctl(['auth', 'sign', '--host=node1,127.0.0.1,localhost', '--format=openssh', `--out=${hostKey}`]);
    node = await startSshd({ dir, hostKey, hostCertificate: `${hostKey}-cert.pub`, trustedUserCaKeys: userCaFile });
  });

  after(async () => {
    await node?.stop();
    tmp.cleanup();
  });

  test('a tctl user certificate logs in with only the exported CA lines as trust', async () => {
    const key = await signUser(login);
    const r = await sshWith(key);
    assert.equal(r.code, 0, `ssh failed:\n${r.stderr}\n--- sshd ---\n${node.log()}`);
    assert.equal(r.stdout.trim(), login);
    assert.match(node.log(), new RegExp(`Accepted publickey for ${login} .*ED25519-CERT`));
  });

  test('an expired certificate is refused and sshd says it expired', async () => {
    const key = await signUser(login, ['--ttl=1s']);
    await new Promise((r) => setTimeout(r, 2_100));
    const r = await sshWith(key);
    assert.equal(r.code, 255);
    assert.match(r.stderr, /Permission denied/);
    await node.waitForLog(/Certificate invalid: expired/);
  });

  test('a certificate whose principals do not include the login is refused', async () => {
    const key = await signUser('someone-else');
    const r = await sshWith(key, login);
    assert.equal(r.code, 255);
    await node.waitForLog(/Certificate invalid: name is not a listed principal/);
  });

  test('a certificate from another cluster CA is refused', async () => {
    const key = await signUser(login, [], otherConfig);
    const r = await sshWith(key);
    assert.equal(r.code, 255);
    await node.waitForLog(/CA ED25519 SHA256:\S+ is not listed in \S*user_ca\.pub/);
  });

  test('a host certificate presented as a user certificate is refused', async () => {
    const hostAsUser = join(dir, 'host-as-user');
    await tctl(['auth', 'sign', `--host=${login}`, '--format=openssh', `--out=${hostAsUser}`]);
    const r = await sshWith(hostAsUser, login, knownHosts, ['-v']);
    assert.equal(r.code, 255);
    // OpenSSH's client already refuses to offer it; the bare key behind it is then refused by sshd.
    assert.match(r.stderr, /ignoring certificate \S+: not a user certificate/);
    assert.match(r.stderr, /Permission denied \(publickey\)/);
  });

  test('the client refuses a node whose host certificate another cluster signed', async () => {
    const otherHosts = join(dir, 'other_known_hosts');
    writeFileSync(otherHosts, (await tctl(['auth', 'export', '--type=host'], otherConfig)).stdout);
    const key = await signUser(login);
    const r = await sshWith(key, login, otherHosts);
    assert.equal(r.code, 255);
    assert.match(r.stderr, /Host key verification failed|No ED25519 host key is known/);
  });

  test('after a rotation, old certificates work during the grace period and new ones work too', async () => {
    const oldKey = await signUser(login);
    await tctl(['auth', 'rotate', '--type=user', '--grace-period=1h']);
    const exported = (await tctl(['auth', 'export', '--type=user'])).stdout.trim().split('\n');
    assert.equal(exported.length, 2, 'the old CA key stays exported during the grace period');
    writeFileSync(userCaFile, exported.join('\n') + '\n'); // sshd re-reads TrustedUserCAKeys per login
    const newKey = await signUser(login);
    assert.equal((await sshWith(oldKey)).code, 0, 'old certificate during grace period');
    assert.equal((await sshWith(newKey)).code, 0, 'new certificate');

    // Ending the grace period: rotate again with none; only the newest key is exported.
    await tctl(['auth', 'rotate', '--type=user', '--grace-period=0']);
    const afterGrace = (await tctl(['auth', 'export', '--type=user'])).stdout.trim().split('\n');
    assert.equal(afterGrace.length, 1);
    writeFileSync(userCaFile, afterGrace.join('\n') + '\n');
    assert.equal((await sshWith(oldKey)).code, 255, 'certificate from a CA key whose grace period ended');
    assert.equal((await sshWith(newKey)).code, 255, 'the second rotation had no grace period either');
    assert.equal((await sshWith(await signUser(login))).code, 0);
  });

  test('after a host CA rotation, the node keeps being trusted during the grace period', async () => {
    await tctl(['auth', 'rotate', '--type=host', '--grace-period=1h']);
    const lines = (await tctl(['auth', 'export', '--type=host'])).stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    assert.ok(lines.every((l) => l.startsWith('@cert-authority * ssh-ed25519 ')));
    const hostsAfter = join(dir, 'known_hosts_after_rotation');
    writeFileSync(hostsAfter, lines.join('\n') + '\n');
    const r = await sshWith(await signUser(login), login, hostsAfter);
    assert.equal(r.code, 0, r.stderr);
  });
});
