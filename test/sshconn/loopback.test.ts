/**
 * Both ends patched: an ssh2 Client (tsh) against an ssh2 Server (the proxy),
 * each side checking the other's certificate through sshconn. Real OpenSSH
 * is covered by the other files; this is the hop tsh -> proxy.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../helpers/tools.js';
import { certConnectConfig, certIdentity, clientHostKeyAlgorithms, hostCertVerifier } from '../../src/sshconn/index.js';
import { generateKeyPair } from '../../src/sshcert/index.js';
import { CERT_SERVER_HOST, certify, connect, exec, keyPair, startCertServer, type KeyPair } from './fixtures.js';

describe('ssh2 Client -> ssh2 Server, certificates both ways', () => {
  const tmp = tempDir('sshconn-loopback');
  const hostCA = keyPair('ed25519', 'loop-host-ca');
  const userCA = keyPair('ed25519', 'loop-user-ca');
  after(() => tmp.cleanup());

  function config(port: number, user: KeyPair, userCertCA: KeyPair = userCA) {
    const cert = certify(userCertCA, user.publicKey, { type: 'user', principals: ['alice'] });
    const verifier = hostCertVerifier({ trustedHostCAs: () => [hostCA.publicKey], hostname: CERT_SERVER_HOST, now: () => new Date() });
    const cfg = certConnectConfig({
      host: '127.0.0.1',
      port,
      username: 'alice',
      privateKey: certIdentity(user.privateKey, cert.blob),
      hostVerifier: verifier,
      algorithms: { serverHostKey: clientHostKeyAlgorithms() },
    });
    return { cfg, verifier };
  }

  for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-3072'] as const) {
    test(`${kind} host and user certificates: exec works and a re-key mid-transfer keeps the session`, async () => {
      const srv = await startCertServer(kind, hostCA, userCA);
      try {
        const { cfg, verifier } = config(srv.port, keyPair(kind, 'loop-user'));
        const client = await connect(cfg);
        try {
          const r = await exec(client, 'echo hi');
          assert.equal(r.stdout.toString(), 'ssh2 ran: echo hi\n');
          assert.equal(r.code, 3);
          // ssh2's Client cannot start a re-key; the server does, halfway through.
          const download = await exec(client, `download ${4 * 1024 * 1024} rekey`);
          assert.equal(download.stdout.length, 4 * 1024 * 1024);
          assert.equal(srv.stats.rekeys, 1);
          assert.equal((await exec(client, 'after')).stdout.toString(), 'ssh2 ran: after\n');
        } finally {
          client.end();
        }
        assert.equal(verifier.error, undefined);
        assert.equal(verifier.certificate?.key.type, keyPair(kind, 'server-host').publicKey.type);
        const ok = srv.auths.filter((a) => a.cert && a.signed);
        assert.equal(ok.length, 1);
        if (kind === 'rsa-3072') assert.match(ok[0]!.hashAlgo ?? '', /^sha(256|512)$/);
      } finally {
        await srv.stop();
      }
    });
  }

  test('the server refuses a user certificate from another CA with CERT_UNTRUSTED_CA', async () => {
    const srv = await startCertServer('ed25519', hostCA, userCA);
    try {
      const { cfg } = config(srv.port, keyPair('ed25519', 'loop-user'), { ...generateKeyPair('ed25519') });
      await assert.rejects(connect(cfg), /All configured authentication methods failed/);
      assert.ok(srv.auths.length > 0);
      assert.ok(srv.auths.every((a) => a.error?.code === 'CERT_UNTRUSTED_CA'));
    } finally {
      await srv.stop();
    }
  });
});
