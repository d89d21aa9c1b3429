import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AddressError,
  formatHostPort,
  isLoopbackHost,
  isUnspecifiedHost,
  parseHostPort,
} from '../../src/shared/address.js';

const valid: [string, { host: string; port: number }][] = [
  ['127.0.0.1:3080', { host: '127.0.0.1', port: 3080 }],
  ['[::1]:3023', { host: '::1', port: 3023 }],
  ['localhost:3080', { host: 'localhost', port: 3080 }],
  ['proxy.example.com:443', { host: 'proxy.example.com', port: 443 }],
  ['0.0.0.0:1', { host: '0.0.0.0', port: 1 }],
  ['[::]:65535', { host: '::', port: 65535 }],
];
for (const [text, expected] of valid) {
  test(`parses ${text}`, () => {
    assert.deepEqual(parseHostPort(text), expected);
  });
}

const invalid: [string, RegExp][] = [
  ['localhost', /has no port/],
  ['::1:22', /brackets/],
  ['[::1:22', /closing "\]"/],
  ['[::1]x', /not host:port/],
  ['[zz]:22', /not an IPv6 address/],
  [':22', /has no host/],
  ['host:0', /from 1 to 65535/],
  ['host:65536', /from 1 to 65535/],
  ['host:http', /from 1 to 65535/],
  ['host:', /from 1 to 65535/],
  ['999.1.1.1:22', /neither an IP address nor a host name/],
  ['bad_host:22', /neither an IP address nor a host name/],
  ['-a.example:22', /neither an IP address nor a host name/],
];
for (const [text, message] of invalid) {
  test(`refuses the address ${JSON.stringify(text)}`, () => {
    assert.throws(() => parseHostPort(text), (err: unknown) => err instanceof AddressError && message.test(err.message));
  });
}

test('a bare host takes the default port when one is given', () => {
  assert.deepEqual(parseHostPort('10.0.0.5', { defaultPort: 22 }), { host: '10.0.0.5', port: 22 });
  assert.deepEqual(parseHostPort('[fd00::5]', { defaultPort: 22 }), { host: 'fd00::5', port: 22 });
});

test('port 0 is accepted only when asked for (listen addresses in tests)', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:0', { allowPortZero: true }), { host: '127.0.0.1', port: 0 });
  assert.throws(() => parseHostPort('127.0.0.1:0'), AddressError);
});

test('formats IPv6 hosts in brackets and others as they are', () => {
  assert.equal(formatHostPort({ host: '::1', port: 3023 }), '[::1]:3023');
  assert.equal(formatHostPort({ host: 'localhost', port: 3080 }), 'localhost:3080');
});

test('recognises loopback and unspecified hosts', () => {
  for (const h of ['localhost', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['example.com', '10.0.0.1', '::2', 'localhost.example.com', 'a.localhost']) assert.ok(!isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '0:0:0:0:0:0:0:0']) assert.ok(isUnspecifiedHost(h), h);
  for (const h of ['127.0.0.1', '::1', 'localhost']) assert.ok(!isUnspecifiedHost(h), h);
});
