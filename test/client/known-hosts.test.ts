import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatHostCaLines, knownHostsPatterns, readClusterHostCAs, replaceClusterLines, writeClusterHostCAs } from '../../src/client/known-hosts.js';
import { formatPublicKeyLine, generateKeyPair } from '../../src/sshcert/index.js';
import { tempDir } from '../helpers/tools.js';

describe("tsh's known_hosts: @cert-authority lines per cluster", () => {
  const tmp = tempDir('known-hosts');
  after(() => tmp.cleanup());
  const [k1, k2, k3] = [generateKeyPair('ed25519'), generateKeyPair('ed25519'), generateKeyPair('ecdsa-p256')].map((k) => k.publicKey);

  test('patterns: node names, *.<cluster>, and the proxy as ssh looks it up ([host]:port off port 22)', () => {
    assert.deepEqual(knownHostsPatterns({ clusterName: 'example.org', nodeNames: ['node1', 'db-2', 'node1'], sshProxyAddr: 'jump.example.org:3023' }), [
      'node1',
      'db-2',
      '*.example.org',
      '[jump.example.org]:3023',
    ]);
    assert.deepEqual(knownHostsPatterns({ clusterName: 'c.test', nodeNames: ['bad name', 'a,b'], sshProxyAddr: '[::1]:22' }), ['*.c.test', '::1']);
  });

  test('patterns are lower-case and cover the node addresses as ssh looks them up (host, and [host]:port off port 22)', () => {
    assert.deepEqual(
      knownHostsPatterns({ clusterName: 'Example.ORG', nodeNames: ['WebServer01'], sshProxyAddr: 'Jump.Example.org:3023', nodeAddrs: ['10.0.0.5:22', '140.82.112.3:22', 'Web-01.Internal:2222', 'Web-02.Example.ORG:2222', '[fd00::7]:2200', '[2001:db8::1]:22', 'not an address'] }),
      ['webserver01', '*.example.org', '10.0.0.5', 'web-02.example.org', '[web-02.example.org]:2222', 'fd00::7', '[fd00::7]:2200', '[jump.example.org]:3023'],
    );
  });

  test('a cluster has one line per trusted CA key, tagged with its name', () => {
    const lines = formatHostCaLines('example.org', ['node1', '*.example.org'], [k1!, k2!]);
    assert.deepEqual(lines, [
      `@cert-authority node1,*.example.org ${formatPublicKeyLine(k1!)} jumpgate-cluster=example.org`,
      `@cert-authority node1,*.example.org ${formatPublicKeyLine(k2!)} jumpgate-cluster=example.org`,
    ]);
  });

  test("replacing a cluster's lines keeps every other line byte for byte, in place", () => {
    const mine = `@cert-authority *.a.test ${formatPublicKeyLine(k1!)} jumpgate-cluster=a.test`;
    const other = `@cert-authority *.b.test ${formatPublicKeyLine(k2!)} jumpgate-cluster=b.test`;
    const before = `# my notes\n${mine}\n${other}\n${mine}\nplain.example ${formatPublicKeyLine(k3!)}\n`;
    const fresh = formatHostCaLines('a.test', ['*.a.test'], [k3!]);
    assert.equal(replaceClusterLines(before, 'a.test', fresh), `# my notes\n${fresh[0]}\n${other}\nplain.example ${formatPublicKeyLine(k3!)}\n`);
    assert.equal(replaceClusterLines('', 'a.test', fresh), `${fresh[0]}\n`);
    // "a.test" must not match "a.test.evil" or the other way round.
    const evil = `@cert-authority * ${formatPublicKeyLine(k2!)} jumpgate-cluster=a.test.evil`;
    assert.equal(replaceClusterLines(`${evil}\n`, 'a.test', fresh), `${evil}\n${fresh[0]}\n`);
  });

  test('writes atomically (0600, dir 0700) and reads back only the named cluster', () => {
    const file = join(tmp.dir, 'tsh', 'known_hosts');
    writeClusterHostCAs(file, { clusterName: 'a.test', patterns: ['*.a.test'], caKeys: [k1!, k2!] });
    writeClusterHostCAs(file, { clusterName: 'b.test', patterns: ['*.b.test'], caKeys: [k3!] });
    assert.equal(lstatSync(file).mode & 0o777, 0o600);
    assert.equal(lstatSync(join(tmp.dir, 'tsh')).mode & 0o777, 0o700);
    assert.deepEqual(readClusterHostCAs(file, 'a.test').map((k) => k.blob.toString('base64')), [k1!, k2!].map((k) => k.blob.toString('base64')));
    writeClusterHostCAs(file, { clusterName: 'a.test', patterns: ['*.a.test'], caKeys: [k2!] });
    assert.equal(readClusterHostCAs(file, 'a.test').length, 1);
    assert.equal(readClusterHostCAs(file, 'b.test').length, 1);
    assert.deepEqual(readClusterHostCAs(join(tmp.dir, 'absent'), 'a.test'), []);
    writeFileSync(file, readFileSync(file, 'utf8') + '@cert-authority * ssh-ed25519 AAAAbroken jumpgate-cluster=a.test\n');
    assert.equal(readClusterHostCAs(file, 'a.test').length, 1, 'a damaged line trusts nothing');
  });
});
