/**
 * The HTTPS API against abuse, in-process (startServer's wiring, a real
 * LoginService, the development IdP, real TLS): security headers on every
 * answer, including the ones Node's HTTP parser produces; slow-loris and
 * oversized requests cut off at the documented limits (short timeouts
 * injected here, the defaults checked against README); connections per
 * address; TLS 1.2+ only; a callback whose code belongs to another login.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { createHttpDispatcher } from '../../src/net/index.js';
import { LOGIN_RATE_LIMIT } from '../../src/server/auth/login.js';
import { RateLimiter, sourceKey } from '../../src/server/limits.js';
import { MAX_BODY_BYTES, SECURITY_HEADERS, startWebApi, WEB_LIMITS, type WebLimits } from '../../src/server/proxy/web.js';
import { StoreUnavailableError } from '../../src/server/storage/backend.js';
import { formatPublicKeyLine, generateKeyPair } from '../../src/sshcert/index.js';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { startHeadlessLogin, walkLogin } from '../helpers/headless-login.js';
import { freePort } from '../helpers/sshd.js';
import { REPO, requireTool, run, tempDir, waitFor } from '../helpers/tools.js';
import { headersOf, rawTls, rawTlsProxied, request, startTestWebApi, statusOf, untilClosed, WEB_TEST_SECRET, type TestWebApi } from '../helpers/web-api.js';

const SHORT: Partial<WebLimits> = {
  tlsHandshakeTimeoutMs: 600,
  headersTimeoutMs: 600,
  requestTimeoutMs: 1_200,
  timeoutCheckIntervalMs: 100,
  maxConnectionsPerAddress: 8,
};
/** How late a timeout may fire: the check interval plus scheduling noise on a busy 2-core machine. */
// Upper bounds prove the limit fired (not a default, not never); generous, since CI runs two test files at once on 2 cores.
const SLACK_MS = 5_000;

