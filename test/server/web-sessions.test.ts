/**
 * WebSessions in-process: sign-in start → IdP → callback → the session a
 * cookie names. The IdP is a fake connector returning fixed claims (the real
 * oidc-provider and Chromium are covered end to end in
 * test/e2e/web.test.ts); the state store, audit log and config are real.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { parseServerConfig } from '../../src/config/index.js';
import type { IdpConnector } from '../../src/server/auth/login.js';
import type { ServerRuntime } from '../../src/server/runtime.js';
import { WEB_LOGIN_COOKIE, WEB_SESSION_COOKIE, WebSessions } from '../../src/server/web/sessions.js';
import { testRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tools.js';

const tmp = tempDir('web-sessions');
let rt: ServerRuntime;

before(async () => {
  const config = parseServerConfig(
    `cluster_name: unit.test
data_dir: ${tmp.dir}/data
auth:
  cert_ttl: 12h
  oidc:
    issuer: https://idp.unit.test
    client_id: jumpgate
    client_secret: s3cret
    username_claim: preferred_username
    claims_to_roles:
      - { claim: groups, value: short, roles: [short] }
      - { claim: email_verified, value: true, roles: [user] }
roles:
  user:
    logins: ["{{username}}"]
    node_labels: { env: dev }
  short:
    logins: ["{{username}}"]
    node_labels: { env: dev }
    max_session_ttl: 1h
nodes:
  - { name: dev1, addr: "10.0.0.2:22", labels: { env: dev } }
`,
    `${tmp.dir}/jumpgate.yaml`,
  );
  rt = await testRuntime(config);
});
after(async () => {
  await rt.audit.close();
  tmp.cleanup();
});

function fakeIdp(claims: Record<string, unknown>): IdpConnector {
  return { authorizationUrl: async (checks) => new URL(`https://idp.unit.test/auth?state=${checks.state}`), finish: async () => claims };
}

/** A request as node:http would hand it over: only the headers WebSessions reads. */
function req(headers: Record<string, string>): IncomingMessage {
  return { headers } as unknown as IncomingMessage;
}

const cookieOf = (setCookies: string[], name: string) => setCookies.find((c) => c.startsWith(`${name}=`))!.split(';')[0]!.slice(name.length + 1);

/** start → callback; `binding` overrides the cookie the browser sends back. */
async function signIn(claims: Record<string, unknown>, binding?: string) {
  const svc = new WebSessions(rt, rt.store.items, fakeIdp(claims));
  const start = await svc.startLogin('192.0.2.10');
  const state = new URL(start.location).searchParams.get('state')!;
  const out = await svc.callback(new URL(`https://jump.unit.test/v1/login/oidc/callback?code=x&state=${encodeURIComponent(state)}`), binding ?? cookieOf(start.setCookies, WEB_LOGIN_COOKIE), '192.0.2.10');
  return { svc, state, start, out };
}

describe('web sessions', () => {
  test('a sign-in gives a __Host- session cookie (HttpOnly, Secure, SameSite=Strict) for cert_ttl; the cookie names the session', async () => {
    const { svc, state, out } = await signIn({ preferred_username: 'ann', email_verified: true });
    assert.ok(state.startsWith('web.'), 'web.ts routes callbacks by this prefix');
    assert.equal(out.kind, 'redirect');
    const set = out.setCookies.find((c) => c.startsWith(`${WEB_SESSION_COOKIE}=`))!;
    assert.match(set, /; Path=\/; Max-Age=43200; Secure; HttpOnly; SameSite=Strict$/);
    const s = await svc.authenticate(req({ cookie: `${WEB_SESSION_COOKIE}=${cookieOf(out.setCookies, WEB_SESSION_COOKIE)}` }));
    assert.equal(s?.user, 'ann');
    assert.deepEqual(s?.access.logins, ['ann']);
  });

  test("a role's max_session_ttl shortens the session below cert_ttl", async () => {
    const { out } = await signIn({ preferred_username: 'bo', email_verified: true, groups: ['short'] });
    assert.match(out.setCookies.join('\n'), /Max-Age=3600;/);
  });

  test('a callback in a browser that did not start the sign-in (login CSRF) is refused and the state is used up', async () => {
    const { out } = await signIn({ preferred_username: 'eve', email_verified: true }, 'A'.repeat(43));
    assert.equal(out.kind, 'page');
    assert.equal(out.kind === 'page' && out.status, 403);
    const again = await signIn({ preferred_username: 'eve', email_verified: true }, '');
    assert.equal(again.out.kind, 'page');
  });

  test('a state-changing request needs the CSRF token and this server as Origin', async () => {
    const { svc, out } = await signIn({ preferred_username: 'cy', email_verified: true });
    const cookie = `${WEB_SESSION_COOKIE}=${cookieOf(out.setCookies, WEB_SESSION_COOKIE)}`;
    const s = (await svc.authenticate(req({ cookie })))!;
    const ok = req({ cookie, host: 'jump.unit.test:3080', origin: 'https://jump.unit.test:3080' });
    assert.doesNotThrow(() => svc.checkStateChange(ok, s, s.csrf));
    assert.throws(() => svc.checkStateChange(ok, s, 'x'.repeat(43)), { code: 'CSRF_TOKEN' });
    assert.throws(() => svc.checkStateChange(ok, s, undefined), { code: 'CSRF_TOKEN' });
    assert.throws(() => svc.checkStateChange(req({ cookie, host: 'jump.unit.test:3080', origin: 'https://evil.example' }), s, s.csrf), { code: 'CROSS_SITE' });
    assert.throws(() => svc.checkStateChange(req({ cookie, host: 'jump.unit.test:3080' }), s, s.csrf), { code: 'CROSS_SITE' });
  });

  test('logout deletes the session: the cookie names nothing any more', async () => {
    const { svc, out } = await signIn({ preferred_username: 'di', email_verified: true });
    const cookie = `${WEB_SESSION_COOKIE}=${cookieOf(out.setCookies, WEB_SESSION_COOKIE)}`;
    const s = (await svc.authenticate(req({ cookie })))!;
    const cleared = await svc.logout(s, '192.0.2.10');
    assert.match(cleared[0]!, /Max-Age=0/);
    assert.equal(await svc.authenticate(req({ cookie })), undefined);
  });

  test('a user mapped to no role cannot sign in', async () => {
    const { out } = await signIn({ preferred_username: 'mal', email_verified: false });
    assert.equal(out.kind === 'page' && out.status, 403);
  });
});
