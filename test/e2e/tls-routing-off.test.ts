/**
 * A proxy with `proxy.tls_routing: false`, end to end: `jumpgate start` with
 * an OpenSSH node and the development IdP. tsh login records that the proxy
 * does not route; tsh ls, tsh ssh and plain ssh through the generated config
 * then take the SSH proxy port (never the TLS route), `tsh status` says so,
 * and the web port offers the route to nobody.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { startLoginCluster, type LoginCluster } from '../helpers/login-cluster.js';
import type { ProxyCluster } from '../helpers/proxy-cluster.js';
import { run, tempDir } from '../helpers/tools.js';

describe('TLS routing off (proxy.tls_routing: false): tsh and plain ssh use the SSH port', () => {
  const tmp = tempDir('tls-routing-off');
  let c: LoginCluster;
  let cluster: ProxyCluster;
  let home: string;
  let env: NodeJS.ProcessEnv;
  let login: string;

  before(async () => {
    c = await startLoginCluster(tmp.dir, { secret: 'tls-off-secret', proxyYaml: ['  tls_routing: false'] });
    ({ cluster, home, env, login } = c);
  });

  after(async () => {
    await c?.stop();
    tmp.cleanup();
  });

  const tsh = (args: string[]) => c.tsh(args);

  test('tsh login records that the proxy does not route SSH over TLS', async () => {
    await c.tshLogin();
    const profile = JSON.parse(readFileSync(join(home, '.tsh', 'profiles', 'localhost.json'), 'utf8')) as Record<string, unknown>;
    assert.notEqual(profile['tlsRouting'], true, 'the profile does not record TLS routing');
    const status = await tsh(['status']);
    assert.match(status.stdout, /Last path:\s+none yet$/m);
  });

  test('tsh ls, tsh ssh and plain ssh through the generated config take the SSH port; tsh status says so; audited as SSH port sessions', async () => {
    const ls = await tsh(['ls', '--debug']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /node1/);
    assert.match(ls.stderr, new RegExp(`node list through the SSH port localhost:${cluster.sshPort}`));
    assert.doesNotMatch(ls.stderr, /TLS route/);
    const ssh = await tsh(['ssh', '--debug', `${login}@node1`, 'echo', 'via-ssh-port']);
    assert.equal(ssh.code, 0, ssh.stderr);
    assert.equal(ssh.stdout.trim(), 'via-ssh-port');
    assert.match(ssh.stderr, new RegExp(`node1: connected through the SSH port localhost:${cluster.sshPort}`));
    const plain = await run('ssh', ['-F', join(home, '.ssh', 'config'), '-o', 'BatchMode=yes', `${login}@node1`, 'echo plain-ssh-port'], { env, timeoutMs: 30_000 });
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout.trim(), 'plain-ssh-port');
    const status = await tsh(['status']);
    assert.match(status.stdout, new RegExp(`Last path:\\s+SSH port localhost:${cluster.sshPort} to node1 at `));
    const starts = cluster.audit().filter((e) => e['event'] === 'session.start');
    assert.ok(starts.length >= 2, JSON.stringify(starts));
    assert.ok(starts.every((e) => e['via'] !== 'tls-routing'), JSON.stringify(starts.map((e) => e['via'])));
  });

  test('the web port refuses the route ALPN (TLS alert no_application_protocol), and /v1/ping says tls_routing false', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: cluster.webPort, rejectUnauthorized: false, ALPNProtocols: ['jumpgate-ssh/1'] }, () => {
        resolve(`connected with ALPN ${String(s.alpnProtocol)}`);
        s.destroy();
      });
      s.once('error', (e) => resolve(e.message));
    });
    assert.match(outcome, /no application protocol/);
    const ping = await run('curl', ['-sk', `https://localhost:${cluster.webPort}/v1/ping`], { timeoutMs: 10_000 });
    assert.match(ping.stdout, /"tls_routing":false/);
  });
});