/** Asserts every security header with its exact value. */
export function assertSecurityHeaders(headers: Record<string, string | string[] | undefined>, what: string): void {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) assert.equal(headers[k], v, `${what}: header ${k}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('HTTPS API under abuse (in-process, real TLS, dev IdP)', () => {
  const tmp = tempDir('web');
  let idp: DevIdp;
  let api: TestWebApi;
  const dispatcher = createHttpDispatcher({ env: {}, insecureSkipVerify: true });

  before(async () => {
    const port = await freePort();
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: WEB_TEST_SECRET,
      redirectUris: [`https://127.0.0.1:${port}/v1/login/oidc/callback`],
      accounts: DEMO_ACCOUNTS,
    });
    api = await startTestWebApi({ dir: tmp.dir, issuer: idp.issuer, port, limits: SHORT, loginRate: { perMinute: 6_000, burst: 1_000 } });
  });

  after(async () => {
    await api?.close();
    await idp?.close();
    await dispatcher.close();
    tmp.cleanup();
  });

  const certsIssued = () => api.audit().filter((e) => e['event'] === 'cert.issued').length;
  const validStart = () =>
    JSON.stringify({
      public_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
      callback_url: 'http://127.0.0.1:9/cb',
      client_key: 'A'.repeat(43),
      client_nonce: 'B'.repeat(43),
    });
  const json = { 'content-type': 'application/json' };

  test('every answer carries the security headers: 200, 302, 400, 404, 405, 413, 415, the callback page and parser errors', async () => {
    const cases: [string, Parameters<typeof request>[1], number][] = [
      ['ping', {}, 200],
      ['login start', { method: 'POST', path: '/v1/login/start', headers: json, body: validStart() }, 200],
      ['bad login start', { method: 'POST', path: '/v1/login/start', headers: json, body: '{}' }, 400],
      ['not JSON', { method: 'POST', path: '/v1/login/start', headers: json, body: '{' }, 400],
      ['unknown path', { path: '/admin' }, 404],
      ['wrong method', { method: 'DELETE', path: '/v1/ping' }, 405],
      ['declared too large', { method: 'POST', path: '/v1/login/start', headers: { ...json, 'content-length': MAX_BODY_BYTES + 1 }, body: 'x'.repeat(MAX_BODY_BYTES + 1) }, 413],
      ['wrong content type', { method: 'POST', path: '/v1/login/start', headers: { 'content-type': 'text/plain' }, body: validStart() }, 415],
      ['callback with an unknown state', { path: '/v1/login/oidc/callback?state=nope&code=x' }, 400],
      ['a request target that is no path', { path: '//' }, 400],
      ['absolute-form callback target', { path: 'http://evil.test/v1/login/oidc/callback?state=nope' }, 400],
    ];
    for (const [what, opts, status] of cases) {
      const r = await request(api.port, opts);
      assert.equal(r.status, status, `${what}: ${r.body}`);
      assertSecurityHeaders(r.headers, what);
      if (status !== 200 && !/callback/.test(what)) assert.match(String(r.headers['content-type']), /application\/json/, what);
    }
    // The 302 that carries a finished login back to tsh.
    const started = await startHeadlessLogin(api.port, dispatcher);
    const atCallback = await walkLogin(started.loginUrl, { dispatcher, stopAt: (u) => u.pathname === '/v1/login/oidc/callback' });
    const redirect = await request(api.port, { path: `${atCallback.url.pathname}${atCallback.url.search}` });
    assert.equal(redirect.status, 302, redirect.body);
    assert.match(String(redirect.headers['location']), /^http:\/\/127\.0\.0\.1:9\/cb\?request_id=/);
    assertSecurityHeaders(redirect.headers, 'callback redirect');
    // What Node's parser refuses: a request line that is not HTTP, headers too large.
    for (const [what, bytes, status] of [
      ['garbage request line', 'HELLO\r\n\r\n', 400],
      ['64 KiB of headers', `GET /v1/ping HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(64 * 1024)}\r\n\r\n`, 431],
    ] as const) {
      const s = await rawTls(api.port);
      const closed = untilClosed(s);
      s.write(bytes);
      const { text } = await closed;
      assert.equal(statusOf(text), status, `${what}: ${text.slice(0, 200)}`);
      assertSecurityHeaders(headersOf(text), what);
    }
  });

  test('a 500 (a CA that cannot be used) also carries the security headers and says nothing of the cause', async () => {
    // The CA snapshot is read per request (CaStore.get): make it fail as a CA_CORRUPT one would.
    const ca = api.server.rt.ca;
    const get = ca.get.bind(ca);
    ca.get = () => {
      throw new Error('the host CA in the test cannot be used: CA_CORRUPT');
    };
    try {
      const r = await request(api.port);
      assert.equal(r.status, 500);
      assertSecurityHeaders(r.headers, '500');
      assert.deepEqual(JSON.parse(r.body), { error: { code: 'INTERNAL', message: 'internal error; see the server log' } });
      assert.ok(api.logs.some((l) => /WARN web: GET \/v1\/ping failed: .*CA/.test(l)), 'the cause is in the server log');
    } finally {
      ca.get = get;
    }
    assert.equal((await request(api.port)).status, 200);
  });

  test('the state store unreachable: login start gets a JSON 503 STORE_UNAVAILABLE, the browser callback a 503 page, both with Retry-After', async () => {
    const pending = api.server.rt.store.pending;
    const { add, take, sweep } = { add: pending.add.bind(pending), take: pending.take.bind(pending), sweep: pending.sweep.bind(pending) };
    const down = async (): Promise<never> => {
      throw new StoreUnavailableError('postgres://jumpgate@db.web.test:5432/jumpgate', 'a query', new Error('connect ECONNREFUSED'));
    };
    pending.add = down;
    pending.take = down;
    pending.sweep = down;
    try {
      const body = JSON.stringify({ public_key: formatPublicKeyLine(generateKeyPair('ed25519').publicKey), callback_url: 'http://127.0.0.1:9/cb', client_key: 'k'.repeat(43), client_nonce: 'n'.repeat(43) });
      const start = await request(api.port, { method: 'POST', path: '/v1/login/start', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, body });
      assert.equal(start.status, 503, start.body);
      assert.equal(start.headers['retry-after'], '30');
      assert.equal(JSON.parse(start.body).error.code, 'STORE_UNAVAILABLE');
      const cb = await request(api.port, { path: '/v1/login/oidc/callback?state=s&code=c' });
      assert.equal(cb.status, 503);
      assert.equal(cb.headers['retry-after'], '30');
      assertSecurityHeaders(cb.headers, '503 page');
      assert.match(cb.body, /cannot reach its state store/);
      assert.doesNotMatch(cb.body, /ECONNREFUSED|postgres:/, 'the page does not show the cause');
    } finally {
      Object.assign(pending, { add, take, sweep });
    }
  });

  test('a torn ca.json on disk while running: the server warns and keeps the CA it has (never a new one)', async () => {
    const caJson = join(api.dataDir, 'ca', 'host', 'ca.json');
    const original = readFileSync(caJson);
    const before = JSON.parse((await request(api.port)).body).host_ca;
    writeFileSync(caJson, '{ torn');
    try {
      await waitFor(() => api.logs.some((l) => /WARN cannot re-read the host CA: .*not valid JSON/.test(l)), 'the warning about the torn ca.json');
      const r = await request(api.port);
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body).host_ca, before);
    } finally {
      writeFileSync(caJson, original);
    }
  });

  test('a client sending one header byte every 100 ms is cut off at the header timeout with a 408', async () => {
    const s = await rawTls(api.port);
    const t0 = performance.now();
    const closed = untilClosed(s);
    s.write('GET /v1/ping HTTP/1.1\r\nhost: x\r\n');
    const timer = setInterval(() => s.writable && s.write('x'), 100);
    const { text, closedAt } = await closed;
    clearInterval(timer);
    const took = closedAt - t0;
    assert.ok(took >= SHORT.headersTimeoutMs! - 50 && took < SHORT.headersTimeoutMs! + SLACK_MS, `closed after ${took.toFixed(0)} ms`);
    assert.equal(statusOf(text), 408, text);
    assertSecurityHeaders(headersOf(text), '408');
  });

  test('a body trickling in byte by byte is cut off at the request timeout with a 408', async () => {
    const s = await rawTls(api.port);
    const t0 = performance.now();
    const closed = untilClosed(s);
    s.write(`POST /v1/login/start HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n`);
    const timer = setInterval(() => s.writable && s.write(' '), 100);
    const { text, closedAt } = await closed;
    clearInterval(timer);
    const took = closedAt - t0;
    assert.ok(took >= SHORT.requestTimeoutMs! - 50 && took < SHORT.requestTimeoutMs! + SLACK_MS, `closed after ${took.toFixed(0)} ms`);
    assert.equal(statusOf(text), 408, text);
  });

  test('a TCP connection that never starts TLS is closed at the handshake timeout', async () => {
    const s = netConnect({ host: '127.0.0.1', port: api.port });
    await new Promise((r) => s.once('connect', r));
    const t0 = performance.now();
    const { closedAt } = await untilClosed(s);
    const took = closedAt - t0;
    assert.ok(took < SHORT.tlsHandshakeTimeoutMs! + SLACK_MS, `closed after ${took.toFixed(0)} ms`);
  });

  test('a 1 MiB body announced by Content-Length gets 413 before a byte of it is sent', async () => {
    const s = await rawTls(api.port);
    const closed = untilClosed(s);
    s.write(`POST /v1/login/start HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${1024 * 1024}\r\n\r\n`);
    const { text } = await closed; // closed by the server: it does not wait for the body
    assert.equal(statusOf(text), 413, text);
    assert.match(text, /BODY_TOO_LARGE/);
    assert.equal(headersOf(text)['connection'], 'close');
    assertSecurityHeaders(headersOf(text), '413');
  });

  test('a 1 MiB chunked body gets 413 after 16 KiB and the server stops reading it', async () => {
    let serverRead = -1;
    api.server.web.server.once('connection', (sock: Socket) => sock.once('close', () => (serverRead = sock.bytesRead)));
    const s = await rawTls(api.port);
    const closed = untilClosed(s);
    s.on('error', () => {}); // the server closes while we are still sending
    s.write('POST /v1/login/start HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
    const chunk = `1000\r\n${' '.repeat(0x1000)}\r\n`;
    let sent = 0;
    while (sent < 1024 * 1024 && !s.destroyed && s.writable) {
      if (!s.write(chunk)) await Promise.race([new Promise((r) => s.once('drain', r)), sleep(200)]);
      sent += 0x1000;
    }
    const { text } = await closed;
    assert.equal(statusOf(text), 413, text.slice(0, 300));
    await sleep(50);
    assert.ok(serverRead > 0 && serverRead < 256 * 1024, `the server read ${serverRead} bytes of a ${sent}-byte upload`);
  });

  test('one address holds at most maxConnectionsPerAddress connections; other addresses are still served', async () => {
    // The hogs come from 127.0.0.3 (all of 127/8 is loopback); the rest of the suite uses 127.0.0.1.
    const hogAddr = '127.0.0.3';
    const fromHog = { localAddress: hogAddr } as ConnectionOptions; // tls.connect passes it on to net.connect
    const max = SHORT.maxConnectionsPerAddress!;
    const hogs: Awaited<ReturnType<typeof rawTls>>[] = [];
    try {
      for (let i = 0; i < max; i++) hogs.push(await rawTls(api.port, fromHog));
      const extra = netConnect({ host: '127.0.0.1', port: api.port, localAddress: hogAddr });
      extra.on('error', () => {});
      const t0 = performance.now();
      await untilClosed(extra);
      assert.ok(performance.now() - t0 < SLACK_MS, 'the connection over the limit is closed at once, not at a timeout');
      const refused = await rawTls(api.port, fromHog).then(
        (s) => (s.destroy(), 'connected'),
        (e: Error) => e.message,
      );
      assert.notEqual(refused, 'connected', 'a further TLS connection from the same address is refused');
      assert.equal((await request(api.port)).status, 200, 'another address is served meanwhile');
    } finally {
      for (const h of hogs) h.destroy();
    }
    await sleep(100);
    const again = await rawTls(api.port, fromHog);
    const done = untilClosed(again);
    again.write('GET /v1/ping HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    assert.equal(statusOf((await done).text), 200, 'the address is served again once its connections close');
  });

  test("a callback carrying another login's code under this login's state never issues a certificate", async (t) => {
    const a = await startHeadlessLogin(api.port, dispatcher);
    const b = await startHeadlessLogin(api.port, dispatcher);
    const stopAt = (u: URL) => u.pathname === '/v1/login/oidc/callback';
    const atA = (await walkLogin(a.loginUrl, { dispatcher, stopAt })).url;
    const atB = (await walkLogin(b.loginUrl, { dispatcher, login: 'bob', stopAt })).url;
    const issued = certsIssued();
    const mixed = new URL(atB);
    mixed.searchParams.set('code', atA.searchParams.get('code')!);
    const r = await request(api.port, { path: `${mixed.pathname}${mixed.search}` });
    assert.equal(r.status, 302);
    const back = new URL(String(r.headers['location']));
    assert.equal(back.searchParams.get('response'), null, 'no sealed certificate');
    assert.ok(back.searchParams.get('error'), `refused: ${back}`);
    assert.equal(certsIssued(), issued);
    assert.ok(api.audit().some((e) => e['event'] === 'login.failure' && e['request_id'] === b.requestId), 'the refusal is audited');
    // b's state is spent: its own callback is now refused too.
    const replay = await request(api.port, { path: `${atB.pathname}${atB.search}` });
    assert.equal(replay.status, 400);
    assert.equal(certsIssued(), issued);
    // a's code was presented once with the wrong PKCE verifier: the IdP treats it as spent, so a is refused too.
    const own = await request(api.port, { path: `${atA.pathname}${atA.search}` });
    const backA = new URL(String(own.headers['location']));
    t.diagnostic(`a's own callback afterwards: ${backA.searchParams.get('error') ?? 'certificate issued'}`);
    assert.equal(certsIssued() - issued, backA.searchParams.has('response') ? 1 : 0);
    assert.ok(!api.audit().some((e) => e['event'] === 'cert.issued' && e['user'] === 'bob'), 'bob got nothing');
  });

  test('the defaults are the documented numbers', async () => {
    const web = await startWebApi({ host: '127.0.0.1', port: 0 }, { rt: api.server.rt, tls: api.server.tls, login: api.server.login, publicAddrs: api.server.publicAddrs });
    try {
      assert.equal(web.server.headersTimeout, 10_000);
      assert.equal(web.server.requestTimeout, 30_000);
      assert.equal(web.server.keepAliveTimeout, 5_000);
      assert.equal(web.server.maxHeadersCount === null || web.server.maxHeadersCount >= 0, true);
      assert.equal(web.server.maxConnections, 4_096);
      assert.deepEqual(web.limits, WEB_LIMITS);
      assert.equal(WEB_LIMITS.maxHeaderSize, 16 * 1024);
      assert.equal(WEB_LIMITS.tlsHandshakeTimeoutMs, 10_000);
      assert.equal(WEB_LIMITS.maxConnectionsPerAddress, 64);
      assert.equal(MAX_BODY_BYTES, 16 * 1024);
    } finally {
      await web.close();
    }
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    assert.match(readme, /bodies are limited to 16 KiB, headers to 16 KiB, with a 10 s header timeout\s+and 30 s request timeout/);
  });
});

