/**
 * ssh2 Client against a real OpenSSH sshd that trusts only a user CA and
 * presents only a host certificate: what tsh does. The host is checked by
 * hostCertVerifier (never trust-on-first-use); the user authenticates with
 * certIdentity or with a certificate held by a real ssh-agent.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import ssh2 from 'ssh2';
import type { ConnectConfig, ParsedKey, PublicKeyAuthMethod } from 'ssh2';
import { requireTool, run, tempDir } from '../helpers/tools.js';
import { startSshd, type SshdNode } from '../helpers/sshd.js';
import {
  certConnectConfig,
  certIdentity,
  clientHostKeyAlgorithms,
  type CertConnectConfig,
  hostCertVerifier,
  type HostCertVerifier,
} from '../../src/sshconn/index.js';
import { formatPublicKeyLine, generateKeyPair, type KeyKind, type PublicKey } from '../../src/sshcert/index.js';
import { certify, connect, exec, keyPair, writeKeyAndCert } from './fixtures.js';

const login = userInfo().username;
const NODE = 'node1.sshconn.test';

/** sshd's name for a certificate key type in "Accepted publickey ... ssh2: <TYPE>". */
const SSHD_CERT_TYPE: Record<string, string> = { ed25519: 'ED25519-CERT', 'ecdsa-p256': 'ECDSA-CERT', 'rsa-3072': 'RSA-CERT' };

