/**
 * Headless logins on the server, in-process (the HTTPS API with real TLS, the
 * development IdP walked over HTTP, startServer with the dir state store): guessed ids,
 * codes and poll secrets are refused and rate limited; polling too early is
 * slowed down and tsh's client honours it; the pending caps evict the oldest;
 * the approval form holds against cross-site posts, another browser, a
 * second decision and a user with no role; the certificate is for whoever
 * signed in, whatever tsh hinted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { connect as netConnect, createServer as netServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { request as undiciRequest, type Dispatcher } from 'undici';
import { newEnvelopeKey, open as openEnvelope } from '../../src/api/envelope.js';
import type { HeadlessStartResponse, LoginResult } from '../../src/api/types.js';
import { headlessLogin as clientHeadlessLogin } from '../../src/client/headless-login.js';
import { UserError } from '../../src/errors.js';
import { HEADLESS_GUESS_LIMIT, HEADLESS_LIMITS, HEADLESS_POLL_INTERVAL_SECONDS, normalizeHeadlessCode, newHeadlessCode, SLOW_DOWN_STEP_SECONDS } from '../../src/server/auth/headless-login.js';
import { formatPublicKeyLine, generateKeyPair, parseCertificateLine } from '../../src/sshcert/index.js';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { loopbackDispatcher, walkLogin } from '../helpers/headless-login.js';
import { startHeadlessServer, type HeadlessServer } from '../helpers/headless-server.js';
import { freePort } from '../helpers/sshd.js';
import { tempDir } from '../helpers/tools.js';

function yaml(port: number, issuer: string, loginTimeout = '10m'): string {
  return `cluster_name: headless.test
data_dir: ./data
proxy:
  web_listen_addr: 127.0.0.1:${port}
  ssh_listen_addr: 127.0.0.1:0
auth:
  login_timeout: ${loginTimeout}
  oidc:
    issuer: ${issuer}
    client_id: jumpgate
    client_secret: s3cret
    claims_to_roles: [{ claim: email_verified, value: true, roles: [user] }]
roles:
  user: { logins: ["{{username}}"], node_labels: { "*": "*" } }
`;
}

interface Json {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

async function post(port: number, path: string, body: unknown, dispatcher: Dispatcher): Promise<Json> {
  const res = await undiciRequest(`https://127.0.0.1:${port}${path}`, { method: 'POST', dispatcher, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as Record<string, unknown> };
}

async function page(url: string, dispatcher: Dispatcher, opts: { method?: 'GET' | 'POST'; form?: Record<string, string>; headers?: Record<string, string> } = {}) {
  const res = await undiciRequest(url, {
    method: opts.method ?? 'GET',
    dispatcher,
    headers: { ...(opts.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), ...opts.headers },
    ...(opts.form ? { body: new URLSearchParams(opts.form).toString() } : {}),
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** What tsh sends to start: a fresh key, sealing key and nonce. */
function startBody(extra: Record<string, unknown> = {}) {
  const { publicKey } = generateKeyPair('ed25519');
  const envelope = newEnvelopeKey();
  return { body: { public_key: formatPublicKeyLine(publicKey), client_key: envelope.publicRaw.toString('base64url'), client_nonce: 'N'.repeat(43), ...extra }, envelope, publicKey };
}

