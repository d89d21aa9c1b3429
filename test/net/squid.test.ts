// The network layer against a real HTTP proxy: squid on 127.0.0.1.
// Fails (never skips) when squid is missing: apt-get install -y squid
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fetch } from 'undici';
import { dial } from '../../src/net/connect.js';
import { NetError } from '../../src/net/errors.js';
import { createHttpDispatcher, httpRequest, unwrapFetchError } from '../../src/net/http.js';
import { startSquid, type Squid } from '../helpers/squid.js';
import { freePort } from '../helpers/sshd.js';
import { requireTool, run, tempDir } from '../helpers/tools.js';

const dirs: { cleanup: () => void }[] = [];
let open: Squid; // allows CONNECT anywhere except to denied.port
let authed: Squid; // requires alice / s3cr@t
let echo: TcpServer; // greets like an SSH server, then echoes
let denied: TcpServer; // squid `open` refuses CONNECT to this port
let https: HttpsServer;
let caPem: string;

const portOf = (s: TcpServer | HttpsServer): number => (s.address() as { port: number }).port;

async function echoServer(): Promise<TcpServer> {
  const srv = createTcpServer((s) => {
    s.on('error', () => {});
    s.write('SSH-2.0-echo\r\n');
    s.pipe(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return srv;
}

before(async () => {
  const t = tempDir('net-squid');
  dirs.push(t);
  const openssl = requireTool('openssl', 'apt-get install -y openssl');
  const cert = await run(openssl, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', join(t.dir, 'key.pem'), '-out', join(t.dir, 'cert.pem'),
  ]);
  assert.equal(cert.code, 0, cert.stderr);
  caPem = readFileSync(join(t.dir, 'cert.pem'), 'utf8');
  https = createHttpsServer({ key: readFileSync(join(t.dir, 'key.pem')), cert: caPem }, (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ok: true, path: req.url }));
  });
  https.listen(0, '127.0.0.1');
  await once(https, 'listening');

  echo = await echoServer();
  denied = await echoServer();
  const d1 = tempDir('squid-open');
  const d2 = tempDir('squid-auth');
  dirs.push(d1, d2);
  [open, authed] = await Promise.all([
    startSquid({ dir: d1.dir, denyConnectPorts: [portOf(denied)] }),
    startSquid({ dir: d2.dir, basicAuth: { user: 'alice', password: 's3cr@t' } }),
  ]);
});

after(async () => {
  await Promise.all([open?.stop(), authed?.stop()]);
  echo?.close();
  denied?.close();
  https?.closeAllConnections();
  https?.close();
  for (const d of dirs) d.cleanup();
});

function roundTrip(socket: Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    socket.on('data', (b: Buffer) => {
      got += b.toString();
      if (got.includes(text)) resolve(got);
    });
    socket.on('error', reject);
    socket.write(text);
  });
}

async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp | string): Promise<NetError> {
  try {
    await p;
  } catch (raw) {
    const err = unwrapFetchError(raw);
    assert.ok(err instanceof NetError, `expected a NetError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return err;
  }
  assert.fail('expected a rejection');
}

test('tunnels a TCP connection through squid and squid logs the CONNECT when it closes', async () => {
  const lines: string[] = [];
  const target = { host: '127.0.0.1', port: portOf(echo) };
  const socket = await dial(target, { env: { HTTPS_PROXY: open.url }, log: (l) => lines.push(l) });
  assert.deepEqual(lines, [`net: 127.0.0.1:${target.port} through HTTP proxy http://127.0.0.1:${open.port} (from HTTPS_PROXY)`]);
  const got = await roundTrip(socket, 'ping through squid\n');
  assert.equal(got, 'SSH-2.0-echo\r\nping through squid\n');
  socket.end();
  await once(socket, 'close');
  await open.waitForAccessLog(new RegExp(`TCP_TUNNEL/200 .* CONNECT 127\\.0\\.0\\.1:${target.port} `));
});

test('a squid that denies the port gives NET_PROXY_REFUSED with the exact message', async () => {
  const port = portOf(denied);
  const err = await rejectsWith(
    dial({ host: '127.0.0.1', port }, { env: { https_proxy: open.url } }),
    'NET_PROXY_REFUSED',
    `the proxy refused CONNECT to 127.0.0.1:${port}; add 127.0.0.1:${port} to NO_PROXY if that port is reachable directly`,
  );
  assert.equal(err.status, 403);
  assert.match(err.hint ?? '', /answered "403 Forbidden"/);
});

test('NO_PROXY=host:port sends that port direct while HTTPS to another port still goes through squid', async () => {
  const port = portOf(denied);
  const env = { HTTPS_PROXY: open.url, NO_PROXY: `127.0.0.1:${port}` };
  const lines: string[] = [];
  const socket = await dial({ host: '127.0.0.1', port }, { env, log: (l) => lines.push(l) });
  assert.equal(await roundTrip(socket, 'direct\n'), 'SSH-2.0-echo\r\ndirect\n');
  socket.destroy();
  assert.deepEqual(lines, [`net: 127.0.0.1:${port} direct (NO_PROXY entry "127.0.0.1:${port}" matches 127.0.0.1:${port})`]);

  const dispatcher = createHttpDispatcher({ env, ca: caPem, log: (l) => lines.push(l) });
  try {
    const res = await httpRequest(`https://127.0.0.1:${portOf(https)}/api/ping`, { dispatcher });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { ok: true, path: '/api/ping' });
  } finally {
    await dispatcher.close();
  }
  assert.equal(lines[1], `net: 127.0.0.1:${portOf(https)} through HTTP proxy http://127.0.0.1:${open.port} (from HTTPS_PROXY)`);
  const log = await open.waitForAccessLog(new RegExp(`CONNECT 127\\.0\\.0\\.1:${portOf(https)} `));
  assert.doesNotMatch(log, new RegExp(`TCP_TUNNEL/200 .* CONNECT 127\\.0\\.0\\.1:${port} `));
});

