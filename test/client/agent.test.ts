/**
 * The SSH agent client against a real OpenSSH ssh-agent (one per file, on a
 * socket in a temp dir), `ssh-add -L/-l` as the independent reader, and real
 * `ssh` logging in to a real sshd with nothing but the agent identity: that
 * last one is what proves the key formats are right.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient, AgentError, agentPublicBlob, SSH_AGENT_RSA_SHA2_512 } from '../../src/client/agent.js';
import {
  encodeCertificateLine,
  fingerprintSha256,
  formatPublicKeyLine,
  encodeOpenSSHPrivateKey,
  parseCertificate,
  verifySignature,
  type KeyKind,
} from '../../src/sshcert/index.js';
import { startSshd, type SshdNode } from '../helpers/sshd.js';
import { requireTool, run, tempDir } from '../helpers/tools.js';
import { certify, keyPair, writeKnownHosts } from '../sshconn/fixtures.js';
import { startSshAgent, type SshAgent } from '../helpers/ssh-agent.js';

const INSTALL = 'apt-get install -y openssh-client';

const tmp = tempDir('agent');
const userCA = keyPair('ed25519', 'agent-user-ca');
const hostCA = keyPair('ed25519', 'agent-host-ca');
const login = userInfo().username;
let agent: SshAgent;
let client: AgentClient;
let sshAdd: string;

function userCert(kind: KeyKind, role: string, principals = [login]) {
  const kp = keyPair(kind, role);
  const cert = certify(userCA, kp.publicKey, { type: 'user', principals, keyId: `${role}-${kind}` });
  return { kp, cert };
}

function sshAddEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SSH_AUTH_SOCK: agent.sock, HOME: tmp.dir };
}

before(async () => {
  sshAdd = requireTool('ssh-add', INSTALL);
  // Laid out like ssh-agent's own default (/tmp/ssh-XXXX/agent.PID), so describeAgent recognises it.
  mkdirSync(join(tmp.dir, 'ssh-test'), { mode: 0o700 });
  agent = await startSshAgent(join(tmp.dir, 'ssh-test', `agent.${process.pid}`));
  client = await AgentClient.connect({ env: { SSH_AUTH_SOCK: agent.sock }, platform: 'linux' });
});

after(async () => {
  client?.close();
  await agent?.stop();
  tmp.cleanup();
});

describe('against OpenSSH ssh-agent', () => {
  test('a certificate added with a lifetime shows in ssh-add -L, ssh-add -l and list()', async () => {
    const { kp, cert } = userCert('ed25519', 'listed');
    await client.addCertificate({ privateKey: kp.privateKey, certBlob: cert.blob, comment: 'jumpgate:listed', lifetimeSeconds: 3600 });

    const big = await run(sshAdd, ['-L'], { env: sshAddEnv() });
    assert.equal(big.code, 0, big.stderr);
    assert.ok(big.stdout.split('\n').includes(encodeCertificateLine(cert, 'jumpgate:listed')), big.stdout);

    const small = await run(sshAdd, ['-l'], { env: sshAddEnv() });
    assert.equal(small.code, 0, small.stderr);
    // ssh-add -l prints the certified key's fingerprint and marks the line -CERT.
    assert.match(small.stdout, new RegExp(`^256 ${fingerprintSha256(kp.publicKey.blob).replace(/[+/]/g, '\\$&')} jumpgate:listed \\(ED25519-CERT\\)$`, 'm'));

    const ids = await client.list();
    const mine = ids.find((id) => id.blob.equals(cert.blob));
    assert.ok(mine, 'list() shows the certificate');
    assert.equal(mine.comment, 'jumpgate:listed');
    await client.remove(cert.blob);
  });

  for (const kind of ['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'ecdsa-p521', 'rsa-3072'] as const) {
    test(`a ${kind} certificate held by the agent signs data its certified key verifies`, async () => {
      const { kp, cert } = userCert(kind, 'sign');
      await client.addCertificate({ privateKey: kp.privateKey, certBlob: cert.blob, comment: `sign-${kind}` });
      const data = Buffer.from(`challenge for ${kind}`);
      const sig = await client.sign(cert.blob, data, kind === 'rsa-3072' ? SSH_AGENT_RSA_SHA2_512 : 0);
      assert.ok(verifySignature(parseCertificate(cert.blob).key, data, sig), 'signature verifies with the certified key');
      if (kind === 'rsa-3072') assert.equal(sig.subarray(4, 4 + 12).toString(), 'rsa-sha2-512');
      await client.remove(cert.blob);
      assert.ok(!(await client.list()).some((id) => id.blob.equals(cert.blob)));
    });
  }

  for (const kind of ['ed25519', 'ecdsa-p384', 'rsa-3072'] as const) {
    test(`a plain ${kind} key added like ssh-add does is listed with its public key line`, async () => {
      const kp = keyPair(kind, 'plain');
      await client.addKey(kp.privateKey, `plain-${kind}`, 600);
      assert.deepEqual(agentPublicBlob(kp.privateKey), kp.publicKey.blob);
      const r = await run(sshAdd, ['-L'], { env: sshAddEnv() });
      assert.ok(r.stdout.split('\n').includes(formatPublicKeyLine(kp.publicKey, `plain-${kind}`)), r.stdout);
      // Flags 0 would get an SHA-1 "ssh-rsa" signature from the agent, which verifySignature rightly refuses.
      const sig = await client.sign(kp.publicKey.blob, Buffer.from('x'), kind === 'rsa-3072' ? SSH_AGENT_RSA_SHA2_512 : 0);
      assert.ok(verifySignature(kp.publicKey, Buffer.from('x'), sig));
      await client.remove(kp.publicKey.blob);
    });
  }

  test('remove() takes the certificate out; removing it again is AGENT_REFUSED', async () => {
    const { kp, cert } = userCert('ed25519', 'remove');
    await client.addCertificate({ privateKey: kp.privateKey, certBlob: cert.blob, comment: 'remove-me', lifetimeSeconds: 600 });
    assert.ok((await client.list()).some((id) => id.blob.equals(cert.blob)));
    await client.remove(cert.blob);
    assert.ok(!(await client.list()).some((id) => id.blob.equals(cert.blob)));
    const r = await run(sshAdd, ['-L'], { env: sshAddEnv() });
    assert.ok(!r.stdout.includes(cert.blob.toString('base64')));
    await assert.rejects(client.remove(cert.blob), (e: unknown) => e instanceof AgentError && e.code === 'AGENT_REFUSED');
  });

  test('removeMatching() removes only the identities the predicate picks', async () => {
    const a = userCert('ed25519', 'match-a');
    const b = userCert('ecdsa-p256', 'match-b');
    const keep = userCert('ed25519', 'keep');
    await client.addCertificate({ privateKey: a.kp.privateKey, certBlob: a.cert.blob, comment: 'jumpgate:p1/alice' });
    await client.addKey(b.kp.privateKey, 'jumpgate:p1/alice');
    await client.addCertificate({ privateKey: b.kp.privateKey, certBlob: b.cert.blob, comment: 'jumpgate:p1/alice' });
    await client.addCertificate({ privateKey: keep.kp.privateKey, certBlob: keep.cert.blob, comment: 'someone else' });
    assert.equal(await client.removeMatching((id) => id.comment === 'jumpgate:p1/alice'), 3);
    const left = await client.list();
    assert.deepEqual(left.map((id) => id.comment), ['someone else']);
    await client.remove(keep.cert.blob);
  });

  test('a 1-second lifetime makes the agent forget the certificate', async () => {
    const { kp, cert } = userCert('ed25519', 'lifetime');
    await client.addCertificate({ privateKey: kp.privateKey, certBlob: cert.blob, comment: 'short', lifetimeSeconds: 1 });
    assert.ok((await client.list()).some((id) => id.blob.equals(cert.blob)), 'present right after the add');
    const deadline = Date.now() + 5_000;
    let present = true;
    while (present && Date.now() < deadline) {
      await sleep(250);
      present = (await client.list()).some((id) => id.blob.equals(cert.blob));
    }
    assert.equal(present, false, 'still listed 5 s after a 1 s lifetime');
  });

  test('addCertificateAndVerify() reports an OpenSSH agent that lists the certificate', async () => {
    const { kp, cert } = userCert('ed25519', 'verify');
    const r = await client.addCertificateAndVerify({ privateKey: kp.privateKey, certBlob: cert.blob, comment: 'v', lifetimeSeconds: 60 });
    assert.deepEqual(r, { status: 'listed', agentName: "OpenSSH's ssh-agent" });
    await client.remove(cert.blob);
  });

  test('refuses a certificate that does not certify the private key, before talking to the agent', async () => {
    const { cert } = userCert('ed25519', 'mismatch-cert');
    const other = keyPair('ed25519', 'mismatch-key');
    await assert.rejects(
      client.addCertificate({ privateKey: other.privateKey, certBlob: cert.blob, comment: 'x' }),
      (e: unknown) => e instanceof AgentError && e.code === 'AGENT_KEY_UNSUPPORTED' && /does not certify this private key/.test(e.message),
    );
    await assert.rejects(
      client.addCertificate({ privateKey: other.privateKey, certBlob: Buffer.from('not a certificate'), comment: 'x' }),
      (e: unknown) => e instanceof AgentError && e.code === 'AGENT_KEY_UNSUPPORTED',
    );
    await assert.rejects(client.addKey(other.privateKey, 'x', 0), RangeError);
    // The connection is still usable afterwards.
    assert.ok(Array.isArray(await client.list()));
  });
});

describe('real ssh logs in to a real sshd with only the agent identity', () => {
  let node: SshdNode;
  let ssh: string;
  let knownHosts: string;

  before(async () => {
    ssh = requireTool('ssh', INSTALL);
    const hostKey = keyPair('ed25519', 'agent-sshd-host');
    const hostCert = certify(hostCA, hostKey.publicKey, { type: 'host', principals: ['node1'] });
    const hostKeyFile = join(tmp.dir, 'host_key');
    writeFileSync(hostKeyFile, encodeOpenSSHPrivateKey(hostKey.privateKey), { mode: 0o600 });
    writeFileSync(`${hostKeyFile}-cert.pub`, encodeCertificateLine(hostCert) + '\n');
    const caFile = join(tmp.dir, 'user_ca.pub');
    writeFileSync(caFile, formatPublicKeyLine(userCA.publicKey) + '\n');
    knownHosts = writeKnownHosts(tmp.dir, hostCA.publicKey);
    node = await startSshd({ dir: tmp.dir, hostKey: hostKeyFile, hostCertificate: `${hostKeyFile}-cert.pub`, trustedUserCaKeys: caFile });
  });

  after(async () => {
    await node?.stop();
  });

  for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-3072'] as const) {
    test(`with a ${kind} certificate from the agent`, async () => {
      const { kp, cert } = userCert(kind, 'sshd');
      await client.removeMatching(() => true);
      await client.addCertificate({ privateKey: kp.privateKey, certBlob: cert.blob, comment: `sshd-${kind}`, lifetimeSeconds: 120 });
      const r = await run(
        ssh,
        [
          '-F', 'none',
          '-o', `IdentityAgent=${agent.sock}`,
          '-o', 'IdentityFile=none',
          '-o', 'BatchMode=yes',
          '-o', 'StrictHostKeyChecking=yes',
          '-o', `UserKnownHostsFile=${knownHosts}`,
          '-o', 'GlobalKnownHostsFile=/dev/null',
          '-o', 'UpdateHostKeys=no',
          '-o', 'HostKeyAlias=node1',
          '-o', 'ConnectTimeout=10',
          '-p', String(node.port),
          '-l', login,
          '127.0.0.1',
          'echo logged-in-as-$(id -un)',
        ],
        { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: tmp.dir }, timeoutMs: 30_000 },
      );
      assert.equal(r.code, 0, `ssh failed:\n${r.stderr}\n--- sshd ---\n${node.log().slice(-3000)}`);
      assert.equal(r.stdout.trim(), `logged-in-as-${login}`);
      // sshd names the certificate it accepted: the agent, not some other key, did it.
      await node.waitForLog(new RegExp(`Accepted publickey for ${login} .* ID sshd-${kind} \\(serial`));
      await client.remove(cert.blob);
    });
  }
});

describe('connecting', () => {
  test('no SSH_AUTH_SOCK on Linux is AGENT_NOT_RUNNING with the command that starts one', async () => {
    await assert.rejects(AgentClient.connect({ env: {}, platform: 'linux' }), (e: unknown) => {
      assert.ok(e instanceof AgentError);
      assert.equal(e.code, 'AGENT_NOT_RUNNING');
      assert.match(e.hint ?? '', /eval "\$\(ssh-agent\)"/);
      return true;
    });
  });

  test('on Windows an unset SSH_AUTH_SOCK means the OpenSSH agent service pipe', () => {
    assert.equal(AgentClient.resolveSocketPath({ env: {}, platform: 'win32' }), '\\\\.\\pipe\\openssh-ssh-agent');
    assert.equal(AgentClient.resolveSocketPath({ env: { SSH_AUTH_SOCK: 'C:\\x' }, platform: 'win32' }), 'C:\\x');
    assert.equal(AgentClient.resolveSocketPath({ socketPath: '/o', env: { SSH_AUTH_SOCK: '/e' }, platform: 'linux' }), '/o');
  });

  test('a socket path that does not exist is AGENT_UNREACHABLE naming it', async () => {
    const sock = join(tmp.dir, 'missing.sock');
    await assert.rejects(AgentClient.connect({ env: { SSH_AUTH_SOCK: sock }, platform: 'linux' }), (e: unknown) => {
      assert.ok(e instanceof AgentError);
      assert.equal(e.code, 'AGENT_UNREACHABLE');
      assert.ok(e.message.includes(sock), e.message);
      assert.match(e.message, /no such socket/);
      return true;
    });
  });

  test('the socket of a killed ssh-agent is AGENT_UNREACHABLE (connection refused)', async () => {
    const dead = await startSshAgent(join(tmp.dir, 'dead.sock'));
    dead.child.kill('SIGKILL');
    await new Promise((r) => dead.child.once('exit', r));
    assert.ok(existsSync(dead.sock), 'SIGKILL leaves the socket file behind');
    await assert.rejects(AgentClient.connect({ env: { SSH_AUTH_SOCK: dead.sock }, platform: 'linux' }), (e: unknown) => {
      assert.ok(e instanceof AgentError);
      assert.equal(e.code, 'AGENT_UNREACHABLE');
      assert.match(e.message, /connection refused/);
      assert.ok(e.message.includes(dead.sock));
      return true;
    });
  });
});
