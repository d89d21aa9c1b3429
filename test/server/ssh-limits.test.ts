/**
 * Hostile or broken clients on the proxy's SSH port, in-process
 * (startSshProxy on 127.0.0.1:0): raw sockets that stall, trickle, send
 * endless identification lines, oversized packets or endless pre-auth
 * traffic, open too many handshakes from one address, or guess at
 * authentication. Each is cut off by a limit documented in ssh-proxy.ts
 * and README.md; the deadlines are shortened here, the byte limits are the
 * real ones.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { PublicKeyAuthMethod } from 'ssh2';
import { parseServerConfig } from '../../src/config/index.js';
import { issueUserCertificate } from '../../src/server/auth/issuer.js';
import { MAX_AUTH_FAILURES, MAX_PREAUTH_BYTES, startSshProxy, type SshProxyOptions } from '../../src/server/proxy/ssh-proxy.js';
import type { RunningService, ServerRuntime } from '../../src/server/runtime.js';
import { generateKeyPair } from '../../src/sshcert/index.js';
import { certIdentity, clientHostKeyAlgorithms } from '../../src/sshconn/index.js';
import { tempDir } from '../helpers/tools.js';
import { testRuntime } from '../helpers/runtime.js';

describe('SSH proxy limits on unauthenticated connections', () => {
  const tmp = tempDir('ssh-limits');
  let rt: ServerRuntime;
  const logs: string[] = [];
  const proxies: RunningService[] = [];

  before(async () => {
    const config = parseServerConfig(
      `cluster_name: limits.test
data_dir: ${tmp.dir}/data
proxy:
  ssh_listen_addr: 127.0.0.1:0
roles:
  user:
    logins: ["{{username}}"]
    node_labels: { env: test }
nodes:
  - { name: node1, addr: "127.0.0.1:22", labels: { env: test } }
`,
      `${tmp.dir}/jumpgate.yaml`,
    );
    rt = await testRuntime(config, logs);
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await rt?.audit.close();
    await rt?.store.close();
    tmp.cleanup();
  });

  async function proxy(opts: SshProxyOptions): Promise<number> {
    const p = await startSshProxy(rt, { host: '127.0.0.1', port: 0 }, opts);
    proxies.push(p);
    return p.port;
  }

  interface Raw {
    sock: Socket;
    /** Bytes the server sent. */
    received: () => Buffer;
    /** Resolves with the milliseconds from connect to close. */
    closed: Promise<number>;
  }

  function raw(port: number, localAddress = '127.0.0.1'): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const sock = netConnect({ host: '127.0.0.1', port, localAddress });
      const chunks: Buffer[] = [];
      sock.on('data', (b: Buffer) => chunks.push(b));
      sock.on('error', () => {}); // a reset is one way of being cut off
      const started = Date.now();
      const closed = new Promise<number>((r) => sock.on('close', () => r(Date.now() - started)));
      sock.once('connect', () => resolve({ sock, received: () => Buffer.concat(chunks), closed }));
      sock.once('error', reject);
    });
  }

  /** An unencrypted binary packet (RFC 4253 §6) carrying SSH_MSG_IGNORE with `size` bytes of data. */
  function ignorePacket(size: number): Buffer {
    const payload = Buffer.alloc(1 + 4 + size);
    payload[0] = 2; // SSH_MSG_IGNORE
    payload.writeUInt32BE(size, 1);
    let padding = 8 - ((4 + 1 + payload.length) % 8);
    if (padding < 4) padding += 8;
    const packet = Buffer.alloc(4 + 1 + payload.length + padding);
    packet.writeUInt32BE(1 + payload.length + padding, 0);
    packet[4] = padding;
    payload.copy(packet, 5);
    return packet;
  }

  /** Writes until the socket closes (or `max` bytes); resolves with the bytes written. */
  async function writeUntilClosed(r: Raw, chunk: Buffer, max: number): Promise<number> {
    let written = 0;
    let open = true;
    void r.closed.then(() => (open = false));
    while (open && written < max) {
      const ok = r.sock.write(chunk);
      written += chunk.length;
      if (!ok) await Promise.race([new Promise((res) => r.sock.once('drain', res)), r.closed]);
    }
    await r.closed;
    return written;
  }

  test('drops a client that connects and sends nothing after the handshake timeout', async () => {
    const port = await proxy({ handshakeTimeoutMs: 400 });
    const r = await raw(port);
    const took = await r.closed;
    assert.ok(took >= 350 && took < 3_000, `closed after ${took} ms`);
    assert.match(r.received().toString('latin1'), /^SSH-2\.0-Jumpgate\r\n/, 'the server still said who it is');
  });

  test('drops a client that trickles a valid identification line, one byte at a time, at the handshake timeout', async () => {
    const port = await proxy({ handshakeTimeoutMs: 600 });
    const r = await raw(port);
    const line = 'SSH-2.0-slowloris_1.0';
    let i = 0;
    const t = setInterval(() => i < line.length && r.sock.write(line[i++]!), 50);
    const took = await r.closed;
    clearInterval(t);
    assert.ok(took >= 550 && took < 3_000, `closed after ${took} ms`);
  });

  test('cuts off an endless identification line at 8192 bytes, long before the handshake timeout', async () => {
    const port = await proxy({ handshakeTimeoutMs: 20_000 });
    const r = await raw(port);
    // 8300 bytes: past ssh2's 8192, far below the 64 KiB pre-authentication limit.
    r.sock.write('SSH-2.0-' + 'A'.repeat(8292));
    assert.ok((await r.closed) < 5_000);
  });

  test('refuses lines before the identification line (clients may not send a greeting)', async () => {
    const port = await proxy({ handshakeTimeoutMs: 20_000 });
    const r = await raw(port);
    r.sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.ok((await r.closed) < 5_000);
  });

  test('cuts off a packet that announces more than 35000 bytes', async () => {
    const port = await proxy({ handshakeTimeoutMs: 20_000 });
    const r = await raw(port);
    const header = Buffer.alloc(5);
    header.writeUInt32BE(1 << 20, 0); // 1 MiB packet length
    header[4] = 4;
    r.sock.write(Buffer.concat([Buffer.from('SSH-2.0-big_1.0\r\n'), header]));
    assert.ok((await r.closed) < 5_000);
  });

  test(`cuts off endless pre-authentication traffic after ${MAX_PREAUTH_BYTES} bytes (valid SSH_MSG_IGNORE packets)`, async () => {
    const port = await proxy({ handshakeTimeoutMs: 20_000 });
    const r = await raw(port);
    r.sock.write('SSH-2.0-chatty_1.0\r\n');
    const written = await writeUntilClosed(r, ignorePacket(16_000), 64 << 20);
    assert.ok((await r.closed) < 5_000);
    assert.ok(written > MAX_PREAUTH_BYTES && written < 16 << 20, `wrote ${written} bytes`);
    assert.ok(logs.some((l) => l.includes(`sent over ${MAX_PREAUTH_BYTES} bytes before authenticating`)));
  });

  test('a certificate login fits well within the pre-authentication byte limit, and the limit ends with authentication', async () => {
    const port = await proxy({ maxPreauthBytes: 16 * 1024 });
    const client = await login(port);
    // After authentication the byte count no longer applies: 256 KiB of requests on the authenticated connection.
    const big = 'x'.repeat(32 * 1024);
    for (let i = 0; i < 8; i++) {
      await new Promise<void>((resolve) => client.subsys(`proxy:${big}:22`, () => resolve()));
    }
    await new Promise<void>((resolve, reject) => client.subsys('nodes@jumpgate.dev', (err) => (err ? reject(err) : resolve())));
    client.end();
  });

  test('limits unauthenticated connections per prefix (all of loopback is one) and in all', async () => {
    const port = await proxy({ handshakeTimeoutMs: 20_000, maxUnauthenticatedPerPrefix: 4 });
    const held = await Promise.all([2, 3, 4, 5].map((n) => raw(port, `127.0.1.${n}`)));
    await waitFor(() => held.every((h) => h.received().length > 0));
    const fifth = await raw(port, '127.0.9.9');
    assert.ok((await fifth.closed) < 2_000);
    assert.equal(fifth.received().length, 0, 'another address of the same prefix is closed before the banner');
    assert.ok(logs.some((l) => /127\.0\.9\.9's prefix 127\.0\.0\.0\/8 has 4 connections still in their handshake \(limit 4 per prefix\)/.test(l)));
    for (const h of held) h.sock.destroy();

    const total = await proxy({ handshakeTimeoutMs: 20_000, maxUnauthenticated: 2 });
    const two = await Promise.all([raw(total, '127.0.2.1'), raw(total, '127.0.2.2')]);
    await waitFor(() => two.every((h) => h.received().length > 0));
    const third = await raw(total, '127.0.2.3');
    assert.ok((await third.closed) < 2_000);
    two[0]!.sock.destroy();
    await two[0]!.closed;
    const again = await raw(total, '127.0.2.3');
    await waitFor(() => again.received().length > 0);
    for (const h of [...two, again]) h.sock.destroy();
  });

  test('limits unauthenticated connections per source address; other addresses and freed slots get through', async () => {
    const port = await proxy({ handshakeTimeoutMs: 20_000, maxUnauthenticatedPerSource: 3 });
    const held = await Promise.all([raw(port, '127.0.0.2'), raw(port, '127.0.0.2'), raw(port, '127.0.0.2')]);
    await waitFor(() => held.every((h) => h.received().length > 0)); // each got the banner: counted
    const fourth = await raw(port, '127.0.0.2');
    assert.ok((await fourth.closed) < 2_000);
    assert.equal(fourth.received().length, 0, 'closed before the SSH banner');
    assert.ok(logs.some((l) => /127\.0\.0\.2 has 3 connections still in their handshake \(limit 3 per source\)/.test(l)));

    const other = await raw(port, '127.0.0.3');
    await waitFor(() => other.received().length > 0);
    // An authenticated connection leaves the count: it does not block the source.
    held[0]!.sock.destroy();
    await held[0]!.closed;
    const client = await login(port, '127.0.0.2');
    const again = await raw(port, '127.0.0.2');
    await waitFor(() => again.received().length > 0);
    client.end();
    for (const h of [...held, other, again]) h.sock.destroy();
  });

  test(`closes a connection after ${MAX_AUTH_FAILURES} failed authentication attempts`, async () => {
    const port = await proxy({});
    let attempts = 0;
    const err = await new Promise<Error>((resolve) => {
      const c = new ssh2.Client();
      c.on('error', resolve);
      c.on('close', () => resolve(new Error('closed')));
      c.on('ready', () => resolve(new Error('authenticated?!')));
      c.connect({
        host: '127.0.0.1',
        port,
        username: 'alice',
        hostVerifier: () => true,
        algorithms: { serverHostKey: clientHostKeyAlgorithms() },
        readyTimeout: 5_000,
        authHandler: (_methods, _partial, next) => {
          attempts++;
          next({ type: 'password', username: 'alice', password: `guess${attempts}` });
        },
      });
    });
    assert.doesNotMatch(err.message, /authenticated/);
    assert.ok(attempts <= MAX_AUTH_FAILURES + 1, `${attempts} attempts`);
    await waitFor(() => logs.some((l) => l.includes(`${MAX_AUTH_FAILURES} failed authentication attempts; closing`)));
  });

  test('closes a connection after too many authentication requests of any outcome', async () => {
    const port = await proxy({ maxAuthFailures: 100, maxAuthRequests: 3 });
    await new Promise<void>((resolve) => {
      const c = new ssh2.Client();
      let n = 0;
      c.on('error', () => resolve());
      c.on('close', () => resolve());
      c.connect({ host: '127.0.0.1', port, username: 'bob', hostVerifier: () => true, algorithms: { serverHostKey: clientHostKeyAlgorithms() }, readyTimeout: 5_000, authHandler: (_m, _p, next) => next({ type: 'password', username: 'bob', password: `p${n++}` }) });
    });
    await waitFor(() => logs.some((l) => l.includes('4 authentication requests; closing')));
  });

  /** A certificate login (ssh2 client, user CA of the data directory), optionally from another loopback address. */
  async function login(port: number, localAddress = '127.0.0.1'): Promise<ssh2.Client> {
    const kp = generateKeyPair('ed25519');
    const cert = await issueUserCertificate({ username: 'alice', roles: ['user'], publicKey: kp.publicKey, via: 'test' }, { config: rt.config, ca: rt.ca, audit: rt.audit, clock: rt.clock, store: rt.store });
    const auth: PublicKeyAuthMethod = { type: 'publickey', username: 'alice', key: certIdentity(kp.privateKey, cert.blob) };
    const sock = netConnect({ host: '127.0.0.1', port, localAddress });
    const client = new ssh2.Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      client.once('error', reject);
      client.connect({
        sock,
        username: 'alice',
        authHandler: [auth],
        hostVerifier: () => true,
        algorithms: { serverHostKey: clientHostKeyAlgorithms() },
        readyTimeout: 5_000,
      });
    });
    return client;
  }
});

async function waitFor(fn: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!fn()) {
    if (Date.now() > deadline) assert.fail('condition never became true');
    await new Promise((r) => setTimeout(r, 20));
  }
}
