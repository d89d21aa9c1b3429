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
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import { requireTool, run, tempDir, type RunResult } from '../helpers/tools.js';
import { hostCertKey, verifyUserCertAuth } from '../../src/sshconn/index.js';
import {
  CertError,
  encodeCertificateLine,
  encodeOpenSSHPrivateKey,
  fingerprintSha256,
  generateKeyPair,
  type Certificate,
  type KeyKind,
} from '../../src/sshcert/index.js';
import { certify, keyPair, writeKeyAndCert, writeKnownHosts } from './fixtures.js';

const HOST = 'proxy.sshconn.test';

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

interface AuthRecord {
  algo: string;
  hashAlgo: string | undefined;
  signed: boolean;
  cert?: Certificate;
  error?: CertError;
}

/** An ssh2 Server on 127.0.0.1:0 presenting a host certificate of `kind`, trusting `userCA`. */
async function startServer(kind: KeyKind, hostCA: ReturnType<typeof keyPair>, userCA: ReturnType<typeof keyPair>) {
  const hostKey = keyPair(kind, 'server-host');
  const hostCert = certify(hostCA, hostKey.publicKey, { type: 'host', principals: [HOST] });
  const auths: AuthRecord[] = [];
  const server = new ssh2.Server({ hostKeys: [hostCertKey(encodeOpenSSHPrivateKey(hostKey.privateKey), encodeCertificateLine(hostCert))] }, (conn) => {
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      const rec: AuthRecord = { algo: ctx.key.algo, hashAlgo: ctx.hashAlgo, signed: ctx.signature !== undefined };
      auths.push(rec);
      try {
        rec.cert = verifyUserCertAuth(ctx, { trustedUserCAs: [userCA.publicKey], now: new Date() });
        ctx.accept();
      } catch (err) {
        if (!(err instanceof CertError)) throw err;
        rec.error = err;
        ctx.reject(['publickey']);
      }
    });
    conn.on('ready', () => {
      conn.on('session', (accept) => {
        const session = accept();
        session.on('exec', (acceptExec, _reject, info) => {
          const ch = acceptExec();
          const download = /^download (\d+)$/.exec(info.command);
          if (download) {
            // Write in chunks, honouring back-pressure, then exit.
            let left = Number(download[1]);
            const chunk = Buffer.alloc(64 * 1024, 0x61);
            const pump = (): void => {
              while (left > 0) {
                const n = Math.min(left, chunk.length);
                left -= n;
                if (!ch.write(chunk.subarray(0, n))) return void ch.once('drain', pump);
              }
              ch.exit(0);
              ch.end();
            };
            pump();
          } else if (info.command === 'upload') {
            let n = 0;
            ch.on('data', (b: Buffer) => (n += b.length));
            ch.on('end', () => {
              ch.write(`${n}\n`);
              ch.exit(0);
              ch.end();
            });
          } else {
            ch.write(`ssh2 ran: ${info.command}\n`);
            ch.stderr.write('to stderr\n');
            ch.exit(3);
            ch.end();
          }
        });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    auths,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

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

  /** Plain OpenSSH: no config, no agent, only the key, its certificate and the @cert-authority line. */
  function sshTo(port: number, key: string, command: string, extra: string[] = [], input?: Buffer): Promise<RunResult> {
    return run(
      ssh,
      [
        '-v',
        '-F', 'none',
        '-p', String(port),
        '-i', key,
        '-o', `CertificateFile=${key}-cert.pub`,
        '-o', 'IdentitiesOnly=yes',
        '-o', 'IdentityAgent=none',
        '-o', 'BatchMode=yes',
        '-o', 'StrictHostKeyChecking=yes',
        '-o', `UserKnownHostsFile=${knownHosts}`,
        '-o', 'GlobalKnownHostsFile=/dev/null',
        '-o', 'UpdateHostKeys=no',
        '-o', `HostKeyAlias=${HOST}`,
        '-o', 'ConnectTimeout=10',
        ...extra,
        '-l', LOGIN,
        '127.0.0.1',
        command,
      ],
      { timeoutMs: 60_000, ...(input ? { input } : {}) },
    );
  }

  function userKey(kind: KeyKind, name: string, opts: { ca?: ReturnType<typeof keyPair>; signedAt?: Date } = {}): string {
    const kp = keyPair(kind, 'server-user');
    const cert = certify(opts.ca ?? userCA, kp.publicKey, { type: 'user', principals: [LOGIN], ...(opts.signedAt ? { signedAt: opts.signedAt } : {}) });
    return writeKeyAndCert(join(tmp.dir, name), kp, cert).key;
  }

  for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-3072'] as const) {
    test(`connects without a prompt to a ${kind} host certificate, logs in with a ${kind} user certificate, and runs a command`, async () => {
      const srv = await startServer(kind, hostCA, userCA);
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
    const srv = await startServer('ed25519', hostCA, userCA);
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
    const srv = await startServer('ed25519', hostCA, userCA);
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
    const srv = await startServer('ed25519', hostCA, userCA);
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

  test('re-keys (RekeyLimit=1M) while moving 8 MB each way', async () => {
    const srv = await startServer('ed25519', hostCA, userCA);
    try {
      const key = userKey('ed25519', 'user-rekey');
      const size = 8 * 1024 * 1024;
      const down = await sshTo(srv.port, key, `download ${size}`, ['-o', 'RekeyLimit=1M']);
      assert.equal(down.code, 0, down.stderr.slice(-2000));
      assert.equal(down.stdout.length, size);
      const up = await sshTo(srv.port, key, 'upload', ['-o', 'RekeyLimit=1M'], Buffer.alloc(size, 0x62));
      assert.equal(up.code, 0, up.stderr.slice(-2000));
      assert.equal(up.stdout, `${size}\n`);
      for (const r of [down, up]) {
        const kexes = r.stderr.match(/SSH2_MSG_KEXINIT sent/g)?.length ?? 0;
        assert.ok(kexes >= 4, `expected several key exchanges, saw ${kexes}`);
      }
    } finally {
      await srv.stop();
    }
  });
});
