import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseServerConfig } from '../../src/config/index.js';
import { ROLES_EXTENSION } from '../../src/shared/wire-names.js';
import { certificateSelectors, parseProxySubsystem, reachableNodes, routeToNode } from '../../src/server/proxy/routing.js';
import type { Certificate } from '../../src/sshcert/index.js';

const config = parseServerConfig(
  `cluster_name: example.test
roles:
  dev:
    logins: ["{{username}}"]
    node_labels: { env: [dev, staging] }
  db:
    logins: [postgres]
    node_labels: { team: db }
  all:
    logins: [root]
    node_labels: { "*": "*" }
nodes:
  - { name: web1, addr: "10.0.0.1:22", labels: { env: dev } }
  - { name: web2, addr: "10.0.0.2:2222", labels: { env: staging } }
  - { name: prod1, addr: "10.0.0.3", labels: { env: prod } }
  - { name: db1, addr: "10.0.0.4:22", labels: { env: prod, team: db } }
  - { name: multi-a, addr: "10.0.0.9:2201", labels: { env: dev } }
  - { name: multi-b, addr: "10.0.0.9:2202", labels: { env: dev } }
  - { name: WebServer01, addr: "Web-01.Internal:22", labels: { env: dev } }
`,
  '/etc/jumpgate.yaml',
);

function certWithRoles(roles: string | undefined): Certificate {
  const extensions = new Map<string, string>();
  if (roles !== undefined) extensions.set(ROLES_EXTENSION, roles);
  return { keyId: 'alice', principals: ['alice'], extensions } as unknown as Certificate;
}

function selectorsFor(roles: string) {
  const s = certificateSelectors(config, certWithRoles(roles));
  assert.ok(!('ok' in s), JSON.stringify(s));
  return s.selectors;
}

describe('parseProxySubsystem', () => {
  const cases: Array<[string, unknown]> = [
    ['proxy:node1:22', { host: 'node1', port: 22 }],
    ['proxy:node1', { host: 'node1', port: 0 }],
    ['proxy:node1:', { host: 'node1', port: 0 }],
    ['proxy:10.0.0.1:2222', { host: '10.0.0.1', port: 2222 }],
    ['proxy:[::1]:22', { host: '::1', port: 22 }],
    ['proxy:[fe80::1]', { host: 'fe80::1', port: 0 }],
    ['proxy::22', 'BAD_REQUEST'],
    ['proxy:node1:http', 'BAD_REQUEST'],
    ['proxy:node1:70000', 'BAD_REQUEST'],
    ['proxy:no de:22', 'BAD_REQUEST'],
    ['sftp', 'BAD_REQUEST'],
  ];
  for (const [name, want] of cases) {
    test(`${JSON.stringify(name)} → ${JSON.stringify(want)}`, () => {
      const got = parseProxySubsystem(name);
      if (typeof want === 'string') assert.equal((got as { code: string }).code, want);
      else assert.deepEqual(got, want);
    });
  }
});