describe('headless logins on the server', () => {
  const tmp = tempDir('headless-server');
  let idp: DevIdp;
  let srv: HeadlessServer;
  let port: number;
  const d = (n: number) => loopbackDispatcher(n);

  before(async () => {
    port = await freePort();
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: 's3cret', redirectUris: [`https://127.0.0.1:${port}/v1/login/oidc/callback`], accounts: DEMO_ACCOUNTS });
    mkdirSync(join(tmp.dir, 'a'));
    srv = await startHeadlessServer(join(tmp.dir, 'a'), yaml(port, idp.issuer));
  });

  after(async () => {
    await srv?.stop();
    await idp?.close();
    tmp.cleanup();
  });

  const events = (event: string) => srv.audit().filter((e) => e['event'] === event);

  /** Starts from 127.0.0.<n>. */
  async function start(n: number, extra: Record<string, unknown> = {}) {
    const s = startBody(extra);
    const r = await post(port, '/v1/login/headless/start', s.body, d(n));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return { ...s, res: r.body as unknown as HeadlessStartResponse };
  }

  /** The other device over HTTP: the URL, the IdP's forms, then the approval page (HTML, its form token, its cookie). */
  async function approvalPage(url: string, login: string, n: number) {
    const end = await walkLogin(url, { dispatcher: d(n), login, stopAt: (u) => u.pathname === '/v1/login/oidc/callback' });
    const res = await page(end.url.href, d(n));
    const csrf = /name="csrf" value="([^"]+)"/.exec(res.text)?.[1];
    const cookie = String(res.headers['set-cookie'] ?? '').split(';')[0]!;
    return { ...res, csrf, cookie };
  }

  function decide(url: string, n: number, form: Record<string, string>, headers: Record<string, string>) {
    return page(url, d(n), { method: 'POST', form, headers: { origin: `https://127.0.0.1:${port}`, ...headers } });
  }

  test('start answers a URL on the proxy, a readable code, a poll secret, the expiry and the interval', async () => {
    const s = await start(2);
    assert.match(s.res.url, new RegExp(`^https://127\\.0\\.0\\.1:${port}/web/headless/[A-Za-z0-9_-]{22}$`));
    assert.ok(s.res.url.endsWith(s.res.request_id));
    assert.match(s.res.code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    assert.equal(s.res.interval_seconds, HEADLESS_POLL_INTERVAL_SECONDS);
    assert.ok(Date.parse(s.res.expires_at) > Date.now() + 9 * 60_000);
    const ev = events('headless.start').find((e) => e['request_id'] === s.res.request_id);
    assert.equal(ev?.['client_addr'], '127.0.0.2');
    assert.match(String(ev?.['key_fingerprint']), /^SHA256:/);
    assert.ok(!JSON.stringify(srv.audit()).includes(s.res.poll_secret), 'the poll secret is not in the audit log');
  });

  test('a bad start is refused naming the field', async () => {
    const s = startBody({ client_key: 'short' });
    const r = await post(port, '/v1/login/headless/start', s.body, d(3));
    assert.equal(r.status, 400);
    assert.match(JSON.stringify(r.body), /client_key: expected 32 bytes/);
    const k = await post(port, '/v1/login/headless/start', { ...startBody().body, public_key: 'ssh-ed25519 AAAA' }, d(3));
    assert.equal(k.status, 400);
    assert.match(JSON.stringify(k.body), /public_key/);
  });

  test('guessed request ids, codes and poll secrets are refused, and the guesser is rate limited (429) while the real poller is not', async () => {
    const real = await start(4);
    const guesser = 5;
    const outcomes: number[] = [];
    const fakeId = () => Buffer.from(Array.from({ length: 16 }, () => Math.floor(Math.random() * 256))).toString('base64url');
    for (let i = 0; i < 3; i++) outcomes.push((await page(`https://127.0.0.1:${port}/web/headless/${fakeId()}`, d(guesser))).status);
    for (let i = 0; i < 3; i++) {
      let code = newHeadlessCode();
      while (code === real.res.code) code = newHeadlessCode();
      outcomes.push((await page(`https://127.0.0.1:${port}/web/headless`, d(guesser), { method: 'POST', form: { code }, headers: { origin: `https://127.0.0.1:${port}` } })).status);
    }
    for (let i = 0; i < HEADLESS_GUESS_LIMIT.burst - 6; i++) {
      const r = await post(port, '/v1/login/headless/poll', { request_id: real.res.request_id, poll_secret: 'x'.repeat(43) }, d(guesser));
      assert.deepEqual(r.body, { status: 'expired' }, 'a wrong secret learns nothing about the request');
      outcomes.push(r.status);
    }
    assert.deepEqual(outcomes, [404, 404, 404, 404, 404, 404, 200, 200, 200, 200]);
    const over = await post(port, '/v1/login/headless/poll', { request_id: fakeId(), poll_secret: 'x'.repeat(43) }, d(guesser));
    assert.equal(over.status, 429);
    assert.ok(Number(over.headers['retry-after']) >= 1);
    const overPage = await page(`https://127.0.0.1:${port}/web/headless/${fakeId()}`, d(guesser));
    assert.equal(overPage.status, 429);
    // The real request is untouched: its own poller still hears "pending".
    const mine = await post(port, '/v1/login/headless/poll', { request_id: real.res.request_id, poll_secret: real.res.poll_secret }, d(4));
    assert.deepEqual(mine.body, { status: 'pending', interval_seconds: HEADLESS_POLL_INTERVAL_SECONDS });
    const failures = events('headless.failure').filter((e) => e['client_addr'] === '127.0.0.5');
    assert.ok(failures.some((e) => e['stage'] === 'page') && failures.some((e) => e['stage'] === 'poll'), JSON.stringify(failures));
    assert.ok(failures.length < 12, 'unauthenticated failures are aggregated, not written one by one');
  });

  test('polling faster than the interval gets slow_down with the interval raised by 5 s, for every later poll', async () => {
    const s = await start(6);
    const poll = () => post(port, '/v1/login/headless/poll', { request_id: s.res.request_id, poll_secret: s.res.poll_secret }, d(6));
    assert.deepEqual((await poll()).body, { status: 'pending', interval_seconds: 2 });
    assert.deepEqual((await poll()).body, { status: 'slow_down', interval_seconds: 2 + SLOW_DOWN_STEP_SECONDS });
    assert.deepEqual((await poll()).body, { status: 'slow_down', interval_seconds: 2 + 2 * SLOW_DOWN_STEP_SECONDS });
  });

  test('one source holding more than its pending cap loses its oldest request (audited as evicted)', async () => {
    const first = await start(7);
    for (let i = 0; i < HEADLESS_LIMITS.perSource; i++) await start(7);
    const r = await post(port, '/v1/login/headless/poll', { request_id: first.res.request_id, poll_secret: first.res.poll_secret }, d(7));
    assert.deepEqual(r.body, { status: 'expired' });
    assert.ok(events('headless.failure').some((e) => e['stage'] === 'evicted' && e['request_id'] === first.res.request_id));
  });

  test('a typed code (any case, no dash) leads to its request; the form is refused from another site or another browser', async () => {
    const s = await start(8);
    const typed = await page(`https://127.0.0.1:${port}/web/headless`, d(8), { method: 'POST', form: { code: ` ${s.res.code.replace('-', '').toLowerCase()} ` }, headers: { origin: `https://127.0.0.1:${port}` } });
    assert.equal(typed.status, 302);
    assert.equal(typed.headers['location'], `/web/headless/${s.res.request_id}`);
    const ap = await approvalPage(s.res.url, 'alice', 8);
    assert.equal(ap.status, 200);
    assert.match(String(ap.headers['content-security-policy']), /form-action 'self'/);
    assert.match(String(ap.headers['set-cookie']), /HttpOnly; SameSite=Strict/);
    const cross = await decide(s.res.url, 8, { csrf: ap.csrf!, decision: 'approve' }, { cookie: ap.cookie, origin: 'https://evil.example' });
    assert.equal(cross.status, 403);
    assert.match(cross.text, /another site/);
    const noCookie = await decide(s.res.url, 8, { csrf: ap.csrf!, decision: 'approve' }, {});
    assert.equal(noCookie.status, 400);
    assert.match(noCookie.text, /another browser/);
    assert.ok(!events('cert.issued').some((e) => e['via'] === 'headless' && e['user'] === 'alice' && events('headless.approved').some((a) => a['request_id'] === s.res.request_id)));
    const poll = await post(port, '/v1/login/headless/poll', { request_id: s.res.request_id, poll_secret: s.res.poll_secret }, d(8));
    assert.equal(poll.body['status'], 'pending', 'nothing was decided');
  });

  test('the certificate is for who signed in, not who tsh hinted; a second page of the same request decides nothing more', async () => {
    const s = await start(9, { login_hint: 'bob' });
    const a = await approvalPage(s.res.url, 'alice', 9);
    const b = await approvalPage(s.res.url, 'alice', 9);
    const ok = await decide(s.res.url, 9, { csrf: a.csrf!, decision: 'approve' }, { cookie: a.cookie });
    assert.equal(ok.status, 200, ok.text);
    const second = await decide(s.res.url, 9, { csrf: b.csrf!, decision: 'deny' }, { cookie: b.cookie });
    assert.equal(second.status, 409);
    assert.match(second.text, /already decided/);
    const r = await post(port, '/v1/login/headless/poll', { request_id: s.res.request_id, poll_secret: s.res.poll_secret }, d(9));
    assert.equal(r.body['status'], 'approved');
    const result = JSON.parse(openEnvelope(s.envelope.privateKey, String(r.body['response']), Buffer.from(s.res.request_id)).toString()) as LoginResult;
    assert.equal(result.username, 'alice');
    const cert = parseCertificateLine(result.certificate).cert;
    assert.equal(cert.keyId, 'alice');
    assert.ok(cert.key.blob.equals(s.publicKey.blob), 'certified key is the one tsh sent');
    // Picked up once.
    const again = await post(port, '/v1/login/headless/poll', { request_id: s.res.request_id, poll_secret: s.res.poll_secret }, d(9));
    assert.deepEqual(again.body, { status: 'expired' });
    assert.equal(events('headless.approved').filter((e) => e['request_id'] === s.res.request_id).length, 1);
    assert.equal(events('headless.denied').filter((e) => e['request_id'] === s.res.request_id).length, 0);
  });

  test('a user no role maps cannot approve: nothing is issued', async () => {
    const s = await start(10);
    const ap = await approvalPage(s.res.url, 'mallory', 10);
    assert.equal(ap.status, 403);
    assert.match(ap.text, /not mapped to any Jumpgate role/);
    assert.equal(ap.csrf, undefined);
    assert.ok(events('headless.failure').some((e) => e['stage'] === 'roles' && e['user'] === 'mallory'));
  });

  test('codes: 8 letters from 20 with no vowels or look-alikes; typed forms are normalised', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const c = newHeadlessCode();
      assert.match(c, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
      seen.add(c);
    }
    assert.ok(seen.size > 1990, 'codes do not repeat in practice');
    assert.equal(normalizeHeadlessCode(' wdjb mjht '), 'WDJB-MJHT');
    assert.equal(normalizeHeadlessCode('WDJB-MJHA'), undefined, 'a vowel is never in a code');
    assert.equal(normalizeHeadlessCode('WDJB-MJH'), undefined);
  });
});

