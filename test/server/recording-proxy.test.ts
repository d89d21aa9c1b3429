/**
 * The recording proxy's host certificates for node names (NodeHostCerts):
 * signed on first use by the host CA for the node's names, reused while more
 * than half of their life is left, re-signed after, and at most `max` names
 * kept. The whole recording path against real OpenSSH is
 * test/e2e/session-recording.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseServerConfig, type NodeConfig } from '../../src/config/index.js';
import { NODE_HOST_CERT_TTL_SECONDS, NodeHostCerts } from '../../src/server/proxy/recording-proxy.js';
import type { ServerRuntime } from '../../src/server/runtime.js';
import { testRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tools.js';

const tmp = tempDir('recording-proxy');
let rt: ServerRuntime;
let now = Date.now();
const node = (name: string): NodeConfig => ({ name, addr: { host: '10.0.0.5', port: 22 }, labels: {} });
const hostCerts = () =>
  readFileSync(`${tmp.dir}/data/audit.log`, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e['event'] === 'cert.issued' && e['via'] === 'recording-proxy');

before(async () => {
  const config = parseServerConfig(`cluster_name: unit.test\ndata_dir: ${tmp.dir}/data\nauth: { session_recording: proxy }\n`, `${tmp.dir}/jumpgate.yaml`);
  rt = { ...(await testRuntime(config)), clock: () => new Date(now) };
});
after(async () => {
  await (rt.audit as unknown as { close(): Promise<void> }).close();
  tmp.cleanup();
});

test("a node name's certificate is signed once for its names, reused, and re-signed when half its life is gone", async () => {
  const certs = new NodeHostCerts(rt, () => {});
  const first = await certs.server(node('Web01'));
  assert.equal(await certs.server(node('web01')), first, 'cached (names are case-insensitive)');
  const issued = hostCerts();
  assert.equal(issued.length, 1);
  assert.deepEqual(issued[0]!['principals'], ['web01', 'web01.unit.test', '10.0.0.5']);
  now += (NODE_HOST_CERT_TTL_SECONDS / 2 + 1) * 1000;
  const second = await certs.server(node('web01'));
  assert.notEqual(second, first, 'a fresh certificate before the old one expires');
  assert.equal(hostCerts().length, 2);
});

test('concurrent first connections to one name share one signing; at most `max` names are kept, least recently used out first', async () => {
  const certs = new NodeHostCerts(rt, () => {}, 2);
  const before = hostCerts().length;
  const [a, b] = await Promise.all([certs.server(node('a')), certs.server(node('a'))]);
  assert.equal(a, b);
  assert.equal(hostCerts().length, before + 1);
  await certs.server(node('b'));
  await certs.server(node('a')); // a is now the most recently used
  await certs.server(node('c')); // evicts b
  assert.equal(certs.size, 2);
  const n = hostCerts().length;
  await certs.server(node('a'));
  assert.equal(hostCerts().length, n, 'a was kept');
  await certs.server(node('b'));
  assert.equal(hostCerts().length, n + 1, 'b was signed again');
});
