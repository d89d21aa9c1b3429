/**
 * LoginService in-process: start → IdP → callback → the sealed answer tsh
 * opens. The IdP is a fake connector returning fixed claims (the real
 * oidc-provider is covered end to end in test/e2e/login.test.ts and
 * test/e2e/claims.test.ts); everything else is real: the CAs in a temp data
 * directory, the issuer, the audit log, the envelope.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { newEnvelopeKey, open } from '../../src/api/envelope.js';
import type { LoginResult } from '../../src/api/types.js';
import { parseServerConfig } from '../../src/config/index.js';
import { ApiRequestError, LoginService, type IdpConnector } from '../../src/server/auth/login.js';
import { MAX_ISSUED_CERTS } from '../../src/server/auth/revocation.js';
import { StoreUnavailableError, type PendingRecord } from '../../src/server/storage/backend.js';
import { UserError } from '../../src/errors.js';
import type { ServerRuntime } from '../../src/server/runtime.js';
import { formatPublicKeyLine, generateKeyPair, parseCertificateLine, type Certificate } from '../../src/sshcert/index.js';
import { decodeIdentity } from '../../src/sshcert/identity.js';
import { testRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tools.js';

const tmp = tempDir('login-service');
let rt: ServerRuntime;

before(async () => {
  const config = parseServerConfig(
    `cluster_name: unit.test
data_dir: ${tmp.dir}/data
auth:
  oidc:
    issuer: https://idp.unit.test
    client_id: jumpgate
    client_secret: s3cret
    username_claim: preferred_username
    claims_to_roles:
      - { claim: groups, value: ops, roles: [ops] }
      - { claim: groups, value: svc, roles: [svc] }
      - { claim: email_verified, value: true, roles: [user] }
roles:
  ops:
    logins: ["{{external.unix_logins}}", "{{username}}-ops"]
    node_labels: { env: prod }
  svc:
    logins: ["{{external.unix_logins}}"]
    node_labels: { env: dev }
  user:
    logins: ["{{username}}"]
    node_labels: { env: dev }
nodes:
  - { name: prod1, addr: "10.0.0.1:22", labels: { env: prod } }
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

/** An IdP that signs everyone in with `claims`. */
function fakeIdp(claims: Record<string, unknown>): IdpConnector {
  return {
    authorizationUrl: async (checks) => new URL(`https://idp.unit.test/auth?state=${checks.state}`),
    finish: async () => claims,
  };
}

type Outcome = { ok: true; result: LoginResult; cert: Certificate } | { ok: false; code: string; message: string };

/** One whole login through the service, as tsh and the browser drive it. */
async function login(claims: Record<string, unknown>): Promise<Outcome> {
  const svc = new LoginService(rt, fakeIdp(claims), () => ({ web: 'jump.unit.test:3080', ssh: 'jump.unit.test:3023' }));
  const { publicKey } = generateKeyPair('ed25519');
  const env = newEnvelopeKey();
  const nonce = 'n'.repeat(43);
  const start = await svc.start(
    { public_key: formatPublicKeyLine(publicKey), callback_url: 'http://127.0.0.1:9/cb', client_key: env.publicRaw.toString('base64url'), client_nonce: nonce },
    '127.0.0.1',
  );
  const state = new URL(start.login_url).searchParams.get('state')!;
  const out = await svc.callback(new URL(`https://jump.unit.test:3080/v1/login/oidc/callback?state=${state}&code=c`), '127.0.0.1');
  assert.equal(out.kind, 'redirect');
  const back = new URL((out as { location: string }).location);
  const error = back.searchParams.get('error');
  if (error) return { ok: false, code: error, message: back.searchParams.get('error_description') ?? '' };
  const result = JSON.parse(open(env.privateKey, back.searchParams.get('response')!, Buffer.from(start.request_id)).toString()) as LoginResult;
  assert.equal(result.client_nonce, nonce);
  return { ok: true, result, cert: parseCertificateLine(result.certificate).cert };
}

