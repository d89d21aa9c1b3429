/**
 * PROXY protocol framing and parsing (server/proxy/proxy-protocol.ts) on real
 * loopback TCP sockets: headers built with proxy-protocol-js (what HAProxy
 * sends is covered end to end in test/e2e/proxy-protocol.test.ts), split,
 * truncated, oversized, slow and forged; plus node:https and ssh2 seeing the
 * client's address through the override.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { createServer as createHttpsServer } from 'node:https';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import {
  Command,
  INETProtocol,
  IPv4Address,
  IPv4ProxyAddress,
  IPv6Address,
  IPv6ProxyAddress,
  Peer,
  TransportProtocol,
  UnspecProxyAddress,
  V1ProxyProtocol,
  V2ProxyProtocol,
} from 'proxy-protocol-js';
import ssh2 from 'ssh2';
import { acceptProxied, adoptProxiedPeer, parseProxyHeader, ProxyHeaderError, refusalReporter, V2_MAX_LENGTH, type AcceptProxiedOptions } from '../../src/server/proxy/proxy-protocol.js';
import { parseAddressRange, type AddressRange } from '../../src/util/ip.js';
import { SourceCounter } from '../../src/server/limits.js';
import { generateKeyPair, encodeOpenSSHPrivateKey } from '../../src/sshcert/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseServerConfig } from '../../src/config/index.js';
import { loadTlsMaterial } from '../../src/server/tls.js';

/** The server's own self-signed certificate, made in a temp data_dir. */
function selfSigned(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pp-tls-'));
  try {
    const config = parseServerConfig(`cluster_name: t.test\ndata_dir: ${dir}\n`, join(dir, 'j.yaml'));
    return loadTlsMaterial(config, { info: () => {}, warn: () => {}, debug: () => {} }, new Date());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const range = (s: string): AddressRange => {
  const r = parseAddressRange(s);
  if (typeof r === 'string') throw new Error(r);
  return r;
};
const LOOPBACK = [range('127.0.0.0/8')];

const v1 = (src: string, sport: number, proto = INETProtocol.TCP4, dst = proto === INETProtocol.TCP4 ? '127.0.0.1' : '::1') =>
  Buffer.from(new V1ProxyProtocol(proto, new Peer(src, sport), new Peer(dst, 3023)).build(), 'latin1');
const v2tcp4 = (src: number[], sport: number, command = Command.PROXY) =>
  Buffer.from(new V2ProxyProtocol(command, TransportProtocol.STREAM, new IPv4ProxyAddress(IPv4Address.createFrom(src), sport, IPv4Address.createFrom([127, 0, 0, 1]), 3023)).build());
const v2tcp6 = (src: number[], sport: number) =>
  Buffer.from(new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM, new IPv6ProxyAddress(IPv6Address.createFrom(src), sport, IPv6Address.createFrom([...Array(15).fill(0), 1]), 3023)).build());

interface Outcome {
  kind: 'ready' | 'refused';
  addr?: string | undefined;
  port?: number | undefined;
  family?: string | undefined;
  /** What the next reader got after the header (the rest of what the client sent). */
  rest?: string;
  reason?: string;
}

/** A server calling acceptProxied on each connection; `next()` resolves with what happened to the next one. */
async function harness(opts: Partial<AcceptProxiedOptions> = {}): Promise<{ port: number; next: () => Promise<Outcome>; close: () => Promise<void> }> {
  const waiting: Array<(o: Outcome) => void> = [];
  const done: Outcome[] = [];
  const report = (o: Outcome) => (waiting.length ? waiting.shift()!(o) : done.push(o));
  const server: Server = createServer((raw) =>
    acceptProxied(
      raw,
      { trusted: LOOPBACK, untrusted: 'peek', timeoutMs: 2_000, ...opts },
      (s: Socket) => {
        let rest = '';
        s.on('data', (b: Buffer) => (rest += b.toString('latin1')));
        s.once('end', () => report({ kind: 'ready', addr: s.remoteAddress, port: s.remotePort, family: s.remoteFamily, rest }));
      },
      (reason) => report({ kind: 'refused', reason }),
    ),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    next: () => new Promise((r) => (done.length ? r(done.shift()!) : waiting.push(r))),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** Connects (from `localAddress`), writes each piece (a separate TCP segment, 20 ms apart), then ends. */
async function send(port: number, pieces: Buffer[], opts: { localAddress?: string; end?: boolean } = {}): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
  s.on('error', () => {});
  s.setNoDelay(true);
  await once(s, 'connect');
  for (const p of pieces) {
    s.write(p);
    await new Promise((r) => setTimeout(r, 20));
  }
  if (opts.end !== false) s.end();
  return s;
}

describe('a trusted balancer', () => {
  test('v1 TCP4: the socket reports the client, and the bytes after the header reach the next reader intact', async () => {
    const h = await harness();
    try {
      await send(h.port, [Buffer.concat([v1('203.0.113.7', 40000), Buffer.from('SSH-2.0-x\r\n')])]);
      assert.deepEqual(await h.next(), { kind: 'ready', addr: '203.0.113.7', port: 40000, family: 'IPv4', rest: 'SSH-2.0-x\r\n' });
    } finally {
      await h.close();
    }
  });

  test('v1 TCP6, split over several segments, is compressed as node prints addresses', async () => {
    const h = await harness();
    try {
      const hdr = v1('2001:DB8:0:0:0:0:0:9', 1234, INETProtocol.TCP6);
      await send(h.port, [hdr.subarray(0, 3), hdr.subarray(3, 20), Buffer.concat([hdr.subarray(20), Buffer.from('after')])]);
      assert.deepEqual(await h.next(), { kind: 'ready', addr: '2001:db8::9', port: 1234, family: 'IPv6', rest: 'after' });
    } finally {
      await h.close();
    }
  });

  test('v2 TCP4 and TCP6 (send-proxy-v2), with data in the same segment', async () => {
    const h = await harness();
    try {
      await send(h.port, [Buffer.concat([v2tcp4([198, 51, 100, 9], 5555), Buffer.from([0x16, 3, 1])])]);
      assert.deepEqual(await h.next(), { kind: 'ready', addr: '198.51.100.9', port: 5555, family: 'IPv4', rest: '\x16\x03\x01' });
      await send(h.port, [v2tcp6([0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 7], 6000), Buffer.from('x')]);
      assert.deepEqual(await h.next(), { kind: 'ready', addr: '2001:db8::7', port: 6000, family: 'IPv6', rest: 'x' });
    } finally {
      await h.close();
    }
  });

  test('v2 LOCAL (health checks), v1 UNKNOWN and v2 UNSPEC keep the balancer\u2019s own address', async () => {
    const h2 = await harness();
    try {
      for (const hdr of [
        v2tcp4([10, 0, 0, 1], 1, Command.LOCAL),
        Buffer.from('PROXY UNKNOWN\r\n'),
        Buffer.from('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n'),
        Buffer.from(new V2ProxyProtocol(Command.PROXY, TransportProtocol.UNSPEC, new UnspecProxyAddress()).build()),
      ]) {
        const c = await send(h2.port, [Buffer.concat([hdr, Buffer.from('body')])], { localAddress: '127.0.0.9' });
        const o = await h2.next();
        assert.equal(o.kind, 'ready', JSON.stringify(o));
        assert.equal(o.addr, '127.0.0.9');
        assert.equal(o.port, c.localPort);
        assert.equal(o.rest, 'body');
      }
    } finally {
      await h2.close();
    }
  });

  const refusals: Array<[string, Buffer[], RegExp]> = [
    ['no header at all (an SSH client dialling the balancer address directly)', [Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')], /did not start with a PROXY protocol header.*send-proxy-v2/],
    ['a TLS ClientHello without a header', [Buffer.from([0x16, 3, 1, 0, 0x50])], /did not start with a PROXY protocol header/],
    ['a v1 header without CRLF within 107 bytes', [Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`)], /no CRLF within 107 bytes/],
    ['a v1 header with a malformed address', [Buffer.from('PROXY TCP4 1.2.3 127.0.0.1 1 2\r\n')], /source address "1.2.3" is not an IPv4 address/],
    ['a v1 header with an IPv6 address under TCP4', [Buffer.from('PROXY TCP4 ::1 127.0.0.1 1 2\r\n')], /not an IPv4 address/],
    ['a v1 header with an out-of-range port', [Buffer.from('PROXY TCP4 1.2.3.4 127.0.0.1 70000 2\r\n')], /port 70000 is not a port number/],
    ['a v1 header with an unknown protocol', [Buffer.from('PROXY UDP4 1.2.3.4 127.0.0.1 1 2\r\n')], /malformed v1 header/],
    ['a v1 header with control characters (escaped in the reason)', [Buffer.from('PROXY TCP4 1.2.3.4\x1b[31m 127.0.0.1 1 2\r\n')], /\\x1b\[31m/],
    ['a v2 header of another version', [Buffer.from([...v2tcp4([1, 2, 3, 4], 1).subarray(0, 12), 0x31, 0x11, 0, 12, ...Array(12).fill(0)])], /version 3 is not 2/],
    ['a v2 header longer than allowed', [Buffer.from([...v2tcp4([1, 2, 3, 4], 1).subarray(0, 12), 0x21, 0x11, 0xff, 0xff])], new RegExp(`65535 bytes .* more than the ${V2_MAX_LENGTH} allowed`)],
    ['a v2 header whose length is shorter than its addresses', [Buffer.from([...v2tcp4([1, 2, 3, 4], 1).subarray(0, 12), 0x21, 0x11, 0, 4, 1, 2, 3, 4])], /malformed v2 header: .*shorter than address family/],
    ['a v2 header with an invalid command', [Buffer.from([...v2tcp4([1, 2, 3, 4], 1).subarray(0, 12), 0x2f, 0x11, 0, 12, ...Array(12).fill(0)])], /malformed v2 header: given command is invalid/],
    ['a truncated v2 header (the balancer closed)', [v2tcp4([1, 2, 3, 4], 1).subarray(0, 20)], /closed in the middle of the PROXY header/],
    ['a truncated v1 header (the balancer closed)', [Buffer.from('PROXY TCP4 1.2.3.4')], /closed in the middle of the PROXY header/],
  ];
  for (const [what, pieces, reason] of refusals) {
    test(`refuses ${what}`, async () => {
      const h = await harness();
      try {
        const s = await send(h.port, pieces);
        const o = await h.next();
        assert.equal(o.kind, 'refused', JSON.stringify(o));
        assert.match(o.reason!, reason);
        assert.match(o.reason!, /^balancer 127\.0\.0\.1: /);
        if (!s.destroyed) await once(s, 'close');
      } finally {
        await h.close();
      }
    });
  }

  test('closes a connection whose header does not arrive within the deadline', async () => {
    const h = await harness({ timeoutMs: 300 });
    try {
      const s = await send(h.port, [Buffer.from('PROXY TCP4 1.2.')], { end: false });
      const o = await h.next();
      assert.equal(o.kind, 'refused');
      assert.match(o.reason!, /no complete PROXY header within 300 ms/);
      await once(s, 'close');
    } finally {
      await h.close();
    }
  });

  test('a header larger than the allowed maximum is refused before more is read (v2 TLVs)', async () => {
    const h = await harness();
    try {
      const hdr = v2tcp4([1, 2, 3, 4], 1);
      hdr.writeUInt16BE(V2_MAX_LENGTH + 1, 14);
      const o = h.next();
      await send(h.port, [hdr, Buffer.alloc(V2_MAX_LENGTH + 1)]);
      assert.match((await o).reason!, /more than the .* allowed/);
    } finally {
      await h.close();
    }
  });
});

describe('an address not in proxy_protocol_from', () => {
  const only = [range('127.0.0.9')];
  test('is served as it is: its own address, every byte passed on', async () => {
    const h = await harness({ trusted: only });
    try {
      const c = await send(h.port, [Buffer.from('SSH-2.0-x\r\nmore')], { localAddress: '127.0.0.3' });
      assert.deepEqual(await h.next(), { kind: 'ready', addr: '127.0.0.3', port: c.localPort, family: 'IPv4', rest: 'SSH-2.0-x\r\nmore' });
    } finally {
      await h.close();
    }
  });
  for (const [what, hdr] of [
    ['v1', v1('203.0.113.7', 1)],
    ['v2', v2tcp4([203, 0, 113, 7], 1)],
    ['a v1 signature split after "PRO"', Buffer.from('PRO')],
  ] as const) {
    test(`refuses a ${what} header from it (peek, as the web listener does): nobody can spoof an address`, async () => {
      const h = await harness({ trusted: only });
      try {
        await send(h.port, [hdr, Buffer.from('XY TCP4 1.1.1.1 2.2.2.2 1 2\r\n')], { localAddress: '127.0.0.3' });
        const o = await h.next();
        assert.equal(o.kind, 'refused');
        assert.match(o.reason!, /a PROXY protocol header from 127\.0\.0\.3, which is not in proxy\.proxy_protocol_from/);
      } finally {
        await h.close();
      }
    });
  }
  test('peeking holds at most the per-source cap of silent connections from one unlisted source', async () => {
    const h = await harness({ trusted: only, peekingPerSource: new SourceCounter(2), timeoutMs: 5_000 });
    try {
      const silent = [await send(h.port, [], { localAddress: '127.0.0.3', end: false }), await send(h.port, [], { localAddress: '127.0.0.3', end: false })];
      await send(h.port, [], { localAddress: '127.0.0.3', end: false });
      const o = await h.next();
      assert.equal(o.kind, 'refused');
      assert.match(o.reason!, /127\.0\.0\.3 already has 2 connections that have sent nothing yet/);
      // Another source is not affected, and a silent one that speaks is served.
      await send(h.port, [Buffer.from('\x16hello')], { localAddress: '127.0.0.4' });
      assert.equal((await h.next()).addr, '127.0.0.4');
      silent[0]!.end('x');
      assert.equal((await h.next()).rest, 'x');
      silent[1]!.destroy();
    } finally {
      await h.close();
    }
  });
  test('refuses a header from it when watching (as the SSH listener does), after handing the socket on at once', async () => {
    const h = await harness({ trusted: only, untrusted: 'watch' });
    try {
      await send(h.port, [v1('203.0.113.7', 1)], { localAddress: '127.0.0.3' });
      const o = await h.next();
      assert.equal(o.kind, 'refused');
      assert.match(o.reason!, /not in proxy\.proxy_protocol_from/);
    } finally {
      await h.close();
    }
  });
  test('with the list empty nothing is read: a PROXY header is just bytes for the protocol behind', async () => {
    const h = await harness({ trusted: [] });
    try {
      const c = await send(h.port, [v1('203.0.113.7', 1)]);
      assert.deepEqual(await h.next(), { kind: 'ready', addr: '127.0.0.1', port: c.localPort, family: 'IPv4', rest: v1('203.0.113.7', 1).toString('latin1') });
    } finally {
      await h.close();
    }
  });
});

test('parseProxyHeader refuses anything that is not a header', () => {
  assert.throws(() => parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')), ProxyHeaderError);
  assert.deepEqual(parseProxyHeader(v1('192.0.2.1', 7)), { kind: 'peer', peer: { address: '192.0.2.1', port: 7, family: 'IPv4' } });
});

test('refusals are logged as one WARN line a minute per kind with a count, the rest at debug', () => {
  const lines: string[] = [];
  let t = 0;
  const report = refusalReporter({ info: () => {}, warn: (l) => lines.push(`W ${l}`), debug: (l) => lines.push(`D ${l}`) }, 'web', () => t);
  report('a', 'balancer');
  t = 1_000;
  report('b', 'balancer');
  report('s', 'spoofed');
  report('c', 'balancer');
  report('slow', 'untrusted');
  t = 61_000;
  report('d', 'balancer');
  assert.deepEqual(lines, [
    'W web: refused 1 connection (PROXY protocol) since the last such line; latest: a',
    'D web: refused a connection: b',
    'W web: refused 1 connection (PROXY protocol) since the last such line; latest: s',
    'D web: refused a connection: c',
    'D web: closed a connection: slow',
    'W web: refused 3 connections (PROXY protocol) since the last such line; latest: d',
  ]);
});

describe('the overridden address reaches the protocol layers', () => {
  test('node:https: req.socket.remoteAddress is the client (TLSSocket reads its peer from the TCP handle, so adoptProxiedPeer copies it)', async () => {
    const { key, cert } = selfSigned();
    const https = createHttpsServer({ key, cert }, (req, res) => res.end(`${req.socket.remoteAddress} ${req.socket.remotePort} ${req.socket.remoteFamily}`));
    https.on('secureConnection', adoptProxiedPeer);
    const front = createServer((raw) => acceptProxied(raw, { trusted: LOOPBACK, untrusted: 'peek' }, (s) => https.emit('connection', s), () => {}));
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    const port = (front.address() as { port: number }).port;
    try {
      for (const hdr of [v1('203.0.113.5', 4321), v2tcp6([0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 5], 4322)]) {
        const s = connect({ port, host: '127.0.0.1' });
        await once(s, 'connect');
        s.write(hdr);
        const t = tlsConnect({ socket: s, rejectUnauthorized: false });
        await once(t, 'secureConnect');
        t.end('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        let answer = '';
        for await (const chunk of t) answer += (chunk as Buffer).toString();
        const body = answer.split('\r\n\r\n')[1];
        assert.equal(body, hdr[0] === 0x50 ? '203.0.113.5 4321 IPv4' : '2001:db8::5 4322 IPv6');
      }
    } finally {
      front.close();
      https.close();
    }
  });

  test('ssh2: a server sees the client in info.ip and info.port, also when the client\u2019s first bytes share the header\u2019s segment', { timeout: 20_000 }, async () => {
    const key = encodeOpenSSHPrivateKey(generateKeyPair('ed25519').privateKey, 'test');
    const server = new ssh2.Server({ hostKeys: [key] }, (conn, info) => {
      seen.push({ ip: info.ip, port: info.port });
      conn.on('error', () => {});
      conn.end();
    });
    const seen: Array<{ ip: string; port: number }> = [];
    // As the SSH proxy does: a 'data' listener (its pre-auth byte count) before ssh2, which pauses the socket until its crypto is ready.
    const front = createServer((raw) =>
      acceptProxied(raw, { trusted: LOOPBACK, untrusted: 'watch' }, (s) => {
        s.on('data', () => {});
        server.injectSocket(s);
      }, () => {}),
    );
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    try {
      for (const [hdr, coalesce] of [[v2tcp4([192, 0, 2, 44], 2222), false], [v1('192.0.2.45', 2223), true]] as const) {
        const sock = connect({ port: (front.address() as { port: number }).port, host: '127.0.0.1' });
        await once(sock, 'connect');
        if (coalesce) {
          // The header and the client's identification line in one write, as a balancer may forward them.
          const write = sock.write.bind(sock) as (d: Uint8Array | string) => boolean;
          let first = true;
          sock.write = ((d: Uint8Array | string) => {
            if (!first) return write(d);
            first = false;
            return write(Buffer.concat([hdr, Buffer.from(d)]));
          }) as typeof sock.write;
        } else {
          sock.write(hdr);
        }
        const client = new ssh2.Client();
        client.on('error', () => {});
        const closed = once(client, 'close');
        client.connect({ sock, username: 'x', readyTimeout: 15_000 });
        await closed;
      }
    } finally {
      front.close();
    }
    assert.deepEqual(seen, [{ ip: '192.0.2.44', port: 2222 }, { ip: '192.0.2.45', port: 2223 }]);
  });
});

test('a connection already reset when it is handled (a health check sending its header and closing) is closed without a refusal', async () => {
  const outcomes: string[] = [];
  const server = createServer((sock) => {
    sock.on('error', () => {});
    // Handle it only after the peer reset it: its address is gone by then.
    setTimeout(() => {
      acceptProxied(sock, { trusted: LOOPBACK, untrusted: 'peek' }, () => outcomes.push('ready'), (reason) => outcomes.push(`refused: ${reason}`));
      setTimeout(() => server.emit('checked', sock.destroyed), 100);
    }, 200);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const c = connect({ port, host: '127.0.0.1' });
  await once(c, 'connect');
  c.write(v2tcp4([203, 0, 113, 7], 1));
  c.resetAndDestroy();
  const [destroyed] = (await once(server, 'checked')) as [boolean];
  server.close();
  assert.deepEqual(outcomes, [], 'no refusal logged, nothing served');
  assert.equal(destroyed, true);
});
