/**
 * Issue 12: `jumpgate start` behind a TCP load balancer. A real HAProxy
 * (`mode tcp`) sends the PROXY protocol (`send-proxy-v2` on one server line,
 * `send-proxy` on another) to a real `jumpgate start` with
 * `proxy.proxy_protocol_from: [127.0.0.1]`; the client dials HAProxy from
 * 127.0.0.7 / 127.0.0.8, so without the header the proxy would only ever see
 * HAProxy's 127.0.0.1. Checked: the audit log's client_addr, a certificate's
 * source-address, the HTTPS API's per-source rate limit, and that nobody
 * else can send a header.
 *
 * HAProxy is started here by a minimal local helper (startHaproxy below); it
 * belongs in test/helpers/haproxy.ts once that helper lands.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { request } from 'node:https';
import { once } from 'node:events';
import { join } from 'node:path';
import { openDirState } from '../helpers/runtime.js';
import { encodeOpenSSHPrivateKey, formatPublicKeyLine } from '../../src/sshcert/index.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { freePort } from '../helpers/sshd.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { requireTool, run, tempDir, waitFor, type RunResult } from '../helpers/tools.js';

const LOGIN = 'root';

interface Haproxy {
  /** Frontend ports by name. */
  ports: Record<string, number>;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts `haproxy -f CONF -db` (foreground, mode tcp) with one frontend per
 * entry, each to one server line, e.g. `127.0.0.1:PORT send-proxy-v2`.
 * Ready when every frontend port accepts a connection.
 */
async function startHaproxy(dir: string, backends: Record<string, string>): Promise<Haproxy> {
  const haproxy = requireTool('haproxy', 'apt-get install -y haproxy');
  const ports: Record<string, number> = {};
  const lines = ['global', '  maxconn 1000', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s'];
  for (const [name, server] of Object.entries(backends)) {
    ports[name] = await freePort();
    lines.push(`frontend f_${name}`, `  bind 127.0.0.1:${ports[name]}`, `  default_backend b_${name}`, `backend b_${name}`, `  server s_${name} ${server}`);
  }
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(conf, lines.join('\n') + '\n');
  const child: ChildProcess = spawn(haproxy, ['-f', conf, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = once(child, 'exit');
  const deadline = Date.now() + 10_000;
  for (const port of Object.values(ports)) {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}):\n${out}`);
      const ok = await new Promise<boolean>((r) => {
        const s = connect(port, '127.0.0.1', () => {
          s.destroy();
          r(true);
        });
        s.on('error', () => r(false));
      });
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`haproxy did not listen on ${port}:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    ports,
    log: () => out,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** POST /v1/login/start over HTTPS to `port`, from `localAddress`; resolves with the status. */
function loginStart(port: number, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, localAddress, method: 'POST', path: '/v1/login/start', rejectUnauthorized: false, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end('{}');
  });
}

/** Whether the server closed a raw connection after we sent `bytes` (from `localAddress`) and without answering anything. */
async function closedWithoutAnswer(port: number, localAddress: string, bytes: Buffer): Promise<{ closed: boolean; got: string }> {
  const s: Socket = connect({ port, host: '127.0.0.1', localAddress });
  s.on('error', () => {});
  await once(s, 'connect');
  let got = '';
  s.on('data', (b: Buffer) => (got += b.toString('latin1')));
  s.write(bytes);
  const closed = await Promise.race([once(s, 'close').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 8_000))]);
  s.destroy();
  return { closed, got };
}

