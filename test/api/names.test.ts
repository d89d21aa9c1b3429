/**
 * The character rules of api/names.ts and the API schemas built on them
 * (api/schema.ts): table tests of what a proxy may and may not send.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isClusterName, isClusterPattern, isPlainHostName, isPlainHostPort, isPlainToken, splitPlainHostPort } from '../../src/api/names.js';
import { LoginResultSchema, LoginStartRequestSchema, parseShape, PingResponseSchema } from '../../src/api/schema.js';
import { formatPublicKeyLine, generateKeyPair } from '../../src/sshcert/index.js';

/** Names no server may send: wildcards, negation, spaces, quotes, control characters, options, too long. */
const HOSTILE = ['*', '?', '*.com', 'a*', '!x', '!node1', 'a b', 'a,b', 'a"b', "a'b", 'a\nb', 'a\rb', 'a\tb', 'a\0b', '-oProxyCommand=x', '-x', 'a%h', 'a/b', 'a\\b', 'a=b', 'a;b', 'a$b', '`x`',
  '', '.', '..', 'a..b', '.a', 'a.', 'a-', '-a', 'x'.repeat(64), `${'a.'.repeat(127)}ab`, 'ä.test', 'xn--bcher-kva.test\u200b', '[::1]', '999.1.1.1', 'a\u2028b'];

describe('names a proxy may send', () => {
  test('plain host names: DNS names and IP literals', () => {
    for (const ok of ['node1', 'db-2', 'web.example.test', 'WEB.Example.Test', '10.0.0.5', '::1', 'fd00::1', 'xn--bcher-kva.test', 'a'.repeat(63), '0node']) assert.ok(isPlainHostName(ok), ok);
    for (const bad of HOSTILE) assert.ok(!isPlainHostName(bad), JSON.stringify(bad));
  });

  test('cluster names: at least two labels, never a single label, an IP or a wildcard', () => {
    for (const ok of ['example.test', 'a.b.c.example.com', 'login.test', 'x1.io']) assert.ok(isClusterName(ok), ok);
    for (const bad of [...HOSTILE, 'com', 'internal', 'localhost', '10.0.0.1', '1.2.3.4', 'a.123', '::1', 'example.test\nMatch exec "touch /tmp/pwned"']) {
      assert.ok(!isClusterName(bad), JSON.stringify(bad));
    }
  });

  test('user names, logins and roles: plain tokens, never a leading "-" or "."', () => {
    for (const ok of ['alice', 'deploy', 'a.b', 'a_b', 'al@example.com', '_svc', 'admin-2']) assert.ok(isPlainToken(ok), ok);
    for (const bad of ['', '-x', '.x', 'a b', 'a\nb', 'a"b', 'a/b', 'a:b', 'x'.repeat(129), 'ä']) assert.ok(!isPlainToken(bad), JSON.stringify(bad));
  });

  test('host:port: a plain host and a port 1-65535, IPv6 in brackets', () => {
    assert.deepEqual(splitPlainHostPort('jump.example.org:3023'), { host: 'jump.example.org', port: 3023 });
    assert.deepEqual(splitPlainHostPort('[::1]:22'), { host: '::1', port: 22 });
    for (const bad of ['jump', 'jump:0', 'jump:65536', '*:22', 'a b:22', '::1:22', '[x]:22', 'j\n:22', ':22', 'jump:22:22', '-o:22']) assert.ok(!isPlainHostPort(bad), bad);
  });

  test('a pattern stays within the cluster: node names, names under it, *.<cluster>; nothing broader', () => {
    for (const ok of ['node1', 'web.example.test', '*.example.test', '*.EXAMPLE.test']) assert.ok(isClusterPattern(ok, 'example.test'), ok);
    for (const bad of ['*', '*.test', '*.com', 'github.com', 'example.test', '*.other.test', '*example.test', 'node?', 'a b', '10.0.0.1', ...HOSTILE]) {
      assert.ok(!isClusterPattern(bad, 'example.test'), JSON.stringify(bad));
    }
    assert.ok(!isClusterPattern('node1', 'com'), 'no pattern is within a cluster that is not a cluster name');
  });
});

