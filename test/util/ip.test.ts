/** Address ranges (util/ip.ts) as `proxy.proxy_protocol_from` uses them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressInRanges, ipText, parseAddressRange, type AddressRange } from '../../src/util/ip.js';

const ranges = (...entries: string[]): AddressRange[] =>
  entries.map((e) => {
    const r = parseAddressRange(e);
    if (typeof r === 'string') throw new Error(r);
    return r;
  });

test('a peer address matches ranges of its family; IPv4-mapped IPv6 (a dual-stack listener) as IPv4; zone ids ignored', () => {
  const table: Array<[string | undefined, string[], boolean]> = [
    ['10.0.0.5', ['10.0.0.5'], true],
    ['10.0.0.6', ['10.0.0.5'], false],
    ['10.0.7.9', ['10.0.0.0/16'], true],
    ['10.1.0.1', ['10.0.0.0/16'], false],
    ['::ffff:10.0.0.5', ['10.0.0.0/24'], true],
    ['::ffff:a00:5', ['10.0.0.0/24'], true],
    ['2001:db8::1', ['2001:db8::/32'], true],
    ['2001:DB8::1', ['2001:db8::/32'], true],
    ['fe80::1%eth0', ['fe80::/64'], true],
    ['10.0.0.5', ['::ffff:10.0.0.5'], false],
    ['127.0.0.1', [], false],
    [undefined, ['0.0.0.0/8'], false],
    ['not an ip', ['10.0.0.0/8'], false],
  ];
  for (const [addr, list, want] of table) assert.equal(addressInRanges(addr, ranges(...list)), want, `${addr} in ${list.join(',')}`);
});

test('range syntax errors say what is wrong and how to write it', () => {
  assert.match(parseAddressRange('lb.example.com') as string, /is not an IP address \(host names are not allowed here/);
  assert.match(parseAddressRange('10.0.0.0/33') as string, /from 0 to 32/);
  assert.match(parseAddressRange('2001:db8::/129') as string, /from 0 to 128/);
  assert.match(parseAddressRange('10.0.0.0/08') as string, /from 0 to 32/);
  assert.match(parseAddressRange('10.0.0.1/24') as string, /host bits set below \/24; write the network address \(e.g. "10.0.0.0\/24"\)/);
  assert.match(parseAddressRange('2001:db8::1/32') as string, /e.g. "2001:db8::\/32"/);
  assert.match(parseAddressRange('010.0.0.1') as string, /not an IP address/);
});

test('ipText prints addresses as node does (RFC 5952 for IPv6)', () => {
  assert.equal(ipText([192, 0, 2, 1]), '192.0.2.1');
  assert.equal(ipText([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), '2001:db8::1');
  assert.equal(ipText(new Array(16).fill(0)), '::');
  assert.equal(ipText([0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]), '1:0:0:2::3', 'the longest run of zeros is the one shortened');
});
