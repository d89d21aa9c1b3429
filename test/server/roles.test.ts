import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthError, UserError } from '../../src/errors.js';
import { parseServerConfig, type NodeConfig, type OidcConfig } from '../../src/config/index.js';
import {
  certTtlSeconds,
  mapClaimsToRoles,
  matchLabels,
  nodeAllowed,
  resolveAccess,
  type Access,
} from '../../src/server/auth/roles.js';

const config = parseServerConfig(
  `cluster_name: example.test
auth:
  cert_ttl: 12h
  oidc:
    issuer: https://idp.example.test
    client_id: jumpgate
    client_secret: s3cret
    claims_to_roles:
      - { claim: groups, value: admins, roles: [admin] }
      - { claim: email_verified, value: true, roles: [user] }
      - { claim: realm_access.roles, value: ops, roles: [ops, user] }
roles:
  user:
    logins: ["{{username}}"]
    node_labels: { env: [dev, staging] }
    max_session_ttl: 8h
  admin:
    logins: ["{{username}}", root]
    node_labels: { "*": "*" }
    max_session_ttl: 7d
    forward_agent: true
  ops:
    logins: ["{{external.unix_logins}}", "{{username}}-ops"]
    node_labels: { team: "*", env: prod }
    permit_pty: false
    port_forwarding: false
    x11_forwarding: true
    permit_user_rc: true
  nopty:
    logins: [deploy]
    permit_pty: false
    port_forwarding: false
  claims:
    logins: ["{{external.email}}"]
`,
  '/etc/jumpgate.yaml',
);
const oidc = config.auth.oidc as OidcConfig;

test('resolves one role: expanded logins, its selector, its TTL cap and the default permits', () => {
  assert.deepEqual(resolveAccess(config, 'alice', ['user']), {
    roles: ['user'],
    logins: ['alice'],
    nodeLabelSets: [{ env: ['dev', 'staging'] }],
    maxSessionTtlSeconds: 8 * 3600,
    extensions: { 'permit-port-forwarding': '', 'permit-pty': '' },
    traits: {},
  } satisfies Access);
});

test('several roles: logins are the union in role order without duplicates, the TTL is the smallest', () => {
  const access = resolveAccess(config, 'alice', ['admin', 'user', 'admin']);
  assert.deepEqual(access.roles, ['admin', 'user']);
  assert.deepEqual(access.logins, ['alice', 'root']);
  assert.equal(access.maxSessionTtlSeconds, 8 * 3600);
  assert.deepEqual(access.nodeLabelSets, [{ '*': '*' }, { env: ['dev', 'staging'] }]);
});

test('permit-* extensions are the union of what the roles allow, in OpenSSH name order', () => {
  assert.deepEqual(Object.keys(resolveAccess(config, 'a', ['nopty']).extensions), []);
  assert.deepEqual(resolveAccess(config, 'a', ['ops', 'admin']).extensions, {
    'permit-X11-forwarding': '',
    'permit-agent-forwarding': '',
    'permit-port-forwarding': '',
    'permit-pty': '',
    'permit-user-rc': '',
  });
  assert.deepEqual(Object.keys(resolveAccess(config, 'a', ['ops']).extensions), ['permit-X11-forwarding', 'permit-user-rc']);
});

test('external claim templates expand to every value of a list claim', () => {
  const access = resolveAccess(config, 'bob', ['ops'], { unix_logins: ['bob', 'svc-web', 'bob'] });
  assert.deepEqual(access.logins, ['bob', 'svc-web', 'bob-ops']);
});

test('a template whose claim is missing grants nothing, the other logins remain', () => {
  assert.deepEqual(resolveAccess(config, 'bob', ['ops']).logins, ['bob-ops']);
});

