/**
 * Several proxies behind one address (issue 12, "How it is checked"): a real
 * HAProxy (mode tcp for the HTTPS and SSH ports, test/helpers/haproxy.ts) in
 * front of real `jumpgate start` processes, a private OpenSSH node, the
 * development IdP, plain OpenSSH and the built tsh/tctl.
 *
 * - One proxy on `dir` behind HAProxy: tsh login and plain ssh through the
 *   balancer's ports (what a single-host install with a balancer sees).
 * - Two proxies on one real PostgreSQL (test/helpers/postgres.ts): a login
 *   started on one finishes on the other; a `tctl auth rotate` is seen by
 *   both within 5 s; one ordered audit log naming each proxy; the database
 *   stopped and started while both run; `kill -9` of one proxy under plain
 *   ssh load (only sessions in flight on it may fail); the database
 *   unreachable at start.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { startHaCluster, sshArgs, sshShortArgs, ROOT_ACCOUNT, type HaCluster } from '../helpers/ha-cluster.js';
import { startHaproxy } from '../helpers/haproxy.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { HEADLESS_CALLBACK, browserlessLogin, headlessLogin, loopbackDispatcher, startHeadlessLogin, walkLogin } from '../helpers/headless-login.js';
import { freePort } from '../helpers/sshd.js';
import { acceptsTcp, builtProgram, requireTool, run, runProgram, tempDir, waitFor } from '../helpers/tools.js';

const atProxyCallback = (u: URL) => u.pathname === '/v1/login/oidc/callback';
const atHeadlessCallback = (u: URL) => u.origin === new URL(HEADLESS_CALLBACK).origin;

/** `tsh login --browser=none` against `proxy` in a fresh home, the person's part walked over HTTP as root. */
async function tshLoginThrough(home: string, proxy: string): Promise<{ code: number | null; stderr: string; env: NodeJS.ProcessEnv }> {
  mkdirSync(home, { recursive: true });
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh') };
  for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'SSH_AUTH_SOCK', 'TSH_PROXY']) delete env[k];
  const child = spawn(process.execPath, [builtProgram('tsh'), 'login', `--proxy=${proxy}`, '--insecure', '--browser=none', '--keystore=file'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await waitFor(() => /^http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32}$/m.test(stderr) || child.exitCode !== null, 'tsh login printing its URL', 20_000);
  const url = /^(http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32})$/m.exec(stderr)?.[1];
  if (!url) return { code: await done, stderr, env };
  const dispatcher = loopbackDispatcher(30);
  try {
    const end = await browserlessLogin(url, dispatcher, ROOT_ACCOUNT.login);
    assert.match(end.text ?? '', /You are logged in/, `the last page: ${end.text?.slice(0, 300)}`);
  } finally {
    await dispatcher.close();
  }
  return { code: await done, stderr, env };
}

describe('one proxy on dir behind HAProxy (mode tcp): tsh login and plain ssh through the balancer', () => {
  const tmp = tempDir('ha-dir');
  let c: HaCluster;
  let ssh: string;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    c = await startHaCluster({ dir: tmp.dir, proxies: 1, storage: 'dir', haproxy: true, oidc: { accounts: [ROOT_ACCOUNT] } });
  });
  after(async () => {
    await c?.stop();
    tmp.cleanup();
  });

  test('tsh login through HAProxy\'s HTTPS port, then plain ssh with the generated block through HAProxy\'s SSH port', { timeout: 60_000 }, async () => {
    const home = join(tmp.dir, 'home');
    const login = await tshLoginThrough(home, `127.0.0.1:${c.webPort}`);
    assert.equal(login.code, 0, login.stderr);
    const r = await run(ssh, ['-F', join(home, '.ssh', 'config'), '-o', 'BatchMode=yes', 'root@node1', 'echo', 'through-haproxy'], { env: login.env, timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'through-haproxy');
    const starts = c.proxies[0]!.audit().filter((e) => e['event'] === 'session.start');
    assert.ok(starts.length >= 1, 'the proxy audited the session');
    // Every client appears to come from the balancer (README: a known limitation of a TCP balancer).
    assert.ok(starts.every((e) => String(e['client_addr']).startsWith('127.0.0.1')), JSON.stringify(starts));
  });

  test('plain ssh -J through HAProxy with a certificate from tctl auth sign --user', { timeout: 30_000 }, async () => {
    const r = await run(ssh, sshArgs(c, 'node1', ['echo', 'jump-ok']), { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'jump-ok');
  });
});

