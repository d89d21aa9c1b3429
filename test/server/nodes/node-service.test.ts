/**
 * The node API's rules, in process against the real dir store, CAs and audit
 * log (the HTTPS transport and the agent are covered end to end by
 * test/e2e/node-agent.test.ts): tokens single use or reusable, names never
 * shared (static or joined), the credential rotating with renewals and cut
 * off by removal, the inventory keeping only heartbeating nodes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadServerConfig } from '../../../src/config/index.js';
import { formatPublicKeyLine, generateKeyPair, parseCertificateLine } from '../../../src/sshcert/index.js';
import { Inventory, readJoinedNodes, REFRESH_DEBOUNCE_MS } from '../../../src/server/nodes/inventory.js';
import { CHANGE_VISIBILITY_MS } from '../../../src/server/storage/backend.js';
import { MAX_HEARTBEAT_HOLD_SECONDS, NODE_CHANGE_RATE_LIMIT, NodeService, STATE_CHECK_MS } from '../../../src/server/nodes/node-service.js';
import { WEB_LIMITS } from '../../../src/server/proxy/web.js';
import { createToken, listTokens, removeToken } from '../../../src/server/nodes/tokens.js';
import { routeToNode } from '../../../src/server/proxy/routing.js';
import type { ServerRuntime } from '../../../src/server/runtime.js';
import { testRuntime } from '../../helpers/runtime.js';
import { tempDir, waitFor } from '../../helpers/tools.js';

describe('node API: tokens, names, credentials, inventory', () => {
  const tmp = tempDir('node-service');
  let rt: ServerRuntime;
  let inventory: Inventory;
  let nodes: NodeService;
  let now = Date.now(); // the dir store expires items by the real clock
  const never = (): void => {}; // a connection that never closes

  before(async () => {
    const file = join(tmp.dir, 'jumpgate.yaml');
    writeFileSync(
      file,
      ['cluster_name: unit.test', `data_dir: ${join(tmp.dir, 'data')}`, 'node_agent: { heartbeat_ttl: 3s, host_cert_ttl: 1m }', 'roles:', '  user: { logins: [root], node_labels: { env: test } }', 'nodes:', '  - { name: static1, addr: "127.0.0.1:22", labels: { env: test } }', ''].join('\n'),
    );
    rt = await testRuntime(loadServerConfig(file));
    rt.clock = () => new Date(now);
    inventory = new Inventory({ config: rt.config, store: rt.store, clock: rt.clock, log: rt.log });
    await inventory.start();
    rt.inventory = inventory;
    nodes = new NodeService({ rt, inventory });
  });
  after(async () => {
    nodes.close();
    inventory.close();
    await rt.audit.close();
    await rt.store.close();
    tmp.cleanup();
  });

  const key = () => formatPublicKeyLine(generateKeyPair('ed25519').publicKey);
  const token = async (o: { reusable?: boolean; labels?: Record<string, string> } = {}) =>
    (await createToken({ ttlSeconds: 600, labels: o.labels ?? {}, reusable: o.reusable ?? false }, { items: rt.store.items, audit: rt.audit, clock: rt.clock })).token;
  const join_ = (t: string, name: string, extra: Record<string, unknown> = {}) => nodes.join({ token: t, name, addr: '127.0.0.1:2222', labels: { team: 'ops' }, public_key: key(), ...extra }, '127.0.0.9');
  const rejects = (p: Promise<unknown>, code: string) => assert.rejects(p, (e: Error & { code?: string }) => e.code === code || assert.fail(`${e.code}: ${e.message}`));

  test('a single-use token joins one node; the second use is refused; the token labels win', async () => {
    const t = await token({ labels: { team: 'db', env: 'test' } });
    const r = await join_(t, 'n1');
    const cert = parseCertificateLine(r.host_certificate).cert;
    assert.deepEqual(cert.principals, ['n1', 'n1.unit.test', '127.0.0.1']);
    assert.equal(cert.type, 'host');
    assert.equal(Number(cert.validBefore) - Math.floor(now / 1000), 60);
    assert.equal(r.user_ca.length, 1);
    assert.equal(r.heartbeat_interval_seconds, 1);
    await rejects(join_(t, 'n2'), 'BAD_TOKEN');
    const n1 = inventory.nodes().find((n) => n.name === 'n1');
    assert.deepEqual(n1?.labels, { team: 'db', env: 'test' });
    assert.equal(n1?.source, 'joined');
  });

  test('a reusable token joins many; a removed or unknown one none', async () => {
    const t = await token({ reusable: true });
    await join_(t, 'r1');
    await join_(t, 'r2');
    const id = (await listTokens(rt.store.items)).find((x) => x.reusable)!.id;
    await removeToken(id, { items: rt.store.items, audit: rt.audit });
    await rejects(join_(t, 'r3'), 'BAD_TOKEN');
    await rejects(join_('A'.repeat(32), 'r4'), 'BAD_TOKEN');
  });

  test('a static node\'s name or a joined one is refused before the token is used', async () => {
    const t = await token();
    await rejects(join_(t, 'static1'), 'NODE_NAME_TAKEN');
    await rejects(join_(t, 'N1'), 'NODE_NAME_TAKEN');
    await join_(t, 'fresh1'); // the token was not spent by the refusals
  });

  test("a node cannot get a host certificate naming another node: its name.<cluster>, its name or address host as --addr (join, and heartbeat then renew)", async () => {
    const t = await token({ reusable: true });
    await rejects(join_(t, 'static1.unit.test'), 'NODE_NAME_TAKEN'); // static1's cluster-qualified principal
    await rejects(join_(t, 'h1', { addr: 'static1:22' }), 'NODE_NAME_TAKEN'); // its name as the address host
    await rejects(join_(t, 'h2', { addr: 'STATIC1.unit.test:22' }), 'NODE_NAME_TAKEN');
    await join_(t, 'dbh', { addr: 'db.internal:22' });
    await rejects(join_(t, 'db.internal'), 'NODE_NAME_TAKEN'); // a name that is another node's address host
    await rejects(join_(t, 'h3', { addr: 'dbh:22' }), 'NODE_NAME_TAKEN'); // a joined node's name
    await join_(t, 'h4', { addr: 'db.internal:2200' }); // two nodes behind one address: allowed
    const r = await nodes.join({ token: t, name: 'h5', addr: '127.0.0.1:2222', labels: {}, public_key: key() }, '127.0.0.9');
    await rejects(nodes.heartbeat({ name: 'h5', addr: 'static1:22', labels: {}, state: 'x' }, `Bearer ${r.credential}`, '127.0.0.9', never), 'NODE_NAME_TAKEN');
    assert.equal(inventory.nodes().find((n) => n.name === 'h5')?.addr.host, '127.0.0.1');
  });

  test('bad shapes are refused naming the field', async () => {
    const t = await token();
    await assert.rejects(join_(t, 'bad name'), /name: not a node name/);
    await assert.rejects(join_(t, 'x1', { labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) }), /labels: has more than 32 labels/);
    await assert.rejects(join_(t, 'x1', { addr: '127.0.0.1' }), /addr: not host:port/);
    await assert.rejects(join_(t, 'x1', { public_key: 'ssh-ed25519 AAAA' }), /public_key/);
  });

  test('heartbeats need the credential; a renewal rotates it (the old one works until the new is used); removal cuts it off', async () => {
    const t = await token();
    const pub = key();
    const r = await nodes.join({ token: t, name: 'c1', addr: '127.0.0.1:2222', labels: {}, public_key: pub }, '127.0.0.9');
    const hb = (cred: string, state = 'x') => nodes.heartbeat({ name: 'c1', addr: '127.0.0.1:2222', labels: {}, state }, `Bearer ${cred}`, '127.0.0.9', never);
    await rejects(hb('B'.repeat(43)), 'NODE_CREDENTIAL_REFUSED');
    const answer = await hb(r.credential);
    assert.equal(answer.state, r.state);
    assert.deepEqual(answer.user_ca, r.user_ca);
    await rejects(nodes.renew({ name: 'c1', public_key: key() }, `Bearer ${r.credential}`, '127.0.0.9'), 'NODE_KEY_CHANGED');
    const renewed = await nodes.renew({ name: 'c1', public_key: pub }, `Bearer ${r.credential}`, '127.0.0.9');
    assert.notEqual(renewed.credential, r.credential);
    await hb(r.credential); // the answer may have been lost: the old one still works
    await hb(renewed.credential); // first use of the new one retires the old
    await rejects(hb(r.credential), 'NODE_CREDENTIAL_REFUSED');
    // Heartbeats are checked against the inventory's cached copy: no store read per heartbeat.
    const get = rt.store.items.get.bind(rt.store.items);
    let reads = 0;
    rt.store.items.get = ((...a: Parameters<typeof get>) => (reads++, get(...a))) as typeof get;
    try {
      await hb(renewed.credential);
      assert.equal(reads, 0, 'a heartbeat with the cached credential reads nothing from the store');
    } finally {
      rt.store.items.get = get;
    }
    assert.ok(await rt.store.items.delete('node', 'c1')); // what tctl nodes rm does (another process)
    // The cache learns of the removal through the store's watch (item:node): within CHANGE_VISIBILITY_MS.
    const removed = Date.now();
    for (;;) {
      try {
        await hb(renewed.credential);
      } catch (err) {
        assert.equal((err as { code?: string }).code, 'NODE_CREDENTIAL_REFUSED');
        break;
      }
      assert.ok(Date.now() - removed < CHANGE_VISIBILITY_MS, `still accepted ${CHANGE_VISIBILITY_MS} ms after the removal`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  test('a heartbeat with the current state is held until the interval passes; the inventory drops a node silent for the TTL', async () => {
    const t = await token({ labels: { env: 'test' } });
    const r = await join_(t, 'h1');
    let answered = false;
    const pending = nodes.heartbeat({ name: 'h1', addr: '127.0.0.1:2222', labels: {}, state: r.state }, `Bearer ${r.credential}`, '127.0.0.9', never).finally(() => (answered = true));
    await waitFor(() => nodes.heldCount === 1, 'the heartbeat being held');
    now += 999;
    nodes.sweepHeld();
    await new Promise((res) => setImmediate(res));
    assert.equal(answered, false, 'held until the interval (1 s at ttl 3s) has passed');
    now += 1;
    nodes.sweepHeld();
    const same = await pending;
    assert.equal(same.user_ca, undefined, 'nothing changed: no material');
    const sel = [{ env: 'test' }];
    assert.equal(routeToNode(rt.config, sel, 'h1', 0, inventory.nodes()).ok, true);
    now += 3_000;
    assert.ok(!inventory.nodes().some((n) => n.name === 'h1'), 'gone after heartbeat_ttl');
    const refused = routeToNode(rt.config, sel, 'h1', 0, inventory.nodes());
    assert.equal(refused.ok ? 'ok' : refused.code, 'UNKNOWN_NODE');
    assert.ok(inventory.nodes().some((n) => n.name === 'static1'), 'static nodes never expire');
  });

  test('a user CA rotation wakes held heartbeats with the new keys', async () => {
    const t = await token();
    const r = await join_(t, 'w1');
    const held = nodes.heartbeat({ name: 'w1', addr: '127.0.0.1:2222', labels: {}, state: r.state }, `Bearer ${r.credential}`, '127.0.0.9', never);
    await rt.ca.rotate('user', 0);
    nodes.checkTrust();
    const answer = await held;
    assert.notEqual(answer.state, r.state);
    assert.equal(answer.user_ca?.length, 1);
    assert.notDeepEqual(answer.user_ca, r.user_ca);
  });

  test('held heartbeats share one wake-up list (no timer each): answered when due, at once when the node hangs up, all at once on a trust change', async () => {
    const t = await token({ reusable: true });
    const joined = await Promise.all(Array.from({ length: 20 }, (_, i) => join_(t, `q${i}`)));
    const timers = () => process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length;
    const before = timers();
    const hangUps: Array<() => void> = [];
    const beats = joined.map((r, i) =>
      nodes.heartbeat({ name: `q${i}`, addr: '127.0.0.1:2222', labels: {}, state: r.state }, `Bearer ${r.credential}`, '127.0.0.9', (release) => void hangUps.push(release)),
    );
    await waitFor(() => nodes.heldCount === 20, '20 held heartbeats');
    assert.ok(timers() - before <= 1, `no timer per held heartbeat (${timers() - before} more timers for 20 held)`);
    hangUps[0]!();
    await beats[0];
    assert.equal(nodes.heldCount, 19, 'a node that hangs up is no longer held');
    await rt.ca.rotate('user', 0);
    const woken = Date.now();
    await waitFor(() => nodes.heldCount === 0, 'the held heartbeats woken by the state check (every STATE_CHECK_MS, on its own)', 5_000);
    await Promise.all(beats);
    assert.ok(Date.now() - woken < STATE_CHECK_MS + 1_000, `woken within STATE_CHECK_MS (${Date.now() - woken} ms)`);
    const last = await beats[19]!;
    assert.equal(last.user_ca?.length, 1, 'the new CA keys are in the answer');
  });

  test('one held heartbeat per node: a second one (a restarted agent, a stolen credential opening many) answers the one before at once', async () => {
    const t = await token();
    const r = await join_(t, 'one1');
    const releases: Array<() => void> = [];
    const held0 = nodes.heldCount;
    let answered = 0;
    const beats = Array.from({ length: 50 }, () =>
      nodes.heartbeat({ name: 'one1', addr: '127.0.0.1:2222', labels: {}, state: r.state }, `Bearer ${r.credential}`, '127.0.0.9', (release) => void releases.push(release)).finally(() => answered++),
    );
    await waitFor(() => answered === 49, 'all but the newest heartbeat answered at once');
    assert.equal(nodes.heldCount, held0 + 1, 'the node holds one heartbeat here, not 50');
    releases[49]!(); // the connection of the newest goes away
    await beats[49];
    assert.equal(nodes.heldCount, held0);
  });

  test('the heartbeat interval is a third of the TTL up to MAX_HEARTBEAT_HOLD_SECONDS (longer than the HTTPS requestTimeout)', () => {
    const ttl = rt.config.nodeAgent.heartbeatTtlSeconds;
    try {
      rt.config.nodeAgent.heartbeatTtlSeconds = 90;
      assert.equal(nodes.heartbeatIntervalSeconds, 30);
      rt.config.nodeAgent.heartbeatTtlSeconds = 3600;
      assert.equal(nodes.heartbeatIntervalSeconds, MAX_HEARTBEAT_HOLD_SECONDS);
      assert.ok(MAX_HEARTBEAT_HOLD_SECONDS * 1000 > WEB_LIMITS.requestTimeoutMs);
    } finally {
      rt.config.nodeAgent.heartbeatTtlSeconds = ttl;
    }
  });

  test('heartbeats reach the store as one batch per proxy, not a node write each; tctl reads the node as live from it', async () => {
    const t = await token();
    const r = await join_(t, 'b1');
    const joinedAt = (await rt.store.items.get<{ last_heartbeat: number }>('node', 'b1'))!.value.last_heartbeat;
    const put = rt.store.items.put.bind(rt.store.items);
    const kinds: string[] = [];
    rt.store.items.put = ((...a: Parameters<typeof put>) => (kinds.push(a[0]), put(...a))) as typeof put;
    try {
      now += 1_000;
      for (let i = 0; i < 3; i++) await nodes.heartbeat({ name: 'b1', addr: '127.0.0.1:2222', labels: { team: 'ops' }, state: 'x' }, `Bearer ${r.credential}`, '127.0.0.9', never);
      assert.ok(!kinds.includes('node'), 'no node write per heartbeat');
      await nodes.flushHeartbeats();
      const batches = kinds.length;
      assert.ok(batches >= 1 && kinds.every((k) => k === 'node_heartbeat'), `only batches stored: ${kinds.join(', ')}`);
      await nodes.flushHeartbeats(); // nothing new: no write
      assert.equal(kinds.length, batches);
    } finally {
      rt.store.items.put = put;
    }
    assert.equal((await rt.store.items.get<{ last_heartbeat: number }>('node', 'b1'))!.value.last_heartbeat, joinedAt, 'the node item is untouched');
    const read = (await readJoinedNodes(rt.store.items)).find((n) => n.name === 'b1')!;
    assert.equal(read.last_heartbeat, now, 'what tctl nodes ls reads carries the batch heartbeat');
  });

  test("a node heartbeating through another proxy stays live here: its batch is merged when item:node_heartbeat changes, without waiting for the refresh timer", async () => {
    const t = await token();
    let joinSeen = false;
    const unwatch = rt.store.watch((topic) => void (topic === 'item:node' && (joinSeen = true)));
    await join_(t, 'p1');
    await waitFor(() => joinSeen, 'the store reporting the join');
    unwatch();
    // A second inventory, started after the join's change was reported (so that change cannot refresh it), over the
    // same store at the production TTL: its refresh timer (a third of 90 s) cannot be what finds the beat either.
    const here = new Inventory({ config: { ...rt.config, nodeAgent: { ...rt.config.nodeAgent, heartbeatTtlSeconds: 90 } }, store: rt.store, clock: rt.clock, log: rt.log });
    await here.start();
    try {
      const beat = here.cached('p1')!.last_heartbeat + 7_000;
      await rt.store.items.put('node_heartbeat', 'another-proxy', { beats: { p1: beat } }, Date.now() + 60_000);
      await waitFor(() => here.cached('p1')?.last_heartbeat === beat, "the other proxy's heartbeat in this proxy's inventory", REFRESH_DEBOUNCE_MS + 3_000);
    } finally {
      here.close();
    }
  });

  test('a node flipping its labels on every heartbeat (a stale state: answered at once) makes at most NODE_CHANGE_RATE_LIMIT node writes; it stays live and the last labels land later', async () => {
    // Before: every heartbeat wrote the node item (and, on PostgreSQL, told every proxy to re-read it): 100 writes for 100 heartbeats.
    const t = await token();
    const r = await join_(t, 'flip1');
    const put = rt.store.items.put.bind(rt.store.items);
    let writes = 0;
    rt.store.items.put = ((...a: Parameters<typeof put>) => (a[0] === 'node' && a[1] === 'flip1' && writes++, put(...a))) as typeof put;
    try {
      for (let i = 0; i < 100; i++) {
        const answer = await nodes.heartbeat({ name: 'flip1', addr: '127.0.0.1:2222', labels: { team: `t${i}` }, state: 'stale' }, `Bearer ${r.credential}`, '127.0.0.9', never);
        assert.equal(answer.state, r.state, 'every heartbeat is answered');
      }
      assert.ok(writes <= NODE_CHANGE_RATE_LIMIT.burst + 1, `${writes} node writes for 100 label flips`);
      assert.ok(inventory.nodes().some((n) => n.name === 'flip1'), 'the node stays live');
      now += 60_000; // the budget refills: the labels it sends now are stored
      await nodes.heartbeat({ name: 'flip1', addr: '127.0.0.1:2222', labels: { team: 'last' }, state: 'stale' }, `Bearer ${r.credential}`, '127.0.0.9', never);
      assert.deepEqual((await rt.store.items.get<{ labels: Record<string, string> }>('node', 'flip1'))!.value.labels, { team: 'last' });
    } finally {
      rt.store.items.put = put;
    }
  });

  test('tokens are stored as hashes: ls shows ids, rm takes the token or the id', async () => {
    const t = await token();
    const all = await listTokens(rt.store.items);
    assert.ok(!JSON.stringify(all).includes(t));
    const items = await rt.store.items.list('token');
    assert.ok(!JSON.stringify(items).includes(t));
    await removeToken(t, { items: rt.store.items, audit: rt.audit });
    await assert.rejects(removeToken(t, { items: rt.store.items, audit: rt.audit }), /no join token/);
  });
});
