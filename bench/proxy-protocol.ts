/**
 * What the PROXY protocol costs at connection set-up (issue 12): `ssh node1 true`
 * through a real HAProxy (mode tcp) to one `jumpgate start`, median of RUNS,
 * (a) with `send-proxy-v2` (HAProxy connects from 127.0.0.1, listed in
 * proxy.proxy_protocol_from) and (b) without (HAProxy connects from
 * 127.0.0.2, not listed: served as before). The two alternate run by run so
 * drift on a noisy machine hits both alike. Also: an ssh2 handshake plus
 * certificate authentication at the proxy only (no node), same two paths.
 *
 * Usage: npm run build && node --import tsx bench/proxy-protocol.ts [RUNS] [handshakes]
 * (HAProxy is started here with a minimal config; test/helpers/haproxy.ts will own that.)
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { openDirState } from '../test/helpers/runtime.js';
import { formatPublicKeyLine, parseOpenSSHPrivateKey } from '../src/sshcert/index.js';
import { certConnectConfig, certIdentity, clientHostKeyAlgorithms } from '../src/sshconn/index.js';
import { startProxyCluster } from '../test/helpers/proxy-cluster.js';
import { freePort } from '../test/helpers/sshd.js';
import { fakeLogin } from '../test/helpers/tsh-home.js';
import { requireTool, run, tempDir } from '../test/helpers/tools.js';
import { median } from './login.js';

const runs = Number(process.argv[2] ?? 20);
/** `handshakes`: only the ssh2 handshakes (for more runs). */
const only = process.argv[3];
const ssh = requireTool('ssh', 'apt-get install -y openssh-client');
const haproxy = requireTool('haproxy', 'apt-get install -y haproxy');
const tmp = tempDir('bench-pp');
const cluster = await startProxyCluster(tmp.dir, { proxyYaml: ['  proxy_protocol_from: [127.0.0.1]'] });
const [v2Port, plainPort] = [await freePort(), await freePort()];
const conf = join(tmp.dir, 'haproxy.cfg');
writeFileSync(
  conf,
  [
    'global', '  maxconn 1000', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s',
    'frontend v2', `  bind 127.0.0.1:${v2Port}`, '  default_backend v2',
    'backend v2', `  server s 127.0.0.1:${cluster.sshPort} send-proxy-v2`,
    'frontend plain', `  bind 127.0.0.1:${plainPort}`, '  default_backend plain',
    'backend plain', `  server s 127.0.0.1:${cluster.sshPort} source 127.0.0.2`,
  ].join('\n') + '\n',
);
const lb = spawn(haproxy, ['-f', conf, '-db'], { stdio: 'ignore' });
try {
  await new Promise((r) => setTimeout(r, 500));
  const user = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home'), username: 'root', roles: ['user'] });
  const knownHosts = join(tmp.dir, 'lb_known_hosts');
  const state = await openDirState(cluster.config.dataDir);
  const cas = state.ca;
  writeFileSync(knownHosts, cas.get('host').trusted.map((k) => `@cert-authority [localhost]:* ${formatPublicKeyLine(k.publicKey)}\n`).join(''));
  await state.close();
  const sshTrue = async (port: number): Promise<number> => {
    const t0 = performance.now();
    const r = await run(ssh, ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', '-o', `ProxyCommand=${ssh} -F ${user.sshConfigFile} -o BatchMode=yes -o UserKnownHostsFile=${knownHosts} -b 127.0.0.7 -p ${port} -W %h:%p root@localhost`, 'root@node1', 'true'], { env: user.env, timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`ssh via ${port} failed: ${r.stderr}`);
    return performance.now() - t0;
  };
  const { privateKey } = parseOpenSSHPrivateKey(readFileSync(user.paths.privateKey(user.profile.name, user.profile.username), 'utf8'));
  const identity = certIdentity(privateKey, user.cert.blob);
  // ssh2 to the proxy through HAProxy: key exchange, host certificate, user certificate authentication (no node).
  const handshake = async (port: number, from = '127.0.0.7', header?: string): Promise<number> => {
    const t0 = performance.now();
    const sock = connect({ port, host: '127.0.0.1', localAddress: from });
    await once(sock, 'connect');
    if (header) sock.write(header);
    const c = new ssh2.Client();
    const done = new Promise<void>((resolve, reject) => {
      c.on('error', (e) => reject(new Error(`ssh2 via ${port} failed: ${e.message}`)));
      c.on('ready', () => resolve());
    });
    c.connect(certConnectConfig({ sock, username: 'root', hostVerifier: () => true, privateKey: identity, algorithms: { serverHostKey: clientHostKeyAlgorithms() } }));
    await done;
    const ms = performance.now() - t0;
    c.end();
    sock.destroy();
    return ms;
  };
  const res = { v2: [] as number[], plain: [] as number[], v2hs: [] as number[], plainhs: [] as number[], directHeader: [] as number[], direct: [] as number[] };
  await sshTrue(v2Port);
  await sshTrue(plainPort);
  for (let i = 0; i < runs; i++) {
    if (only !== 'handshakes') {
      res.v2.push(await sshTrue(v2Port));
      res.plain.push(await sshTrue(plainPort));
    }
    res.v2hs.push(await handshake(v2Port));
    res.plainhs.push(await handshake(plainPort));
    // Without HAProxy: the header written by the client itself (from the listed 127.0.0.1), and no header (from 127.0.0.7).
    res.directHeader.push(await handshake(cluster.sshPort, '127.0.0.1', 'PROXY TCP4 127.0.0.7 127.0.0.1 40000 3023\r\n'));
    res.direct.push(await handshake(cluster.sshPort));
  }
  const f = (xs: number[]) => xs.length === 0 ? '-' : `${Math.round(median(xs))} ms (min ${Math.round(Math.min(...xs))}, max ${Math.round(Math.max(...xs))})`;
  console.log(`runs: ${runs}`);
  console.log(`ssh node1 true via HAProxy, send-proxy-v2: ${f(res.v2)}`);
  console.log(`ssh node1 true via HAProxy, no header:     ${f(res.plain)}`);
  console.log(`ssh2 connect + certificate auth at the proxy, send-proxy-v2: ${f(res.v2hs)}`);
  console.log(`ssh2 connect + certificate auth at the proxy, no header:     ${f(res.plainhs)}`);
  console.log(`same, straight to the proxy, v1 header from the client:     ${f(res.directHeader)}`);
  console.log(`same, straight to the proxy, no header:                     ${f(res.direct)}`);
  const sessions = cluster.audit().filter((e) => e['event'] === 'session.start');
  console.log(`session.start events from 127.0.0.7: ${sessions.filter((e) => String(e['client_addr']).startsWith('127.0.0.7:')).length}, from 127.0.0.2 (HAProxy, plain): ${sessions.filter((e) => String(e['client_addr']).startsWith('127.0.0.2:')).length}`);
} finally {
  lb.kill('SIGTERM');
  await cluster.stop();
  tmp.cleanup();
}