describe('TLS versions', () => {
  const tmp = tempDir('web-tls');
  let api: TestWebApi;
  before(async () => {
    api = await startTestWebApi({ dir: tmp.dir });
  });
  after(async () => {
    await api?.close();
    tmp.cleanup();
  });

  // SECLEVEL=0 lets this client offer TLS 1.1 at all (OpenSSL 3 refuses it by default): the refusal must be the server's.
  const legacy = { ciphers: 'DEFAULT@SECLEVEL=0', minVersion: 'TLSv1' as const };

  test('a TLS 1.1 client is refused by the server; TLS 1.2 and 1.3 are served', async () => {
    const old = await rawTls(api.port, { ...legacy, maxVersion: 'TLSv1.1' }).then(
      (s) => (s.destroy(), 'connected'),
      (e: Error) => e.message,
    );
    assert.match(old, /unsupported protocol|protocol version|wrong version/i);
    for (const v of ['TLSv1.2', 'TLSv1.3'] as const) {
      const s = await rawTls(api.port, { ...legacy, minVersion: v, maxVersion: v });
      assert.equal(s.getProtocol(), v);
      s.destroy();
    }
  });

  test('openssl s_client -tls1_1 is refused, -tls1_2 connects', async () => {
    requireTool('openssl', 'apt-get install -y openssl');
    const connect = (flag: string) =>
      run('openssl', ['s_client', flag, '-cipher', 'DEFAULT@SECLEVEL=0', '-connect', `127.0.0.1:${api.port}`, '-servername', 'localhost'], { input: '', timeoutMs: 10_000 });
    const old = await connect('-tls1_1');
    assert.notEqual(old.code, 0, old.stdout);
    assert.match(old.stdout + old.stderr, /alert protocol version|unsupported protocol|no protocols available|wrong version number/i);
    const ok = await connect('-tls1_2');
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /Protocol\s*: TLSv1\.2/);
  });
});

