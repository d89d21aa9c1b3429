import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyFlag, profileNameFor } from '../../src/client/proxy-addr.js';
import { UsageError } from '../../src/errors.js';

test('--proxy takes HOST or HOST:PORT (default 3080), IPv6 in brackets', () => {
  const table: [string, { host: string; port: number; addr: string }][] = [
    ['jump.example.org', { host: 'jump.example.org', port: 3080, addr: 'jump.example.org:3080' }],
    ['jump.example.org:443', { host: 'jump.example.org', port: 443, addr: 'jump.example.org:443' }],
    ['127.0.0.1:3080', { host: '127.0.0.1', port: 3080, addr: '127.0.0.1:3080' }],
    ['[::1]:3023', { host: '::1', port: 3023, addr: '[::1]:3023' }],
    ['[::1]', { host: '::1', port: 3080, addr: '[::1]:3080' }],
  ];
  for (const [text, want] of table) assert.deepEqual(parseProxyFlag(text), want, text);
});

test('a proxy named in another case is the same profile for login and for ssh', () => {
  assert.equal(parseProxyFlag('Jump.Example.ORG').host, 'jump.example.org');
  assert.equal(profileNameFor('Jump.Example.ORG:3080', {}), parseProxyFlag('jump.example.org').host);
  assert.equal(profileNameFor(undefined, { TSH_PROXY: 'JUMP.example.org' }), 'jump.example.org');
  assert.equal(profileNameFor(undefined, {}), undefined, 'no flag, no TSH_PROXY: the current profile');
});

test('a malformed --proxy is a usage error naming the flag', () => {
  for (const bad of ['', 'jump:99999', 'http://jump', '::1:3023', 'a b']) {
    assert.throws(() => parseProxyFlag(bad), (e: unknown) => e instanceof UsageError && e.code === 'USAGE_BAD_PROXY' && /^--proxy: /.test(e.message), bad);
  }
});