describe('LoginService: the claims reach the certificate (access resolved once, with them)', () => {
  test('{{external.unix_logins}} and {{username}}-ops: the certificate, the answer and the audit agree', async () => {
    const r = await login({ preferred_username: 'alice', groups: ['ops'], unix_logins: ['deploy', 'oncall'] });
    assert.ok(r.ok, r.ok ? '' : `${r.code}: ${r.message}`);
    assert.deepEqual(r.cert.principals, ['deploy', 'oncall', 'alice-ops']);
    assert.deepEqual(r.result.logins, ['deploy', 'oncall', 'alice-ops']);
    assert.deepEqual(r.result.roles, ['ops']);
    assert.deepEqual(r.result.nodes, ['prod1'], 'the nodes come from the same access');
    const id = decodeIdentity(r.cert);
    assert.deepEqual(id.roles, ['ops']);
    assert.deepEqual({ ...id.traits }, { unix_logins: ['deploy', 'oncall'] });
    const issued = readAudit().filter((e) => e['event'] === 'cert.issued' && e['serial'] === r.cert.serial.toString());
    assert.equal(issued.length, 1, 'signed once');
    assert.deepEqual(issued[0]!['principals'], ['deploy', 'oncall', 'alice-ops']);
  });

  test('a role with only external templates signs the claim values', async () => {
    const r = await login({ preferred_username: 'bob', groups: ['svc'], unix_logins: 'deploy' });
    assert.ok(r.ok, r.ok ? '' : `${r.code}: ${r.message}`);
    assert.deepEqual(r.cert.principals, ['deploy']);
    assert.deepEqual(r.result.nodes, ['dev1']);
  });

  test('a role with only external templates and no claim refuses the login, naming the claim', async () => {
    const r = await login({ preferred_username: 'bob', groups: ['svc'] });
    assert.ok(!r.ok);
    assert.equal(r.code, 'ACCESS_NO_LOGINS');
    assert.match(r.message, /no value for the claim "unix_logins"/);
    const failure = readAudit().filter((e) => e['event'] === 'login.failure').at(-1)!;
    assert.match(String(failure['reason']), /unix_logins/);
  });

  test('at the issued_cert cap (MAX_ISSUED_CERTS live records) the login is refused with ISSUED_CERTS_FULL and audited; nothing is signed', async () => {
    // The store says it is full (the cap itself runs on both real backends in test/server/auth/issued-cert-cap.test.ts).
    const items = rt.store.items;
    const { count, list } = { count: items.count.bind(items), list: items.list.bind(items) };
    const full = Array.from({ length: MAX_ISSUED_CERTS }, (_, i) => ({ kind: 'issued_cert' as const, key: String(i + 1), value: {}, revision: 'r' }));
    items.count = async (kind) => (kind === 'issued_cert' ? MAX_ISSUED_CERTS : count(kind));
    items.list = (async (kind: Parameters<typeof list>[0]) => (kind === 'issued_cert' ? full : list(kind))) as typeof items.list;
    const issuedBefore = existsSync(`${tmp.dir}/data/audit.log`) ? readAudit().filter((e) => e['event'] === 'cert.issued').length : 0;
    try {
      const r = await login({ preferred_username: 'alice', groups: ['ops'], unix_logins: ['deploy'] });
      assert.ok(!r.ok);
      assert.equal(r.code, 'ISSUED_CERTS_FULL');
      assert.match(r.message, /holds 100000 unexpired certificate records \(the cap\), so no certificate was issued/);
      const failure = readAudit().filter((e) => e['event'] === 'login.failure').at(-1)!;
      assert.match(String(failure['reason']), /ISSUED_CERTS_FULL|the cap/);
      assert.equal(readAudit().filter((e) => e['event'] === 'cert.issued').length, issuedBefore, 'no certificate was issued');
    } finally {
      items.count = count;
      items.list = list;
    }
  });

  test('a claim value that is not a valid login refuses the login and says so', async () => {
    const r = await login({ preferred_username: 'alice', groups: ['ops'], unix_logins: ['deploy', 'root;reboot'] });
    assert.ok(!r.ok);
    assert.equal(r.code, 'ROLE_BAD_LOGIN');
    assert.match(r.message, /"root;reboot".*not a valid Unix login; the login is refused/);
  });

  test('a claim of the wrong type refuses the login and names it', async () => {
    const r = await login({ preferred_username: 'alice', groups: ['ops'], unix_logins: true });
    assert.ok(!r.ok);
    assert.equal(r.code, 'ROLE_BAD_CLAIM');
    assert.match(r.message, /the claim "unix_logins" has the boolean true/);
  });
});

