/**
 * The certificate identity (principals, roles@jumpgate.dev, traits@jumpgate.dev,
 * permit-*) is written by encodeIdentity and read by decodeIdentity: round
 * trips through a real signed certificate, ssh-keygen reads it, and malformed
 * extensions are refused naming the extension.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CertRequest, encodeCertificateLine, parseCertificate, signCertificate } from '../../src/sshcert/index.js';
import { decodeIdentity, encodeIdentity, IdentityError, ROLES_EXTENSION, TRAITS_EXTENSION, type UserIdentity } from '../../src/sshcert/identity.js';
import { requireTool, run, tempDir } from '../helpers/tools.js';
import { keyPair, NOW } from './fixtures.js';

const tmp = tempDir('identity');
let keygen = '';
before(() => {
  keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
});
after(() => tmp.cleanup());

const ca = keyPair('ed25519');

function sign(id: UserIdentity) {
  const req = new CertRequest({ publicKey: keyPair('ed25519').publicKey, type: 'user', ttlSeconds: 3600, ...encodeIdentity(id) });
  return parseCertificate(signCertificate(req, { privateKey: ca.privateKey, publicKey: ca.publicKey }, NOW).blob);
}

const alice: UserIdentity = {
  username: 'alice',
  principals: ['deploy', 'oncall', 'alice-ops'],
  roles: ['ops', 'user'],
  traits: { unix_logins: ['deploy', 'oncall'], 'posix.login': ['al'] },
  permits: ['permit-port-forwarding', 'permit-pty'],
};

describe('encodeIdentity / decodeIdentity', () => {
  test('round trip through a signed certificate', () => {
    assert.deepEqual({ ...decodeIdentity(sign(alice)), traits: { ...decodeIdentity(sign(alice)).traits } }, alice);
  });

  test('no traits: no traits extension, decoded as {}', () => {
    const cert = sign({ ...alice, traits: {} });
    assert.equal(cert.extensions.has(TRAITS_EXTENSION), false);
    assert.deepEqual({ ...decodeIdentity(cert).traits }, {});
  });

  test('ssh-keygen -L reads a certificate carrying the identity', async () => {
    const cert = sign(alice);
    const file = join(tmp.dir, 'alice-cert.pub');
    writeFileSync(file, encodeCertificateLine(cert, 'alice') + '\n');
    const r = await run(keygen, ['-L', '-f', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Key ID: "alice"/);
    assert.match(r.stdout, /\n\s+deploy\n\s+oncall\n\s+alice-ops\n/);
    assert.match(r.stdout, /roles@jumpgate\.dev/);
    assert.match(r.stdout, /traits@jumpgate\.dev/);
  });

  test('a role name that could not be decoded again is refused at encoding', () => {
    for (const roles of [['a,b'], ['Admin'], Array.from({ length: 65 }, (_, i) => `r${i}`)]) {
      assert.throws(() => encodeIdentity({ ...alice, roles }), (e: unknown) => e instanceof IdentityError && e.field === ROLES_EXTENSION);
    }
  });

  test('a reserved trait name is refused at encoding rather than lost', () => {
    const traits = JSON.parse('{"__proto__": ["x"]}') as Record<string, string[]>;
    assert.throws(() => encodeIdentity({ ...alice, traits }), (e: unknown) => e instanceof IdentityError && e.field === TRAITS_EXTENSION);
  });

  const badTraits: [string, string][] = [
    ['not JSON', '{'],
    ['a list, not an object', '["x"]'],
    ['a value that is not a list', '{"a":"x"}'],
    ['a list of numbers', '{"a":[1]}'],
    ['too long', JSON.stringify({ a: ['x'.repeat(20_000)] })],
  ];
  for (const [what, text] of badTraits) {
    test(`a traits extension that is ${what} is refused naming the extension`, () => {
      const extensions = new Map([[ROLES_EXTENSION, 'user'], [TRAITS_EXTENSION, text]]);
      assert.throws(
        () => decodeIdentity({ keyId: 'a', principals: ['a'], extensions }),
        (e: unknown) => e instanceof IdentityError && e.field === TRAITS_EXTENSION && /traits@jumpgate\.dev extension/.test(e.message),
      );
    });
  }

  test('roles: whitespace and duplicates are tolerated on reading, a missing extension gives no roles', () => {
    assert.deepEqual(decodeIdentity({ keyId: 'a', principals: ['a'], extensions: new Map([[ROLES_EXTENSION, ' user, ops ,user,']]) }).roles, ['user', 'ops']);
    assert.deepEqual(decodeIdentity({ keyId: 'a', principals: ['a'], extensions: new Map() }).roles, []);
  });
});