describe('{{external.CLAIM}}: every kind of claim value', () => {
  const ext = parseServerConfig(
    `cluster_name: example.test
roles:
  ops:
    logins: ["{{external.unix_logins}}", "{{username}}-ops"]
  only-external:
    logins: ["{{external.unix_logins}}"]
  nested:
    logins: ["{{external.posix.login}}"]
  mixed:
    logins: ["{{username}}-{{external.teams}}"]
  svc:
    logins: ["{{external.unix_logins}}", deploy]
  uid:
    logins: ["u{{external.uid}}"]
`,
    '/etc/jumpgate.yaml',
  );
  const ok: [string, string[], Record<string, unknown>, string[]][] = [
    ['a list claim, with {{username}} beside it (the issue 11 example)', ['ops'], { unix_logins: ['deploy', 'oncall'] }, ['deploy', 'oncall', 'alice-ops']],
    ['a string claim', ['only-external'], { unix_logins: 'deploy' }, ['deploy']],
    ['a whole number', ['uid'], { uid: 1001 }, ['u1001']],
    ['a list of whole numbers', ['uid'], { uid: [1001, 1002] }, ['u1001', 'u1002']],
    ['a nested claim (dotted name)', ['nested'], { posix: { login: 'al' } }, ['al']],
    ['{{username}} combined with a list claim', ['mixed'], { teams: ['web', 'db'] }, ['alice-web', 'alice-db']],
    ['duplicates within and across roles appear once', ['ops', 'svc'], { unix_logins: ['deploy', 'deploy', 'oncall'] }, ['deploy', 'oncall', 'alice-ops']],
    ['null, "" and null list elements give nothing', ['ops'], { unix_logins: ['', null, 'deploy'] }, ['deploy', 'alice-ops']],
  ];
  for (const [what, roles, claims, logins] of ok) {
    test(what, () => assert.deepEqual(resolveAccess(ext, 'alice', roles, claims).logins, logins));
  }

  test('the claims the templates read are kept as traits (what the certificate carries)', () => {
    const access = resolveAccess(ext, 'alice', ['ops', 'nested'], { unix_logins: ['deploy'], posix: { login: 'al' }, groups: ['x'] });
    assert.deepEqual(access.traits, { unix_logins: ['deploy'], 'posix.login': ['al'] }, 'only the claims a template read');
  });

  test('a role with only external templates and no such claim is refused, naming the claim', () => {
    for (const claims of [{}, { unix_logins: [] }, { unix_logins: null }, { unix_logins: '' }]) {
      assert.throws(
        () => resolveAccess(ext, 'alice', ['only-external'], claims),
        (err: unknown) => {
          assert.ok(err instanceof AuthError);
          assert.equal(err.code, 'ACCESS_NO_LOGINS');
          assert.match(err.message, /grant "alice" no logins: the identity has no value for the claim "unix_logins"/);
          assert.match(err.hint ?? '', /send the claim "unix_logins"/);
          return true;
        },
        JSON.stringify(claims),
      );
    }
  });

  const badType: [string, unknown, RegExp][] = [
    ['a boolean', true, /the claim "unix_logins" has the boolean true, which cannot be a login/],
    ['a fraction', 1.5, /has the number 1\.5/],
    ['an object', { a: 'b' }, /has an object.*dotted name \(\{\{external\.unix_logins\.FIELD\}\}\)/],
    ['a list inside a list', [['deploy']], /has a list at position 0/],
    ['a boolean in a list', ['deploy', false], /has the boolean false at position 1/],
  ];
  for (const [what, value, message] of badType) {
    test(`a claim that is ${what} refuses the login with ROLE_BAD_CLAIM naming the claim and the role`, () => {
      assert.throws(
        () => resolveAccess(ext, 'alice', ['ops'], { unix_logins: value }),
        (err: unknown) => {
          assert.ok(err instanceof AuthError);
          assert.equal(err.code, 'ROLE_BAD_CLAIM');
          assert.match(err.message, /^role "ops" cannot use "\{\{external\.unix_logins\}\}" for "alice": /);
          assert.match(err.message, message);
          assert.match(err.message, /the login is refused$/);
          assert.match(err.hint ?? '', /fix the claim "unix_logins"/);
          return true;
        },
      );
    });
  }

  test('a claim value that is not a valid Unix login refuses the login, naming the value and the claim', () => {
    for (const bad of ['-oProxyCommand=x', 'a b', 'root,admin', '1000', 'x'.repeat(33), 'al\u001b[2J']) {
      assert.throws(
        () => resolveAccess(ext, 'alice', ['ops'], { unix_logins: ['deploy', bad] }),
        (err: unknown) => {
          assert.ok(err instanceof AuthError);
          assert.equal(err.code, 'ROLE_BAD_LOGIN');
          assert.match(err.message, /from "\{\{external\.unix_logins\}\}" and the claim "unix_logins"\), which is not a valid Unix login; the login is refused/);
          assert.doesNotMatch(err.message, /\u001b/, 'control characters are escaped');
          return true;
        },
        bad,
      );
    }
  });

  test('a claim with so many values that the certificate could not hold them is refused before they are combined', () => {
    const many = Array.from({ length: 300 }, (_, i) => `u${i}`);
    assert.throws(
      () => resolveAccess(ext, 'alice', ['ops'], { unix_logins: many }),
      (err: unknown) => err instanceof AuthError && err.code === 'ROLE_BAD_CLAIM' && /300 values/.test(err.message),
    );
    const half = Array.from({ length: 200 }, (_, i) => `t${i}`);
    assert.throws(
      () => resolveAccess(ext, 'alice', ['ops', 'mixed'], { unix_logins: half, teams: half }),
      (err: unknown) => err instanceof AuthError && err.code === 'ACCESS_TOO_MANY_LOGINS',
    );
  });

  test('tctl (no claims): external templates grant nothing, other logins remain', () => {
    assert.deepEqual(resolveAccess(ext, 'alice', ['svc']).logins, ['deploy']);
  });
});

