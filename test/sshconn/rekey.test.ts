/**
 * Re-keying with certificates in both directions while megabytes move: every
 * new key exchange signs and verifies the exchange hash with the certificate
 * host key again, so a patch that only got the first exchange right fails here.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { requireTool, tempDir } from '../helpers/tools.js';
import { startSshd, type SshdNode } from '../helpers/sshd.js';
import { certConnectConfig, certIdentity, clientHostKeyAlgorithms, hostCertVerifier, type HostCertVerifier } from '../../src/sshconn/index.js';
import { formatPublicKeyLine } from '../../src/sshcert/index.js';
import { certify, connect, exec, keyPair, sshToCertServer, startCertServer, writeKeyAndCert, writeKnownHosts } from './fixtures.js';

const SIZE = 8 * 1024 * 1024;
const login = userInfo().username;

describe('re-keying with certificates while moving 8 MB each way', () => {
  const tmp = tempDir('sshconn-rekey');
  const hostCA = keyPair('ed25519', 'rekey-host-ca');
  const userCA = keyPair('ed25519', 'rekey-user-ca');
  after(() => tmp.cleanup());

  describe('ssh2 Client -> real sshd with RekeyLimit 1M', () => {
    let sshd: SshdNode;
    before(async () => {
      const hk = keyPair('ed25519', 'rekey-host');
      const files = writeKeyAndCert(join(tmp.dir, 'host'), hk, certify(hostCA, hk.publicKey, { type: 'host', principals: ['node.rekey.test'] }));
      const caFile = join(tmp.dir, 'user_ca.pub');
      writeFileSync(caFile, formatPublicKeyLine(userCA.publicKey) + '\n');
      sshd = await startSshd({ dir: tmp.dir, hostKey: files.key, hostCertificate: files.cert, trustedUserCaKeys: caFile, extra: ['RekeyLimit 1M'] });
    });
    after(() => sshd?.stop());

    test('downloads and uploads 8 MB, verifying the host certificate at every key exchange', async () => {
      const kp = keyPair('ed25519', 'rekey-user');
      const cert = certify(userCA, kp.publicKey, { type: 'user', principals: [login] });
      const verifier = hostCertVerifier({ trustedHostCAs: () => [hostCA.publicKey], hostname: 'node.rekey.test', now: () => new Date() });
      let verifications = 0;
      const counting = ((key: Buffer) => (verifications++, verifier(key))) as HostCertVerifier;
      let handshakes = 0;
      const client = await connect(
        certConnectConfig({
          host: '127.0.0.1',
          port: sshd.port,
          username: login,
          privateKey: certIdentity(kp.privateKey, cert.blob),
          hostVerifier: counting,
          algorithms: { serverHostKey: clientHostKeyAlgorithms() },
          debug: (line: string) => {
            if (line === 'Handshake completed') handshakes++;
          },
        }),
      );
      try {
        const down = await exec(client, `head -c ${SIZE} /dev/zero`);
        assert.equal(down.code, 0, down.stderr);
        assert.equal(down.stdout.length, SIZE);
        assert.ok(down.stdout.every((b) => b === 0));
        const up = await exec(client, 'wc -c', Buffer.alloc(SIZE, 0x63));
        assert.equal(up.code, 0, up.stderr);
        assert.equal(up.stdout.toString().trim(), String(SIZE));
      } finally {
        client.end();
      }
      assert.ok(handshakes >= 4, `expected several key exchanges, saw ${handshakes}`);
      assert.equal(verifications, handshakes, 'every key exchange checks the host certificate');
      assert.equal(verifier.error, undefined);
    });
  });

  test('real ssh -> ssh2 Server with RekeyLimit=1M: downloads and uploads 8 MB', async () => {
    const ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    const srv = await startCertServer('ed25519', hostCA, userCA);
    try {
      const kp = keyPair('ed25519', 'rekey-ssh-user');
      const { key } = writeKeyAndCert(join(tmp.dir, 'ssh-user'), kp, certify(userCA, kp.publicKey, { type: 'user', principals: ['alice'] }));
      const knownHosts = writeKnownHosts(tmp.dir, hostCA.publicKey);
      const base = { port: srv.port, key, knownHosts, login: 'alice', extra: ['-o', 'RekeyLimit=1M'] };
      const down = await sshToCertServer(ssh, { ...base, command: `download ${SIZE}` });
      assert.equal(down.code, 0, down.stderr.slice(-2000));
      assert.equal(down.stdout.length, SIZE);
      const up = await sshToCertServer(ssh, { ...base, command: 'upload', input: Buffer.alloc(SIZE, 0x62) });
      assert.equal(up.code, 0, up.stderr.slice(-2000));
      assert.equal(up.stdout, `${SIZE}\n`);
      for (const r of [down, up]) {
        const kexes = r.stderr.match(/SSH2_MSG_KEXINIT sent/g)?.length ?? 0;
        assert.ok(kexes >= 4, `expected several key exchanges, saw ${kexes}`);
      }
    } finally {
      await srv.stop();
    }
  });
});
