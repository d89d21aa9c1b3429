/**
 * Floods against a real `jumpgate start` on loopback (dev IdP, OpenSSH node,
 * real tsh and ssh) while a real user logs in and connects:
 * - 200 SSH connections with certificates from a foreign CA carrying a 30 KB
 *   key id with a newline and an ANSI escape;
 * - a certificate this cluster's CA signed with such a key id (signed
 *   "elsewhere", with ssh-keygen): the text log stays one line per event;
 * - 2,000 OIDC callbacks with a bogus state;
 * - login starts from 520 loopback source addresses, 20 each (127/8 is
 *   all loopback; the client binds a local address);
 * - a full disk under the data directory (a tmpfs): unauthenticated events
 *   are dropped, real logins are audited, and refused when even that fails.
 * After each: the audit log stays small, real logins are audited, nothing
 * from outside is written as `user`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { Agent, request as undiciRequest } from 'undici';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { newEnvelopeKey } from '../../src/api/envelope.js';
import { formatPublicKeyLine, generateKeyPair } from '../../src/sshcert/index.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { headlessLogin, HEADLESS_CALLBACK, startHeadlessLogin, tshEnv, tshLoginOverHttp, walkLogin } from '../helpers/headless-login.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { freePort } from '../helpers/sshd.js';
import { fakeLogin } from '../helpers/tsh-home.js';
import { builtProgram, requireTool, run, tempDir } from '../helpers/tools.js';

const login = userInfo().username;
const SECRET = 'floods-secret';
/** A key id from outside: 30 KB, with a forged log line and a terminal escape in it. */
const HOSTILE_KEY_ID = `mallory\n2026-01-01T00:00:00.000Z INFO forged line\x1b[31m${'K'.repeat(30_000)}`;

const auditSize = (dataDir: string) => {
  try {
    return statSync(join(dataDir, 'audit.log')).size;
  } catch {
    return 0;
  }
};

/** Runs `n` tasks, `width` at a time. */
async function pool<T>(n: number, width: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await task(i);
      }
    }),
  );
  return out;
}

/** An HTTPS client whose connections come from `addr` (one connection, requests one after another). */
const from = (addr: string) => new Agent({ localAddress: addr, connections: 1, pipelining: 1, connect: { rejectUnauthorized: false, timeout: 60_000 }, headersTimeout: 60_000 });

/** `tsh login --browser=none`, the browser's part walked over HTTP; resolves with tsh's exit code and stderr. */
async function tshLogin(home: string, webPort: number): Promise<{ code: number | null; stderr: string }> {
  const browser = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    return await tshLoginOverHttp({ proxy: `localhost:${webPort}`, env: tshEnv(home), args: ['--keystore=file'], account: login, dispatcher: browser });
  } finally {
    await browser.close();
  }
}

