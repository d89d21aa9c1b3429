// dial() against scripted proxies on loopback: the byte-level cases a real
// proxy will not produce on demand. The real-proxy suite is squid.test.ts.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { dial, connectRequest, parseAnswer } from '../../src/net/connect.js';
import { NetError } from '../../src/net/errors.js';
import { freePort } from '../helpers/sshd.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A one-trick proxy: records the request head, then does `answer` with the socket. */
async function scriptedProxy(answer: (socket: Socket, head: string) => void): Promise<{ port: number; heads: string[] }> {
  const heads: string[] = [];
  const srv = createServer((socket) => {
    let buf = '';
    socket.on('error', () => {});
    socket.on('data', function onData(b: Buffer) {
      buf += b.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.removeListener('data', onData);
      heads.push(buf.slice(0, end));
      answer(socket, buf.slice(0, end));
    });
  });
  servers.push(srv);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return { port: (srv.address() as { port: number }).port, heads };
}

function readSome(socket: Socket, bytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    socket.on('data', (b: Buffer) => {
      got += b.toString();
      if (got.length >= bytes) resolve(got);
    });
    socket.on('error', reject);
  });
}

async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp | string): Promise<NetError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof NetError, `expected a NetError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return err;
  }
  assert.fail('expected a rejection');
}

test('keeps the bytes that arrive in the same packet as the proxy answer (an SSH banner)', async () => {
  const proxy = await scriptedProxy((s) => {
    s.write('HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\nSSH-2.0-OpenSSH_9.2\r\n');
    s.pipe(s);
  });
  const socket = await dial({ host: 'jump.example.org', port: 3023 }, { env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` } });
  assert.equal(await readSome(socket, 21), 'SSH-2.0-OpenSSH_9.2\r\n');
  socket.destroy();
  assert.equal(proxy.heads[0], 'CONNECT jump.example.org:3023 HTTP/1.1\r\nHost: jump.example.org:3023');
});

test('keeps the banner for a consumer that pipes instead of listening for data', async () => {
  const proxy = await scriptedProxy((s) => s.end('HTTP/1.0 200 OK\r\n\r\nbanner'));
  const socket = await dial({ host: '127.0.0.1', port: 22 }, { env: { HTTPS_PROXY: `127.0.0.1:${proxy.port}` } });
  const chunks: Buffer[] = [];
  for await (const c of socket) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), 'banner');
});

test('sends percent-decoded URL credentials as Proxy-Authorization: Basic', async () => {
  const proxy = await scriptedProxy((s) => s.end('HTTP/1.1 200 OK\r\n\r\n'));
  const socket = await dial({ host: '::1', port: 3023 }, { env: { HTTPS_PROXY: `http://al%40ice:p%3Ass%20w@127.0.0.1:${proxy.port}` } });
  socket.destroy();
  const head = proxy.heads[0] ?? '';
  assert.match(head, /^CONNECT \[::1\]:3023 HTTP\/1\.1\r\nHost: \[::1\]:3023\r\n/);
  const auth = /Proxy-Authorization: Basic (\S+)/.exec(head)?.[1] ?? '';
  assert.equal(Buffer.from(auth, 'base64').toString(), 'al@ice:p:ss w');
});

test('connectRequest sends no Proxy-Authorization without credentials', () => {
  assert.equal(connectRequest({ host: 'h', port: 1 }, new URL('http://p:3128')), 'CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n\r\n');
});

test('parseAnswer reads the status, reason and repeated headers', () => {
  const a = parseAnswer('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\nproxy-authenticate: NTLM');
  assert.equal(a?.status, 407);
  assert.equal(a?.reason, 'Proxy Authentication Required');
  assert.equal(a?.headers.get('proxy-authenticate'), 'Negotiate, NTLM');
  assert.equal(parseAnswer('SSH-2.0-OpenSSH_9.2'), undefined);
});