test('squid with Basic auth lets in http://user:pass@ and logs the user', async () => {
  const lines: string[] = [];
  const socket = await dial({ host: '127.0.0.1', port: portOf(echo) }, { env: { HTTPS_PROXY: authed.url }, log: (l) => lines.push(l) });
  assert.equal(await roundTrip(socket, 'authed\n'), 'SSH-2.0-echo\r\nauthed\n');
  assert.equal(lines[0], `net: 127.0.0.1:${portOf(echo)} through HTTP proxy http://alice:****@127.0.0.1:${authed.port} (from HTTPS_PROXY)`);
  socket.end();
  await once(socket, 'close');
  await authed.waitForAccessLog(new RegExp(`TCP_TUNNEL/200 .* CONNECT 127\\.0\\.0\\.1:${portOf(echo)} alice `));
});

test('squid with Basic auth gives NET_PROXY_AUTH without credentials', async () => {
  const err = await rejectsWith(
    dial({ host: '127.0.0.1', port: portOf(echo) }, { env: { HTTPS_PROXY: `http://127.0.0.1:${authed.port}` } }),
    'NET_PROXY_AUTH',
    `the proxy http://127.0.0.1:${authed.port} requires credentials`,
  );
  assert.equal(err.hint, `set HTTPS_PROXY=http://USER:PASSWORD@127.0.0.1:${authed.port} (percent-encode special characters, e.g. @ as %40)`);
});

test('squid with Basic auth gives NET_PROXY_AUTH naming the user for a wrong password', async () => {
  await rejectsWith(
    dial({ host: '127.0.0.1', port: portOf(echo) }, { env: { HTTPS_PROXY: `http://alice:wrong@127.0.0.1:${authed.port}` } }),
    'NET_PROXY_AUTH',
    `the proxy http://alice:****@127.0.0.1:${authed.port} rejected the credentials for user alice`,
  );
});

test('an unreachable proxy gives NET_PROXY_UNREACHABLE', async () => {
  const port = await freePort();
  const err = await rejectsWith(
    dial({ host: 'jump.example.org', port: 3023 }, { env: { HTTPS_PROXY: `http://127.0.0.1:${port}` } }),
    'NET_PROXY_UNREACHABLE',
    `cannot reach the HTTP proxy http://127.0.0.1:${port} (from HTTPS_PROXY): connection refused`,
  );
  assert.match(err.hint ?? '', /add jump\.example\.org:3023 to NO_PROXY/);
});