describe('API schemas', () => {
  const ca = formatPublicKeyLine(generateKeyPair('ed25519').publicKey, 'host CA');
  const ping = {
    cluster_name: 'example.test',
    server_version: '0.1.0',
    proxy: { web_public_addr: 'jump.example.test:3080', ssh_public_addr: 'jump.example.test:3023' },
    host_ca: [ca],
    auth: { type: 'oidc', issuer: 'https://idp.example.test/realms/x' },
  };
  const result = {
    v: 1,
    client_nonce: 'B'.repeat(43),
    certificate: ca,
    cluster_name: 'example.test',
    username: 'alice',
    logins: ['alice', 'deploy'],
    roles: ['admin'],
    valid_before: '2026-12-01T00:00:00.000Z',
    host_ca: [ca],
    ssh_public_addr: 'jump.example.test:3023',
    web_public_addr: 'jump.example.test:3080',
    nodes: ['node1', 'db1'],
  };

  test('a well-formed ping and login result parse; unknown fields are dropped', () => {
    const p = parseShape(PingResponseSchema, { ...ping, extra: '\x1b[2J' });
    assert.ok(p.ok);
    assert.equal('extra' in p.value, false);
    assert.ok(parseShape(LoginResultSchema, result).ok);
  });

  const refusals: [string, Record<string, unknown>, string, RegExp][] = [
    ['a wildcard node name', { nodes: ['node1', '*'] }, 'nodes[1]', /not a plain host name/],
    ['a single-label cluster', { cluster_name: 'com' }, 'cluster_name', /not a cluster name/],
    ['a cluster name with a Match line', { cluster_name: 'a.test\nMatch exec "x"' }, 'cluster_name', /not a cluster name/],
    ['a user name with a space', { username: 'a b' }, 'username', /not a plain name/],
    ['a login starting with "-"', { logins: ['-oX'] }, 'logins[0]', /not a plain name/],
    ['a role that is a number', { roles: [7] }, 'roles[0]', /expected a name/],
    ['a host CA line with a line break', { host_ca: [`${ca}\n@cert-authority * x`] }, 'host_ca[0]', /not one OpenSSH key line/],
    ['seventeen host CA keys', { host_ca: new Array(17).fill(ca) }, 'host_ca', /more than 16/],
    ['10,001 node names', { nodes: Array.from({ length: 10_001 }, (_, i) => `n${i}`) }, 'nodes', /more than 10000/],
    ['an SSH address without a port', { ssh_public_addr: 'jump.example.test' }, 'ssh_public_addr', /not host:port/],
    ['version 2', { v: 2 }, 'v', /expected version 1/],
    ['a validity that is not a time', { valid_before: 'tomorrow' }, 'valid_before', /not an ISO 8601 time/],
  ];
  for (const [what, change, field, reason] of refusals) {
    test(`a login result with ${what} is refused at ${field}`, () => {
      const r = parseShape(LoginResultSchema, { ...result, ...change });
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.equal(r.field, field);
      assert.match(r.reason, reason);
    });
  }

  test('the login start request: the server and the schema agree on every refusal', () => {
    const good = { public_key: ca, callback_url: 'http://127.0.0.1:1/cb', client_key: 'A'.repeat(43), client_nonce: 'B'.repeat(43) };
    assert.ok(parseShape(LoginStartRequestSchema, good).ok);
    const bad = (change: Record<string, unknown>) => {
      const r = parseShape(LoginStartRequestSchema, { ...good, ...change });
      return r.ok ? 'ok' : `${r.field}: ${r.reason}`;
    };
    assert.equal(bad({ ttl_seconds: 1.5 }), 'ttl_seconds: expected a whole number of seconds between 1 and one year');
    assert.equal(bad({ ttl_seconds: 366 * 86400 }), 'ttl_seconds: expected a whole number of seconds between 1 and one year');
    assert.equal(bad({ client_key: 'short' }), 'client_key: expected 32 bytes, base64url without padding');
    assert.equal(bad({ login_hint: 'x'.repeat(257) }), 'login_hint: expected a string of at most 256 characters');
    assert.equal(bad({ public_key: 5 }), 'public_key: expected an OpenSSH public key line');
    const arr = parseShape(LoginStartRequestSchema, []);
    assert.equal(arr.ok, false);
  });
});