test('a proxy offering only Negotiate/NTLM gets a hint that only Basic is supported', async () => {
  const proxy = await scriptedProxy((s) =>
    s.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\nProxy-Authenticate: NTLM\r\n\r\n'),
  );
  const err = await rejectsWith(
    dial({ host: 'jump.example.org', port: 3023 }, { env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` } }),
    'NET_PROXY_AUTH',
    `the proxy http://127.0.0.1:${proxy.port} requires credentials`,
  );
  assert.match(err.hint ?? '', /only offers Negotiate, NTLM authentication; Jumpgate supports Basic/);
});

test('a 502 from the proxy is NET_PROXY_REFUSED with the status in the hint, escaped', async () => {
  const proxy = await scriptedProxy((s) => s.end('HTTP/1.1 502 Bad\x1b[31mGateway\r\n\r\n'));
  const err = await rejectsWith(
    dial({ host: 'jump.example.org', port: 3023 }, { env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` } }),
    'NET_PROXY_REFUSED',
    'the proxy refused CONNECT to jump.example.org:3023; add jump.example.org:3023 to NO_PROXY if that port is reachable directly',
  );
  assert.equal(err.status, 502);
  assert.match(err.hint ?? '', /answered "502 Bad\\x1b\[31mGateway"/);
});

test('something that is not an HTTP proxy gives NET_PROXY_PROTOCOL', async () => {
  const proxy = await scriptedProxy((s) => s.end('SSH-2.0-OpenSSH_9.2\r\n\r\n'));
  await rejectsWith(
    dial({ host: 'jump.example.org', port: 3023 }, { env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` } }),
    'NET_PROXY_PROTOCOL',
    /did not answer CONNECT to jump\.example\.org:3023 with HTTP: "SSH-2\.0-OpenSSH_9\.2"/,
  );
});

test('a proxy that hangs up without answering gives NET_PROXY_PROTOCOL', async () => {
  const proxy = await scriptedProxy((s) => s.destroy());
  await rejectsWith(
    dial({ host: 'jump.example.org', port: 3023 }, { env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` } }),
    'NET_PROXY_PROTOCOL',
    /closed the connection before answering CONNECT to jump\.example\.org:3023/,
  );
});

test('an endless answer head is cut off at 16 KiB', async () => {
  const proxy = await scriptedProxy((s) => {
    s.write('HTTP/1.1 200 OK\r\n');
    for (let i = 0; i < 100; i++) s.write(`X-Filler-${i}: ${'a'.repeat(400)}\r\n`);
  });
  await rejectsWith(
    dial({ host: 'jump.example.org', port: 3023 }, { env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` } }),
    'NET_PROXY_PROTOCOL',
    /larger than 16 KiB/,
  );
});

test('a proxy that never answers CONNECT times out with NET_TIMEOUT', async () => {
  const proxy = await scriptedProxy(() => {});
  const started = Date.now();
  await rejectsWith(
    dial({ host: 'jump.example.org', port: 3023 }, { env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` }, timeoutMs: 300 }),
    'NET_TIMEOUT',
    `the HTTP proxy http://127.0.0.1:${proxy.port} did not set up the tunnel to jump.example.org:3023 within 0.3s`,
  );
  assert.ok(Date.now() - started < 10_000, 'the 0.3 s limit applied, not the 20 s default');
});

test('an aborted signal stops the dial with its reason', async () => {
  const proxy = await scriptedProxy(() => {});
  const ac = new AbortController();
  const p = dial({ host: 'jump.example.org', port: 3023 }, { env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` }, signal: ac.signal });
  setTimeout(() => ac.abort(new Error('user pressed ^C')), 50);
  await assert.rejects(p, /user pressed \^C/);
  await assert.rejects(dial({ host: '127.0.0.1', port: 1 }, { env: {}, signal: AbortSignal.abort(new Error('early')) }), /early/);
});

test('a refused direct connection is NET_UNREACHABLE and says no proxy was configured', async () => {
  const port = await freePort();
  const err = await rejectsWith(
    dial({ host: '127.0.0.1', port }, { env: {} }),
    'NET_UNREACHABLE',
    `cannot connect to 127.0.0.1:${port}: connection refused (connected directly: no proxy configured)`,
  );
  assert.match(err.hint ?? '', /HTTPS_PROXY=http:\/\/HOST:PORT/);
});

test('a refused direct connection names the NO_PROXY entry that bypassed the proxy', async () => {
  const port = await freePort();
  const lines: string[] = [];
  const err = await rejectsWith(
    dial({ host: '127.0.0.1', port }, { env: { HTTPS_PROXY: 'http://bob:pw@proxy.invalid:3128', NO_PROXY: '127.0.0.0/8' }, log: (l) => lines.push(l) }),
    'NET_UNREACHABLE',
    `cannot connect to 127.0.0.1:${port}: connection refused (connected directly: NO_PROXY entry "127.0.0.0/8" bypasses the proxy http://bob:****@proxy.invalid:3128)`,
  );
  assert.match(err.hint ?? '', /remove "127\.0\.0\.0\/8" from NO_PROXY/);
  assert.deepEqual(lines, [`net: 127.0.0.1:${port} direct (NO_PROXY entry "127.0.0.0/8" matches 127.0.0.1:${port})`]);
});

test('malformed NO_PROXY entries reach warn (or log) and do not stop the connection', async () => {
  const proxy = await scriptedProxy((s) => s.end('HTTP/1.1 200 OK\r\n\r\n'));
  const warned: string[] = [];
  const socket = await dial(
    { host: 'jump.example.org', port: 3023 },
    { env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}`, no_proxy: 'host:99999' }, warn: (w) => warned.push(w) },
  );
  socket.destroy();
  assert.deepEqual(warned, ['warning: ignoring no_proxy entry "host:99999": the port must be a number from 1 to 65535']);
});

test('accepts a bracketed IPv6 target and logs why it went direct', async () => {
  const srv = createServer((s) => s.end('hi'));
  servers.push(srv);
  srv.listen(0, '::1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  const lines: string[] = [];
  const socket = await dial({ host: '[::1]', port }, { env: {}, log: (l) => lines.push(l) });
  assert.equal(await readSome(socket, 2), 'hi');
  assert.deepEqual(lines, [`net: [::1]:${port} direct (none of HTTPS_PROXY, https_proxy, HTTP_PROXY, http_proxy is set)`]);
});
