/**
 * The proxy's SSH service in-process (startSshProxy on 127.0.0.1:0) against
 * an ssh2 Client carrying real certificates from the data directory's CAs;
 * "nodes" are plain TCP services, so the relay, the refusals and the audit
 * trail are checked without OpenSSH (test/e2e/ssh-proxy.test.ts has that).
 */
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server } from 'node:net';
import { randomBytes, createHash } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ClientChannel, PublicKeyAuthMethod } from 'ssh2';
import { parseServerConfig, type ServerConfig } from '../../src/config/index.js';
import type { CaStore } from '../../src/server/auth/ca.js';
import { issueUserCertificate } from '../../src/server/auth/issuer.js';
import { startSshProxy } from '../../src/server/proxy/ssh-proxy.js';
import type { RunningService, ServerRuntime } from '../../src/server/runtime.js';
import { certIdentity, clientHostKeyAlgorithms, hostCertVerifier, type HostCertVerifier } from '../../src/sshconn/index.js';
import { generateKeyPair } from '../../src/sshcert/index.js';
import { freePort } from '../helpers/sshd.js';
import { tempDir } from '../helpers/tools.js';
import { openDirState, testRuntime } from '../helpers/runtime.js';

describe('startSshProxy (in-process, ssh2 client, TCP "nodes")', () => {
  const tmp = tempDir('ssh-proxy');
  let echo: Server;
  let echoPort: number;
  let deadPort: number;
  let config: ServerConfig;
  let rt: ServerRuntime;
  let proxy: RunningService;
  const logs: string[] = [];

  const yaml = (roles: string) => `cluster_name: unit.test
data_dir: ${tmp.dir}/data
proxy:
  ssh_listen_addr: 127.0.0.1:0
  ssh_public_addr: jump.unit.test:3023
roles:
${roles}
nodes:
  - { name: echo1, addr: "127.0.0.1:${echoPort}", labels: { env: test } }
  - { name: dead1, addr: "127.0.0.1:${deadPort}", labels: { env: test } }
  - { name: prod1, addr: "127.0.0.1:${echoPort}", labels: { env: prod } }
`;
  const ROLES = '  user:\n    logins: ["{{username}}"]\n    node_labels: { env: test }\n';

  before(async () => {
    echo = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as { port: number }).port;
    deadPort = await freePort();
    config = parseServerConfig(yaml(ROLES), `${tmp.dir}/jumpgate.yaml`);
    rt = await testRuntime(config, logs);
    proxy = await startSshProxy(rt, { host: '127.0.0.1', port: 0 }, { handshakeTimeoutMs: 700 });
  });

  after(async () => {
    await proxy?.close();
    echo?.close();
    await rt?.audit.close();
    await rt?.store.close();
    tmp.cleanup();
  });

  const auditEvents = () =>
    readFileSync(join(rt.config.dataDir, 'audit.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  async function userIdentity(opts: { login?: string; roles?: string[]; cfg?: ServerConfig; ca?: CaStore } = {}) {
    const kp = generateKeyPair('ed25519');
    const cert = await issueUserCertificate(
      { username: opts.login ?? 'alice', roles: opts.roles ?? ['user'], publicKey: kp.publicKey, via: 'test' },
      { config: opts.cfg ?? config, ca: opts.ca ?? rt.ca, audit: rt.audit, clock: rt.clock, store: rt.store },
    );
    return certIdentity(kp.privateKey, cert.blob);
  }

  async function connect(opts: { login?: string; identity?: Awaited<ReturnType<typeof userIdentity>>; hostname?: string } = {}): Promise<{ client: ssh2.Client; verifier: HostCertVerifier }> {
    const verifier = hostCertVerifier({ trustedHostCAs: () => rt.ca.get('host').trusted.map((k) => k.publicKey), hostname: opts.hostname ?? 'localhost', now: () => new Date() });
    const client = new ssh2.Client();
    const login = opts.login ?? 'alice';
    const auth: PublicKeyAuthMethod = { type: 'publickey', username: login, key: opts.identity ?? (await userIdentity()) };
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      client.once('error', (e) => reject(verifier.error ?? e));
      client.connect({
        host: '127.0.0.1',
        port: proxy.port,
        username: login,
        authHandler: [auth],
        hostVerifier: verifier,
        algorithms: { serverHostKey: clientHostKeyAlgorithms() },
        readyTimeout: 5_000,
      });
    });
    return { client, verifier };
  }

  function subsystem(client: ssh2.Client, name: string): Promise<ClientChannel> {
    return new Promise((resolve, reject) => client.subsys(name, (err, ch) => (err ? reject(err) : resolve(ch))));
  }

  /** Opens a subsystem and reads it to its end (listeners attached at once: exit-status may come in the same packet batch). */
  function subsystemResult(client: ssh2.Client, name: string): ReturnType<typeof drain> {
    return new Promise((resolve, reject) => client.subsys(name, (err, ch) => (err ? reject(err) : resolve(drain(ch)))));
  }

  /** Reads a channel to its end: stdout, stderr and the exit status. */
  function drain(ch: ClientChannel): Promise<{ out: Buffer; err: string; code: number | undefined }> {
    return new Promise((resolve) => {
      const out: Buffer[] = [];
      let err = '';
      let code: number | undefined;
      ch.on('data', (b: Buffer) => out.push(b));
      ch.stderr.on('data', (b: Buffer) => (err += b.toString()));
      ch.on('exit', (c: number) => (code = c));
      ch.on('close', () => resolve({ out: Buffer.concat(out), err, code }));
    });
  }

  test('relays 16 MB both ways through proxy:HOST:PORT with back-pressure, and audits the session with its bytes', async () => {
    const { client } = await connect();
    try {
      const ch = await subsystem(client, 'proxy:echo1:22');
      const data = randomBytes(16 * 1024 * 1024);
      const done = drain(ch);
      ch.end(data);
      const r = await done;
      assert.equal(r.out.length, data.length);
      assert.equal(createHash('sha256').update(r.out).digest('hex'), createHash('sha256').update(data).digest('hex'));
    } finally {
      client.end();
    }
    await waitFor(() => auditEvents().some((e) => e['event'] === 'session.end' && e['bytes_to_node'] === 16 * 1024 * 1024));
    const end = auditEvents().find((e) => e['event'] === 'session.end' && e['bytes_to_node'] === 16 * 1024 * 1024)!;
    assert.equal(end['bytes_from_node'], 16 * 1024 * 1024);
    assert.equal(end['user'], 'alice');
    assert.equal(end['login'], 'alice');
    assert.equal(end['node'], 'echo1');
    const start = auditEvents().find((e) => e['event'] === 'session.start' && e['session_id'] === end['session_id'])!;
    assert.equal(start['via'], 'subsystem');
    assert.match(String(start['client_addr']), /^127\.0\.0\.1:\d+$/);
  });

  test('when the node ends a session, its session.end is in the audit log by the time the client sees the channel close', async () => {
    const { client } = await connect();
    // A store that takes its time (a database across the network): the same file, written 300 ms late.
    const audit = rt.store.audit;
    const append = audit.append.bind(audit);
    audit.append = async (line, ev) => {
      await new Promise((r) => setTimeout(r, 300));
      return append(line, ev);
    };
    try {
      const ch = await subsystem(client, 'proxy:echo1:22');
      const done = drain(ch);
      ch.end(Buffer.from('ping'));
      const r = await done; // the echo node ends its side after ours: the node ends the session
      assert.equal(r.out.toString(), 'ping');
      const ends = auditEvents().filter((e) => e['event'] === 'session.end' && e['bytes_to_node'] === 4 && e['bytes_from_node'] === 4);
      assert.equal(ends.length, 1, 'session.end stored before the channel closed, with its byte counts');
    } finally {
      audit.append = append;
      client.end();
    }
  });

  test('presents a host certificate from the host CA; after a rotation it keeps the old key until the grace period ends', async () => {
    const first = await connect({ hostname: 'jump.unit.test' });
    first.client.end();
    const before = first.verifier.certificate!;
    assert.deepEqual(before.principals, ['jump.unit.test', '127.0.0.1', 'localhost']);
    assert.ok(before.signatureKey.blob.equals(rt.ca.get('host').active.publicKey.blob));
    // Users who logged in before the rotation know only the old key: keep presenting it.
    await rt.ca.rotate('host', 3600);
    const during = await connect();
    during.client.end();
    assert.ok(during.verifier.certificate!.signatureKey.blob.equals(before.signatureKey.blob), 'still the old key during the grace period');
    // Grace over (a second rotation without one ends all old trust): the newest key signs.
    const ended = await rt.ca.rotate('host', 0);
    const after = await connect();
    after.client.end();
    assert.ok(after.verifier.certificate!.signatureKey.blob.equals(ended.active.publicKey.blob), 're-signed by the active key once no older key is trusted');
    assert.ok(after.verifier.certificate!.key.blob.equals(before.key.blob), 'same host key');
  });

  test('serves nodes@jumpgate.dev: the nodes the roles reach, as JSON', async () => {
    const { client } = await connect();
    try {
      const r = await subsystemResult(client, 'nodes@jumpgate.dev');
      assert.equal(r.code, 0);
      const body = JSON.parse(r.out.toString()) as { cluster: string; nodes: Array<{ name: string }> };
      assert.equal(body.cluster, 'unit.test');
      assert.deepEqual(body.nodes.map((n) => n.name), ['echo1', 'dead1']);
    } finally {
      client.end();
    }
  });

  test('refuses a node the roles do not select, with the reason on stderr, exit 1, and access.denied', async () => {
    const { client } = await connect();
    try {
      const r = await subsystemResult(client, 'proxy:prod1:22');
      assert.equal(r.code, 1);
      assert.equal(r.err, 'jumpgate proxy: no node "prod1" that you may reach in cluster unit.test; `tsh ls` lists yours\n');
    } finally {
      client.end();
    }
    assert.ok(auditEvents().some((e) => e['event'] === 'access.denied' && e['code'] === 'NODE_DENIED' && e['node'] === 'prod1' && e['user'] === 'alice'));
  });

  test('says why a node cannot be reached', async () => {
    const { client } = await connect();
    try {
      const r = await subsystemResult(client, 'proxy:dead1:22');
      assert.equal(r.code, 1);
      assert.equal(r.err, 'jumpgate proxy: cannot reach dead1: connection refused\n');
    } finally {
      client.end();
    }
  });

  test('direct-tcpip relays to an allowed node and is refused with a reason otherwise', async () => {
    const { client } = await connect();
    try {
      const ok = await new Promise<ClientChannel>((res, rej) => client.forwardOut('127.0.0.1', 1, 'echo1', 22, (e, ch) => (e ? rej(e) : res(ch))));
      const got = drain(ok);
      ok.end('ping');
      assert.equal((await got).out.toString(), 'ping');
      const err = await new Promise<Error>((res) => client.forwardOut('127.0.0.1', 1, 'nowhere', 22, (e) => res(e!)));
      assert.match(err.message, /no node "nowhere" that you may reach/);
    } finally {
      client.end();
    }
  });

  test('has no shell: a command gets a message and exit 1', async () => {
    const { client } = await connect();
    try {
      const r = await new Promise<Awaited<ReturnType<typeof drain>>>((res, rej) => client.exec('id', (e, c) => (e ? rej(e) : res(drain(c)))));
      assert.equal(r.code, 1);
      assert.match(r.err, /This is the Jumpgate proxy: it has no shell/);
    } finally {
      client.end();
    }
  });

  test('refuses a login that is not among the certificate principals, and audits why', async () => {
    await assert.rejects(connect({ login: 'root', identity: await userIdentity({ login: 'alice' }) }), /All configured authentication methods failed/);
    await waitFor(() => auditEvents().some((e) => e['event'] === 'access.denied' && e['code'] === 'CERT_PRINCIPAL_MISMATCH' && e['user'] === 'alice'));
  });

  test('refuses a certificate from another user CA', async () => {
    const otherState = await openDirState(`${tmp.dir}/other-data`);
    await otherState.close();
    const other = otherState.ca;
    await assert.rejects(connect({ identity: await userIdentity({ ca: other }) }), /All configured authentication methods failed/);
    await waitFor(() => auditEvents().some((e) => e['event'] === 'access.denied' && e['code'] === 'CERT_UNTRUSTED_CA'));
  });

  test('refuses a certificate whose roles are no longer defined', async () => {
    const old = parseServerConfig(yaml(`${ROLES}  retired:\n    logins: ["{{username}}"]\n    node_labels: { env: test }\n`), `${tmp.dir}/jumpgate.yaml`);
    await assert.rejects(connect({ identity: await userIdentity({ roles: ['retired'], cfg: old }) }), /All configured authentication methods failed/);
    await waitFor(() => auditEvents().some((e) => e['event'] === 'access.denied' && e['code'] === 'NO_ROLES'));
  });

  test('keeps an authenticated connection past the handshake deadline', async () => {
    const { client } = await connect();
    try {
      await new Promise((r) => setTimeout(r, 1_200));
      const r = await subsystemResult(client, 'nodes@jumpgate.dev');
      assert.equal(r.code, 0);
    } finally {
      client.end();
    }
  });

  test('drops a connection that does not finish its handshake in time', async () => {
    const sock = netConnect({ host: '127.0.0.1', port: proxy.port });
    sock.on('data', () => {}); // the server's banner
    const started = Date.now();
    await new Promise<void>((r) => sock.on('close', () => r()));
    const took = Date.now() - started;
    assert.ok(took >= 600 && took < 5_000, `closed after ${took} ms`);
  });
});

async function waitFor(fn: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!fn()) {
    if (Date.now() > deadline) assert.fail('condition never became true');
    await new Promise((r) => setTimeout(r, 25));
  }
}