describe("tsh's poll loop against the server's clock", () => {
  const tmp = tempDir('headless-client');
  let idp: DevIdp;
  let srv: HeadlessServer;
  let offset = 0;
  const clock = () => new Date(Date.now() + offset);

  before(async () => {
    const port = await freePort();
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: 's3cret', redirectUris: [`https://127.0.0.1:${port}/v1/login/oidc/callback`], accounts: DEMO_ACCOUNTS });
    srv = await startHeadlessServer(tmp.dir, yaml(port, idp.issuer, '1m'), { clock });
  });

  after(async () => {
    await srv?.stop();
    await idp?.close();
    tmp.cleanup();
  });

  test('after one slow_down tsh waits the new interval every time (no second slow_down) and gives up at the expiry', async () => {
    const sleeps: number[] = [];
    let said = '';
    // Time passes as tsh sleeps, except the second wait, which it skips (polling too early once).
    const sleep = async (ms: number) => {
      sleeps.push(ms);
      if (sleeps.length !== 2) offset += ms;
    };
    const err = await clientHeadlessLogin({
      proxyAddr: `127.0.0.1:${srv.webPort}`,
      dispatcher: loopbackDispatcher(11),
      say: (l) => (said += `${l}\n`),
      waiting: () => () => {},
      now: () => clock().getTime(),
      sleep,
    }).catch((e: unknown) => e);
    assert.ok(err instanceof UserError && err.code === 'LOGIN_TIMEOUT', String(err));
    assert.deepEqual(sleeps.slice(0, 3), [2000, 2000, 7000]);
    assert.ok(sleeps.slice(2).every((ms) => ms === 7000), `every later wait is the raised interval: ${sleeps.join(',')}`);
    assert.ok(sleeps.length >= 8, 'it kept polling until the minute ran out');
    assert.match(said, /^https:\/\/127\.0\.0\.1:\d+\/web\/headless\/[A-Za-z0-9_-]{22}$/m, 'the URL on a line of its own');
    assert.match(said, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/m, 'the code on a line of its own');
  });

  test('a poll that cannot reach the proxy is tried again: the login goes on (here until it expires), it does not end with a network error', async () => {
    // A TCP forwarder to the proxy that can be cut: while down it drops every connection.
    let down = false;
    const open = new Set<Socket>();
    const fwd = netServer((c) => {
      if (down) return void c.destroy();
      const up = netConnect(srv.webPort, '127.0.0.1');
      for (const s of [c, up]) {
        open.add(s);
        s.on('close', () => open.delete(s));
        s.on('error', () => {});
      }
      c.pipe(up).pipe(c);
    });
    await new Promise<void>((r) => fwd.listen(0, '127.0.0.1', r));
    const sleeps: number[] = [];
    let said = '';
    const sleep = async (ms: number) => {
      sleeps.push(ms);
      offset += ms;
      if (sleeps.length === 2) {
        down = true;
        for (const s of open) s.destroy();
      }
      if (sleeps.length === 4) down = false;
    };
    try {
      const err = await clientHeadlessLogin({
        proxyAddr: `127.0.0.1:${(fwd.address() as AddressInfo).port}`,
        dispatcher: loopbackDispatcher(12),
        say: (l) => (said += `${l}\n`),
        waiting: () => () => {},
        now: () => clock().getTime(),
        sleep,
      }).catch((e: unknown) => e);
      assert.ok(err instanceof UserError && err.code === 'LOGIN_TIMEOUT', String(err));
      assert.match(said, /the proxy did not answer: .*; trying again/);
    } finally {
      fwd.close();
      for (const s of open) s.destroy();
    }
  });
});