describe('rate limit on POST /v1/login/start', () => {
  const tmp = tempDir('web-rate');
  let api: TestWebApi;
  let offsetMs = 0;
  before(async () => {
    // Default limits (LOGIN_RATE_LIMIT); a clock the test moves forward. No IdP: an empty body is a 400, which costs a token too.
    api = await startTestWebApi({ dir: tmp.dir, clock: () => new Date(Date.now() + offsetMs) });
  });
  after(async () => {
    await api?.close();
    tmp.cleanup();
  });

  const start = (localAddress?: string) =>
    localAddress
      ? new Promise<number>((resolve, reject) => {
          rawTls(api.port, { localAddress } as ConnectionOptions).then((s) => {
            const done = untilClosed(s);
            s.write('POST /v1/login/start HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}');
            done.then((r) => resolve(statusOf(r.text)), reject);
          }, reject);
        })
      : request(api.port, { method: 'POST', path: '/v1/login/start', headers: { 'content-type': 'application/json' }, body: '{}' });
  const rateEvents = () => api.audit().filter((e) => e['event'] === 'login.failure' && e['stage'] === 'rate_limit');

  test(`${LOGIN_RATE_LIMIT.burst} starts at once pass, the next gets 429 with Retry-After, audited once; one more every ${60 / LOGIN_RATE_LIMIT.perMinute} s`, async () => {
    for (let i = 0; i < LOGIN_RATE_LIMIT.burst; i++) {
      const r = (await start()) as Awaited<ReturnType<typeof request>>;
      assert.equal(r.status, 400, `start ${i + 1}: ${r.body}`);
    }
    const limited = (await start()) as Awaited<ReturnType<typeof request>>;
    assert.equal(limited.status, 429, limited.body);
    assert.equal(limited.headers['retry-after'], String(60 / LOGIN_RATE_LIMIT.perMinute));
    assert.equal(JSON.parse(limited.body).error.code, 'RATE_LIMITED');
    assertSecurityHeaders(limited.headers, '429');
    for (let i = 0; i < 5; i++) assert.equal(((await start()) as Awaited<ReturnType<typeof request>>).status, 429);
    assert.equal(rateEvents().length, 1, 'a flood is audited once, not once per request');
    assert.equal(rateEvents()[0]!['client_addr'], '127.0.0.1');
    assert.equal((await request(api.port)).status, 200, 'other endpoints are not limited');
    assert.equal(await start('127.0.0.4'), 400, 'another address has its own bucket');
    offsetMs += (60 / LOGIN_RATE_LIMIT.perMinute) * 1000;
    assert.equal(((await start()) as Awaited<ReturnType<typeof request>>).status, 400, 'a token is back after the refill interval');
    assert.equal(((await start()) as Awaited<ReturnType<typeof request>>).status, 429);
    offsetMs += 61_000;
    for (let i = 0; i < 15; i++) await start(); // ~10 tokens came back in 61 s; the rest are refused
    const events = rateEvents();
    assert.equal(events.length, 2, 'the next minute of refusals is one more event');
    const summary = api.audit().find((e) => e['event'] === 'failures.summary' && e['stage'] === 'rate_limit');
    assert.ok(summary, 'the refusals after the first were counted into one summary');
    assert.equal(summary['source'], '127.0.0.0/8');
    assert.equal(summary['count'], 6, 'five refused in the flood, one after the refill');
  });
});

