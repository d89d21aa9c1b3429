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
import { issueUser, issueUserCertificate, type IssuerDeps } from '../../src/server/auth/issuer.js';
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