describe('floods against a real jumpgate start, with a real user logging in and connecting', () => {
  const tmp = tempDir('floods');
  let idp: DevIdp;
  let pc: ProxyCluster;
  let sshKeygen: string;
  let ssh: string;

  before(async () => {
    builtProgram('tsh');
    mkdirSync(join(tmp.dir, 'cluster'));
    sshKeygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    const webPort = await freePort();
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: SECRET,
      redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`],
      accounts: [...DEMO_ACCOUNTS, { login, claims: { preferred_username: login, email_verified: true } }],
    });
    pc = await startProxyCluster(join(tmp.dir, 'cluster'), { webPort, debug: true, oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: SECRET } });
  });

  after(async () => {
    await pc?.stop();
    await idp?.close();
    tmp.cleanup();
  });

  let homes = 0;
  /** A real user: tsh login, then plain ssh to node1 through the proxy; both must work. */
  async function realUserLogsInAndConnects(): Promise<void> {
    const home = join(tmp.dir, `home${++homes}`);
    mkdirSync(home);
    const r = await tshLogin(home, pc.webPort);
    assert.equal(r.code, 0, `tsh login: ${r.stderr}\n--- server ---\n${pc.log().slice(-3000)}`);
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh') };
    delete env['SSH_AUTH_SOCK'];
    const s = await run(ssh, ['-F', join(home, '.ssh', 'config'), '-o', 'BatchMode=yes', `${login}@node1`, 'echo through'], { env, timeoutMs: 30_000 });
    assert.equal(s.code, 0, s.stderr);
    assert.equal(s.stdout.trim(), 'through');
  }

  /** A user key with a certificate signed by `caKey` (ssh-keygen) carrying HOSTILE_KEY_ID. */
  function hostileCert(name: string, caKey: string, principal: string): string {
    const key = join(tmp.dir, name);
    execFileSync(sshKeygen, ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    execFileSync(sshKeygen, ['-q', '-s', caKey, '-I', HOSTILE_KEY_ID, '-n', principal, '-V', '-5m:+1h', '-O', 'extension:roles@jumpgate.dev=user', `${key}.pub`]);
    return key;
  }

  test('200 SSH connections with a foreign CA\'s certificate and a 30 KB key id: a few hundred bytes of audit, the key id only as a bounded claimed_user', { timeout: 120_000 }, async () => {
    const foreignCa = join(tmp.dir, 'foreign_ca');
    execFileSync(sshKeygen, ['-q', '-t', 'ed25519', '-N', '', '-f', foreignCa]);
    const key = hostileCert('foreign_user', foreignCa, login);
    const before = auditSize(pc.dataDir);
    const results = await pool(200, 20, () =>
      run(ssh, ['-F', 'none', '-i', key, '-o', `CertificateFile=${key}-cert.pub`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-p', String(pc.sshPort), `${login}@127.0.0.1`, 'true'], { timeoutMs: 30_000 }),
    );
    assert.ok(results.every((r) => r.code === 255), 'every connection is refused');
    await new Promise((r) => setTimeout(r, 500)); // the last connections' close events
    const grew = auditSize(pc.dataDir) - before;
    assert.ok(grew < 4_096, `the audit log grew ${grew} bytes for 200 refused connections`);
    const denied = pc.audit().filter((e) => e['event'] === 'access.denied' && e['code'] === 'CERT_UNTRUSTED_CA');
    // The first refusal of each minute is written in full, the rest are counted (a slow machine may take more than a minute).
    assert.ok(denied.length >= 1 && denied.length <= 3, `${denied.length} refusals written in full`);
    assert.equal(denied[0]!['untrusted'], true);
    assert.equal(denied[0]!['user'], undefined, 'a foreign key id is never written as user');
    const claimed = String(denied[0]!['claimed_user']);
    assert.ok(claimed.length <= 129, `claimed_user is ${claimed.length} characters`);
    assert.ok(claimed.startsWith('mallory\\x0a2026'), claimed.slice(0, 40));
    assert.doesNotMatch(readFileSync(join(pc.dataDir, 'audit.log'), 'utf8'), /K{200}/, 'the 30 KB key id is not in the audit log');

    await realUserLogsInAndConnects();
    await pc.stop();
    const summaries = pc.audit().filter((e) => e['event'] === 'failures.summary' && e['of'] === 'access.denied' && e['code'] === 'CERT_UNTRUSTED_CA');
    assert.ok(summaries.length >= 1, 'the refusals after the first are a summary event when the minute ends or the server stops');
    assert.ok(summaries.every((e) => e['source'] === '127.0.0.0/8'));
    assert.equal(summaries.reduce((n, e) => n + Number(e['count']), 0) + denied.length, 200, 'every refusal is counted once');
    assert.ok(pc.audit().some((e) => e['event'] === 'login.success' && e['user'] === login), 'the real login is audited');
    assert.ok(pc.audit().some((e) => e['event'] === 'session.start' && e['user'] === login && e['node'] === 'node1'), 'the real session is audited');
    pc = await startProxyCluster(join(tmp.dir, 'cluster'), { webPort: pc.webPort, debug: true, oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: SECRET } });
  });

  test('a key id with a newline and an ANSI escape in a certificate this CA signed cannot forge a line of the server log', { timeout: 60_000 }, async () => {
    const caDir = join(pc.dataDir, 'ca', 'user');
    const caKey = join(caDir, readdirSync(caDir).find((f) => f.endsWith('.key'))!);
    const key = hostileCert('signed_here', caKey, login);
    const r = await run(ssh, ['-F', 'none', '-i', key, '-o', `CertificateFile=${key}-cert.pub`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-p', String(pc.sshPort), '-s', `${login}@127.0.0.1`, 'proxy:nowhere.invalid:22'], { timeoutMs: 30_000 });
    assert.notEqual(r.code, 0);
    const deadline = Date.now() + 5_000;
    while (!pc.log().includes('authenticated as') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    const log = pc.log();
    assert.match(log, /mallory\\x0a2026-01-01T00:00:00\.000Z INFO forged line\\x1b\[31mK+/, 'the key id is in the log, escaped');
    for (const line of log.split('\n').filter(Boolean)) {
      assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z (INFO|WARN|DEBUG) /, `every line is one of the server's: ${JSON.stringify(line.slice(0, 120))}`);
      assert.ok(line.length < 5_000, `a log line is ${line.length} characters`);
    }
    assert.doesNotMatch(log, /\x1b/, 'no raw escape reaches the log');
  });

  test('2,000 OIDC callbacks with a bogus state: 429 with Retry-After past 20 per address, a few audit lines; a real login still works and is audited', { timeout: 120_000 }, async () => {
    const before = auditSize(pc.dataDir);
    const agents = Array.from({ length: 4 }, (_, i) => from(`127.0.2.${i + 1}`));
    const statuses = await pool(2_000, 40, async (i) => {
      const res = await undiciRequest(`https://127.0.0.1:${pc.webPort}/v1/login/oidc/callback?state=bogus${i}&code=x`, { dispatcher: agents[i % 4]! });
      await res.body.text();
      return [res.statusCode, res.headers['retry-after']] as const;
    });
    await Promise.all(agents.map((a) => a.close()));
    const answered = statuses.filter(([s]) => s === 400).length;
    // Each address gets its burst of 20, and one more every 6 s while the flood lasts.
    assert.ok(answered >= 80 && answered <= 120, `${answered} bogus callbacks answered`);
    assert.equal(statuses.filter(([s]) => s === 429).length, 2_000 - answered);
    assert.ok(statuses.filter(([s]) => s === 429).every(([, ra]) => Number(ra) >= 1), 'every 429 says when to retry');
    const grew = auditSize(pc.dataDir) - before;
    assert.ok(grew < 2_048, `the audit log grew ${grew} bytes for 2,000 bogus callbacks`);
    await realUserLogsInAndConnects();
    assert.ok(pc.audit().some((e) => e['event'] === 'cert.issued' && e['user'] === login && e['via'] === 'login'));
  });

  test('login starts from 520 loopback addresses, 20 each, then more during a real login: the real login works, memory and audit stay bounded', { timeout: 300_000 }, async () => {
    const { publicKey } = generateKeyPair();
    const body = JSON.stringify({
      public_key: formatPublicKeyLine(publicKey),
      callback_url: HEADLESS_CALLBACK,
      client_key: newEnvelopeKey().publicRaw.toString('base64url'),
      client_nonce: 'N'.repeat(43),
    });
    const rss = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pc.pid}/status`, 'utf8'))![1]) * 1024;
    const auditBefore = auditSize(pc.dataDir);
    const rssBefore = rss();
    const flood = async (second: number, sources: number) => {
      const codes = new Map<number, number>();
      await pool(sources, 16, async (i) => {
        const agent = from(`127.${100 + second}.${Math.floor(i / 250)}.${1 + (i % 250)}`);
        try {
          for (let k = 0; k < 20; k++) {
            const res = await undiciRequest(`https://127.0.0.1:${pc.webPort}/v1/login/start`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body });
            await res.body.text();
            codes.set(res.statusCode, (codes.get(res.statusCode) ?? 0) + 1);
          }
        } finally {
          await agent.close();
        }
      });
      return codes;
    };
    const t0 = Date.now();
    const first = await flood(0, 520);
    const floodMs = Date.now() - t0;
    assert.deepEqual([...first.keys()], [200], `every start was taken (the flood evicts its own): ${JSON.stringify([...first])}`);
    const rssAfter = rss();
    // A real user logs in while 100 more addresses keep starting logins.
    const [, second] = await Promise.all([realUserLogsInAndConnects(), flood(1, 100)]);
    assert.equal(second.get(200), 2_000);
    const grew = auditSize(pc.dataDir) - auditBefore;
    assert.ok(grew < 8_192, `the audit log grew ${grew} bytes for 12,400 starts`);
    // Diagnostics for the report (not asserted: wall time is not a property).
    console.log(`# 10,400 starts from 520 addresses in ${floodMs} ms; RSS ${Math.round(rssBefore / 1e6)} -> ${Math.round(rssAfter / 1e6)} MB; audit +${grew} bytes`);
    await pc.stop();
    const evicted = pc.audit().filter((e) => e['event'] === 'failures.summary' && e['stage'] === 'evicted');
    assert.ok(evicted.length >= 1, 'evictions are audited in aggregate');
    assert.ok(evicted.reduce((n, e) => n + Number(e['count']), 0) >= 10_000, 'the summary counts the evicted logins');
    assert.ok(pc.audit().some((e) => e['event'] === 'login.success' && e['user'] === login));
    pc = await startProxyCluster(join(tmp.dir, 'cluster'), { webPort: pc.webPort, debug: true, oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: SECRET } });
  });
});