describe('the HAProxy config (test/helpers/haproxy.ts, the README example)', () => {
  const tmp = tempDir('ha-redispatch');
  after(() => tmp.cleanup());

  test('a connection refused by a dead backend that the health check has not marked DOWN yet goes to a live one (retries + redispatch)', { timeout: 30_000 }, async () => {
    const listen = (tag: string) =>
      new Promise<Server>((resolve) => {
        const srv = createServer((s) => {
          s.on('error', () => {});
          s.end(tag);
        });
        srv.listen(0, '127.0.0.1', () => resolve(srv));
      });
    const [a, b] = [await listen('A'), await listen('B')];
    const port = (s: Server) => (s.address() as AddressInfo).port;
    const h = await startHaproxy({ dir: tmp.dir, web: [port(a), port(b)], ssh: [port(a), port(b)] });
    try {
      await h.waitForStatus('web', 'jumpgate1', 'UP');
      await h.waitForStatus('web', 'jumpgate2', 'UP');
      const read = () => firstLine(h.webPort);
      const before = [await read(), await read()].sort();
      assert.deepEqual(before, ['A', 'B'], 'round robin over both');
      // Health checks off: A stays UP in HAProxy's eyes for the rest of the test, so only redispatch can save its connections.
      for (const server of ['jumpgate1', 'jumpgate2']) await h.admin(`disable health web/${server}`);
      await new Promise<void>((r) => a.close(() => r()));
      const afterClose = [];
      for (let i = 0; i < 4; i++) afterClose.push(await read());
      assert.deepEqual(afterClose, ['B', 'B', 'B', 'B']);
      const stats = await h.stats();
      const row = stats.find((s) => s.proxy === 'web' && s.server === 'BACKEND');
      assert.ok((row?.redispatches ?? 0) >= 1, `HAProxy redispatched: ${JSON.stringify(row)}`);
      const aStatus = stats.find((s) => s.proxy === 'web' && s.server === 'jumpgate1')?.status ?? '';
      assert.doesNotMatch(aStatus, /DOWN|MAINT/, `A was never taken out (${aStatus})`);
    } finally {
      await h.stop();
      a.close();
      b.close();
    }
  });
});

/** One plain ssh session: when it started and ended (ms since the epoch) and how it exited. */
interface SessionRun {
  start: number;
  end: number;
  code: number | null;
  stderr: string;
  long: boolean;
}