describe('LoginService: pending logins through the state store', () => {
  const startBody = () => ({
    public_key: formatPublicKeyLine(generateKeyPair('ed25519').publicKey),
    callback_url: 'http://127.0.0.1:9/cb',
    client_key: newEnvelopeKey().publicRaw.toString('base64url'),
    client_nonce: 'n'.repeat(43),
  });
  const svc = () => new LoginService(rt, fakeIdp({ preferred_username: 'alice', groups: ['ops'], unix_logins: ['deploy'] }), () => ({ web: 'jump.unit.test:3080', ssh: 'jump.unit.test:3023' }));

  test('the pending login is stored as checked JSON (key line, callback, client key, nonce, OIDC checks) and read back whole', async () => {
    const pending = rt.store.pending;
    const add = pending.add.bind(pending);
    let stored: PendingRecord | undefined;
    pending.add = async (r, l) => {
      stored = r;
      return add(r, l);
    };
    try {
      const r = await login({ preferred_username: 'alice', groups: ['ops'], unix_logins: ['deploy'] });
      assert.ok(r.ok, r.ok ? '' : `${r.code}: ${r.message}`);
    } finally {
      pending.add = add;
    }
    const data = JSON.parse(stored!.data.toString());
    assert.deepEqual(Object.keys(data).sort(), ['callback_url', 'checks', 'client_key', 'client_nonce', 'public_key', 'v']);
    assert.deepEqual(Object.keys(data.checks).sort(), ['code_verifier', 'nonce', 'state']);
    assert.equal(stored!.key, data.checks.state);
  });

  test('a stored pending login that does not have the declared shape is refused, naming the request', async () => {
    const s = svc();
    const start = await s.start(startBody(), '127.0.0.1');
    const state = new URL(start.login_url).searchParams.get('state')!;
    const rec = (await rt.store.pending.take(state))!;
    const data = JSON.parse(rec.data.toString());
    data.callback_url = 'http://evil.example:80/cb';
    await rt.store.pending.add({ ...rec, data: Buffer.from(JSON.stringify(data)) }, { total: 10, perPrefix: 10, perSource: 10, entryBytes: 4096 });
    await assert.rejects(s.callback(new URL(`https://jump.unit.test:3080/v1/login/oidc/callback?state=${state}&code=c`), '127.0.0.1'), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.code, 'PENDING_CORRUPT');
      assert.match(e.message, new RegExp(`pending login ${start.request_id} .*callback_url`));
      return true;
    });
  });

  test('a state store that cannot be reached: login start and callback answer 503 STORE_UNAVAILABLE with Retry-After 30', async () => {
    const s = svc();
    const pending = rt.store.pending;
    const { add, take } = { add: pending.add.bind(pending), take: pending.take.bind(pending) };
    const down = async (): Promise<never> => {
      throw new StoreUnavailableError('postgres://jumpgate@db.unit.test:5432/jumpgate', 'a query', new Error('connect ECONNREFUSED'));
    };
    pending.add = down;
    pending.take = down;
    try {
      for (const call of [() => s.start(startBody(), '127.0.0.1'), () => s.callback(new URL('https://jump.unit.test:3080/v1/login/oidc/callback?state=abc&code=c'), '127.0.0.1')]) {
        await assert.rejects(call, (e: unknown) => {
          assert.ok(e instanceof ApiRequestError);
          assert.equal(e.status, 503);
          assert.equal(e.code, 'STORE_UNAVAILABLE');
          assert.equal(e.retryAfterSeconds, 30);
          assert.match(e.message, /state store is unavailable; try again in a minute/);
          return true;
        });
      }
    } finally {
      pending.add = add;
      pending.take = take;
    }
  });
});

function readAudit(): Array<Record<string, unknown>> {
  return readFileSync(`${tmp.dir}/data/audit.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}