test('refuses roles that grant no login at all: an empty principal list would be valid for every login', () => {
  assert.throws(
    () => resolveAccess(config, 'bob', ['claims'], {}),
    (err: unknown) => err instanceof AuthError && err.code === 'ACCESS_NO_LOGINS',
  );
});

test('refuses a template that expands to an invalid Unix login, naming the role and the value', () => {
  assert.throws(
    () => resolveAccess(config, 'alice@example.test', ['user']),
    (err: unknown) => {
      assert.ok(err instanceof AuthError);
      assert.equal(err.code, 'ROLE_BAD_LOGIN');
      assert.match(err.message, /role "user" gives "alice@example.test" the login "alice@example.test" \(from "\{\{username\}\}"\)/);
      assert.match(err.hint ?? '', /username_claim/);
      return true;
    },
  );
  for (const bad of ['-oProxyCommand=x', '', 'a,b', 'a b', '1000', '.hidden', 'x'.repeat(33)]) {
    assert.throws(() => resolveAccess(config, bad, ['user']), (err: unknown) => err instanceof AuthError && err.code === 'ROLE_BAD_LOGIN', bad);
  }
  assert.throws(
    () => resolveAccess(config, 'bob', ['claims'], { email: 'bob@example.test' }),
    (err: unknown) => err instanceof AuthError && err.code === 'ROLE_BAD_LOGIN',
  );
});

test('refuses an unknown role with ROLE_UNKNOWN and lists the defined roles', () => {
  assert.throws(
    () => resolveAccess(config, 'alice', ['user', 'superuser']),
    (err: unknown) => {
      assert.ok(err instanceof UserError);
      assert.equal(err.code, 'ROLE_UNKNOWN');
      assert.match(err.message, /"superuser" is not defined in \/etc\/jumpgate\.yaml/);
      assert.match(err.hint ?? '', /user, admin, ops/);
      return true;
    },
  );
});

test('refuses an empty role list', () => {
  assert.throws(() => resolveAccess(config, 'alice', []), (err: unknown) => err instanceof AuthError && err.code === 'ACCESS_NO_ROLES');
});

// ---------------------------------------------------------------------------
// Certificate TTL: min(requested ?? cert_ttl, roles' max_session_ttl, cert_ttl)

const ttlCases: [string, string[], number | undefined, number][] = [
  ['no request: the role cap below cert_ttl wins', ['user'], undefined, 8 * 3600],
  ['no request: cert_ttl caps a longer role limit', ['admin'], undefined, 12 * 3600],
  ['a shorter request is honoured', ['admin'], 3600, 3600],
  ['a request above the role cap is cut to the cap', ['user'], 24 * 3600, 8 * 3600],
  ['a request above cert_ttl is cut to cert_ttl', ['admin'], 30 * 86400, 12 * 3600],
  ['the smallest role cap of several roles applies', ['admin', 'user'], undefined, 8 * 3600],
];
for (const [behaviour, roles, requested, expected] of ttlCases) {
  test(`certificate TTL: ${behaviour}`, () => {
    assert.equal(certTtlSeconds(config, resolveAccess(config, 'alice', roles), requested), expected);
  });
}

test('certificate TTL: refuses a request that is not a positive whole number of seconds', () => {
  const access = resolveAccess(config, 'alice', ['user']);
  for (const bad of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => certTtlSeconds(config, access, bad), (err: unknown) => err instanceof UserError && err.code === 'TTL_INVALID', String(bad));
  }
});

// ---------------------------------------------------------------------------
// Node label selectors

const node = (labels: Record<string, string>): NodeConfig => ({ name: 'n', addr: { host: '10.0.0.1', port: 22 }, labels });

