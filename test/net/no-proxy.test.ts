import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findNoProxyMatch, matchesNoProxy, parseNoProxy } from '../../src/net/no-proxy.js';

// [NO_PROXY value, host, port, goes direct?]
const cases: [string, string, number, boolean][] = [
  // nothing set
  ['', 'jump.example.org', 3023, false],
  [' , ,', 'jump.example.org', 3023, false],
  // * bypasses everything
  ['*', 'jump.example.org', 3023, true],
  ['*', '10.0.0.1', 22, true],
  ['*', '::1', 22, true],
  ['other.test, *', 'jump.example.org', 3023, true],
  // a plain name: itself and its subdomains, like curl
  ['example.org', 'example.org', 443, true],
  ['example.org', 'jump.example.org', 3023, true],
  ['example.org', 'a.b.example.org', 3023, true],
  ['example.org', 'badexample.org', 443, false],
  ['example.org', 'example.org.evil.test', 443, false],
  ['example.org', 'example.com', 443, false],
  // .domain and *.domain: the same rule, the bare domain included
  ['.example.org', 'jump.example.org', 3023, true],
  ['.example.org', 'example.org', 3023, true],
  ['.example.org', 'badexample.org', 3023, false],
  ['*.example.org', 'jump.example.org', 3023, true],
  ['*.example.org', 'example.org', 3023, true],
  ['*.example.org', 'badexample.org', 3023, false],
  // case-insensitive, trailing dots on either side, whitespace around entries
  ['EXAMPLE.Org', 'Jump.EXAMPLE.org', 3023, true],
  ['example.org.', 'jump.example.org', 3023, true],
  ['example.org', 'jump.example.org.', 3023, true],
  ['  foo.test ,\texample.org  ', 'jump.example.org', 3023, true],
  // host:port: that port only
  ['jump.example.org:22', 'jump.example.org', 22, true],
  ['jump.example.org:22', 'jump.example.org', 3023, false],
  ['.example.org:3023', 'jump.example.org', 3023, true],
  ['.example.org:3023', 'jump.example.org', 3080, false],
  ['*.example.org:3023', 'jump.example.org', 3023, true],
  // IPv4 literals
  ['10.1.2.3', '10.1.2.3', 22, true],
  ['10.1.2.3', '10.1.2.30', 22, false],
  ['10.1.2.3:22', '10.1.2.3', 22, true],
  ['10.1.2.3:22', '10.1.2.3', 23, false],
  ['127.0.0.1.', '127.0.0.1', 22, true],
  // IP entries never match names, names never match IPs (no DNS)
  ['2.3', '10.1.2.3', 22, false],
  ['10.0.0.0/8', 'jump.example.org', 22, false],
  ['localhost', '127.0.0.1', 22, false],
  // IPv6 literals, with and without brackets on either side
  ['::1', '::1', 3023, true],
  ['::1', '[::1]', 3023, true],
  ['[::1]', '::1', 3023, true],
  ['[::1]:3023', '::1', 3023, true],
  ['[::1]:3023', '[::1]', 3023, true],
  ['[::1]:3023', '::1', 22, false],
  ['::1', '::2', 3023, false],
  ['0:0:0:0:0:0:0:1', '::1', 22, true],
  ['FD00::AB', 'fd00:0::ab', 22, true],
  ['::ffff:10.1.2.3', '::ffff:a01:203', 22, true],
  // CIDR v4 and v6
  ['10.0.0.0/8', '10.200.3.4', 3023, true],
  ['10.0.0.0/8', '11.0.0.1', 3023, false],
  ['192.168.1.0/24', '192.168.1.255', 22, true],
  ['192.168.1.0/24', '192.168.2.1', 22, false],
  ['10.1.2.3/32', '10.1.2.3', 22, true],
  ['0.0.0.0/0', '8.8.8.8', 22, true],
  ['0.0.0.0/0', '::1', 22, false],
  ['172.16.0.0/12', '172.31.255.255', 22, true],
  ['172.16.0.0/12', '172.32.0.0', 22, false],
  ['fd00::/8', 'fd12:3456::1', 22, true],
  ['fd00::/8', '[fd12:3456::1]', 22, true],
  ['fd00::/8', 'fe80::1', 22, false],
  ['fd00::/8', '10.0.0.1', 22, false],
  ['::1/128', '::1', 22, true],
  // international names compare in their punycode form
  ['bücher.example', 'shop.xn--bcher-kva.example', 443, true],
  // a bad entry does not spoil the good ones
  ['host:99999, jump.example.org', 'jump.example.org', 3023, true],
];

for (const [value, host, port, direct] of cases) {
  test(`NO_PROXY=${JSON.stringify(value)} sends ${host}:${port} ${direct ? 'direct' : 'through the proxy'}`, () => {
    const { rules } = parseNoProxy(value);
    assert.equal(matchesNoProxy(rules, host, port), direct);
  });
}

test('an undefined NO_PROXY yields no rules and no warnings', () => {
  assert.deepEqual(parseNoProxy(undefined), { rules: [], warnings: [] });
});

test('parsed rules keep the entry as written, for messages', () => {
  const { rules, warnings } = parseNoProxy(' *.Example.org:3023 , 10.0.0.0/8,[::1]:22,*');
  assert.deepEqual(warnings, []);
  assert.deepEqual(rules, [
    { kind: 'domain', domain: 'example.org', port: 3023, entry: '*.Example.org:3023' },
    { kind: 'cidr', network: '10.0.0.0', prefix: 8, entry: '10.0.0.0/8' },
    { kind: 'ip', address: '::1', port: 22, entry: '[::1]:22' },
    { kind: 'all', entry: '*' },
  ]);
  assert.equal(findNoProxyMatch(rules, 'jump.example.org', 3023)?.entry, '*.Example.org:3023');
});

// [entry, expected warning fragment]
const malformed: [string, RegExp][] = [
  ['host:99999', /port must be a number from 1 to 65535/],
  ['host:0', /port must be a number from 1 to 65535/],
  ['host:', /port must be a number from 1 to 65535/],
  ['host:ssh', /port must be a number from 1 to 65535/],
  ['10.0.0.0/33', /prefix length must be a number from 0 to 32/],
  ['fd00::/129', /prefix length must be a number from 0 to 128/],
  ['10.0.0.0/', /prefix length/],
  ['example.org/8', /not an IP address/],
  ['::1:22:', /not a host name|port/],
  ['fd00::1:22x', /brackets/],
  ['[::1', /closing "\]"/],
  ['[::1]22', /expected ":PORT"/],
  ['[example.org]:22', /not an IPv6 address/],
  ['*:22', /a port on "\*"/],
  ['foo.*.example.org', /wildcards/],
  ['*example.org', /wildcards/],
  ['http://proxy.example.org', /not URLs/],
  ['bad_host!', /not a host name/],
  ['-lead.example.org', /not a host name/],
  ['10.', /partial IP address/],
  ['192.168.', /partial IP address/],
  ['.', /no host name/],
  ['a b', /spaces/],
];

for (const [entry, message] of malformed) {
  test(`ignores the malformed NO_PROXY entry ${JSON.stringify(entry)} with a warning`, () => {
    const { rules, warnings } = parseNoProxy(`good.example, ${entry}`, 'no_proxy');
    assert.deepEqual(
      rules.map((r) => r.entry),
      ['good.example'],
    );
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`^ignoring no_proxy entry ${JSON.stringify(entry).replace(/[[\]*.]/g, '\\$&')}: `));
    assert.match(warnings[0]!, message);
  });
}