describe('a full disk under the data directory (tmpfs)', () => {
  const tmp = tempDir('floods-disk');
  let idp: DevIdp;
  let cluster: Cluster;
  let dataDir: string;
  const insecure = new Agent({ connect: { rejectUnauthorized: false } });

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'this test mounts a tmpfs: run it as root (CI does)');
    dataDir = join(tmp.dir, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', dataDir]);
    const [webPort, sshPort] = [await freePort(), await freePort()];
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: SECRET, redirectUris: [`https://127.0.0.1:${webPort}/v1/login/oidc/callback`], accounts: DEMO_ACCOUNTS });
    cluster = await startCluster(
      tmp.dir,
      `cluster_name: disk.test
data_dir: ./data
proxy:
  web_listen_addr: 127.0.0.1:${webPort}
  ssh_listen_addr: 127.0.0.1:${sshPort}
auth:
  oidc:
    issuer: ${idp.issuer}
    client_id: jumpgate
    client_secret: ${SECRET}
    claims_to_roles: [{ claim: email_verified, value: true, roles: [user] }]
roles:
  user: { logins: ["{{username}}"], node_labels: { "*": "*" } }
`,
    );
  });

  after(async () => {
    await cluster?.stop();
    await idp?.close();
    await insecure.close();
    try {
      execFileSync('umount', ['-l', dataDir]);
    } catch {
      // not mounted (the before hook failed early)
    }
    tmp.cleanup();
  });

  const bogusCallbacks = (n: number) =>
    pool(n, 10, async (i) => {
      const agent = from(`127.0.3.${1 + (i % 50)}`);
      try {
        const res = await undiciRequest(`https://127.0.0.1:${cluster.webPort}/v1/login/oidc/callback?state=x${i}`, { dispatcher: agent });
        await res.body.text();
      } finally {
        await agent.close();
      }
    });

  test('with less than the reserve free, unauthenticated failures are dropped and real logins are audited; with no space at all, a login is refused with a clear page and no certificate', { timeout: 120_000 }, async () => {
    // 2 MiB of tmpfs is below the 64 MiB reserve: every unauthenticated event is dropped.
    const before = auditSize(dataDir);
    await bogusCallbacks(300);
    assert.equal(auditSize(dataDir), before, 'no unauthenticated event was written under the reserve');
    const ok = await headlessLogin(cluster.webPort, insecure);
    assert.ok(cluster.audit().some((e) => e['event'] === 'cert.issued' && e['serial'] === ok.serial.toString()), 'the real login is audited');
    assert.ok(cluster.audit().some((e) => e['event'] === 'login.success' && e['user'] === 'alice'));

    // Now fill the file system to the last byte.
    const filler = join(dataDir, 'filler');
    const fd = openSync(filler, 'w');
    const chunk = Buffer.alloc(64 * 1024, 1);
    try {
      for (;;) writeSync(fd, chunk);
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
    }
    try {
      for (;;) writeSync(fd, chunk.subarray(0, 1));
    } catch {
      // full to the byte
    }
    closeSync(fd);
    // tmpfs allocates whole pages: the audit log's last page still has room. Fill it with blank lines (readers skip them).
    const afd = openSync(join(dataDir, 'audit.log'), 'a');
    try {
      for (;;) writeSync(afd, '\n');
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
    }
    closeSync(afd);
    const lines = readFileSync(join(dataDir, 'audit.log'), 'utf8');
    const { loginUrl } = await startHeadlessLogin(cluster.webPort, insecure);
    const end = await walkLogin(loginUrl, { dispatcher: insecure, stopAt: (u) => u.origin === new URL(HEADLESS_CALLBACK).origin });
    assert.equal(end.status, 503, `the login ends on the proxy's page, not at tsh: ${end.url}`);
    assert.match(end.text ?? '', /cannot write its audit log/);
    assert.match(end.text ?? '', /issued no certificate/);
    assert.equal(readFileSync(join(dataDir, 'audit.log'), 'utf8'), lines, 'the audit log is unchanged: no torn line');
    assert.match(cluster.log(), /WARN web: GET \/v1\/login\/oidc\/callback refused: cannot write the audit log .*audit\.log/);

    rmSync(filler);
    const again = await headlessLogin(cluster.webPort, insecure);
    assert.ok(cluster.audit().some((e) => e['event'] === 'cert.issued' && e['serial'] === again.serial.toString()), 'with space back, logins work and are audited');
    for (const l of readFileSync(join(dataDir, 'audit.log'), 'utf8').split('\n').filter(Boolean)) JSON.parse(l);
    writeFileSync(join(tmp.dir, 'done'), '');
  });
});

