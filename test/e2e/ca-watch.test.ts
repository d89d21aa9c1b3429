/**
 * A running `jumpgate start` on the dir backend sees a CA rotation made by
 * `tctl` (another process) without a restart: the backend's watch() polls
 * ca.json, the server refreshes its CA snapshot. Its audit events carry its
 * server_id, tctl's carry tctl@<host>.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { runProgram, tempDir } from '../helpers/tools.js';
import { request } from '../helpers/web-api.js';

describe('a running server and tctl on one data directory (jumpgate start + tctl)', () => {
  const tmp = tempDir('ca-watch');
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster(
      tmp.dir,
      `cluster_name: watch.test
data_dir: ./data
proxy:
  web_listen_addr: 127.0.0.1:0
  ssh_listen_addr: 127.0.0.1:0
roles:
  user: { logins: ["{{username}}"], node_labels: { "*": "*" } }
`,
    );
  });
  after(async () => {
    await cluster?.stop();
    tmp.cleanup();
  });

  const hostCa = async (): Promise<string[]> => (JSON.parse((await request(cluster.webPort)).body) as { host_ca: string[] }).host_ca;

  test('tctl auth rotate --type=host is served by /v1/ping within a few seconds, without a restart', async () => {
    const before = await hostCa();
    assert.equal(before.length, 1);
    const r = await runProgram('tctl', ['--config', cluster.configFile, 'auth', 'rotate', '--type=host', '--grace-period=0']);
    assert.equal(r.code, 0, r.stderr);
    const exported = (await runProgram('tctl', ['--config', cluster.configFile, 'auth', 'export', '--type=host'])).stdout.trim();
    const newKey = exported.split(' ').slice(2, 4).join(' ');
    let now: string[] = [];
    // waitFor takes a synchronous predicate; /v1/ping is asked over HTTPS, so poll here (CHANGE_VISIBILITY_MS is 5 s; dir polls every 500 ms).
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      now = await hostCa();
      if (now.length === 1 && now[0]!.startsWith(newKey)) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(now.length, 1, `the old key's trust ended (grace 0): ${now.join(' | ')}`);
    assert.ok(now[0]!.startsWith(newKey), `serves the new host CA key: ${now[0]} vs ${newKey}`);
  });

  test('audit events carry the writer: the server its id, tctl tctl@<host>', async () => {
    const events = cluster.audit();
    const rotated = events.find((e) => e['event'] === 'ca.rotated')!;
    assert.equal(rotated['server_id'], `tctl@${hostname()}`);
    const proxyCert = events.find((e) => e['event'] === 'cert.issued' && e['via'] === 'ssh-proxy')!;
    assert.match(String(proxyCert['server_id']), new RegExp(`^${hostname().replace(/[.]/g, '\\.')}:pid\\d+$`), 'web port 0: hostname:pid');
  });
});