describe('jumpgate start behind HAProxy with the PROXY protocol (issue 12)', () => {
  const tmp = tempDir('proxy-protocol');
  let cluster: ProxyCluster;
  let lb: Haproxy;
  let user: FakeLogin;
  let ssh: string;
  let keygen: string;
  let caFile: string;
  let pubFile: string;
  let certFile: string;
  let lbKnownHosts: string;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    cluster = await startProxyCluster(tmp.dir, { proxyYaml: ['  proxy_protocol_from: [127.0.0.1]'] });
    lb = await startHaproxy(tmp.dir, {
      ssh_v2: `127.0.0.1:${cluster.sshPort} send-proxy-v2`,
      ssh_v1: `127.0.0.1:${cluster.sshPort} send-proxy`,
      web_v2: `127.0.0.1:${cluster.webPort} send-proxy-v2`,
      web_v1: `127.0.0.1:${cluster.webPort} send-proxy`,
      // A balancer whose server line lacks send-proxy: its connections come from a listed address without a header.
      ssh_plain: `127.0.0.1:${cluster.sshPort}`,
    });
    user = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-user'), username: LOGIN, roles: ['user'] });
    const state = await openDirState(cluster.config.dataDir);
    const cas = state.ca;
    // The balancer's ports are not the proxy address the login recorded: trust the host CA for localhost on any port.
    lbKnownHosts = join(tmp.dir, 'lb_known_hosts');
    writeFileSync(lbKnownHosts, cas.get('host').trusted.map((k) => `@cert-authority [localhost]:* ${formatPublicKeyLine(k.publicKey)}\n`).join(''));
    const ca = cas.get('user').active;
    await state.close();
    caFile = join(tmp.dir, 'user_ca');
    writeFileSync(caFile, encodeOpenSSHPrivateKey(ca.privateKey, 'user ca'), { mode: 0o600 });
    pubFile = join(tmp.dir, 'user.pub');
    writeFileSync(pubFile, formatPublicKeyLine(user.cert.key, LOGIN) + '\n');
    certFile = user.paths.certificate(user.profile.name, user.profile.username);
  });

  after(async () => {
    await lb?.stop();
    await cluster?.stop();
    tmp.cleanup();
  });

  /** Re-signs the user's key with ssh-keygen and these -O options; the login's ssh config picks it up. */
  async function resign(options: string[]): Promise<void> {
    const r = await run(keygen, ['-q', '-s', caFile, '-I', LOGIN, '-n', LOGIN, '-V', '-5m:+1h', '-O', 'clear', ...['permit-pty', 'extension:roles@jumpgate.dev=user', ...options].flatMap((o) => ['-O', o]), pubFile]);
    assert.equal(r.code, 0, r.stderr);
    writeFileSync(certFile, readFileSync(pubFile.replace(/\.pub$/, '-cert.pub')));
  }

  /** ssh to node1 through HAProxy's frontend `front`, the hop to the proxy made from `source` (ssh -b). */
  const sshVia = (front: string, source: string, command = 'echo through'): Promise<RunResult> =>
    run(
      ssh,
      [
        '-F', user.sshConfigFile, '-o', 'BatchMode=yes',
        '-o', `ProxyCommand=${ssh} -F ${user.sshConfigFile} -o BatchMode=yes -o UserKnownHostsFile=${lbKnownHosts} -b ${source} -p ${lb.ports[front]} -W %h:%p ${LOGIN}@localhost`,
        `${LOGIN}@node1`, command,
      ],
      { env: user.env, timeoutMs: 60_000 },
    );
  /** session.start events whose client_addr (`ip:port`) is `addr`. */
  const sessionsFrom = (addr: string) => cluster.audit().filter((e) => e['event'] === 'session.start' && String(e['client_addr']).startsWith(`${addr}:`));

  for (const front of ['ssh_v2', 'ssh_v1']) {
    test(`an SSH session through HAProxy (${front === 'ssh_v2' ? 'send-proxy-v2' : 'send-proxy'}) is audited with the client's address, not HAProxy's`, async () => {
      await resign([]);
      const source = front === 'ssh_v2' ? '127.0.0.7' : '127.0.0.8';
      const before = sessionsFrom(source).length;
      const r = await sshVia(front, source);
      assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log().slice(-2000)}`);
      assert.equal(r.stdout, 'through\n');
      await waitFor(() => sessionsFrom(source).length === before + 1, `a session.start with client_addr ${source} (events: ${JSON.stringify(cluster.audit().slice(-3))})`);
    });
  }

  test('a certificate with source-address=127.0.0.7 works from 127.0.0.7 through HAProxy and is refused from 127.0.0.8', async () => {
    await resign(['source-address=127.0.0.7/32,127.0.0.1/32']);
    const ok = await sshVia('ssh_v2', '127.0.0.7');
    assert.equal(ok.code, 0, ok.stderr);
    const refused = await sshVia('ssh_v2', '127.0.0.8');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /jumpgate proxy: this certificate may only be used from 127\.0\.0\.7\/32,127\.0\.0\.1\/32 \(its source-address\), and this connection comes from 127\.0\.0\.8/, refused.stderr);
    await resign(['source-address=10.0.0.0/8']);
    const other = await sshVia('ssh_v1', '127.0.0.7');
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /may only be used from 10\.0\.0\.0\/8 .* comes from 127\.0\.0\.7/, other.stderr);
  });

  test('the HTTPS API rate-limits each real client: two sources through HAProxy do not share a bucket', async () => {
    // LOGIN_RATE_LIMIT: a burst of 20 starts per source. Without the PROXY protocol every request would be HAProxy's.
    const first: number[] = [];
    for (let i = 0; i < 21; i++) first.push(await loginStart(lb.ports['web_v2']!, '127.0.0.7'));
    assert.ok(first.slice(0, 20).every((s) => s !== 429), first.join(','));
    assert.equal(first[20], 429);
    assert.notEqual(await loginStart(lb.ports['web_v1']!, '127.0.0.8'), 429, 'another client through the same balancer keeps its own bucket');
    assert.equal(await loginStart(lb.ports['web_v1']!, '127.0.0.7'), 429, 'the v1 header names the same client as the v2 one');
    await waitFor(() => cluster.audit().some((e) => e['event'] === 'login.failure' && e['stage'] === 'rate_limit' && e['client_addr'] === '127.0.0.7'), 'the rate_limit event with client_addr 127.0.0.7');
  });

  test('a connection from the listed balancer address without a header is closed (HAProxy without send-proxy, or a direct dial)', async () => {
    const r = await sshVia('ssh_plain', '127.0.0.7');
    assert.notEqual(r.code, 0);
    const direct = await closedWithoutAnswer(cluster.sshPort, '127.0.0.1', Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'));
    assert.deepEqual(direct, { closed: true, got: '' }, 'no SSH banner for a connection that should have begun with a header');
    const web = await closedWithoutAnswer(cluster.webPort, '127.0.0.1', Buffer.from([0x16, 3, 1, 0, 4, 1, 0, 0, 0]));
    assert.deepEqual(web, { closed: true, got: '' });
    await waitFor(() => /refused \d+ connections? \(PROXY protocol\).*did not start with a PROXY protocol header/.test(cluster.log()), 'the aggregated warning');
  });

  test('a PROXY header sent straight to the proxy by a client that is not a listed balancer is refused', async () => {
    const forged = Buffer.from('PROXY TCP4 10.1.1.1 127.0.0.1 1111 22\r\nSSH-2.0-OpenSSH_9.2\r\n');
    const s = await closedWithoutAnswer(cluster.sshPort, '127.0.0.7', forged);
    assert.equal(s.closed, true);
    assert.doesNotMatch(s.got, /^SSH-2\.0-Jumpgate[\s\S]*SSH-2\.0/, 'no second exchange');
    const w = await closedWithoutAnswer(cluster.webPort, '127.0.0.7', Buffer.from('PROXY TCP4 10.1.1.1 127.0.0.1 1111 443\r\n'));
    assert.deepEqual(w, { closed: true, got: '' });
    await waitFor(() => /a PROXY protocol header from 127\.0\.0\.7, which is not in proxy\.proxy_protocol_from/.test(cluster.log()), 'the warning naming the sender');
    assert.equal(cluster.audit().filter((e) => String(e['client_addr']).startsWith('10.1.1.1')).length, 0, 'the forged address is nowhere');
  });
});