describe('ssh2 Client -> real sshd with host and user certificates', () => {
  const tmp = tempDir('sshconn-client');
  const hostCA = keyPair('ed25519', 'client-host-ca');
  const userCA = keyPair('ed25519', 'client-user-ca');
  let sshd: SshdNode;

  before(async () => {
    const hostKeys: string[] = [];
    // One host certificate per key kind, so each certificate algorithm can be asked for.
    for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-3072'] as const) {
      const kp = keyPair(kind, 'client-host');
      const files = writeKeyAndCert(join(tmp.dir, `host_${kind}`), kp, certify(hostCA, kp.publicKey, { type: 'host', principals: [NODE, '*.wild.sshconn.test'] }));
      hostKeys.push(files.key);
    }
    const userCaFile = join(tmp.dir, 'user_ca.pub');
    writeFileSync(userCaFile, formatPublicKeyLine(userCA.publicKey) + '\n');
    sshd = await startSshd({
      dir: tmp.dir,
      hostKey: hostKeys[0]!,
      hostCertificate: `${hostKeys[0]}-cert.pub`,
      trustedUserCaKeys: userCaFile,
      extra: hostKeys.slice(1).flatMap((k) => [`HostKey ${k}`, `HostCertificate ${k}-cert.pub`]),
    });
  });
  after(async () => {
    await sshd?.stop();
    tmp.cleanup();
  });

  function base(verifier: HostCertVerifier, extra: Partial<CertConnectConfig> = {}): ConnectConfig {
    return certConnectConfig({
      host: '127.0.0.1',
      port: sshd.port,
      username: login,
      hostVerifier: verifier,
      algorithms: { serverHostKey: clientHostKeyAlgorithms() },
      ...extra,
    });
  }

  const verifierFor = (hostname = NODE, cas: PublicKey[] = [hostCA.publicKey]): HostCertVerifier =>
    hostCertVerifier({ trustedHostCAs: () => cas, hostname, now: () => new Date() });

  function userCert(kind: KeyKind) {
    const kp = keyPair(kind, 'client-user');
    return { kp, cert: certify(userCA, kp.publicKey, { type: 'user', principals: [login], keyId: `jumpgate-${kind}` }) };
  }

  for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-3072'] as const) {
    test(`logs in with a ${kind} user certificate (certIdentity) after checking the host certificate, and runs echo hi`, async () => {
      const { kp, cert } = userCert(kind);
      const verifier = verifierFor();
      const client = await connect(base(verifier, { privateKey: certIdentity(kp.privateKey, cert.blob) }));
      try {
        const r = await exec(client, 'echo hi');
        assert.equal(r.stdout.toString(), 'hi\n');
        assert.equal(r.code, 0);
        assert.equal(verifier.error, undefined);
        assert.deepEqual(verifier.certificate?.principals, [NODE, '*.wild.sshconn.test']);
      } finally {
        client.end();
      }
      await sshd.waitForLog(new RegExp(`Accepted publickey for ${login} from 127\\.0\\.0\\.1 port \\d+ ssh2: ${SSHD_CERT_TYPE[kind]} .*ID jumpgate-${kind} `));
    });
  }

  test('an authHandler publickey entry with certIdentity works too', async () => {
    const { kp, cert } = userCert('ed25519');
    const method: PublicKeyAuthMethod = { type: 'publickey', username: login, key: certIdentity(kp.privateKey, cert.blob) };
    const client = await connect(base(verifierFor(), { authHandler: [method] }));
    try {
      assert.equal((await exec(client, 'echo hi')).stdout.toString(), 'hi\n');
    } finally {
      client.end();
    }
  });

  for (const [kind, algo] of [
    ['ed25519', 'ssh-ed25519-cert-v01@openssh.com'],
    ['ecdsa-p256', 'ecdsa-sha2-nistp256-cert-v01@openssh.com'],
    ['rsa-3072', 'rsa-sha2-512-cert-v01@openssh.com'],
    ['rsa-3072', 'rsa-sha2-256-cert-v01@openssh.com'],
  ] as const) {
    test(`verifies a ${kind} host certificate negotiated as ${algo}`, async () => {
      const { kp, cert } = userCert('ed25519');
      const verifier = verifierFor();
      const seen: Buffer[] = [];
      const recording = ((key: Buffer) => (seen.push(key), verifier(key))) as HostCertVerifier;
      const client = await connect({ ...base(recording, { privateKey: certIdentity(kp.privateKey, cert.blob) }), algorithms: { serverHostKey: [algo as never] } });
      client.end();
      assert.equal(verifier.certificate?.key.blob.equals(keyPair(kind, 'client-host').publicKey.blob), true);
      // ssh2 handed over the certificate blob itself, not a bare key or a fingerprint.
      assert.ok(seen[0]?.equals(verifier.certificate!.blob));
    });
  }

  test('accepts a host name matched by a wildcard principal', async () => {
    const { kp, cert } = userCert('ed25519');
    const client = await connect(base(verifierFor('db.wild.sshconn.test'), { privateKey: certIdentity(kp.privateKey, cert.blob) }));
    client.end();
  });

  test('refuses a host certificate from a host CA it does not trust, and says so', async () => {
    const { kp, cert } = userCert('ed25519');
    const otherCA = generateKeyPair('ed25519');
    const verifier = verifierFor(NODE, [otherCA.publicKey]);
    await assert.rejects(connect(base(verifier, { privateKey: certIdentity(kp.privateKey, cert.blob) })), /Host denied/);
    assert.equal(verifier.error?.code, 'CERT_UNTRUSTED_CA');
    assert.equal(verifier.certificate, undefined);
  });

  test('refuses a host certificate whose principals do not include the host name', async () => {
    const { kp, cert } = userCert('ed25519');
    const verifier = verifierFor('other.sshconn.test');
    await assert.rejects(connect(base(verifier, { privateKey: certIdentity(kp.privateKey, cert.blob) })), /Host denied/);
    assert.equal(verifier.error?.code, 'CERT_PRINCIPAL_MISMATCH');
    assert.match(verifier.error!.message, /host name "other\.sshconn\.test" is not allowed/);
  });

  test('refuses a plain host key: no trust on first use', async () => {
    const { kp, cert } = userCert('ed25519');
    const verifier = verifierFor();
    const cfg = { ...base(verifier, { privateKey: certIdentity(kp.privateKey, cert.blob) }), algorithms: { serverHostKey: ['ssh-ed25519' as const] } };
    await assert.rejects(connect(cfg), /Host denied/);
    assert.match(verifier.error!.message, /presented a plain ssh-ed25519 host key \(SHA256:[^)]+\), not a host certificate/);
  });

  // What sshd logs is what an operator sees when a login is refused (a CA not listed is only explained at LogLevel DEBUG2).
  for (const [what, opts, logLine] of [
    ['from another user CA', { ca: 'rogue' }, undefined],
    ['that has expired', { signedAt: new Date(Date.now() - 3 * 3600_000) }, /Certificate invalid: expired/],
    ['that does not list the login', { principals: ['somebody-else'] }, /Certificate invalid: name is not a listed principal/],
  ] as const) {
    test(`sshd refuses a user certificate ${what}`, async () => {
      const kp = keyPair('ed25519', 'client-refused');
      const id = `refused-${'ca' in opts ? 'rogue' : 'signedAt' in opts ? 'expired' : 'principal'}`;
      const cert = certify('ca' in opts ? generateKeyPair('ed25519') : userCA, kp.publicKey, {
        type: 'user',
        principals: 'principals' in opts ? [...opts.principals] : [login],
        keyId: id,
        ...('signedAt' in opts ? { signedAt: opts.signedAt } : {}),
      });
      await assert.rejects(connect(base(verifierFor(), { privateKey: certIdentity(kp.privateKey, cert.blob) })), /All configured authentication methods failed/);
      if (logLine) await sshd.waitForLog(logLine);
      // sshd names the certificate (key id, serial, CA fingerprint) in its INFO line.
      await sshd.waitForLog(new RegExp(`Failed publickey for \\S+ from 127\\.0\\.0\\.1 port \\d+ ssh2: ED25519-CERT \\S+ ID ${id} \\(serial \\d+\\) CA ED25519 SHA256:`));
    });
  }

  for (const kind of ['ed25519', 'rsa-3072'] as const) {
    test(`logs in with a ${kind} certificate held by a real ssh-agent`, async () => {
      const sshAgent = requireTool('ssh-agent', 'apt-get install -y openssh-client');
      const sshAdd = requireTool('ssh-add', 'apt-get install -y openssh-client');
      const { kp, cert } = userCert(kind);
      const files = writeKeyAndCert(join(tmp.dir, `agent_${kind}`), kp, cert);
      const sock = join(tmp.dir, `agent_${kind}.sock`);
      const agent: ChildProcess = spawn(sshAgent, ['-D', '-a', sock], { stdio: 'ignore' });
      try {
        for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 10));
        // ssh-add loads the key and, from KEY-cert.pub next to it, the certificate.
        const added = await run(sshAdd, [files.key], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
        assert.equal(added.code, 0, added.stderr);
        assert.match(added.stderr, /Certificate added/);

        const identities = await new Promise<ParsedKey[]>((resolve, reject) =>
          new ssh2.OpenSSHAgent(sock).getIdentities((err, keys) => (err ? reject(err) : resolve((keys ?? []) as ParsedKey[]))),
        );
        assert.deepEqual(identities.map((k) => k.type as string), [kp.publicKey.type, cert.algorithm], 'ssh2 must list the certificate identity too');

        const client = await connect(base(verifierFor(), { agent: sock }));
        try {
          assert.equal((await exec(client, 'echo hi')).stdout.toString(), 'hi\n');
        } finally {
          client.end();
        }
        await sshd.waitForLog(new RegExp(`Accepted publickey for ${login} .*ssh2: ${SSHD_CERT_TYPE[kind]} .*ID jumpgate-${kind} `));
      } finally {
        agent.kill('SIGTERM');
      }
    });
  }
});