const selectorCases: [string, Record<string, string | string[]>, Record<string, string>, boolean][] = [
  ['an exact value matches', { env: 'prod' }, { env: 'prod' }, true],
  ['a different value does not match', { env: 'prod' }, { env: 'dev' }, false],
  ['values are case-sensitive', { env: 'prod' }, { env: 'Prod' }, false],
  ['a list matches any of its values', { env: ['dev', 'staging'] }, { env: 'staging' }, true],
  ['a list does not match other values', { env: ['dev', 'staging'] }, { env: 'prod' }, false],
  ['"*" matches any value', { env: '*' }, { env: 'anything' }, true],
  ['"*" needs the label to exist', { env: '*' }, { team: 'web' }, false],
  ['"*" inside a list matches any value', { env: ['dev', '*'] }, { env: 'prod' }, true],
  ['every key must match (AND)', { env: 'prod', team: 'web' }, { env: 'prod', team: 'db' }, false],
  ['every key matching grants the node', { env: 'prod', team: 'web' }, { env: 'prod', team: 'web', extra: 'x' }, true],
  ['{"*": "*"} matches a node without labels', { '*': '*' }, {}, true],
  ['{"*": "*"} matches any node', { '*': '*' }, { env: 'prod' }, true],
  ['an empty selector matches nothing', {}, { env: 'prod' }, false],
  ['an empty selector does not match an unlabelled node', {}, {}, false],
  ['inherited object properties are not labels', { constructor: '*' }, {}, false],
];
for (const [behaviour, selector, labels, expected] of selectorCases) {
  test(`node labels: ${behaviour}`, () => {
    assert.equal(matchLabels(selector, labels), expected);
  });
}

test('a node is allowed when at least one role selects it', () => {
  const user = resolveAccess(config, 'alice', ['user']);
  const ops = resolveAccess(config, 'alice', ['ops']);
  const both = resolveAccess(config, 'alice', ['user', 'ops']);
  const prodWeb = node({ env: 'prod', team: 'web' });
  const dev = node({ env: 'dev' });
  assert.equal(nodeAllowed(user, prodWeb), false);
  assert.equal(nodeAllowed(user, dev), true);
  assert.equal(nodeAllowed(ops, prodWeb), true);
  assert.equal(nodeAllowed(ops, dev), false);
  assert.equal(nodeAllowed(both, prodWeb), true);
  assert.equal(nodeAllowed(both, dev), true);
  assert.equal(nodeAllowed(both, node({})), false);
  assert.equal(nodeAllowed(resolveAccess(config, 'alice', ['admin']), node({})), true);
  assert.equal(nodeAllowed(resolveAccess(config, 'alice', ['nopty']), dev), false, 'a role without node_labels reaches no node');
});

// ---------------------------------------------------------------------------
// claims_to_roles

const claimCases: [string, Record<string, unknown>, string[]][] = [
  ['a string claim equal to the value matches', { groups: 'admins' }, ['admin']],
  ['a list claim containing the value matches', { groups: ['dev', 'admins'] }, ['admin']],
  ['the first matching rule wins, later rules are not added', { groups: ['admins'], email_verified: true }, ['admin']],
  ['a later rule matches when earlier ones do not', { groups: ['dev'], email_verified: true }, ['user']],
  ['boolean true matches the claim true', { email_verified: true }, ['user']],
  ['boolean true matches the string "true"', { email_verified: 'true' }, ['user']],
  ['boolean true does not match false', { email_verified: false }, []],
  ['boolean true does not match the string "yes"', { email_verified: 'yes' }, []],
  ['a dotted claim name reaches a nested claim', { realm_access: { roles: ['ops'] } }, ['ops', 'user']],
  ['values are compared exactly (case-sensitive)', { groups: ['Admins'] }, []],
  ['a value inside a nested list does not match', { groups: [['admins']] }, []],
  ['no matching rule yields no roles', { groups: ['dev'] }, []],
  ['no claims yields no roles', {}, []],
  ['inherited properties are not claims', { toString: 'x' }, []],
];
for (const [behaviour, claims, expected] of claimCases) {
  test(`claims to roles: ${behaviour}`, () => {
    assert.deepEqual(mapClaimsToRoles(oidc, claims), expected);
  });
}

test('claims to roles: a string rule value does not match a boolean claim', () => {
  const rules: OidcConfig = { ...oidc, claimsToRoles: [{ claim: 'x', value: 'true', roles: ['user'] }] };
  assert.deepEqual(mapClaimsToRoles(rules, { x: true }), []);
  assert.deepEqual(mapClaimsToRoles(rules, { x: 'true' }), ['user']);
});

test('claims to roles: the returned list is a copy the caller may change', () => {
  const roles = mapClaimsToRoles(oidc, { groups: 'admins' });
  roles.push('x');
  assert.deepEqual(mapClaimsToRoles(oidc, { groups: 'admins' }), ['admin']);
});
