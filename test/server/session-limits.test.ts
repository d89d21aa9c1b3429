/**
 * proxy.limits in-process: startSshProxy on 127.0.0.1:0 with small limits,
 * ssh2 clients carrying real certificates, plain TCP services as "nodes"
 * (every channel to them stays "logging in" as far as the proxy can tell).
 * The end-to-end test against OpenSSH's MaxStartups is
 * test/e2e/proxy-limits.test.ts; here each limit is checked on its own,
 * and the aggregated audit with mocked timers on the SessionLimiter itself.
 */
import { join } from 'node:path';
import { after, before, describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { ClientChannel, PublicKeyAuthMethod } from 'ssh2';
import { parseServerConfig, type ProxyLimits, type ServerConfig } from '../../src/config/index.js';
import { issueUserCertificate } from '../../src/server/auth/issuer.js';
import type { AccessDeniedEvent, AuditEvent } from '../../src/server/auth/audit.js';
import { LIMIT_AUDIT_EVERY_MS, SessionLimiter, isRefusal } from '../../src/server/proxy/session-limits.js';
import { startSshProxy } from '../../src/server/proxy/ssh-proxy.js';
import type { RunningService, ServerRuntime } from '../../src/server/runtime.js';
import { certIdentity, clientHostKeyAlgorithms } from '../../src/sshconn/index.js';
import { generateKeyPair } from '../../src/sshcert/index.js';
import { testRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tools.js';

describe('proxy.limits at the SSH proxy (in-process, ssh2 clients, TCP "nodes")', () => {
  const tmp = tempDir('session-limits');
  const nodes: Server[] = [];
  const held: Socket[] = [];
  let ports: number[] = [];
  let config: ServerConfig;
  let rt: ServerRuntime;
  let proxy: RunningService;
  const clients: ssh2.Client[] = [];

  before(async () => {
    for (let i = 0; i < 2; i++) {
      const s = createServer((sock) => {
        held.push(sock);
        sock.on('error', () => {});
        sock.write('SSH-2.0-FakeNode\r\n'); // then nothing: a login that never finishes
      });
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      nodes.push(s);
    }
    ports = nodes.map((s) => (s.address() as { port: number }).port);
    config = parseServerConfig(
      `cluster_name: limits.test
data_dir: ${tmp.dir}/data
proxy:
  ssh_listen_addr: 127.0.0.1:0
  limits:
    max_connections_per_user: 2
    max_channels_per_connection: 3
    max_sessions_per_user: 4
    max_concurrent_node_dials_per_user: 2
    max_concurrent_node_dials_per_node: 3
    node_login_grace_time: 2s
roles:
  user:
    logins: ["{{username}}"]
    node_labels: { env: test }
nodes:
  - { name: n1, addr: "127.0.0.1:${ports[0]}", labels: { env: test } }
  - { name: n1alias, addr: "127.0.0.1:${ports[0]}", labels: { env: test } }
  - { name: n2, addr: "127.0.0.1:${ports[1]}", labels: { env: test } }
`,
      `${tmp.dir}/jumpgate.yaml`,
    );
    rt = await testRuntime(config);
    proxy = await startSshProxy(rt, { host: '127.0.0.1', port: 0 });
  });

  after(async () => {
    for (const c of clients) c.end();
    await proxy?.close();
    for (const s of held) s.destroy();
    for (const s of nodes) s.close();
    await rt?.audit.close();
    await rt?.store.close();
    tmp.cleanup();
  });

  const limitEvents = () =>
    readFileSync(join(rt.config.dataDir, 'audit.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e['event'] === 'access.denied' && e['stage'] === 'limit');

  async function connect(user: string): Promise<{ client: ssh2.Client; banners: string[] }> {
    const kp = generateKeyPair('ed25519');
    const cert = await issueUserCertificate({ username: user, roles: ['user'], publicKey: kp.publicKey, via: 'test' }, { config, ca: rt.ca, audit: rt.audit, clock: rt.clock, store: rt.store });
    const client = new ssh2.Client();
    clients.push(client);
    const banners: string[] = [];
    client.on('banner', (m: string) => banners.push(m));
    const auth: PublicKeyAuthMethod = { type: 'publickey', username: user, key: certIdentity(kp.privateKey, cert.blob) };
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      client.once('error', (e) => reject(Object.assign(e, { banners })));
      client.connect({ host: '127.0.0.1', port: proxy.port, username: user, authHandler: [auth], hostVerifier: () => true, algorithms: { serverHostKey: clientHostKeyAlgorithms() }, readyTimeout: 10_000 });
    });
    return { client, banners };
  }

  /**
   * Opens a session channel and sends no request on it, as a client that
   * hoards channels would (ssh2's Client has no public call for that; this is
   * what its openChannel does for 'session').
   */
  const session = (c: ssh2.Client): Promise<ClientChannel | Error> =>
    new Promise((resolve) => {
      const inner = c as unknown as { _chanMgr: { add(cb: unknown): number }; _protocol: { session(local: number, window: number, packet: number): void } };
      const wrapper = Object.assign((err: Error | undefined, ch: ClientChannel) => resolve(err ?? ch), { type: 'session' });
      inner._protocol.session(inner._chanMgr.add(wrapper), 2 * 1024 * 1024, 32 * 1024);
    });
  const forward = (c: ssh2.Client, node: string): Promise<ClientChannel | Error> => new Promise((resolve) => c.forwardOut('127.0.0.1', 0, node, 22, (err, ch) => resolve(err ?? ch)));
  /** proxy:NODE:22 → 'reached' (the node's banner), or the proxy's stderr. */
  const viaSubsystem = (c: ssh2.Client, node: string): Promise<{ ch?: ClientChannel; stderr?: string }> =>
    new Promise((resolve) =>
      c.subsys(`proxy:${node}:22`, (err, ch) => {
        if (err) return resolve({ stderr: err.message });
        let stderr = '';
        ch.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        ch.once('data', () => resolve({ ch }));
        ch.on('close', () => resolve({ stderr }));
      }),
    );
  /**
   * Closes channels and waits until the proxy has seen it. ssh2's Server never
   * answers CLOSE on a session channel that had no request (its Session emits
   * 'close' without closing the channel), so waiting for the client's 'close'
   * would hang: a moment after sending CLOSE is enough for a loopback peer.
   */
  const closeAll = async (chs: (ClientChannel | Error | undefined)[]) => {
    await Promise.all(
      chs
        .filter((c): c is ClientChannel => !!c && !(c instanceof Error))
        .map((c) => Promise.race([new Promise((r) => (c.once('close', r), c.close())), new Promise((r) => setTimeout(r, 300))])),
    );
    await new Promise((r) => setTimeout(r, 100));
  };

  test('max_connections_per_user: the next login is refused with a banner saying why; other users and freed slots get in', async () => {
    const a = await connect('carol');
    const b = await connect('carol');
    const err = (await connect('carol').then(
      () => undefined,
      (e: Error & { banners: string[] }) => e,
    ))!;
    assert.ok(err, 'a third connection was admitted');
    assert.match(err.banners.join(''), /^jumpgate proxy: you have 2 SSH connections open to the proxy \(limit 2, proxy\.limits\.max_connections_per_user\); close some and try again\r\n$/);
    const other = await connect('dave');
    other.client.end();
    a.client.end();
    await new Promise((r) => setTimeout(r, 200));
    const again = await connect('carol');
    again.client.end();
    b.client.end();
    assert.equal(limitEvents().filter((e) => e['code'] === 'LIMIT_CONNECTIONS').length, 1);
  });

  test('max_channels_per_connection counts session channels that are never used, and direct-tcpip; closing one frees it', async () => {
    const { client } = await connect('erin');
    const idle = [await session(client), await session(client), await session(client)];
    assert.ok(idle.every((c) => !(c instanceof Error)));
    const fourth = await session(client);
    assert.ok(fourth instanceof Error);
    assert.match(fourth.message, /this SSH connection already has 3 channels open \(limit 3, proxy\.limits\.max_channels_per_connection\)/);
    const fwd = await forward(client, 'n1');
    assert.ok(fwd instanceof Error && /already has 3 channels open/.test(fwd.message));
    await closeAll([idle[0]]);
    const now = await forward(client, 'n1');
    assert.ok(!(now instanceof Error), String(now));
    await closeAll([...idle, now]);
    client.end();
  });

  test('max_concurrent_node_dials_per_user: a third dial to one node is refused (aliases of one address count together), another node is not', async () => {
    const { client } = await connect('frank');
    const a = await viaSubsystem(client, 'n1');
    const b = await forward(client, 'n1alias');
    const c = await viaSubsystem(client, 'n1');
    assert.ok(a.ch && !(b instanceof Error));
    assert.match(c.stderr ?? '', /^jumpgate proxy: you have 2 connections to n1 that may still be logging in \(opened in the last 2s and still open; limit 2, proxy\.limits\.max_concurrent_node_dials_per_user\)/);
    const d = await forward(client, 'n1');
    assert.ok(d instanceof Error && /you have 2 connections to n1 that may still be logging in/.test(d.message));
    const other = await viaSubsystem(client, 'n2');
    assert.ok(other.ch, other.stderr);
    // Closing a session frees its dial at once.
    await closeAll([a.ch]);
    const e = await viaSubsystem(client, 'n1');
    assert.ok(e.ch, e.stderr);
    await closeAll([b, other.ch, e.ch]);
    client.end();
  });

  test('a dial stops counting after node_login_grace_time (sshd has logged it in or cut it off by then); the session itself still counts', async () => {
    const { client } = await connect('grace');
    const a = await viaSubsystem(client, 'n2');
    const b = await viaSubsystem(client, 'n2');
    assert.ok(a.ch && b.ch);
    assert.match((await viaSubsystem(client, 'n2')).stderr ?? '', /may still be logging in/);
    await new Promise((r) => setTimeout(r, 2300));
    const c = await viaSubsystem(client, 'n2');
    assert.ok(c.ch, c.stderr);
    await closeAll([a.ch, b.ch, c.ch]);
    client.end();
  });

  test('max_concurrent_node_dials_per_node: every user’s dials to one node together', async () => {
    const h = await connect('heidi');
    const i = await connect('ivan');
    const got = [await viaSubsystem(h.client, 'n1'), await viaSubsystem(h.client, 'n1'), await viaSubsystem(i.client, 'n1')];
    assert.ok(got.every((g) => g.ch));
    const refused = await viaSubsystem(i.client, 'n1');
    assert.match(refused.stderr ?? '', /^jumpgate proxy: n1 has 3 connections that may still be logging in \(opened in the last 2s; limit 3, proxy\.limits\.max_concurrent_node_dials_per_node\)/);
    await closeAll(got.map((g) => g.ch));
    h.client.end();
    i.client.end();
  });

  test('max_sessions_per_user: node sessions over all of a user’s connections, also once their dials stop counting', async () => {
    const x = await connect('judy');
    const y = await connect('judy');
    const open = [await viaSubsystem(x.client, 'n1'), await viaSubsystem(x.client, 'n2'), await viaSubsystem(y.client, 'n1'), await viaSubsystem(y.client, 'n2')];
    assert.ok(open.every((o) => o.ch), JSON.stringify(open.map((o) => o.stderr)));
    await new Promise((r) => setTimeout(r, 2300));
    const fifth = await viaSubsystem(y.client, 'n2');
    assert.match(fifth.stderr ?? '', /^jumpgate proxy: you have 4 node sessions open through the proxy \(limit 4, proxy\.limits\.max_sessions_per_user\)/);
    const fwd = await forward(x.client, 'n2');
    assert.ok(fwd instanceof Error && /you have 4 node sessions open/.test(fwd.message));
    await closeAll(open.map((o) => o.ch));
    x.client.end();
    y.client.end();
  });
});

describe('SessionLimiter: refusals are audited aggregated, not one line each', () => {
  const limits: ProxyLimits = { maxConnectionsPerUser: 1, maxChannelsPerConnection: 1, maxSessionsPerUser: 1, maxNodeDialsPerUser: 1, maxNodeDialsPerNode: 1, nodeLoginGraceSeconds: 120 };
  const who = { user: 'mallory', login: 'mallory', clientAddr: '127.0.0.1:5555' };

  test('the first refusal at once, then one event a minute with the number refused since, none when quiet', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const events: AuditEvent[] = [];
      const l = new SessionLimiter(() => limits, (e) => events.push(e));
      const slot = l.admitNodeSession(who, '10.0.0.1:22', 'web1');
      assert.ok(!isRefusal(slot));
      for (let i = 0; i < 500; i++) assert.ok(isRefusal(l.admitNodeSession(who, '10.0.0.1:22', 'web1')));
      assert.equal(events.length, 1);
      assert.deepEqual({ ...events[0], reason: undefined }, { event: 'access.denied', stage: 'limit', user: 'mallory', login: 'mallory', node: 'web1', client_addr: '127.0.0.1:5555', code: 'LIMIT_SESSIONS', reason: undefined, refused: 1 });
      mock.timers.tick(LIMIT_AUDIT_EVERY_MS);
      assert.equal(events.length, 2);
      assert.equal((events[1] as AccessDeniedEvent).refused, 499);
      mock.timers.tick(LIMIT_AUDIT_EVERY_MS * 3);
      assert.equal(events.length, 2, 'nothing refused, nothing written');
      assert.ok(isRefusal(l.admitNodeSession(who, '10.0.0.1:22', 'web1')));
      assert.equal(events.length, 3);
      assert.ok(isRefusal(l.admitNodeSession(who, '10.0.0.1:22', 'web1')));
      l.close();
      assert.equal(events.length, 4, 'close writes what is pending');
      assert.equal((events[3] as AccessDeniedEvent).refused, 1);
      slot.release();
      slot.release();
      assert.deepEqual(l.counts(), { connections: 0, sessions: 0, dials: 0 });
    } finally {
      mock.timers.reset();
    }
  });
});
