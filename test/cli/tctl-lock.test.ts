/**
 * `tctl lock add/ls/rm` and `tctl auth export --type=krl` in process, on a
 * dir store in a temp directory (no server running): usage errors name the
 * flag, a lock round-trips through the store, the KRL names it. The paths
 * through a running proxy, ssh and sshd are in test/e2e/locks.test.ts.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execute } from '../../src/cli/main.js';
import { buildTctl } from '../../src/cli/tctl.js';
import { parseKrl } from '../../src/sshcert/index.js';
import { tempDir } from '../helpers/tools.js';
import { testDeps } from '../helpers/deps.js';

const T0 = new Date('2026-11-30T08:00:00Z');
const t = tempDir('tctl-lock');
after(() => t.cleanup());
const config = join(t.dir, 'jumpgate.yaml');
writeFileSync(config, ['cluster_name: unit.test', 'data_dir: ./data', 'roles:', '  user:', '    logins: ["{{username}}"]', ''].join('\n'));

async function tctl(args: string[], tty = false) {
  const deps = testDeps({ cwd: t.dir, clock: () => T0 });
  if (tty) deps.io.stdoutIsTTY = true;
  const code = await execute(buildTctl, ['--config', config, ...args], deps);
  return { code, out: deps.out(), err: deps.err() };
}

test('tctl lock add needs exactly one target (exit 2, naming the flags)', async () => {
  for (const args of [[], ['--user=a', '--role=b']]) {
    const r = await tctl(['lock', 'add', ...args]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /exactly one of --user=U, --login=L, --node=N or --role=R/);
  }
  const bad = await tctl(['lock', 'add', '--user=a', '--ttl=soon']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--ttl/);
});

test('tctl lock add prints the id; ls shows it (text and JSON, escaped); rm removes it; rm of an unknown id is an error', async () => {
  const added = await tctl(['lock', 'add', '--user=alice', '--ttl=1h', '--message=stolen \u202e laptop']);
  assert.equal(added.code, 0, added.err);
  const id = added.out.trim();
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.match(added.err, /locked user=alice until 2026-11-30T09:00:00\.000Z/);
  const text = await tctl(['lock', 'ls']);
  assert.match(text.out, new RegExp(`^${id}\\s+user=alice\\s+2026-11-30T09:00:00.000Z\\s+stolen \\\\u\\{202e\\} laptop$`, 'm'));
  const json = JSON.parse((await tctl(['lock', 'ls', '--format=json'])).out) as Array<Record<string, string>>;
  assert.deepEqual(
    json.map((l) => [l['id'], l['target'], l['value'], l['expires']]),
    [[id, 'user', 'alice', '2026-11-30T09:00:00.000Z']],
  );
  const krlFile = join(t.dir, 'r.krl');
  const exported = await tctl(['auth', 'export', '--type=krl', `--out=${krlFile}`]);
  assert.equal(exported.code, 0, exported.err);
  assert.ok(parseKrl(readFileSync(krlFile)).certificates.some((c) => c.keyIds.includes('alice')));
  assert.equal((await tctl(['lock', 'rm', id])).code, 0);
  assert.equal((await tctl(['lock', 'ls', '--format=json'])).out.trim(), '[]');
  const again = await tctl(['lock', 'rm', id]);
  assert.equal(again.code, 1);
  assert.match(again.err, /no lock/);
});

test('tctl auth export --type=krl refuses to write binary to a terminal, and --out goes only with krl', async () => {
  const r = await tctl(['auth', 'export', '--type=krl'], true);
  assert.equal(r.code, 2);
  assert.match(r.err, /binary.*--out=FILE/);
  const piped = await tctl(['auth', 'export', '--type=krl']);
  assert.equal(piped.code, 0, piped.err);
  const misuse = await tctl(['auth', 'export', '--type=user', '--out=x']);
  assert.equal(misuse.code, 2);
});