describe('a full disk under the data directory: SSH sessions (tmpfs, jumpgate start + sshd)', () => {
  const tmp = tempDir('floods-disk-ssh');
  let pc: ProxyCluster;
  let dataDir: string;

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'this test mounts a tmpfs: run it as root (CI does)');
    dataDir = join(tmp.dir, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', dataDir]);
    pc = await startProxyCluster(tmp.dir, { clusterName: 'disk-ssh.test' });
  });

  after(async () => {
    await pc?.stop();
    try {
      execFileSync('umount', ['-l', dataDir]);
    } catch {
      // not mounted
    }
    tmp.cleanup();
  });

  test('a session whose start cannot be audited is refused with a message; the server keeps running; with space back, sessions work', { timeout: 60_000 }, async () => {
    const home = join(tmp.dir, 'home');
    mkdirSync(home);
    const user = await fakeLogin({ config: pc.config, home, username: login, roles: ['user'] });
    const sshTo = () => run('ssh', ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', `${login}@node1`, 'echo through'], { env: user.env, timeoutMs: 30_000 });
    const ok = await sshTo();
    assert.equal(ok.code, 0, ok.stderr);

    const filler = join(dataDir, 'filler');
    const fd = openSync(filler, 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(64 * 1024, 1));
    } catch {
      // full
    }
    closeSync(fd);
    const afd = openSync(join(dataDir, 'audit.log'), 'a');
    try {
      for (;;) writeSync(afd, '\n');
    } catch {
      // the last page too
    }
    closeSync(afd);
    const lines = readFileSync(join(dataDir, 'audit.log'), 'utf8');
    const refused = await sshTo();
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /the proxy cannot write its audit log; the session was refused/);
    assert.equal(readFileSync(join(dataDir, 'audit.log'), 'utf8'), lines);
    assert.match(pc.log(), /WARN proxy: .* session to node1 refused: cannot write the audit log/);

    rmSync(filler);
    const again = await sshTo();
    assert.equal(again.code, 0, again.stderr);
    const deadline = Date.now() + 10_000;
    while (!pc.audit().some((e) => e['event'] === 'session.end' && e['user'] === login) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(pc.audit().some((e) => e['event'] === 'session.end' && e['user'] === login), 'sessions are audited again');
  });
});
