/**
 * The source-address critical option (PROTOCOL.certkeys) as OpenSSH's
 * addr_match_cidr_list reads it: a table of lists sshd accepts and refuses,
 * and which client addresses match, IPv4, IPv6 and IPv4-mapped. ssh-keygen
 * checks the same syntax when it signs: the refused lists are ones it also
 * refuses (test/e2e/source-address.test.ts has the proxy against real ssh).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertError, checkSourceAddress, clientAddressBytes, encodeOpenSSHPrivateKey, formatPublicKeyLine, generateKeyPair, parseSourceAddressList } from '../../src/sshcert/index.js';

const MATCHES: [list: string, addr: string][] = [
  ['10.0.0.1', '10.0.0.1'],
  ['10.0.0.0/8', '10.200.3.4'],
  ['0.0.0.0/0', '192.0.2.1'],
  ['192.0.2.0/24,198.51.100.7/32', '198.51.100.7'],
  ['10.0.0.0/8', '::ffff:10.1.1.1'],
  ['2001:db8::/32', '2001:db8:1::5'],
  ['2001:DB8::/32', '2001:db8::1'],
  ['::1', '::1'],
  ['::/0', 'fe80::1'],
  ['127.0.0.0/8,::1/128', '127.0.0.1'],
];
const MISSES: [list: string, addr: string][] = [
  ['10.9.9.9/32', '127.0.0.1'],
  ['10.0.0.0/8', '11.0.0.1'],
  ['2001:db8::/32', '2001:db9::1'],
  ['::ffff:10.0.0.0/104', '10.0.0.1'], // OpenSSH compares an IPv4 client only with IPv4 entries
  ['::1', '127.0.0.1'],
  ['127.0.0.1', '::1'],
  ['127.0.0.1', 'not-an-address'],
  ['127.0.0.1', ''],
];
const INVALID = ['', ',', '10.0.0.1,', ',10.0.0.1', '10.0.0.1/33', '::/129', '10.0.0.0/8/8', '10.0.0.1/8', '2001:db8::1/32', 'example.com', '10.0.0.*', '!10.0.0.1', '10.0.0.1 ', '10.0.0.1/', '10.0.0.1/x', '1.2.3', '1.2.3.4.5', '::1::2', `${'1'.repeat(50)}`];

for (const [list, addr] of MATCHES) {
  test(`source-address ${list} admits ${addr}`, () => checkSourceAddress(list, addr));
}
for (const [list, addr] of MISSES) {
  test(`source-address ${list} refuses ${JSON.stringify(addr)}, naming the list and the address`, () => {
    assert.throws(
      () => checkSourceAddress(list, addr),
      (e: unknown) => e instanceof CertError && e.code === 'CERT_SOURCE_ADDRESS' && e.message.includes(list) && /connect from an allowed address/.test(e.message),
    );
  });
}
for (const list of INVALID) {
  test(`source-address ${JSON.stringify(list)} is refused as malformed, whatever the client`, () => {
    assert.throws(
      () => checkSourceAddress(list, '10.0.0.1'),
      (e: unknown) => e instanceof CertError && e.code === 'CERT_MALFORMED' && /source-address .* is invalid/.test(e.message),
    );
  });
}

test('an IPv4-mapped IPv6 client address is compared as IPv4, others as they are', () => {
  assert.deepEqual(clientAddressBytes('::ffff:127.0.0.1'), [127, 0, 0, 1]);
  assert.deepEqual(clientAddressBytes('::FFFF:7f00:1'), [127, 0, 0, 1]);
  assert.equal(clientAddressBytes('::1')?.length, 16);
  assert.equal(clientAddressBytes('localhost'), undefined);
});

test('ssh-keygen refuses to sign the malformed lists too, and signs the valid ones', () => {
  const dir = mkdtempSync(join(tmpdir(), 'srcaddr-'));
  try {
    const ca = generateKeyPair('ed25519');
    const user = generateKeyPair('ed25519');
    writeFileSync(join(dir, 'ca'), encodeOpenSSHPrivateKey(ca.privateKey, 'ca'), { mode: 0o600 });
    writeFileSync(join(dir, 'user.pub'), formatPublicKeyLine(user.publicKey, 'u') + '\n');
    const sign = (list: string) => spawnSync('ssh-keygen', ['-q', '-s', join(dir, 'ca'), '-I', 'u', '-n', 'u', '-O', `source-address=${list}`, join(dir, 'user.pub')], { encoding: 'utf8' });
    for (const [list] of MATCHES) {
      assert.equal(sign(list).status, 0, list);
      assert.doesNotThrow(() => parseSourceAddressList(list));
    }
    // The ones ssh-keygen gets to see (an empty value or a leading comma reads differently on its command line).
    for (const list of ['10.0.0.1/33', '::/129', '10.0.0.1/8', '2001:db8::1/32', 'example.com', '10.0.0.*', '10.0.0.1,']) {
      assert.notEqual(sign(list).status, 0, `ssh-keygen signed ${list}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
