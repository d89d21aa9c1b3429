/**
 * source-address at the proxy over IPv6 and on a dual-stack listener, in
 * process: startSshProxy on [::1] and on [::] (where an IPv4 client shows up
 * as ::ffff:127.0.0.1 and must be matched as 127.0.0.1, as sshd does), an
 * ssh2 client with certificates carrying source-address from the data
 * directory's user CA. Plain OpenSSH over IPv4: test/e2e/ssh-proxy-certs.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import ssh2 from 'ssh2';
import type { PublicKeyAuthMethod } from 'ssh2';
import { parseServerConfig } from '../../src/config/index.js';
import { startSshProxy } from '../../src/server/proxy/ssh-proxy.js';
import type { RunningService, ServerRuntime } from '../../src/server/runtime.js';
import { CertRequest, generateKeyPair, signCertificate } from '../../src/sshcert/index.js';
import { certIdentity, clientHostKeyAlgorithms } from '../../src/sshconn/index.js';
import { testRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tools.js';

describe('source-address at the proxy: IPv6 clients and IPv4-mapped addresses', () => {
  const tmp = tempDir('source-address');
  let rt: ServerRuntime;
  let v6: RunningService;
  let dual: RunningService;

  before(async () => {
    const config = parseServerConfig(
      `cluster_name: src.test\ndata_dir: ${tmp.dir}/data\nroles:\n  user:\n    logins: ["{{username}}"]\n    node_labels: { env: test }\n`,
      `${tmp.dir}/jumpgate.yaml`,
    );
    rt = await testRuntime(config);
    v6 = await startSshProxy(rt, { host: '::1', port: 0 });
    dual = await startSshProxy(rt, { host: '::', port: 0 });
  });

  after(async () => {
    // Let the proxy finish the refused connections (their access.denied events) before the data dir goes.
    await new Promise((r) => setTimeout(r, 500));
    await v6?.close();
    await dual?.close();
    await rt?.audit.close();
    await rt?.store.close();
    tmp.cleanup();
  });

  /** Resolves 'ok' or the banner the proxy sent with its refusal. */
  function login(port: number, host: string, sourceAddress: string): Promise<string> {
    const kp = generateKeyPair('ed25519');
    const cert = signCertificate(
      new CertRequest({ publicKey: kp.publicKey, type: 'user', keyId: 'alice', principals: ['alice'], ttlSeconds: 600, criticalOptions: { 'source-address': sourceAddress }, extensions: { 'roles@jumpgate.dev': 'user' } }),
      rt.ca.get('user').active,
      new Date(),
    );
    const client = new ssh2.Client();
    let banner = '';
    client.on('banner', (m: string) => (banner += m));
    const auth: PublicKeyAuthMethod = { type: 'publickey', username: 'alice', key: certIdentity(kp.privateKey, cert.blob) };
    return new Promise((resolve) => {
      client.once('ready', () => (client.end(), resolve('ok')));
      // `on`: a reset can follow the refusal; only the first error counts.
      client.on('error', () => (client.end(), resolve(banner.trim())));
      client.connect({ host, port, username: 'alice', authHandler: [auth], hostVerifier: () => true, algorithms: { serverHostKey: clientHostKeyAlgorithms() }, readyTimeout: 10_000 });
    });
  }

  test('an IPv6 client is admitted by a matching IPv6 range and refused by an IPv4 one', async () => {
    assert.equal(await login(v6.port, '::1', '::1/128'), 'ok');
    assert.equal(await login(v6.port, '::1', '10.0.0.0/8,::/0'), 'ok');
    assert.match(await login(v6.port, '::1', '127.0.0.1/32'), /^jumpgate proxy: this certificate may only be used from 127\.0\.0\.1\/32 \(its source-address\), and this connection comes from ::1;/);
    assert.match(await login(v6.port, '::1', '2001:db8::/32'), /comes from ::1/);
  });

  test('an IPv4 client of a dual-stack listener (::ffff:127.0.0.1) is matched as 127.0.0.1', async () => {
    assert.equal(await login(dual.port, '127.0.0.1', '127.0.0.0/8'), 'ok');
    assert.match(await login(dual.port, '127.0.0.1', '10.9.9.9/32'), /and this connection comes from ::ffff:127\.0\.0\.1;/);
    assert.match(await login(dual.port, '127.0.0.1', '::ffff:127.0.0.0/104'), /may only be used from/);
  });
});
