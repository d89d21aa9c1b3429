/**
 * packaging/jumpgate-node.service passes `systemd-analyze verify` (the real
 * systemd's parser: unknown keys, bad values, a relative ExecStart). verify
 * also wants the ExecStart program and the EnvironmentFile to exist, so a copy
 * points them at stand-ins in a temp directory; nothing else is changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, requireTool, run, tempDir } from '../helpers/tools.js';

const UNIT = join(REPO, 'packaging', 'jumpgate-node.service');

async function verify(text: string): Promise<{ code: number | null; out: string }> {
  const analyze = requireTool('systemd-analyze', 'apt-get install -y systemd');
  const tmp = tempDir('unit');
  try {
    const bin = join(tmp.dir, 'jumpgate');
    writeFileSync(bin, '#!/bin/sh\n');
    chmodSync(bin, 0o755);
    writeFileSync(join(tmp.dir, 'default'), 'JUMPGATE_PROXY=proxy.example.com:3080\n');
    const unit = join(tmp.dir, 'jumpgate-node.service');
    writeFileSync(unit, text.replaceAll('/usr/local/bin/jumpgate ', `${bin} `).replaceAll('/etc/default/jumpgate-node', join(tmp.dir, 'default')));
    const r = await run(analyze, ['verify', unit], { timeoutMs: 30_000 });
    return { code: r.code, out: (r.stdout + r.stderr).replaceAll(tmp.dir, '<tmp>') };
  } finally {
    tmp.cleanup();
  }
}

test('the node agent unit passes systemd-analyze verify with no warning, and runs jumpgate node start', async () => {
  const text = readFileSync(UNIT, 'utf8');
  assert.match(text, /^ExecStart=\/usr\/local\/bin\/jumpgate node start --proxy=\$\{JUMPGATE_PROXY\} --name=\$\{JUMPGATE_NODE_NAME\} --addr=\$\{JUMPGATE_NODE_ADDR\} --data-dir=\/var\/lib\/jumpgate-node /m);
  assert.doesNotMatch(text, /--token/, 'the token never goes into the command line');
  const r = await verify(text);
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out.trim(), '', 'no warnings');
});

test('a broken unit fails the same check (the check can fail)', async () => {
  const r = await verify(readFileSync(UNIT, 'utf8').replace('ExecStart=/usr/local/bin/jumpgate ', 'ExecStart=jumpgate-relative ').replace('Restart=on-failure', 'Restart=sometimes'));
  assert.notEqual(r.out.trim(), '', r.out);
});
