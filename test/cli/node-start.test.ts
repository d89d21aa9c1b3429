/**
 * `jumpgate node start` flags and --config: what the agent is given, and the
 * refusals that name the flag or the file, line and key. (The agent itself
 * runs end to end in test/e2e/node-agent.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeStartOptions, readNodeConfig } from '../../src/cli/commands/jumpgate/node-start.js';
import { parseLabels } from '../../src/cli/flags.js';
import { tempDir } from '../helpers/tools.js';

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