describe('two proxies on PostgreSQL behind HAProxy', () => {
  const tmp = tempDir('ha-pg');
  let c: HaCluster;
  let ssh: string;
  const dispatcher = loopbackDispatcher(31);

  /** Audit events in the database, in the cluster's one order, as `tctl audit ls --format=json` prints them. */
  const auditRows = async (): Promise<Array<Record<string, unknown>>> => {
    const r = await c.tctl(['audit', 'ls', '--format=json', '--limit=10000']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  };

  let pg: TestPostgres | undefined;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    // Never crashed here (the database is stopped and started: a fast shutdown keeps every commit),
    // so without fsync: the proxies' and tctl's writes wait on no disk flush.
    pg = await startPostgres({ durable: false });
    c = await startHaCluster({ dir: tmp.dir, proxies: 2, storage: 'postgres', haproxy: true, oidc: { accounts: [ROOT_ACCOUNT] }, pg });
  });
  after(async () => {
    await dispatcher.close();
    await c?.stop();
    await pg?.stop();
    tmp.cleanup();
  });

  test('a login started on proxy A finishes on proxy B, and the sealed answer opens', { timeout: 30_000 }, async () => {
    const [a, b] = c.proxies as [NonNullable<HaCluster['proxies'][0]>, NonNullable<HaCluster['proxies'][0]>];
    const started = await startHeadlessLogin(a.webPort, dispatcher);
    const atCallback = await walkLogin(started.loginUrl, { dispatcher, login: ROOT_ACCOUNT.login, stopAt: atProxyCallback });
    assert.ok(atProxyCallback(atCallback.url), `the IdP sent the browser back to the proxy: ${atCallback.url}`);
    assert.equal(atCallback.url.port, String(c.webPort), 'the callback names the public address (HAProxy)');
    // Deliver it to B's own port, not through the balancer: the pending login must come from the database.
    const toB = new URL(atCallback.url);
    toB.port = String(b.webPort);
    const end = await walkLogin(toB, { dispatcher, stopAt: atHeadlessCallback });
    assert.ok(atHeadlessCallback(end.url), `B answered with the sealed result, not ${end.url} (HTTP ${end.status}): ${end.text?.slice(0, 300)}`);
    const result = started.finish(end.url);
    assert.deepEqual(result.logins, ['root']);
    // Single use across proxies: the same callback delivered to A again is refused.
    const again = new URL(atCallback.url);
    again.port = String(a.webPort);
    const replay = await walkLogin(again, { dispatcher, stopAt: atHeadlessCallback });
    assert.ok(!atHeadlessCallback(replay.url) || replay.url.searchParams.has('error'), 'a callback is used once across all proxies');
  });

  test('a whole tsh login through HAProxy, then plain ssh with its block through HAProxy', { timeout: 60_000 }, async () => {
    const home = join(tmp.dir, 'home');
    const login = await tshLoginThrough(home, `127.0.0.1:${c.webPort}`);
    assert.equal(login.code, 0, login.stderr);
    for (let i = 0; i < 2; i++) {
      // Round robin: two sessions, one on each proxy.
      const r = await run(ssh, ['-F', join(home, '.ssh', 'config'), '-o', 'BatchMode=yes', 'root@node1', 'echo', `ok${i}`], { env: login.env, timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), `ok${i}`);
    }
  });

  test('tctl auth rotate --type=user against the database is seen by both proxies within 5 s', { timeout: 60_000 }, async (t) => {
    const rotated = await c.tctl(['auth', 'rotate', '--type=user', '--grace-period=0']);
    assert.equal(rotated.code, 0, rotated.stderr);
    const t0 = Date.now();
    await c.refreshUserCa();
    // A certificate from the new key only (grace 0: the old key is no longer trusted anywhere).
    const signed = await c.tctl(['auth', 'sign', '--user=root', '--roles=user', '--format=openssh', `--out=${c.userKeyFile}`]);
    assert.equal(signed.code, 0, signed.stderr);
    const seenAfter: number[] = [];
    for (let i = 0; i < c.proxies.length; i++) {
      for (;;) {
        // Attempts are slow on a busy machine (two tctl runs, two SSH handshakes): an attempt refused counts
        // against the proxy only when it started 5 s or more after the rotation.
        const attempt = Date.now();
        const r = await run(ssh, sshShortArgs(c, 'node1', c.jumpAlias(i)), { timeoutMs: 20_000 });
        if (r.code === 0) {
          seenAfter.push(Date.now() - t0);
          break;
        }
        assert.ok(attempt - t0 < 5_000, `proxy ${i + 1} still refused a certificate of the new user CA key ${attempt - t0} ms after the rotation: ${r.stderr}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    t.diagnostic(`the rotation was accepted through proxy 1 and 2 by ${seenAfter.join(' and ')} ms after tctl returned`);
  });

  test('audit events from both proxies land in one ordered log, each with its proxy\'s server_id', { timeout: 60_000 }, async () => {
    // One session through each proxy's own port, one after the other.
    for (let i = 0; i < c.proxies.length; i++) {
      const r = await run(ssh, sshShortArgs(c, 'node1', c.jumpAlias(i)), { timeoutMs: 20_000 });
      assert.equal(r.code, 0, r.stderr);
      // session.end is written when the proxy sees the connection close: wait for it before the next.
      const ends = async () => (await auditRows()).filter((e) => e['event'] === 'session.end').length;
      const before = await ends();
      const deadline = Date.now() + 10_000;
      while ((await ends()) <= before - 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    }
    const rows = await auditRows();
    const seqs = rows.map((r) => Number(r['seq']));
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'one order');
    assert.equal(new Set(seqs).size, seqs.length, 'no two events share a position');
    const starts = rows.filter((r) => r['event'] === 'session.start' && r['via'] === 'direct-tcpip');
    const [viaA, viaB] = starts.slice(-2);
    assert.ok(viaA && viaB, `two direct-tcpip sessions audited: ${JSON.stringify(starts)}`);
    assert.ok(typeof viaA['server_id'] === 'string' && viaA['server_id'] !== '', 'server_id set');
    assert.notEqual(viaA['server_id'], viaB['server_id'], 'each proxy writes its own server_id');
    const ids = new Set(rows.map((r) => r['server_id']));
    assert.ok(ids.size >= 3, `events from both proxies and tctl: ${[...ids].join(', ')}`);
    // The table itself (what tctl read): one row per event, the same writers.
    const table = await c.pg!.psql('SELECT seq, server_id FROM audit_events ORDER BY seq', c.database);
    const tableRows = table.split('\n').filter((l) => l.trim() !== '').map((l) => l.split('|'));
    assert.deepEqual(tableRows.map(([seq]) => Number(seq)).slice(-rows.length), seqs, 'tctl audit ls shows the table in its order');
    assert.deepEqual(new Set(tableRows.map(([, id]) => id)), ids);
  });

  test('the database stopped: a running session goes on, a new login gets STORE_UNAVAILABLE (503), both recover by themselves', { timeout: 90_000 }, async (t) => {
    const session = spawn(ssh, sshArgs(c, 'node1', ['cat']), { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    session.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    session.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const ended = new Promise<number | null>((r) => session.on('exit', (code) => r(code)));
    session.stdin!.write('before\n');
    await waitFor(() => out.includes('before\n') || session.exitCode !== null, 'the session echoing', 20_000);
    assert.ok(out.includes('before\n'), err);
    await c.pg!.stopServer();
    try {
      session.stdin!.write('during\n');
      await waitFor(() => out.includes('during\n') || session.exitCode !== null, 'the session echoing with the database down', 10_000);
      assert.ok(out.includes('during\n'), `the running session goes on: ${err}`);
      for (const port of [c.webPort, ...c.proxies.map((p) => p.webPort)]) {
        await assert.rejects(startHeadlessLogin(port, dispatcher), (e: Error) => {
          assert.match(e.message, /HTTP 503 STORE_UNAVAILABLE/);
          assert.match(e.message, /state store (is )?unavailable/);
          assert.doesNotMatch(e.message, new RegExp(new URL(c.pg!.connString).password));
          return true;
        });
      }
    } finally {
      await c.pg!.start();
    }
    const t0 = Date.now();
    for (const port of c.proxies.map((p) => p.webPort)) {
      for (;;) {
        try {
          await headlessLogin(port, dispatcher, ROOT_ACCOUNT.login);
          break;
        } catch (e) {
          assert.ok(Date.now() - t0 < 15_000, `a proxy did not recover within 15 s of the database's return: ${(e as Error).message}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    }
    t.diagnostic(`both proxies issued a login again ${Date.now() - t0} ms after the database was back`);
    session.stdin!.write('after\n');
    await waitFor(() => out.includes('after\n') || session.exitCode !== null, 'the session echoing after the database returned', 10_000);
    session.stdin!.end();
    assert.equal(await ended, 0, err);
  });

  test('kill -9 of one proxy under plain ssh load: only sessions in flight on it fail, every later one succeeds and is audited', { timeout: 120_000 }, async (t) => {
    const auditedBefore = new Set((await auditRows()).map((r) => r['seq']));
    const runs: SessionRun[] = [];
    let stop = false;
    const one = async (long: boolean) => {
      const start = Date.now();
      const r = await run(ssh, long ? sshArgs(c, 'node1', ['sleep', '4']) : sshShortArgs(c, 'node1'), { timeoutMs: 30_000 });
      runs.push({ start, end: Date.now(), code: r.code, stderr: r.stderr, long });
    };
    const loops = [
      ...Array.from({ length: 4 }, async () => {
        while (!stop) await one(false);
      }),
      ...Array.from({ length: 2 }, async () => {
        while (!stop) await one(true);
      }),
    ];
    // Under way on both proxies first (a busy machine makes each ssh slow: count sessions, not seconds).
    await waitFor(() => runs.length >= 4, 'four sessions before the kill', 30_000);
    process.kill(c.proxies[0]!.pid, 'SIGKILL');
    // The kill has happened when the process is gone (its sockets closed): a connection the kernel still
    // accepted for it while it was being torn down is one of the sessions in flight on it.
    assert.equal(await c.proxies[0]!.exited, 'SIGKILL');
    const killAt = Date.now();
    // The detection window: connections made right after the kill, before the health check marks the proxy
    // DOWN, half of them sent to the dead one by round robin; retries + redispatch must carry each to the live one.
    const banners = [];
    for (let i = 0; i < 6; i++) banners.push(await sshBanner(c.sshPort));
    const downAfterMs = await c.haproxy!.waitForStatus('ssh', 'jumpgate1', 'DOWN');
    assert.deepEqual(banners.filter((b) => !b.startsWith('SSH-2.0-')), [], 'every connection in the detection window reached a live proxy');
    await waitFor(() => runs.filter((r) => r.start > killAt).length >= 8, 'eight sessions started after the kill', 45_000);
    stop = true;
    await Promise.all(loops);
    const stats = (await c.haproxy!.stats()).find((s) => s.proxy === 'ssh' && s.server === 'BACKEND');
    const failed = runs.filter((r) => r.code !== 0);
    const after = runs.filter((r) => r.start > killAt);
    const inWindow = after.filter((r) => r.start <= killAt + downAfterMs);
    t.diagnostic(
      `${runs.length} sessions, ${failed.length} failed (all in flight at the kill), ${after.length} started after the kill ` +
        `(${inWindow.length} before HAProxy marked the proxy DOWN ${downAfterMs} ms after the kill), redispatches ${stats?.redispatches ?? '?'}, retries ${stats?.retries ?? '?'}`,
    );
    assert.ok(after.length >= 4, `sessions started after the kill: ${after.length}`);
    for (const f of failed) assert.ok(f.start < killAt, `a session started ${f.start - killAt} ms after the kill failed (exit ${f.code}): ${f.stderr}`);
    for (const r of after) assert.equal(r.code, 0, r.stderr);

    // The audit log holds a session.start and a session.end for every session whose ssh exited 0.
    const ok = runs.filter((r) => r.code === 0).length;
    const deadline = Date.now() + 10_000;
    let rows: Array<Record<string, unknown>> = [];
    for (;;) {
      rows = (await auditRows()).filter((r) => !auditedBefore.has(r['seq']));
      if (rows.filter((r) => r['event'] === 'session.end').length >= ok || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const startIds = new Set(rows.filter((r) => r['event'] === 'session.start').map((r) => r['session_id']));
    const ends = rows.filter((r) => r['event'] === 'session.end');
    assert.ok(ends.length >= ok, `${ends.length} session.end events for ${ok} sessions that exited 0`);
    assert.ok(startIds.size >= ok, `${startIds.size} session.start events for ${ok} sessions that exited 0`);
    for (const e of ends) assert.ok(startIds.has(e['session_id']), `session.end ${String(e['session_id'])} has its session.start`);
    const servers = new Set(rows.filter((r) => r['event'] === 'session.start').map((r) => r['server_id']));
    assert.equal(servers.size, 2, 'both proxies carried sessions');
    await c.restartProxy(0);
  });

  test('the database unreachable at start: exit 1 at once, naming the address without the password, nothing listening', { timeout: 30_000 }, async () => {
    const dead = await freePort();
    const dir = join(tmp.dir, 'unreachable');
    mkdirSync(dir);
    const [web, sshp] = [await freePort(), await freePort()];
    const keyFile = join(dir, 'storage.key');
    writeFileSync(keyFile, Buffer.alloc(32, 7).toString('base64'), { mode: 0o600 });
    const password = 'S3cretPassw0rd';
    const configFile = join(dir, 'jumpgate.yaml');
    writeFileSync(
      configFile,
      [
        'cluster_name: ha.test',
        `data_dir: ${join(dir, 'data')}`,
        `proxy: { web_listen_addr: "127.0.0.1:${web}", ssh_listen_addr: "127.0.0.1:${sshp}" }`,
        'storage:',
        '  type: postgres',
        `  conn_string: "postgres://jumpgate:${password}@127.0.0.1:${dead}/jumpgate"`,
        `  encryption_key_file: ${keyFile}`,
        '',
      ].join('\n'),
    );
    let listened = false;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        for (const port of [web, sshp]) if (await acceptsTcp(port)) listened = true;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const r = await runProgram('jumpgate', ['start', '--config', configFile], { timeoutMs: 20_000 });
    polling = false;
    await poll;
    assert.equal(r.code, 1, `exit 1, not ${r.code} (${r.signal ?? ''}): ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${dead}`), 'the error names the address');
    assert.match(r.stderr, /state store unavailable|cannot reach|unreachable/i);
    assert.doesNotMatch(r.stderr, new RegExp(password), 'never the password');
    assert.doesNotMatch(r.stdout, /^ready/m);
    assert.equal(listened, false, 'nothing listened');
  });
});

/** Everything a TCP connection to `port` receives until the server closes it, or the error. */
function firstLine(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    s.on('data', (b: Buffer) => (got += b.toString()));
    s.once('error', (e) => resolve(`error: ${e.message}`));
    s.once('close', () => resolve(got));
  });
}

/** The first line a TCP connection to `port` receives (an SSH server's identification string), or the error. */
function sshBanner(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    const timer = setTimeout(() => done(`no banner within 10 s: ${JSON.stringify(got)}`), 10_000);
    const done = (line: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(line);
    };
    s.on('data', (b: Buffer) => {
      got += b.toString('latin1');
      if (got.includes('\n')) done(got.split('\n')[0]!.trim());
    });
    s.once('error', (e) => done(`error: ${e.message}`));
    s.once('close', () => done(`closed: ${JSON.stringify(got)}`));
  });
}