describe('certificateSelectors: roles come from the certificate, read against the current config', () => {
  test('keeps the roles still defined and drops the rest', () => {
    const s = certificateSelectors(config, certWithRoles('dev,gone,db'));
    assert.ok(!('ok' in s));
    assert.deepEqual(s.roles, ['dev', 'db']);
  });
  test('refuses a certificate whose roles are all gone, naming them', () => {
    const s = certificateSelectors(config, certWithRoles('gone,removed'));
    assert.ok('ok' in s);
    assert.equal(s.code, 'NO_ROLES');
    assert.match(s.message, /none of the certificate's roles \(gone, removed\) is defined/);
  });
  test('refuses a certificate without the roles extension (not issued by Jumpgate)', () => {
    const s = certificateSelectors(config, certWithRoles(undefined));
    assert.ok('ok' in s);
    assert.match(s.message, /carries no Jumpgate roles/);
  });
});

describe('routeToNode: which node a request names, and whether the roles reach it', () => {
  const cases: Array<{ name: string; roles: string; host: string; port: number; want: string }> = [
    { name: 'a node by name, default port', roles: 'dev', host: 'web1', port: 0, want: 'web1' },
    { name: 'ssh sends port 22 when the user gave none: the inventory port is used', roles: 'dev', host: 'web2', port: 22, want: 'web2' },
    { name: 'the inventory port itself', roles: 'dev', host: 'web2', port: 2222, want: 'web2' },
    { name: 'any other port is refused', roles: 'dev', host: 'web2', port: 8080, want: 'PORT_REFUSED' },
    { name: 'name.<cluster> (the *.cluster Host pattern)', roles: 'dev', host: 'web1.example.test', port: 22, want: 'web1' },
    { name: 'case and a trailing dot do not matter', roles: 'dev', host: 'WEB1.Example.Test.', port: 22, want: 'web1' },
    { name: 'by address', roles: 'dev', host: '10.0.0.2', port: 2222, want: 'web2' },
    { name: 'an address shared by two nodes: the port picks one', roles: 'dev', host: '10.0.0.9', port: 2202, want: 'multi-b' },
    { name: 'an address shared by two nodes without a port is ambiguous', roles: 'dev', host: '10.0.0.9', port: 22, want: 'AMBIGUOUS_NODE' },
    { name: 'a mixed-case inventory name by its lower-case spelling (what ssh sends)', roles: 'dev', host: 'webserver01', port: 22, want: 'WebServer01' },
    { name: 'a mixed-case inventory name, any spelling', roles: 'dev', host: 'WEBSERVER01', port: 0, want: 'WebServer01' },
    { name: 'a mixed-case inventory name in its long form', roles: 'dev', host: 'webserver01.example.test', port: 22, want: 'WebServer01' },
    { name: 'a mixed-case address host, lower-case', roles: 'dev', host: 'web-01.internal', port: 22, want: 'WebServer01' },
    { name: 'an unknown name', roles: 'dev', host: 'nope', port: 22, want: 'UNKNOWN_NODE' },
    { name: 'another cluster name is not stripped', roles: 'dev', host: 'web1.other.test', port: 22, want: 'UNKNOWN_NODE' },
    { name: 'a node no role selects', roles: 'dev', host: 'prod1', port: 22, want: 'NODE_DENIED' },
    { name: 'a second role selects it', roles: 'dev,db', host: 'db1', port: 22, want: 'db1' },
    { name: '{"*": "*"} selects every node', roles: 'all', host: 'prod1', port: 0, want: 'prod1' },
  ];
  for (const c of cases) {
    test(`${c.name}: ${c.host}:${c.port} with [${c.roles}] → ${c.want}`, () => {
      const r = routeToNode(config, selectorsFor(c.roles), c.host, c.port, config.nodes);
      assert.equal(r.ok ? r.node.name : r.code, c.want);
    });
  }

  test('an unknown node and a denied one read the same to the user', () => {
    const unknown = routeToNode(config, selectorsFor('dev'), 'prod9', 22, config.nodes);
    const denied = routeToNode(config, selectorsFor('dev'), 'prod1', 22, config.nodes);
    assert.ok(!unknown.ok && !denied.ok);
    assert.equal(unknown.message.replace('prod9', 'X'), denied.message.replace('prod1', 'X'));
  });

  test('reachableNodes lists what the roles select, in inventory order', () => {
    assert.deepEqual(reachableNodes(config, selectorsFor("db,dev"), config.nodes).map((n) => n.name), ['web1', 'web2', 'db1', 'multi-a', 'multi-b', 'WebServer01']);
  });
});

describe('certificateSelectors reads the roles through the one identity decoder', () => {
  test('refuses a roles extension that is not a list of role names (BAD_IDENTITY), never routes on it', () => {
    for (const roles of ['dev,../x', 'dev,ROOT', `dev,${'a'.repeat(80)}`]) {
      const s = certificateSelectors(config, certWithRoles(roles));
      assert.ok('ok' in s, roles);
      assert.equal(s.code, 'BAD_IDENTITY');
      assert.match(s.message, /roles@jumpgate\.dev extension is malformed/);
    }
  });
});