describe('RateLimiter and sourceKey (pure)', () => {
  test('a bucket holds burst tokens and refills at perMinute', () => {
    const r = new RateLimiter(10, 20);
    for (let i = 0; i < 20; i++) assert.equal(r.take('10.0.0.1', 0), undefined);
    assert.equal(r.take('10.0.0.1', 0)?.retryAfterSeconds, 6);
    assert.equal(r.take('10.0.0.1', 3_000)?.retryAfterSeconds, 3);
    assert.equal(r.take('10.0.0.1', 6_000), undefined);
    assert.equal(r.take('10.0.0.1', 6_000)?.retryAfterSeconds, 6);
    assert.equal(r.take('10.0.0.1', 10 * 60_000), undefined, 'refilled, capped at burst');
  });

  test('the table of addresses stays bounded', () => {
    const r = new RateLimiter(10, 20, 1_000);
    for (let i = 0; i < 5_000; i++) r.take(`10.0.${i >> 8}.${i & 255}`, i * 10_000);
    assert.ok(r.size <= 1_000, `${r.size} buckets`);
  });

  const keys: [string, string][] = [
    ['10.1.2.3', '10.1.2.3'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:DB8:1:2:ffff::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::FFFF:7f00:1', '127.0.0.1'],
    ['2001:db8:1:2::1%eth0', '2001:db8:1:2::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['unknown', 'unknown'],
  ];
  for (const [addr, key] of keys) test(`sourceKey(${addr}) = ${key}`, () => assert.equal(sourceKey(addr), key));
});

// The web port reads a connection's first bytes in JavaScript before TLS starts when TLS routing (alpn-mux.ts) or the
// PROXY protocol (proxy-protocol.ts) is on. The HTTPS server's early answers must still reach a client that is still
// sending, in every arrangement of the front.
const FRONTS: [string, { tlsRouting: boolean; proxied: boolean }][] = [
  ['tls routing on', { tlsRouting: true, proxied: false }],
  ['tls routing on behind a PROXY protocol balancer', { tlsRouting: true, proxied: true }],
  ['tls routing off behind a PROXY protocol balancer', { tlsRouting: false, proxied: true }],
];
for (const [front, o] of FRONTS) {
  describe(`early answers reach a client that is still sending (${front})`, () => {
    const tmp = tempDir('web-early');
    let idp: DevIdp;
    let api: TestWebApi;
    const open = () => (o.proxied ? rawTlsProxied(api.port, 'PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n') : rawTls(api.port));

    before(async () => {
      const port = await freePort();
      idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: WEB_TEST_SECRET, redirectUris: [`https://127.0.0.1:${port}/v1/login/oidc/callback`], accounts: DEMO_ACCOUNTS });
      api = await startTestWebApi({
        dir: tmp.dir,
        issuer: idp.issuer,
        port,
        limits: SHORT,
        tlsRouting: o.tlsRouting,
        ...(o.proxied ? { proxyProtocolFrom: ['127.0.0.1'] } : {}),
      });
    });
    after(async () => {
      await api?.close();
      await idp?.close();
      tmp.cleanup();
    });

    /** Writes `head`, then `body` in 16 KiB pieces for as long as the connection takes them; the server's answer. */
    const sendWhileAnswered = async (head: string, body: Buffer) => {
      const s = await open();
      s.on('error', () => {}); // the server may close while we are still sending
      const closed = untilClosed(s);
      s.write(head);
      for (let at = 0; at < body.length && !s.destroyed && s.writable; at += 16 * 1024) {
        if (!s.write(body.subarray(at, at + 16 * 1024))) await Promise.race([new Promise((r) => s.once('drain', r)), closed]);
      }
      return (await closed).text;
    };

    test('a plain request is served', async () => {
      const s = await open();
      const closed = untilClosed(s);
      s.write('GET /v1/ping HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      assert.equal(statusOf((await closed).text), 200);
    });

    test('400 for a request line that is not HTTP, with more bytes following', async () => {
      const text = await sendWhileAnswered('HELLO\r\n\r\n', Buffer.alloc(256 * 1024, 'x'));
      assert.equal(statusOf(text), 400, text.slice(0, 200));
      assertSecurityHeaders(headersOf(text), '400');
    });

    test('431 for 64 KiB of headers, and for 1 MiB of headers still arriving', async () => {
      for (const size of [64 * 1024, 1024 * 1024]) {
        const text = await sendWhileAnswered('GET /v1/ping HTTP/1.1\r\nhost: x\r\nx-big: ', Buffer.alloc(size, 'a'));
        assert.equal(statusOf(text), 431, `${size} bytes: ${text.slice(0, 200)}`);
        assertSecurityHeaders(headersOf(text), '431');
      }
    });

    test('413 for a 1 MiB body announced by Content-Length and sent anyway', async () => {
      const text = await sendWhileAnswered(`POST /v1/login/start HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${1024 * 1024}\r\n\r\n`, Buffer.alloc(1024 * 1024, ' '));
      assert.equal(statusOf(text), 413, text.slice(0, 200));
      assertSecurityHeaders(headersOf(text), '413');
    });

    test('413 for a chunked body that passes the limit while the client keeps sending', async () => {
      const chunk = Buffer.from(`1000\r\n${' '.repeat(0x1000)}\r\n`);
      const text = await sendWhileAnswered('POST /v1/login/start HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n', Buffer.concat(Array(256).fill(chunk) as Buffer[]));
      assert.equal(statusOf(text), 413, text.slice(0, 200));
    });

    test('408 for headers that trickle in', async () => {
      const s = await open();
      const closed = untilClosed(s);
      s.write('GET /v1/ping HTTP/1.1\r\nhost: x\r\n');
      const timer = setInterval(() => s.writable && s.write('x'), 100);
      const { text } = await closed;
      clearInterval(timer);
      assert.equal(statusOf(text), 408, text.slice(0, 200));
      assertSecurityHeaders(headersOf(text), '408');
    });
  });
}
