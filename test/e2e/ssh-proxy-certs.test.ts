/**
 * The proxy checks a user certificate's critical options against the real
 * client (issue 10, fault 6: nodes see only the proxy's address), and says
 * why it refused a certificate to plain `ssh -J` in an authentication banner
 * (issue 11, fault 12) instead of a bare "Permission denied". Real
 * `jumpgate start`, a private sshd node, OpenSSH's ssh; certificates with
 * options made by `ssh-keygen -s` with the cluster's user CA key (tctl cannot
 * set options), malformed ones by the project's signer (ssh-keygen refuses
 * to make them).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDirState } from '../helpers/runtime.js';
import { CertRequest, encodeCertificateLine, encodeOpenSSHPrivateKey, formatPublicKeyLine, signCertificate } from '../../src/sshcert/index.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { fakeLogin, type FakeLogin } from '../helpers/tsh-home.js';
import { builtProgram, requireTool, run, tempDir, type RunResult, waitFor } from '../helpers/tools.js';

const LOGIN = 'root';

describe('certificate checks at the proxy, seen by plain ssh -J (jumpgate start + sshd + ssh)', () => {
  const tmp = tempDir('proxy-certs');
  let cluster: ProxyCluster;
  let user: FakeLogin;
  let expired: FakeLogin;
  let ssh: string;
  let keygen: string;
  let caFile: string;
  let pubFile: string;
  let certFile: string;

  before(async () => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    cluster = await startProxyCluster(tmp.dir);
    user = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-user'), username: LOGIN, roles: ['user'] });
    expired = await fakeLogin({
      config: cluster.config,
      home: join(tmp.dir, 'home-expired'),
      username: LOGIN,
      roles: ['user'],
      ttlSeconds: 3600,
      signedAt: new Date(Date.now() - 2 * 3600 * 1000),
    });
    const state = await openDirState(cluster.config.dataDir);
    await state.close();
    const ca = state.ca.get('user').active;
    caFile = join(tmp.dir, 'user_ca');
    writeFileSync(caFile, encodeOpenSSHPrivateKey(ca.privateKey, 'user ca'), { mode: 0o600 });
    pubFile = join(tmp.dir, 'user.pub');
    writeFileSync(pubFile, formatPublicKeyLine(user.cert.key, LOGIN) + '\n');
    certFile = user.paths.certificate(user.profile.name, user.profile.username);
  });

  after(async () => {
    await cluster?.stop();
    tmp.cleanup();
  });

  /** Re-signs the user's key with ssh-keygen and these -O options; the login's ssh config picks it up. */
  async function resign(options: string[]): Promise<void> {
    const r = await run(keygen, ['-q', '-s', caFile, '-I', LOGIN, '-n', LOGIN, '-V', '-5m:+1h', '-O', 'clear', ...['permit-pty', 'permit-port-forwarding', `extension:roles@jumpgate.dev=user`].flatMap((o) => ['-O', o]), ...options.flatMap((o) => ['-O', o]), pubFile]);
    assert.equal(r.code, 0, r.stderr);
    // ssh-keygen writes <pub without .pub>-cert.pub
    writeFileSync(certFile, readFileSync(pubFile.replace(/\.pub$/, '-cert.pub')));
  }

  /** Signs with the project's signer: any option text, also what ssh-keygen refuses to write. */
  async function resignRaw(criticalOptions: Record<string, string>): Promise<void> {
    const state = await openDirState(cluster.config.dataDir);
    await state.close();
    const ca = state.ca.get('user').active;
    const cert = signCertificate(
      new CertRequest({
        publicKey: user.cert.key,
        type: 'user',
        keyId: LOGIN,
        principals: [LOGIN],
        ttlSeconds: 3600,
        criticalOptions,
        extensions: { 'permit-pty': '', 'permit-port-forwarding': '', 'roles@jumpgate.dev': 'user' },
      }),
      ca,
      new Date(),
    );
    writeFileSync(certFile, encodeCertificateLine(cert, LOGIN) + '\n');
  }

  const jump = (who: FakeLogin): Promise<RunResult> =>
    run(ssh, ['-F', who.sshConfigFile, '-o', 'BatchMode=yes', '-J', `${LOGIN}@localhost:${cluster.sshPort}`, `${LOGIN}@node1`, 'echo jumped'], { env: who.env, timeoutMs: 60_000 });
  const denied = (code: string) => cluster.audit().filter((e) => e['event'] === 'access.denied' && e['code'] === code);

  test('ssh -J with an expired certificate is told when it expired and the tsh login command for this proxy', async () => {
    const r = await jump(expired);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`jumpgate proxy: certificate expired at \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ \\(now [^)]+\\); run \`tsh login --proxy=localhost:${cluster.webPort}\` to get a new one`), r.stderr);
    await waitFor(() => denied('CERT_EXPIRED').length > 0, 'the access.denied event for CERT_EXPIRED');
  });

  test('source-address that does not hold the client address (10.9.9.9/32 from 127.0.0.1) is refused at the proxy, with the reason', async () => {
    await resign(['source-address=10.9.9.9/32']);
    const before = denied('CERT_SOURCE_ADDRESS').length;
    const r = await jump(user);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /jumpgate proxy: this certificate may only be used from 10\.9\.9\.9\/32 \(its source-address\), and this connection comes from 127\.0\.0\.1/, r.stderr);
    await waitFor(() => denied('CERT_SOURCE_ADDRESS').length === before + 1, 'the access.denied event for CERT_SOURCE_ADDRESS');
    assert.doesNotMatch(cluster.node.log(), /Accepted publickey/, 'the node was never reached');
    // tsh shows the proxy's reason too (exit 4), not just "refused your certificate".
    const t = await run(process.execPath, [builtProgram('tsh'), 'ssh', 'node1', 'true'], { env: user.env, timeoutMs: 30_000 });
    assert.equal(t.code, 4, t.stderr);
    assert.match(t.stderr, /refused the login "root": jumpgate proxy: this certificate may only be used from 10\.9\.9\.9\/32/, t.stderr);
  });

  test('an IPv6-only list, or an IPv4-mapped IPv6 range, does not admit an IPv4 client', async () => {
    for (const list of ['::1/128,2001:db8::/32', '::ffff:127.0.0.0/104']) {
      await resign([`source-address=${list}`]);
      const r = await jump(user);
      assert.notEqual(r.code, 0, list);
      assert.match(r.stderr, /jumpgate proxy: this certificate may only be used from/, r.stderr);
    }
  });

  test('source-address holding the client address (mixed IPv6 and IPv4 list) works through the proxy and the node', async () => {
    await resign(['source-address=::1/128,10.0.0.0/8,127.0.0.0/8']);
    const r = await jump(user);
    assert.equal(r.code, 0, `${r.stderr}\n--- server ---\n${cluster.log().slice(-2000)}`);
    assert.equal(r.stdout, 'jumped\n');
  });

  test('malformed source-address lists are refused, as OpenSSH refuses them', async () => {
    for (const list of ['127.0.0.1/33', '127.0.0.1/8', '127.0.0.0/8,', 'localhost', '127.0.0.*']) {
      await resignRaw({ 'source-address': list });
      const r = await jump(user);
      assert.notEqual(r.code, 0, list);
      assert.match(r.stderr, /jumpgate proxy: the certificate's source-address .* is invalid/, `${list}: ${r.stderr}`);
    }
  });

  test('verify-required and unknown critical options are refused; force-command reaches the node, which runs the forced command', async () => {
    await resignRaw({ 'verify-required': '' });
    let r = await jump(user);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /jumpgate proxy: .*"verify-required".*security key/, r.stderr);
    await resignRaw({ 'no-such-option@example.test': '' });
    r = await jump(user);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /jumpgate proxy: .*"no-such-option@example\.test", which is not supported/, r.stderr);
    await resign(['force-command=echo forced']);
    r = await jump(user);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'forced\n');
    // At the proxy itself such a certificate reaches nodes and nothing else.
    const ls = await run(process.execPath, [builtProgram('tsh'), 'ls'], { env: user.env, timeoutMs: 30_000 });
    assert.notEqual(ls.code, 0);
    assert.match(ls.stderr, /limited to one command \(force-command\)/, ls.stderr);
  });
});
