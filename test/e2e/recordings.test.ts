/**
 * Recordings end to end: a recording made by the real recorder in the data
 * directory of a real `jumpgate start`, listed and replayed by the built tsh
 * over the proxy's HTTPS API (requests signed with each user's certificate),
 * listed and exported by tctl, and read by the real `asciinema cat`. Who may
 * read what: own recordings; all with review_sessions; another user's and
 * an unknown session id answer the same. A recording whose proxy was killed
 * (kill -9) mid-session replays up to its last flush.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadServerConfig, type ServerConfig } from '../../src/config/index.js';
import { startRecording } from '../../src/server/recording/recorder.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { testRuntime } from '../helpers/runtime.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { REPO, requireTool, run, runProgram, tempDir } from '../helpers/tools.js';

const SESSION = '0b7c2f1e-5d3a-4c1b-9e8f-7a6b5c4d3e2f';
const OTHER = '1c8d3a2f-6e4b-4d2c-8f9a-8b7c6d5e4f3a';

describe('recordings: tsh recordings ls, tsh play, tctl recordings, asciinema', () => {
  let tmp: { dir: string; cleanup: () => void };
  let cluster: Cluster;
  let config: ServerConfig;
  let alice: FakeLogin;
  let bob: FakeLogin;
  let carol: FakeLogin;
  const tsh = (who: FakeLogin, args: string[]) => runProgram('tsh', args, { env: who.env });
  const tctl = (args: string[]) => runProgram('tctl', ['--config', cluster.configFile, ...args], { env: { ...process.env, USER: 'root' } });

  before(async () => {
    requireTool('asciinema', 'apt-get install asciinema');
    tmp = tempDir('recordings-e2e');
    cluster = await startCluster(
      tmp.dir,
      `cluster_name: rec.test
data_dir: ./data
proxy:
  web_listen_addr: 127.0.0.1:0
  ssh_listen_addr: 127.0.0.1:0
roles:
  user: { logins: ["{{username}}"], node_labels: { "*": "*" } }
  auditor: { logins: ["{{username}}"], review_sessions: true }
`,
    );
    config = loadServerConfig(cluster.configFile);
    const web = `localhost:${cluster.webPort}`;
    [alice, bob, carol] = await Promise.all(
      [
        ['alice', ['user']],
        ['bob', ['user']],
        ['carol', ['auditor']],
      ].map(([u, roles]) => fakeLogin({ config, home: join(tmp.dir, u as string), username: u as string, roles: roles as string[], webProxyAddr: web, sshProxyAddr: `localhost:${cluster.sshPort}`, sshConfig: false })),
    ) as [FakeLogin, FakeLogin, FakeLogin];

    // alice's session, recorded by the real recorder on a pinned clock: 0.5 s, then an idle hour, then 0.25 s.
    const rt = await testRuntime(config);
    let now = Date.parse('2026-11-30T08:00:00Z');
    const pinned = { ...rt, clock: () => new Date(now) };
    const rec = await startRecording(pinned, { sessionId: SESSION, user: 'alice', login: 'alice', node: 'node1', clientAddr: '127.0.0.1', cols: 80, rows: 24, term: 'xterm-256color', recordInput: false });
    const euro = Buffer.from('€');
    now += 500;
    rec.output(Buffer.from('\x1b[31mred\x1b[0m and \x1b]0;evil title\x07plain '));
    rec.output(euro.subarray(0, 1));
    rec.output(Buffer.concat([euro.subarray(1), Buffer.from('\r\n')]));
    now += 3_600_000;
    rec.output(Buffer.from('after an hour\x07\r\n'));
    now += 250;
    rec.output(Buffer.from('exit\r\n'));
    await rec.close();
    await rt.audit.close();
    await rt.store.close();
  });
  after(async () => {
    await cluster?.stop();
    tmp?.cleanup();
  });

  test('tsh recordings ls: alice sees her session, bob none, carol (review_sessions) every one', async () => {
    const [a, b, c] = await Promise.all([tsh(alice, ['recordings', 'ls', '--format=json']), tsh(bob, ['recordings', 'ls', '--format=json']), tsh(carol, ['recordings', 'ls'])]);
    assert.equal(a.code, 0, a.stderr);
    const list = JSON.parse(a.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(
      list.map((r) => [r['session_id'], r['user'], r['login'], r['node'], r['start'], r['duration_ms']]),
      [[SESSION, 'alice', 'alice', 'node1', '2026-11-30T08:00:00.000Z', 3_600_750]],
    );
    assert.equal(b.code, 0, b.stderr);
    assert.deepEqual(JSON.parse(b.stdout), []);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /^Session ID\s+User\s+Login\s+Node\s+Start\s+Duration$/m);
    assert.match(c.stdout, new RegExp(`^${SESSION}\\s+alice\\s+alice\\s+node1\\s+2026-11-30T08:00:00Z\\s+1h1s$`, 'm'));
  });

  test('tsh play --format=text: the output only, escape sequences removed and control characters escaped; --format=cast: the file as stored', async () => {
    const text = await tsh(alice, ['play', SESSION, '--format=text']);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout, 'red and plain €\nafter an hour\\x07\nexit\n');
    const cast = await tsh(carol, ['play', SESSION, '--format=cast']);
    assert.equal(cast.code, 0, cast.stderr);
    assert.equal(cast.stdout, readFileSync(join(cluster.dataDir, 'recordings', `${SESSION}.cast`), 'utf8'));
  });

  test("bob cannot replay alice's session, and the refusal reads exactly like an unknown session id", async () => {
    const [theirs, unknown] = await Promise.all([tsh(bob, ['play', SESSION, '--format=cast']), tsh(bob, ['play', OTHER, '--format=cast'])]);
    assert.equal(theirs.code, 1);
    assert.equal(theirs.stdout, '');
    assert.match(theirs.stderr, /no recording of that session that you may read/);
    assert.equal(theirs.stderr, unknown.stderr);
    const audit = cluster.audit().filter((e) => e['event'] === 'recording.read');
    assert.ok(!audit.some((e) => e['user'] === 'bob'), 'nothing was read by bob');
  });

  test('tsh play to a terminal replays the bytes as recorded, with the idle hour cut to the idle limit', async () => {
    requireTool('script', 'apt-get install bsdutils');
    const cmd = [process.execPath, join(REPO, 'bin', 'tsh'), 'play', SESSION, '--speed=10', '--idle-limit=1'].map((w) => `'${w}'`).join(' ');
    const r = await run('script', ['-qec', cmd, '/dev/null'], { env: alice.env, timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(r.stdout.includes('\x1b[31mred\x1b[0m'), 'colours pass through to the terminal');
    assert.match(r.stdout, /pauses longer than 1s are cut to 1s/);
    assert.match(r.stdout, /after an hour/);
  });

  test('tctl recordings ls and export; asciinema cat reads the exported file; reads are audited', async () => {
    const ls = await tctl(['recordings', 'ls', '--format=json']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.ok((JSON.parse(ls.stdout) as Array<{ session_id: string }>).some((r) => r.session_id === SESSION));
    const out = join(tmp.dir, 'export.cast');
    const ex = await tctl(['recordings', 'export', SESSION, `--out=${out}`]);
    assert.equal(ex.code, 0, ex.stderr);
    assert.deepEqual(readFileSync(out), readFileSync(join(cluster.dataDir, 'recordings', `${SESSION}.cast`)));
    const cat = await run('script', ['-qec', `asciinema cat '${out}'`, '/dev/null'], { timeoutMs: 20_000 });
    assert.equal(cat.code, 0, cat.stdout + cat.stderr);
    assert.match(cat.stdout, /red.*and.*plain €/);
    assert.match(cat.stdout, /after an hour/);
    const reads = cluster.audit().filter((e) => e['event'] === 'recording.read');
    assert.ok(reads.some((e) => e['user'] === 'alice' && e['via'] === 'api' && e['owner'] === 'alice' && e['session_id'] === SESSION));
    assert.ok(reads.some((e) => e['user'] === 'carol' && e['via'] === 'api' && e['owner'] === 'alice'));
    assert.ok(reads.some((e) => e['user'] === 'root (tctl)' && e['via'] === 'tctl'));
  });

  test('a recording whose proxy was killed (kill -9) mid-session replays up to its last flush', async () => {
    const id = '2d9e4b3a-7f5c-4e3d-9a0b-9c8d7e6f5a4b';
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/e2e/fixtures/recording-writer.ts', cluster.configFile, id], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('flushed')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`the writer exited (${code}) before it flushed`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const ls = await tsh(alice, ['recordings', 'ls', '--format=json']);
    const cut = (JSON.parse(ls.stdout) as Array<Record<string, unknown>>).find((r) => r['session_id'] === id);
    assert.ok(cut, ls.stdout + ls.stderr);
    assert.equal(cut['duration_ms'], undefined, 'no end was written');
    assert.ok((cut['size'] as number) > 0);
    const text = await tsh(alice, ['play', id, '--format=text']);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout, 'typed before the crash\n');
  });
});