test('the HTTPS dispatcher fetches through squid with the server CA and logs the route once per origin', async () => {
  const lines: string[] = [];
  const dispatcher = createHttpDispatcher({ env: { HTTP_PROXY: open.url }, ca: caPem, log: (l) => lines.push(l) });
  try {
    const url = `https://127.0.0.1:${portOf(https)}`;
    const a = await fetch(`${url}/one`, { dispatcher });
    assert.deepEqual(await a.json(), { ok: true, path: '/one' });
    const b = await httpRequest(`${url}/two`, { dispatcher, method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.deepEqual(b.json(), { ok: true, path: '/two' });
  } finally {
    await dispatcher.close();
  }
  assert.deepEqual(lines, [`net: 127.0.0.1:${portOf(https)} through HTTP proxy http://127.0.0.1:${open.port} (from HTTP_PROXY)`]);
});

test('the HTTPS dispatcher without the CA gives NET_TLS_UNTRUSTED, through fetch and httpRequest', async () => {
  const dispatcher = createHttpDispatcher({ env: { HTTPS_PROXY: open.url } });
  try {
    const url = `https://127.0.0.1:${portOf(https)}/`;
    const err = await rejectsWith(
      httpRequest(url, { dispatcher }),
      'NET_TLS_UNTRUSTED',
      new RegExp(`^the TLS certificate of 127\\.0\\.0\\.1:${portOf(https)} is not trusted: self-signed certificate \\(through the HTTP proxy http://127\\.0\\.0\\.1:${open.port}\\)$`),
    );
    assert.match(err.hint ?? '', /NODE_EXTRA_CA_CERTS/);
    assert.match(err.hint ?? '', /SSL_CERT_FILE/);
    assert.match(err.hint ?? '', /proxy that intercepts TLS/);
    await rejectsWith(fetch(url, { dispatcher }), 'NET_TLS_UNTRUSTED', /is not trusted/);
  } finally {
    await dispatcher.close();
  }
});

test('insecureSkipVerify accepts the self-signed certificate', async () => {
  const dispatcher = createHttpDispatcher({ env: { HTTPS_PROXY: open.url }, insecureSkipVerify: true });
  try {
    const res = await httpRequest(`https://127.0.0.1:${portOf(https)}/x`, { dispatcher });
    assert.equal(res.status, 200);
  } finally {
    await dispatcher.close();
  }
});

test('the HTTPS dispatcher reports proxy refusal and proxy auth exactly as dial does', async () => {
  const deniedPort = portOf(denied);
  const d1 = createHttpDispatcher({ env: { HTTPS_PROXY: open.url }, ca: caPem });
  const d2 = createHttpDispatcher({ env: { HTTPS_PROXY: `http://127.0.0.1:${authed.port}` }, ca: caPem });
  try {
    await rejectsWith(
      httpRequest(`https://127.0.0.1:${deniedPort}/`, { dispatcher: d1 }),
      'NET_PROXY_REFUSED',
      `the proxy refused CONNECT to 127.0.0.1:${deniedPort}; add 127.0.0.1:${deniedPort} to NO_PROXY if that port is reachable directly`,
    );
    await rejectsWith(
      httpRequest(`https://127.0.0.1:${portOf(https)}/`, { dispatcher: d2 }),
      'NET_PROXY_AUTH',
      `the proxy http://127.0.0.1:${authed.port} requires credentials`,
    );
  } finally {
    await Promise.all([d1.close(), d2.close()]);
  }
});

test('the HTTPS dispatcher goes direct for NO_PROXY origins, never touching the proxy', async () => {
  const lines: string[] = [];
  const dead = await freePort();
  const dispatcher = createHttpDispatcher({
    env: { HTTPS_PROXY: `http://127.0.0.1:${dead}`, NO_PROXY: 'localhost, 127.0.0.1, bad:entry:x' },
    ca: caPem,
    log: (l) => lines.push(l),
  });
  try {
    const res = await httpRequest(`https://127.0.0.1:${portOf(https)}/direct`, { dispatcher });
    assert.equal(res.status, 200);
  } finally {
    await dispatcher.close();
  }
  assert.deepEqual(lines, [
    'warning: ignoring NO_PROXY entry "bad:entry:x": an IPv6 address with a port must be written in brackets, like [::1]:3023',
    `net: 127.0.0.1:${portOf(https)} direct (NO_PROXY entry "127.0.0.1" matches 127.0.0.1:${portOf(https)})`,
  ]);
});

test('the HTTPS dispatcher refuses a SOCKS proxy with NET_PROXY_UNSUPPORTED', async () => {
  const dispatcher = createHttpDispatcher({ env: { HTTPS_PROXY: 'socks5://127.0.0.1:1080' } });
  try {
    await rejectsWith(httpRequest(`https://127.0.0.1:${portOf(https)}/`, { dispatcher }), 'NET_PROXY_UNSUPPORTED', /SOCKS proxies are not supported/);
  } finally {
    await dispatcher.close();
  }
});
