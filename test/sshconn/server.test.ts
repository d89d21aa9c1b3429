/**
 * Real OpenSSH `ssh` against an ssh2 Server that presents a host certificate
 * (hostCertKey) and checks user certificates (verifyUserCertAuth): what the
 * proxy's SSH service does. ssh trusts only an `@cert-authority` line with
 * StrictHostKeyChecking=yes, so success means the certificate path worked.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool, tempDir, type RunResult } from '../helpers/tools.js';
import { encodeOpenSSHPrivateKey, fingerprintSha256, generateKeyPair, type KeyKind } from '../../src/sshcert/index.js';
import { CERT_SERVER_HOST as HOST, certify, keyPair, sshToCertServer, startCertServer, writeKeyAndCert, writeKnownHosts } from './fixtures.js';

/** What OpenSSH 9.2 negotiates with the patched ssh2 for each key kind. */
const HOST_ALGO: Record<string, string> = {
  ed25519: 'ssh-ed25519-cert-v01@openssh.com',
  'ecdsa-p256': 'ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'rsa-3072': 'rsa-sha2-512-cert-v01@openssh.com',
};
/** ctx.key.algo in ssh2's authentication event (RSA: the certificate type, the hash in ctx.hashAlgo). */
const USER_ALGO: Record<string, string> = {
  ed25519: 'ssh-ed25519-cert-v01@openssh.com',
  'ecdsa-p256': 'ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'rsa-3072': 'ssh-rsa-cert-v01@openssh.com',
};
const LOGIN = 'alice';

describe('real ssh -> ssh2 Server with a host certificate', () => {
  const tmp = tempDir('sshconn-server');
  const hostCA = keyPair('ed25519', 'server-host-ca');
  const userCA = keyPair('ed25519', 'server-user-ca');
  const knownHosts = writeKnownHosts(tmp.dir, hostCA.publicKey);
  let ssh: string;

  before(() => {
    ssh = requireTool('ssh', 'apt-get install -y openssh-client');
  });
  after(() => tmp.cleanup());

  const sshTo = (port: number, key: string, command: string, extra: string[] = [], input?: Buffer): Promise<RunResult> =>
    sshToCertServer(ssh, { port, key, knownHosts, login: LOGIN, command, extra, ...(input ? { input } : {}) });

  function userKey(kind: KeyKind, name: string, opts: { ca?: ReturnType<typeof keyPair>; signedAt?: Date } = {}): string {
    const kp = keyPair(kind, 'server-user');
    const cert = certify(opts.ca ?? userCA, kp.publicKey, { type: 'user', principals: [LOGIN], ...(opts.signedAt ? { signedAt: opts.signedAt } : {}) });
    return writeKeyAndCert(join(tmp.dir, name), kp, cert).key;
  }

  for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-3072'] as const) {
    test(`connects without a prompt to a ${kind} host certificate, logs in with a ${kind} user certificate, and runs a command`, async () => {
      const srv = await startCertServer(kind, hostCA, userCA);
      try {
        const r = await sshTo(srv.port, userKey(kind, `user-${kind}`), 'echo hi');
        assert.equal(r.code, 3, `ssh failed:\n${r.stderr}`);
        assert.equal(r.stdout, 'ssh2 ran: echo hi\n');
        assert.match(r.stderr, /to stderr/);
        // ssh saw and trusted the certificate, not a bare key.
        assert.match(r.stderr, new RegExp(`kex: host key algorithm: ${HOST_ALGO[kind]}\\b`));
        assert.match(r.stderr, /Server host certificate: \S+-cert-v01@openssh\.com/);
        assert.match(r.stderr, new RegExp(`Host '${HOST.replace(/\./g, '\\.')}' is known and matches the \\S+-CERT host certificate`));
        // ssh2's server-sig-algs is a proper comma-separated list.
        assert.match(r.stderr, /server-sig-algs=<[^>]*ecdsa-sha2-nistp521,rsa-sha2-512,/);
        const ok = srv.auths.filter((a) => a.cert && a.signed);
        assert.equal(ok.length, 1, `auths: ${JSON.stringify(srv.auths.map((a) => [a.algo, a.signed, a.error?.code]))}`);
        assert.equal(ok[0]!.algo, USER_ALGO[kind]);
        if (kind === 'rsa-3072') assert.equal(ok[0]!.hashAlgo, 'sha512', 'RSA user certificates sign with rsa-sha2-512 (RFC 8332), not SHA-1');
        assert.equal(ok[0]!.cert!.keyId, `user-${LOGIN}`);
      } finally {
        await srv.stop();
      }
    });
  }

  test('refuses a user certificate from another CA, saying which CA', async () => {
    const srv = await startCertServer('ed25519', hostCA, userCA);
    try {
      const rogue = generateKeyPair('ed25519');
      const r = await sshTo(srv.port, userKey('ed25519', 'user-rogue', { ca: rogue }), 'echo hi');
      assert.equal(r.code, 255);
      assert.match(r.stderr, /Permission denied \(publickey\)/);
      assert.equal(r.stdout, '');
      const certAttempts = srv.auths.filter((a) => a.algo.endsWith('-cert-v01@openssh.com'));
      assert.ok(certAttempts.length > 0);
      for (const a of certAttempts) {
        assert.equal(a.error?.code, 'CERT_UNTRUSTED_CA');
        assert.ok(a.error.message.includes(fingerprintSha256(rogue.publicKey.blob)), a.error.message);
      }
      assert.ok(srv.auths.every((a) => !a.cert), 'nothing may be accepted');
    } finally {
      await srv.stop();
    }
  });

  test('refuses an expired user certificate', async () => {
    const srv = await startCertServer('ed25519', hostCA, userCA);
    try {
      const r = await sshTo(srv.port, userKey('ed25519', 'user-expired', { signedAt: new Date(Date.now() - 3 * 3600_000) }), 'echo hi');
      assert.equal(r.code, 255);
      assert.match(r.stderr, /Permission denied \(publickey\)/);
      const certAttempts = srv.auths.filter((a) => a.algo.endsWith('-cert-v01@openssh.com'));
      assert.ok(certAttempts.length > 0);
      for (const a of certAttempts) assert.equal(a.error?.code, 'CERT_EXPIRED');
    } finally {
      await srv.stop();
    }
  });

  test('refuses the bare key of a certificate (no certificate, no login)', async () => {
    const srv = await startCertServer('ed25519', hostCA, userCA);
    try {
      // ssh picks up KEY-cert.pub by itself, so the bare key lives alone.
      const key = join(tmp.dir, 'user-bare');
      writeFileSync(key, encodeOpenSSHPrivateKey(keyPair('ed25519', 'server-user').privateKey), { mode: 0o600 });
      const r = await sshTo(srv.port, key, 'echo hi');
      assert.equal(r.code, 255);
      assert.ok(srv.auths.length > 0);
      for (const a of srv.auths) assert.equal(a.error?.code, 'CERT_MALFORMED');
    } finally {
      await srv.stop();
    }
  });
});
