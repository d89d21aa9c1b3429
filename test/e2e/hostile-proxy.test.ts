/**
 * `tsh login` against a HOSTILE proxy (or anything on the path of an
 * `--insecure` login): a real HTTPS server speaking the API that seals
 * crafted answers to tsh's key (test/helpers/hostile-proxy.ts), the real
 * built tsh, and real OpenSSH (`ssh -G`) reading the ~/.ssh/config tsh wrote.
 *
 * The rule under test: a login to one cluster never changes how ssh reaches
 * a host outside that cluster's own names. A malformed answer is refused
 * before anything is saved; a well-formed name outside the cluster, or one
 * another profile routes, is left out with a note.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { driveLogin, makeTls, startHostileProxy, type HostileCraft, type HostileProxy } from '../helpers/hostile-proxy.js';
import { builtProgram, requireTool, run, tempDir } from '../helpers/tools.js';

const USER_CONFIG = 'Host github.com\n    User git\n\nHost *\n    ServerAliveInterval 30\n';

// Each test has its own proxies and HOME, so they run a few at a time.
describe('tsh login against a hostile proxy', { concurrency: 3 }, () => {
  const tmp = tempDir('hostile-e2e');
  let tls: { key: string; cert: string };
  const proxies: HostileProxy[] = [];
  let homes = 0;
  const pwned = join(tmp.dir, 'pwned');

  before(async () => {
    requireTool('ssh', 'apt-get install -y openssh-client');
    tls = await makeTls(tmp.dir);
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    tmp.cleanup();
  });

  /** A hostile proxy answering with `craft` (default: honest-looking, cluster example.test, node node1). */
  async function hostile(craft: HostileCraft = {}, cluster = 'example.test', nodes = ['node1']): Promise<HostileProxy> {
    const p = await startHostileProxy(tls, cluster, nodes, craft);
    proxies.push(p);
    return p;
  }

  /** A fresh HOME with a user's own ~/.ssh/config, and the environment tsh and ssh run with. */
  function freshHome(): { home: string; env: NodeJS.ProcessEnv } {
    const home = join(tmp.dir, `home${++homes}`);
    mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 });
    writeFileSync(join(home, '.ssh', 'config'), USER_CONFIG, { mode: 0o600 });
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh') };
    for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'SSH_AUTH_SOCK', 'TSH_PROXY']) delete env[k];
    return { home, env };
  }

  /** Every file under HOME with its content: what a refused login must leave exactly as it was. */
  function snapshot(home: string): Record<string, string> {
    const out: Record<string, string> = {};
    const walk = (d: string) => {
      for (const f of readdirSync(d)) {
        const p = join(d, f);
        if (statSync(p).isDirectory()) walk(p);
        else if (f !== '.lock') out[p.slice(home.length)] = readFileSync(p, 'utf8');
      }
    };
    walk(home);
    return out;
  }

  /** What real OpenSSH makes of a destination with the config tsh wrote. */
  async function sshG(home: string, dest: string): Promise<string> {
    const r = await run('ssh', ['-F', join(home, '.ssh', 'config'), '-G', dest]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  }

  /** Asserts github.com (and any host outside example.test) is reached the way the user's own config says. */
  async function assertUntouched(home: string): Promise<void> {
    for (const dest of ['github.com', 'db.other.test', 'com']) {
      const g = await sshG(home, dest);
      assert.doesNotMatch(g, /^proxycommand /m, `${dest} must not go through a proxy:\n${g}`);
      assert.doesNotMatch(g, /\.tsh/, `${dest} must not use tsh's known_hosts:\n${g}`);
    }
    assert.match(await sshG(home, 'github.com'), /^user git$/m, "the user's own Host github.com section still applies");
  }

  /** Every @cert-authority pattern in tsh's known_hosts. */
  function caPatterns(home: string): string[] {
    const file = join(home, '.tsh', 'known_hosts');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('@cert-authority'))
      .flatMap((l) => l.split(' ')[1]!.split(','));
  }

  const proxyOf = (p: HostileProxy, host = '127.0.0.1') => `${host}:${p.port}`;

  test('an honest-looking answer logs in; ssh reaches only the cluster through the proxy', async () => {
    const evil = await hostile();
    const { home, env } = freshHome();
    const r = await driveLogin(proxyOf(evil), env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(await sshG(home, 'node1'), /^proxycommand .*proxy ssh/m);
    assert.match(await sshG(home, 'web.example.test'), /^proxycommand .*proxy ssh/m);
    await assertUntouched(home);
    assert.deepEqual(caPatterns(home).sort(), ['*.example.test', '[127.0.0.1]:3023', 'node1'].sort());
  });

  // More shapes (node?, *.com, quotes, line breaks, 300 characters...) in test/api/names.test.ts and test/client/hostile-guards.test.ts.
  for (const bad of ['*', '!x', 'a b', '-oProxyCommand=sh']) {
    test(`node name ${JSON.stringify(bad.slice(0, 30))} from the proxy: login refused, nothing saved`, async () => {
      const evil = await hostile({ result: (r) => ({ ...r, nodes: ['node1', bad] }) });
      const { home, env } = freshHome();
      const before = snapshot(home);
      const r = await driveLogin(proxyOf(evil), env);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /login answer is not valid: nodes\[1\]/);
      assert.match(r.page, /Login failed/);
      assert.deepEqual(snapshot(home), before, 'nothing under HOME changed');
      await assertUntouched(home);
    });
  }

  test('node names outside the cluster (github.com, an IP, the proxy itself) are left out with a note; the login works', async () => {
    const evil = await hostile({ result: (r) => ({ ...r, nodes: ['node1', 'github.com', 'example.test', '10.0.0.5', '127.0.0.1', 'web.example.test'] }) });
    const { home, env } = freshHome();
    const r = await driveLogin(proxyOf(evil), env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /node "github\.com" of example\.test is not added to ~\/\.ssh\/config: it is outside example\.test/);
    assert.match(r.stderr, /node "10\.0\.0\.5" .*an IP address/);
    assert.match(r.stderr, /node "127\.0\.0\.1" .*the proxy's own host/);
    await assertUntouched(home);
    for (const dest of ['10.0.0.5', '127.0.0.1']) assert.doesNotMatch(await sshG(home, dest), /^proxycommand /m, dest);
    assert.match(await sshG(home, 'web.example.test'), /^proxycommand /m);
    assert.deepEqual(caPatterns(home).sort(), ['*.example.test', '[127.0.0.1]:3023', 'node1', 'web.example.test'].sort());
  });

  test("another profile's node1 is not taken over: tsh names the profile that keeps it and the long form", async () => {
    const { home, env } = freshHome();
    const other = await hostile({}, 'a.test', ['node1', 'web']);
    const a = await driveLogin(proxyOf(other, 'localhost'), env);
    assert.equal(a.code, 0, a.stderr);
    const evil = await hostile({ result: (r) => ({ ...r, nodes: ['node1', 'web', 'db'] }) });
    const b = await driveLogin(proxyOf(evil), env);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /node "node1" of example\.test is not added .*the profile localhost already routes it; reach this one as node1\.example\.test/);
    assert.match(b.stderr, /node "web" of example\.test .*the profile localhost already routes it/);
    // node1 and web still go to the first cluster's proxy; db and *.example.test to the second.
    assert.match(await sshG(home, 'node1'), new RegExp(`^proxycommand .*--proxy=localhost:${other.port} `, 'm'));
    assert.match(await sshG(home, 'web'), new RegExp(`^proxycommand .*--proxy=localhost:${other.port} `, 'm'));
    assert.match(await sshG(home, 'db'), new RegExp(`^proxycommand .*--proxy=127\\.0\\.0\\.1:${evil.port} `, 'm'));
    assert.match(await sshG(home, 'node1.example.test'), new RegExp(`^proxycommand .*--proxy=127\\.0\\.0\\.1:${evil.port} `, 'm'));
    const known = readFileSync(join(home, '.tsh', 'known_hosts'), 'utf8');
    const evilLine = known.split('\n').find((l) => l.endsWith('jumpgate-cluster=example.test'));
    assert.ok(evilLine, known);
    assert.deepEqual(evilLine.split(' ')[1]!.split(',').sort(), ['*.example.test', '[127.0.0.1]:3023', 'db'].sort(), "the second cluster's CA is not trusted for node1 or web");
    await assertUntouched(home);
  });

  const refusedClusters: [string, string, RegExp][] = [
    ['com', 'a single label', /cluster_name: not a cluster name/],
    ['example.test\nMatch exec "touch PWNED"', 'a line break and Match exec', /cluster_name: not a cluster name/],
  ];
  for (const [name, what, message] of refusedClusters) {
    const crafted = name.replace('PWNED', pwned);
    test(`a cluster name with ${what} in the ping answer is refused before the login starts; nothing saved`, async () => {
      const evil = await hostile({ ping: (p) => ({ ...p, cluster_name: crafted }), result: (r) => ({ ...r, cluster_name: crafted }) });
      const { home, env } = freshHome();
      const before = snapshot(home);
      const starts = evil.starts;
      const r = await driveLogin(proxyOf(evil), env);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\nMatch exec/, 'the line break is escaped on the terminal');
      assert.equal(evil.starts, starts, 'no login was started');
      assert.deepEqual(snapshot(home), before);
    });
    test(`a cluster name with ${what} only in the sealed answer is refused; nothing saved, tsh config has nothing to print`, async () => {
      const evil = await hostile({ result: (r) => ({ ...r, cluster_name: crafted }) });
      const { home, env } = freshHome();
      const before = snapshot(home);
      const r = await driveLogin(proxyOf(evil), env);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, message);
      assert.deepEqual(snapshot(home), before);
      const cfg = await run(process.execPath, [builtProgram('tsh'), 'config'], { env });
      assert.equal(cfg.code, 4, cfg.stderr);
      assert.equal(cfg.stdout, '');
      await run('ssh', ['-F', join(home, '.ssh', 'config'), '-G', 'node1']);
      assert.ok(!existsSync(pwned), 'no Match exec ran');
      await assertUntouched(home);
    });
  }

  test('a cluster name another profile uses, or one inside or around it, is refused; the first login is kept', async () => {
    const { home, env } = freshHome();
    const other = await hostile({}, 'a.test', ['node1', 'web']);
    assert.equal((await driveLogin(proxyOf(other, 'localhost'), env)).code, 0);
    const before = snapshot(home);
    for (const cluster of ['a.test', 'x.a.test', 'A.TEST']) {
      const evil = await hostile({ ping: (p) => ({ ...p, cluster_name: cluster }), result: (r) => ({ ...r, cluster_name: cluster }) });
      const r = await driveLogin(proxyOf(evil), env);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /the cluster a\.test of the profile localhost: both would route the same host names/);
      assert.match(r.stderr, /tsh logout --proxy=localhost/);
      assert.match(r.page, /Login failed/, 'the browser is told too');
      assert.deepEqual(snapshot(home), before, `${cluster}: nothing changed`);
    }
  });

  test('an SSH proxy address outside the proxy host and the cluster (github.com:22) is refused: the CA would be trusted there', async () => {
    const evil = await hostile({ result: (r) => ({ ...r, ssh_public_addr: 'github.com:22' }) });
    const { home, env } = freshHome();
    const before = snapshot(home);
    const r = await driveLogin(proxyOf(evil), env);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /SSH service is at "github\.com:22", which is neither 127\.0\.0\.1 nor a name under example\.test/);
    assert.deepEqual(snapshot(home), before);
  });

  const badFields: [string, (r: Record<string, unknown>) => Record<string, unknown>, RegExp][] = [
    ['a user name with a line break', (r) => ({ ...r, username: 'alice\nHost *' }), /username: not a plain name/],
    ['a host CA that is not a key', (r) => ({ ...r, host_ca: ['ssh-ed25519 AAAA'] }), /host_ca\[0\]: not an OpenSSH public key/],
    ['a host CA line with a second line', (r) => ({ ...r, host_ca: [`${String((r['host_ca'] as string[])[0])}\n@cert-authority * ssh-ed25519 AAAA`] }), /host_ca\[0\]: not one OpenSSH key line/],
    ['a certificate for another key', (r) => ({ ...r, certificate: String((r['host_ca'] as string[])[0]) }), /certificate tsh cannot read|not a user certificate/],
  ];
  for (const [what, craft, message] of badFields) {
    test(`a sealed answer with ${what} is refused; nothing saved`, async () => {
      const evil = await hostile({ result: (r) => craft(r as unknown as Record<string, unknown>) });
      const { home, env } = freshHome();
      const before = snapshot(home);
      const r = await driveLogin(proxyOf(evil), env);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, message);
      assert.deepEqual(snapshot(home), before);
    });
  }

  test('an API error with terminal escape sequences is printed escaped', async () => {
    const evil = await hostile({ pingStatus: 500, ping: () => ({ error: { code: 'E_BOOM', message: 'boom \x1b]0;owned\x07 \r\nfake: Logged in' } }) });
    const { env } = freshHome();
    const r = await driveLogin(proxyOf(evil), env);
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /[\x07\x1b\r]/);
    assert.match(r.stderr, /boom \\x1b\]0;owned\\x07 \\x0d\\x0afake: Logged in/);
  });
});
