/**
 * One user cannot lock everyone out of a node (issue 10, fault 4): the real
 * `jumpgate start` with its default proxy.limits, a private sshd with
 * OpenSSH's default MaxStartups (10:30:100), and an ssh2 client that opens
 * 120 direct-tcpip channels to node1 on one connection, or many `proxy:`
 * subsystem channels over several connections, and never speaks SSH inside
 * them: each one is a connection the node's sshd holds unauthenticated.
 * Meanwhile another user's plain ssh, scp and rsync must work.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { ClientChannel, PublicKeyAuthMethod } from 'ssh2';
import { openDirState } from '../helpers/runtime.js';
import { issueUserCertificate } from '../../src/server/auth/issuer.js';
import { generateKeyPair } from '../../src/sshcert/index.js';
import { certIdentity, clientHostKeyAlgorithms, hostCertVerifier } from '../../src/sshconn/index.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { builtProgram, requireTool, run, tempDir, type RunResult } from '../helpers/tools.js';

const LOGIN = 'root';

describe('proxy.limits end to end: one user cannot fill a node’s MaxStartups (jumpgate start + sshd + ssh/scp/rsync)', () => {
  const tmp = tempDir('proxy-limits');
  let cluster: ProxyCluster;
  let victim: FakeLogin;
  let ssh: string;
  const clients: ssh2.Client[] = [];

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    cluster = await startProxyCluster(tmp.dir);
    victim = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-victim'), username: LOGIN, roles: ['user'] });
  });

  after(async () => {
    for (const c of clients) c.end();
    await cluster?.stop();
    tmp.cleanup();
  });

  /** An ssh2 connection to the proxy as `username` (a certificate from the cluster's user CA, role user). */
  async function connectAs(username: string): Promise<ssh2.Client> {
    const state = await openDirState(cluster.config.dataDir);
    const { ca, clock } = state;
    const kp = generateKeyPair('ed25519');
    let cert;
    try {
      cert = await issueUserCertificate({ username, roles: ['user'], publicKey: kp.publicKey, via: 'test' }, { config: cluster.config, ca, audit: state.audit, clock, store: state.store });
    } finally {
      await state.close();
    }
    const client = new ssh2.Client();
    clients.push(client);
    const auth: PublicKeyAuthMethod = { type: 'publickey', username, key: certIdentity(kp.privateKey, cert.blob) };
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      client.once('error', reject);
      client.connect({
        host: '127.0.0.1',
        port: cluster.sshPort,
        username,
        authHandler: [auth],
        hostVerifier: hostCertVerifier({ trustedHostCAs: () => ca.get('host').trusted.map((k) => k.publicKey), hostname: 'localhost', now: clock }),
        algorithms: { serverHostKey: clientHostKeyAlgorithms() },
        readyTimeout: 10_000,
      });
    });
    return client;
  }

  /** Opens a direct-tcpip channel to node1:22; resolves with the channel or the refusal. */
  function forward(client: ssh2.Client): Promise<ClientChannel | Error> {
    return new Promise((resolve) => client.forwardOut('127.0.0.1', 0, 'node1', 22, (err, ch) => resolve(err ?? ch)));
  }

  /** Opens `proxy:node1:22`; resolves with the node's first bytes or the proxy's stderr. */
  function proxySubsystem(client: ssh2.Client): Promise<{ ch?: ClientChannel; banner?: string; stderr?: string; error?: Error }> {
    return new Promise((resolve) =>
      client.subsys('proxy:node1:22', (err, ch) => {
        if (err) return resolve({ error: err });
        let stderr = '';
        ch.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        ch.once('data', (b: Buffer) => resolve({ ch, banner: b.toString() }));
        ch.on('close', () => resolve({ stderr }));
      }),
    );
  }

  const sshAs = (who: FakeLogin, args: string[]): Promise<RunResult> =>
    run(ssh, ['-F', who.sshConfigFile, '-o', 'BatchMode=yes', ...args], { env: who.env, timeoutMs: 60_000 });

  const limitEvents = () => cluster.audit().filter((e) => e['event'] === 'access.denied' && e['stage'] === 'limit');

  test('120 direct-tcpip channels on one connection: at most a few reach node1, each refusal says which limit, and another user’s ssh still gets in', async () => {
    const mallory = await connectAs('mallory');
    const results = await Promise.all(Array.from({ length: 120 }, () => forward(mallory)));
    const open = results.filter((r): r is ClientChannel => !(r instanceof Error));
    const refused = results.filter((r): r is Error => r instanceof Error);
    const limits = cluster.config.proxy.limits;
    assert.ok(open.length <= limits.maxNodeDialsPerUser, `${open.length} channels reached node1`);
    assert.ok(open.length > 0);
    assert.equal(open.length + refused.length, 120);
    for (const e of refused) {
      assert.match(e.message, /max_channels_per_connection|max_concurrent_node_dials_per_user/, e.message);
    }
    assert.ok(refused.some((e) => /this SSH connection already has 10 channels open \(limit 10, proxy\.limits\.max_channels_per_connection\)/.test(e.message)) || refused.some((e) => /you have 8 connections to node1 that may still be logging in/.test(e.message)));
    // The node's sshd holds the open ones unauthenticated (their SSH banner arrived).
    await Promise.all(open.map((ch) => new Promise((r) => ch.once('data', r))));

    const r = await sshAs(victim, ['node1', 'id -un']);
    assert.equal(r.code, 0, `ssh failed:\n${r.stderr}\n--- sshd ---\n${cluster.node.log().slice(-3000)}`);
    assert.equal(r.stdout.trim(), LOGIN);
    assert.doesNotMatch(cluster.node.log(), /drop connection #\d+ from \[127\.0\.0\.1\]/, 'sshd MaxStartups dropped a connection');

    // Audited, aggregated: one event per kind of refusal, not one per channel.
    const events = limitEvents().filter((e) => e['user'] === 'mallory');
    assert.ok(events.length >= 1 && events.length <= 2, JSON.stringify(events));
    assert.ok(events.every((e) => e['refused'] === 1 && typeof e['reason'] === 'string' && e['client_addr']));
    for (const ch of open) ch.close();
    mallory.end();
  });

  test('many connections with a few proxy: subsystems each: still at most a few dials to node1 per user, with the jumpgate proxy: line', async () => {
    const conns = await Promise.all(Array.from({ length: 6 }, () => connectAs('trudy')));
    const results = (await Promise.all(conns.map((c) => Promise.all(Array.from({ length: 3 }, () => proxySubsystem(c)))))).flat();
    const reached = results.filter((r) => r.banner !== undefined);
    const refused = results.filter((r) => r.stderr !== undefined);
    assert.equal(reached.length, cluster.config.proxy.limits.maxNodeDialsPerUser);
    assert.equal(refused.length, 18 - reached.length);
    for (const r of refused) assert.match(r.stderr!, /^jumpgate proxy: you have 8 connections to node1 that may still be logging in \(opened in the last 2m and still open; limit 8, proxy\.limits\.max_concurrent_node_dials_per_user\)/);
    for (const r of reached) assert.match(r.banner!, /^SSH-2\.0-OpenSSH/);

    const r = await sshAs(victim, ['node1', 'true']);
    assert.equal(r.code, 0, r.stderr);
    for (const c of conns) c.end();
  });

  test('a normal user is not affected: parallel scp and rsync, and sequential ssh, all succeed', async () => {
    const scp = requireTool('scp', 'apt-get install -y openssh-client');
    const rsync = requireTool('rsync', 'apt-get install -y rsync');
    const src = join(tmp.dir, 'files');
    mkdirSync(src);
    const remote = join(tmp.dir, 'remote');
    mkdirSync(remote);
    for (let i = 0; i < 4; i++) writeFileSync(join(src, `f${i}`), randomBytes(200_000));
    const opts = ['-F', victim.sshConfigFile, '-o', 'BatchMode=yes', '-q'];
    const runs = [
      ...[0, 1, 2, 3].map((i) => run(scp, [...opts, join(src, `f${i}`), `node1:${remote}/f${i}`], { env: victim.env, timeoutMs: 60_000 })),
      run(rsync, ['-a', '-e', `${ssh} -F ${victim.sshConfigFile} -o BatchMode=yes`, `${src}/`, `node1:${remote}/tree/`], { env: victim.env, timeoutMs: 60_000 }),
    ];
    for (const r of await Promise.all(runs)) assert.equal(r.code, 0, r.stderr);
    for (let i = 0; i < 3; i++) {
      const r = await sshAs(victim, ['node1', 'true']);
      assert.equal(r.code, 0, r.stderr);
    }
    for (let i = 0; i < 4; i++) assert.deepEqual(readFileSync(join(remote, `f${i}`)), readFileSync(join(src, `f${i}`)));
    assert.equal(limitEvents().filter((e) => e['user'] === LOGIN).length, 0);
  });
});
