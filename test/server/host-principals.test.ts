import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostCertPrincipals } from '../../src/server/auth/issuer.js';

// ssh lower-cases the host name and compares it with the certificate's
// principals case-sensitively; the ssh_config block routes `*.<cluster>`.
const cases: Array<[string, string[], string, string[]]> = [
  ['a short name gains its long form', ['node1'], 'example.test', ['node1', 'node1.example.test']],
  ['mixed case is lower-cased, both forms', ['WebServer01'], 'Example.TEST', ['webserver01', 'webserver01.example.test']],
  ['addresses stay as they are', ['node1', '10.0.0.5', '::1', '[fd00::5]'], 'example.test', ['node1', 'node1.example.test', '10.0.0.5', '::1', '[fd00::5]']],
  ['a name already in the cluster domain is not doubled', ['node1.example.test', 'NODE1'], 'example.test', ['node1.example.test', 'node1']],
  ['a wildcard is kept and gets no long form', ['*.example.test', 'web?'], 'example.test', ['*.example.test', 'web?']],
  ['duplicates (after lower-casing) and a trailing dot go', ['node1', 'Node1.', 'node1.example.test'], 'example.test', ['node1', 'node1.example.test']],
  ['a dotted name outside the cluster domain also gets the long form the block routes', ['db.internal'], 'example.test', ['db.internal', 'db.internal.example.test']],
];
for (const [name, names, cluster, want] of cases) {
  test(`host certificate principals: ${name}`, () => {
    assert.deepEqual(hostCertPrincipals(names, cluster), want);
  });
}

test('host certificate principals: without long forms (the proxy\'s own certificate), only lower-cased', () => {
  assert.deepEqual(hostCertPrincipals(['Jump.Example.test', 'localhost', '127.0.0.1'], 'example.test', { longForms: false }), ['jump.example.test', 'localhost', '127.0.0.1']);
});
