/**
 * `jumpgate node start` flags and --config: what the agent is given, and the
 * refusals that name the flag or the file, line and key. (The agent itself
 * runs end to end in test/e2e/node-agent.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeStartOptions, readNodeConfig } from '../../src/cli/commands/jumpgate/node-start.js';
import { parseLabels } from '../../src/cli/flags.js';
import { requireTool, tempDir } from '../helpers/tools.js';

const deps = { cwd: '/work', env: {} };

test('flags become agent options: defaults, label commands split without a shell, --reload as argv', () => {
  const o = nodeStartOptions({ token: 'T'.repeat(32), proxy: 'proxy.example.com', name: 'web1', addr: '10.0.0.5', labels: 'env=prod,rack=r12', labelCmd: ['kernel=uname -r'], reload: 'systemctl reload ssh' }, deps);
  assert.deepEqual(o.proxy, { host: 'proxy.example.com', port: 443 });
  assert.deepEqual(o.addr, { host: '10.0.0.5', port: 22 });
  assert.equal(o.dataDir, '/var/lib/jumpgate-node');
  assert.equal(o.sshdPidFile, '/run/sshd.pid');
  assert.deepEqual(o.labels, { env: 'prod', rack: 'r12' });
  assert.deepEqual(o.labelCommands, { kernel: ['uname', '-r'] });
  assert.deepEqual(o.reload, ['systemctl', 'reload', 'ssh']);
  assert.equal(o.insecure, false);
});

test('bad flags are usage errors naming the flag', () => {
  assert.throws(() => nodeStartOptions({ proxy: 'p:1', addr: 'a:22' }, deps), /--name is required/);
  assert.throws(() => nodeStartOptions({ proxy: 'p:1', name: 'bad name', addr: 'a:22' }, deps), /--name: "bad name" is not a node name/);
  assert.throws(() => nodeStartOptions({ proxy: 'p:1', name: 'n', addr: 'a:99999' }, deps), /--addr:/);
  assert.throws(() => nodeStartOptions({ proxy: 'p:1', name: 'n', addr: 'a:22', labelCmd: ['=uname'] }, deps), /--label-cmd: "=uname" is not NAME=COMMAND/);
  assert.throws(() => parseLabels('--labels', 'env'), /--labels: "env" is not name=value/);
  assert.throws(() => parseLabels('--labels', 'bad key=x'), /is not name=value/);
});

test('--proxy takes host[:port] or the https URL a browser shows; http://, other schemes and paths are refused naming the fix', () => {
  const base = { token: 'T'.repeat(32), name: 'web1', addr: '10.0.0.5' };
  assert.deepEqual(nodeStartOptions({ ...base, proxy: 'https://proxy.example.com:3080/' }, deps).proxy, { host: 'proxy.example.com', port: 3080 });
  assert.deepEqual(nodeStartOptions({ ...base, proxy: 'HTTPS://proxy.example.com' }, deps).proxy, { host: 'proxy.example.com', port: 443 });
  assert.throws(() => nodeStartOptions({ ...base, proxy: 'http://proxy.example.com:3080' }, deps), /--proxy: "http:\/\/proxy.example.com:3080" is plain http:\/\/: the Jumpgate proxy serves its API over HTTPS only/);
  assert.throws(() => nodeStartOptions({ ...base, proxy: 'ftp://p:1' }, deps), /--proxy: "ftp:\/\/p:1": ftp:\/\/ is not a proxy address/);
  assert.throws(() => nodeStartOptions({ ...base, proxy: 'https://p:1/v1' }, deps), /--proxy: "https:\/\/p:1\/v1" has a path, query or fragment; give only https:\/\/host\[:port\]/);
  assert.throws(() => nodeStartOptions({ ...base, proxy: 'https://u@p:1' }, deps), /--proxy: "https:\/\/u@p:1" has a user name in it/);
});

test('--config reads the same keys; an unknown key is refused with its line', () => {
  const tmp = tempDir('node-config');
  try {
    const file = join(tmp.dir, 'node.yaml');
    writeFileSync(file, ['proxy: proxy.example.com:3080', 'name: web1', 'addr: 10.0.0.5:22', 'data_dir: ./data', 'labels: { env: prod, rack: 12 }', 'label_cmd: { kernel: uname -r }', 'insecure: true', ''].join('\n'));
    const f = readNodeConfig(file);
    const o = nodeStartOptions(f, deps);
    assert.equal(o.dataDir, join(tmp.dir, 'data'));
    assert.deepEqual(o.labels, { env: 'prod', rack: '12' });
    assert.deepEqual(o.labelCommands, { kernel: ['uname', '-r'] });
    assert.equal(o.insecure, true);
    writeFileSync(file, 'proxy: p:1\nnmae: web1\n');
    assert.throws(() => readNodeConfig(file), /node\.yaml:2: nmae: unknown key "nmae"/);
  } finally {
    tmp.cleanup();
  }
});

test('--ca-file / ca_file: read at start, relative to the config file; a missing or non-PEM file and --insecure with it are refused naming the file', () => {
  const tmp = tempDir('node-ca-file');
  try {
    const openssl = requireTool('openssl', 'apt-get install -y openssl');
    const ca = join(tmp.dir, 'proxy-ca.pem');
    const made = spawnSync(openssl, ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-subj', '/CN=ca', '-days', '1', '-keyout', join(tmp.dir, 'k.pem'), '-out', ca]);
    assert.equal(made.status, 0, String(made.stderr));
    const file = join(tmp.dir, 'node.yaml');
    writeFileSync(file, ['proxy: proxy.example.com:3080', 'name: web1', 'addr: 10.0.0.5:22', 'ca_file: proxy-ca.pem', ''].join('\n'));
    const o = nodeStartOptions(readNodeConfig(file), deps);
    assert.equal(o.ca?.file, ca);
    assert.match(o.ca?.pem ?? '', /BEGIN CERTIFICATE/);
    assert.equal(o.insecure, false);
    const base = { proxy: 'p:1', name: 'n', addr: 'a:22' };
    assert.throws(() => nodeStartOptions({ ...base, caFile: join(tmp.dir, 'nope.pem') }, deps), (e: Error & { hint?: string }) => /--ca-file=.*nope\.pem: cannot read it \(ENOENT\)/.test(e.message) && /PEM file with the CA certificate/.test(e.hint ?? ''));
    writeFileSync(join(tmp.dir, 'junk.pem'), 'not a certificate\n');
    assert.throws(() => nodeStartOptions({ ...base, caFile: join(tmp.dir, 'junk.pem') }, deps), /--ca-file=.*junk\.pem: holds no PEM certificate/);
    writeFileSync(join(tmp.dir, 'broken.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    assert.throws(() => nodeStartOptions({ ...base, caFile: join(tmp.dir, 'broken.pem') }, deps), /broken\.pem: certificate 1 in it is not a valid X\.509 certificate/);
    assert.throws(() => nodeStartOptions({ ...base, caFile: ca, insecure: true }, deps), /--ca-file and --insecure contradict each other/);
  } finally {
    tmp.cleanup();
  }
});

test('--ca-file that is a directory, a device, a huge file, a private key or lines of BEGIN with no END: refused naming the file, without reading without end', () => {
  // Before: /dev/zero was read until memory ran out, and 1.1 MB of BEGIN lines took 35 s (the PEM regex rescanned to the end for every BEGIN).
  const tmp = tempDir('node-ca-file-bad');
  try {
    const base = { proxy: 'p:1', name: 'n', addr: 'a:22' };
    assert.throws(() => nodeStartOptions({ ...base, caFile: tmp.dir }, deps), (e: Error & { hint?: string }) => /--ca-file=.*: is a directory, not a file/.test(e.message) && /PEM file/.test(e.hint ?? ''));
    assert.throws(() => nodeStartOptions({ ...base, caFile: '/dev/zero' }, deps), /--ca-file=\/dev\/zero: is not a regular file/);
    // A named pipe: opening it for reading waits for a writer (before: forever, at start); it is refused without waiting.
    const fifo = join(tmp.dir, 'ca.fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    assert.throws(() => nodeStartOptions({ ...base, caFile: fifo }, deps), /ca\.fifo: is not a regular file/);
    const huge = join(tmp.dir, 'huge.pem');
    writeFileSync(huge, '-----BEGIN CERTIFICATE-----\n'.repeat(200_000)); // 5.6 MB
    assert.throws(() => nodeStartOptions({ ...base, caFile: huge }, deps), /huge\.pem: is larger than 1 MiB \(a CA bundle is some 200 KB\)/);
    const begins = join(tmp.dir, 'begins.pem');
    writeFileSync(begins, '-----BEGIN CERTIFICATE-----\n'.repeat(37_000)); // just under 1 MiB
    assert.throws(() => nodeStartOptions({ ...base, caFile: begins }, deps), /begins\.pem: holds no PEM certificate/);
    const key = join(tmp.dir, 'key.pem');
    writeFileSync(key, '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n');
    assert.throws(() => nodeStartOptions({ ...base, caFile: key }, deps), (e: Error & { hint?: string }) => /key\.pem: holds a private key/.test(e.message) && /certificate/.test(e.hint ?? ''));
  } finally {
    tmp.cleanup();
  }
});
