import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loginCommand, parseProxyFlag, profileNameFor, shellWord } from '../../src/client/proxy-addr.js';
import { UsageError } from '../../src/errors.js';

test('--proxy takes HOST or HOST:PORT (default 3080), IPv6 in brackets', () => {
  const table: [string, { host: string; port: number; addr: string }][] = [
    ['jump.example.org', { host: 'jump.example.org', port: 3080, addr: 'jump.example.org:3080' }],
    ['jump.example.org:443', { host: 'jump.example.org', port: 443, addr: 'jump.example.org:443' }],
    ['127.0.0.1:3080', { host: '127.0.0.1', port: 3080, addr: '127.0.0.1:3080' }],
    ['[::1]:3023', { host: '::1', port: 3023, addr: '[::1]:3023' }],
    ['[::1]', { host: '::1', port: 3080, addr: '[::1]:3080' }],
    ['https://jump.example.org:3080', { host: 'jump.example.org', port: 3080, addr: 'jump.example.org:3080' }],
    ['https://Jump.Example.org:3080/', { host: 'jump.example.org', port: 3080, addr: 'jump.example.org:3080' }],
    ['https://jump.example.org', { host: 'jump.example.org', port: 443, addr: 'jump.example.org:443' }],
    ['HTTPS://jump.example.org:443', { host: 'jump.example.org', port: 443, addr: 'jump.example.org:443' }],
    ['https://[::1]:3080', { host: '::1', port: 3080, addr: '[::1]:3080' }],
    ['https://127.0.0.1:3080', { host: '127.0.0.1', port: 3080, addr: '127.0.0.1:3080' }],
    ['  localhost:3080 ', { host: 'localhost', port: 3080, addr: 'localhost:3080' }],
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

test('a URL --proxy: https only, no path, query, fragment or user; each refusal says what to give instead, never an IPv6 diagnosis', () => {
  const table: [string, RegExp][] = [
    ['http://jump.example.org:3080', /plain http:\/\/.*HTTPS only; use https:\/\/jump\.example\.org:3080 or leave the scheme out/],
    ['http://jump.example.org/', /use https:\/\/jump\.example\.org or/],
    ['ssh://jump.example.org:3023', /ssh:\/\/ is not a proxy address/],
    ['https://jump.example.org:3080/web', /has a path, query or fragment/],
    ['https://jump.example.org:3080/?x=1', /has a path, query or fragment/],
    ['https://jump.example.org:3080#top', /has a path, query or fragment/],
    ['https://alice@jump.example.org', /has a user name in it/],
    ['https://jump.example.org:99999', /not a valid URL/],
    ['jump.example.org:3080/web', /has a path in it/],
  ];
  for (const [text, want] of table) {
    assert.throws(
      () => parseProxyFlag(text),
      (e: unknown) => e instanceof UsageError && e.code === 'USAGE_BAD_PROXY' && want.test(e.message) && !/IPv6|bracket/.test(e.message) && /https:\/\/jump\.example\.com:3080/.test(e.hint ?? ''),
      text,
    );
  }
  assert.match((() => { try { profileNameFor(undefined, { TSH_PROXY: 'http://x' }); } catch (e) { return (e as Error).message; } return ''; })(), /^TSH_PROXY: /, 'TSH_PROXY is named as the source');
});

test('loginCommand prints the proxy and the remembered settings, quoted for a shell', () => {
  assert.equal(loginCommand({ webProxyAddr: 'localhost:3080', insecure: true }), 'tsh login --proxy=localhost:3080 --insecure');
  assert.equal(loginCommand({ webProxyAddr: '[::1]:3080', user: 'alice@example.com' }), 'tsh login --proxy=[::1]:3080 --user=alice@example.com');
  assert.equal(loginCommand({ webProxyAddr: 'j:3080', user: "o'brien x" }, "'/opt/my tsh/tsh'"), `'/opt/my tsh/tsh' login --proxy=j:3080 --user='o'\\''brien x'`);
  assert.equal(shellWord('/usr/local/bin/tsh'), '/usr/local/bin/tsh');
  assert.equal(shellWord('a b'), "'a b'");
  // Every form of --proxy reads back to the same address: the printed command works as printed.
  for (const given of ['LOCALHOST:3080', 'https://localhost:3080/', 'localhost']) {
    const addr = parseProxyFlag(given).addr;
    assert.equal(parseProxyFlag(/--proxy=(\S+)/.exec(loginCommand({ webProxyAddr: addr }))![1]!).addr, addr);
  }
});
