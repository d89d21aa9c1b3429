/**
 * The one signing path (issueUser / issueUserCertificate) with real CAs in a
 * temp data directory: one resolution of the roles, with the claims, gives
 * the principals, the identity extensions, the permits and the TTL; the audit
 * log gets cert.issued; refusals sign nothing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { AuthError } from '../../src/errors.js';
import { parseServerConfig } from '../../src/config/index.js';
import { issueSessionCertificate, issueUser, issueUserCertificate, SessionCertRequest, type IssuerDeps } from '../../src/server/auth/issuer.js';
import { generateKeyPair, verifyCertificate } from '../../src/sshcert/index.js';
import { decodeIdentity } from '../../src/sshcert/identity.js';
import { testRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tools.js';

const tmp = tempDir('issuer');
let deps: IssuerDeps & { audit: { close(): Promise<void> } };
const key = () => generateKeyPair('ed25519').publicKey;
const issued = () =>
  readFileSync(`${tmp.dir}/data/audit.log`, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e['event'] === 'cert.issued');

before(async () => {
  const config = parseServerConfig(
    `cluster_name: unit.test
data_dir: ${tmp.dir}/data
auth: { cert_ttl: 12h }
roles:
  ops:
    logins: ["{{external.unix_logins}}", "{{username}}-ops"]
    max_session_ttl: 2h
    forward_agent: true
  svc:
    logins: ["{{external.unix_logins}}"]
  user:
    logins: ["{{username}}"]
`,
    `${tmp.dir}/jumpgate.yaml`,
  );
  deps = await testRuntime(config);
});
after(async () => {
  await deps.audit.close();
  tmp.cleanup();
});

describe('issueUser', () => {
  test('claims reach the certificate: principals, roles and traits as the proxy decodes them, the TTL capped by the role', async () => {
    const now = deps.clock();
    const { cert, access, identity } = await issueUser(
      { username: 'alice', roles: ['ops', 'user'], claims: { unix_logins: ['deploy', 'oncall'] }, publicKey: key(), via: 'test' },
      deps,
    );
    assert.deepEqual(cert.principals, ['deploy', 'oncall', 'alice-ops', 'alice']);
    assert.deepEqual(access.logins, cert.principals, 'the returned access is the one that signed');
    const decoded = decodeIdentity(cert);
    assert.deepEqual({ ...decoded, traits: { ...decoded.traits } }, identity);
    assert.deepEqual(decoded.roles, ['ops', 'user']);
    assert.deepEqual({ ...decoded.traits }, { unix_logins: ['deploy', 'oncall'] });
    assert.ok(decoded.permits.includes('permit-agent-forwarding'));
    assert.equal(cert.keyId, 'alice');
    assert.equal(Number(cert.validBefore) - Math.floor(now.getTime() / 1000), 2 * 3600);
    verifyCertificate(cert, { trustedCAs: deps.ca.get('user').trusted.map((k) => k.publicKey), now, type: 'user', principal: 'oncall' });
    const ev = issued().find((e) => e['serial'] === cert.serial.toString());
    assert.ok(ev, 'cert.issued is in the audit log');
    assert.deepEqual(ev['principals'], cert.principals);
    assert.deepEqual(ev['roles'], ['ops', 'user']);
  });

  test('tctl (no claims): an external-only role is refused with ACCESS_NO_LOGINS naming the claim, nothing is signed', async () => {
    const before = issued().length;
    await assert.rejects(
      () => issueUserCertificate({ username: 'bob', roles: ['svc'], publicKey: key(), via: 'tctl' }, deps),
      (e: unknown) => e instanceof AuthError && e.code === 'ACCESS_NO_LOGINS' && /"unix_logins"/.test(e.message),
    );
    assert.equal(issued().length, before);
  });

  test('issueUserCertificate is issueUser without the access', async () => {
    const cert = await issueUserCertificate({ username: 'bob', roles: ['svc'], claims: { unix_logins: 'deploy' }, publicKey: key(), via: 'tctl' }, deps);
    assert.deepEqual(cert.principals, ['deploy']);
  });
});

describe('issueSessionCertificate (the recording proxy to a node)', () => {
  const SESSION = '0b6a8a52-3f4e-4c8e-9a43-1d2a3b4c5d6e';
  const request = (over: Partial<ConstructorParameters<typeof SessionCertRequest>[0]> = {}) =>
    new SessionCertRequest({ user: 'alice', login: 'alice', sessionId: SESSION, publicKey: key(), ttlSeconds: 300, sourceAddresses: ['10.0.0.7'], extensions: ['permit-pty', 'permit-port-forwarding'], ...over });

  test('one login, key id user/session/ID, minutes, source-address = the proxy, only the permits given; audited with the session id', async () => {
    const now = deps.clock();
    const cert = await issueSessionCertificate(request(), deps);
    assert.deepEqual(cert.principals, ['alice']);
    assert.equal(cert.keyId, `alice/session/${SESSION}`);
    assert.equal(cert.criticalOptions.get('source-address'), '10.0.0.7');
    assert.deepEqual([...cert.extensions.keys()], ['permit-port-forwarding', 'permit-pty']);
    assert.ok(Number(cert.validBefore) - Math.floor(now.getTime() / 1000) <= 300 + 1);
    verifyCertificate(cert, { type: 'user', trustedCAs: deps.ca.get('user').trusted.map((k) => k.publicKey), now, clientAddress: '10.0.0.7', principal: 'alice' });
    const event = issued().at(-1)!;
    assert.equal(event['via'], 'session');
    assert.equal(event['session_id'], SESSION);
    assert.equal(event['user'], 'alice');
    assert.deepEqual(event['principals'], ['alice']);
  });

  test('refuses what would widen it: hours, no source address, a name instead of an address, a non-permit extension, a session id that is not a UUID', async () => {
    for (const [over, why] of [
      [{ ttlSeconds: 3600 }, /TTL 3600 s is outside 1\.\.600 s/],
      [{ sourceAddresses: [] }, /no source address/],
      [{ sourceAddresses: ['proxy.example'] }, /"proxy\.example" is not an IP address/],
      [{ extensions: ['force-command'] }, /"force-command" is not a permit-\* flag/],
      [{ sessionId: 'x\ny' }, /is not a UUID/],
    ] as Array<[Partial<ConstructorParameters<typeof SessionCertRequest>[0]>, RegExp]>) {
      await assert.rejects(issueSessionCertificate(request(over), deps), (err: unknown) => err instanceof AuthError && err.code === 'SESSION_CERT_INVALID' && why.test(err.message));
    }
  });
});
