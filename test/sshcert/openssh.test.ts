/**
 * Cross-checks against the real OpenSSH tools, in both directions. A missing
 * ssh-keygen fails the suite (with the package to install); it never skips.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool, run, tempDir } from '../helpers/tools.js';
import {
  CertError,
  CertRequest,
  encodeCertificateLine,
  encodeOpenSSHPrivateKey,
  fingerprintSha256,
  formatPublicKeyLine,
  parseCertificateLine,
  parseOpenSSHPrivateKey,
  parsePublicKeyLine,
  signCertificate,
  verifyCertificate,
  type CertType,
  type KeyKind,
} from '../../src/sshcert/index.js';
import { KINDS, keyPair, NOW } from './fixtures.js';

let keygen = '';
let dir = '';
let cleanup = (): void => {};
let seq = 0;

before(() => {
  keygen = requireTool('ssh-keygen', 'apt-get install -y openssh-client');
  ({ dir, cleanup } = tempDir('sshcert'));
});
after(() => cleanup());

/** Runs ssh-keygen in the temp dir with a fixed time zone (it prints validity in local time). */
async function sshKeygen(args: string[]): Promise<string> {
  const res = await run(keygen, args, { cwd: dir, env: { ...process.env, TZ: 'UTC' } });
  if (res.code !== 0) throw new Error(`ssh-keygen ${args.join(' ')} failed (${res.code}): ${res.stderr}`);
  return res.stdout + res.stderr;
}

function file(name: string): string {
  return join(dir, `${seq++}-${name}`);
}

const SSH_TYPE_WORD: Record<KeyKind, string> = {
  ed25519: 'ED25519',
  'ecdsa-p256': 'ECDSA',
  'ecdsa-p384': 'ECDSA',
  'ecdsa-p521': 'ECDSA',
  'rsa-3072': 'RSA',
};

/** The lines under a heading of `ssh-keygen -L` ("Principals:", "Critical Options:", "Extensions:"). */
function section(listing: string, heading: string): string[] {
  const lines = listing.split('\n');
  const at = lines.findIndex((l) => l.trim() === heading || l.trim() === `${heading} (none)`);
  assert.ok(at >= 0, `no "${heading}" in:\n${listing}`);
  const out: string[] = [];
  for (const l of lines.slice(at + 1)) {
    if (!/^\s{16}\S/.test(l)) break;
    out.push(l.trim());
  }
  return out;
}

// (a) certificates written by the library, read by ssh-keygen -L
for (const caKind of KINDS) {
  for (const type of ['user', 'host'] as CertType[]) {
    test(`ssh-keygen -L reads a ${type} certificate signed by a ${caKind} CA and shows every field`, async () => {
      const ca = keyPair(caKind);
      const subject = keyPair('ecdsa-p256').publicKey;
      const req = new CertRequest({
        publicKey: subject,
        type,
        keyId: type === 'user' ? 'alice@example.test' : 'node1',
        principals: type === 'user' ? ['alice', 'root'] : ['node1', 'node1.example.test'],
        ttlSeconds: 86400,
        serial: 1234567890123n,
        ...(type === 'user'
          ? {
              criticalOptions: { 'force-command': '/usr/bin/true', 'source-address': '10.0.0.0/8,127.0.0.1' },
              extensions: { 'permit-pty': '', 'permit-port-forwarding': '', 'roles@jumpgate.example': 'admin' },
            }
          : {}),
      });
      const cert = signCertificate(req, ca, NOW);
      const path = file('cert.pub');
      writeFileSync(path, encodeCertificateLine(cert, 'c') + '\n');
      const out = await sshKeygen(['-L', '-f', path]);
      assert.match(out, new RegExp(`Type: ecdsa-sha2-nistp256-cert-v01@openssh\\.com ${type} certificate`));
      const sigAlg = caKind === 'rsa-3072' ? 'rsa-sha2-512' : ca.publicKey.type;
      assert.ok(
        out.includes(`Signing CA: ${SSH_TYPE_WORD[caKind]} ${fingerprintSha256(ca.publicKey.blob)} (using ${sigAlg})`),
        out,
      );
      assert.ok(out.includes(`Public key: ECDSA-CERT ${fingerprintSha256(subject.blob)}`), out);
      assert.ok(out.includes(`Key ID: "${req.keyId}"`), out);
      assert.ok(out.includes('Serial: 1234567890123'), out);
      assert.ok(out.includes('Valid: from 2026-11-21T09:59:00 to 2026-11-22T10:00:00'), out);
      assert.deepEqual(section(out, 'Principals:'), req.principals);
      if (type === 'user') {
        assert.deepEqual(section(out, 'Critical Options:'), ['force-command /usr/bin/true', 'source-address 10.0.0.0/8,127.0.0.1']);
        const ext = section(out, 'Extensions:');
        assert.deepEqual(ext.slice(0, 2), ['permit-port-forwarding', 'permit-pty']);
        // ssh-keygen shows extensions it does not know as UNKNOWN OPTION with the raw data: fine.
        assert.match(ext[2]!, /^roles@jumpgate\.example UNKNOWN OPTION: 0000000561646d696e \(len 9\)$/);
      } else {
        assert.match(out, /Critical Options: \(none\)/);
        assert.match(out, /Extensions: \(none\)/);
      }
    });
  }
}

// (b) CA keys written by the library, used by ssh-keygen -s and read by -y
for (const caKind of KINDS) {
  test(`ssh-keygen -y and -s accept a ${caKind} CA key written by encodeOpenSSHPrivateKey`, async () => {
    const ca = keyPair(caKind);
    const caPath = file('ca');
    writeFileSync(caPath, encodeOpenSSHPrivateKey(ca.privateKey, 'jumpgate CA'), { mode: 0o600 });
    const y = (await sshKeygen(['-y', '-f', caPath])).trim();
    assert.equal(y, formatPublicKeyLine(ca.publicKey, 'jumpgate CA'));
    const keyPath = file('user');
    writeFileSync(`${keyPath}.pub`, formatPublicKeyLine(keyPair('ed25519').publicKey) + '\n');
    await sshKeygen(['-s', caPath, '-I', 'id', '-n', 'alice', '-V', '+1h', `${keyPath}.pub`]);
    const { cert } = parseCertificateLine(readFileSync(`${keyPath}-cert.pub`, 'utf8'));
    verifyCertificate(cert, { trustedCAs: [ca.publicKey], now: new Date(), type: 'user', principal: 'alice' });
  });
}

// (c) certificates made by ssh-keygen -s, parsed and verified by the library
const caSources: Array<{ name: string; make: (path: string) => Promise<void>; sigType?: string }> = [
  { name: 'an ed25519 CA written by the library', make: async (p) => writeCa(p, 'ed25519') },
  { name: 'an ECDSA P-256 CA from ssh-keygen', make: async (p) => void (await sshKeygen(['-q', '-t', 'ecdsa', '-b', '256', '-N', '', '-f', p])) },
  { name: 'an ECDSA P-384 CA from ssh-keygen', make: async (p) => void (await sshKeygen(['-q', '-t', 'ecdsa', '-b', '384', '-N', '', '-f', p])) },
  { name: 'an ECDSA P-521 CA from ssh-keygen', make: async (p) => void (await sshKeygen(['-q', '-t', 'ecdsa', '-b', '521', '-N', '', '-f', p])) },
  { name: 'an RSA CA from ssh-keygen signing with rsa-sha2-256', make: async (p) => void (await sshKeygen(['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', p])), sigType: 'rsa-sha2-256' },
  { name: 'an RSA CA from ssh-keygen signing with rsa-sha2-512', make: async (p) => void (await sshKeygen(['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', p])), sigType: 'rsa-sha2-512' },
];

function writeCa(path: string, kind: KeyKind): void {
  const ca = keyPair(kind);
  writeFileSync(path, encodeOpenSSHPrivateKey(ca.privateKey, 'ca'), { mode: 0o600 });
  writeFileSync(`${path}.pub`, formatPublicKeyLine(ca.publicKey, 'ca') + '\n');
}

for (const src of caSources) {
  for (const type of ['user', 'host'] as CertType[]) {
    test(`parses and verifies a ${type} certificate made by ssh-keygen -s with ${src.name}`, async () => {
      const caPath = file('ca');
      await src.make(caPath);
      const caPub = parsePublicKeyLine(readFileSync(`${caPath}.pub`, 'utf8')).key;
      const keyPath = file('subject');
      await sshKeygen(['-q', '-t', 'ed25519', '-N', '', '-C', 'subject', '-f', keyPath]);
      const args = ['-s', caPath, '-I', 'the-id', '-n', 'a,b', '-V', '+1h', '-z', '77'];
      if (src.sigType) args.push('-t', src.sigType);
      if (type === 'host') args.push('-h');
      else args.push('-O', 'force-command=ls -l', '-O', 'source-address=10.1.0.0/16', '-O', 'extension:roles@jumpgate=admin', '-O', 'extension:flag@jumpgate', '-O', 'no-x11-forwarding');
      await sshKeygen([...args, `${keyPath}.pub`]);
      const { cert, comment } = parseCertificateLine(readFileSync(`${keyPath}-cert.pub`, 'utf8'));
      assert.equal(comment, 'subject');
      assert.equal(cert.type, type);
      assert.equal(cert.keyId, 'the-id');
      assert.equal(cert.serial, 77n);
      assert.deepEqual(cert.principals, ['a', 'b']);
      assert.deepEqual(cert.key.blob, parsePublicKeyLine(readFileSync(`${keyPath}.pub`, 'utf8')).key.blob);
      assert.equal(cert.signatureAlgorithm, src.sigType ?? caPub.type);
      assert.ok(cert.validBefore - cert.validAfter >= 3600n);
      if (type === 'user') {
        assert.deepEqual(Object.fromEntries(cert.criticalOptions), { 'force-command': 'ls -l', 'source-address': '10.1.0.0/16' });
        assert.deepEqual(Object.fromEntries(cert.extensions), {
          'flag@jumpgate': '',
          'permit-agent-forwarding': '',
          'permit-port-forwarding': '',
          'permit-pty': '',
          'permit-user-rc': '',
          'roles@jumpgate': 'admin',
        });
        // ssh-keygen writes the options sorted by name, as PROTOCOL.certkeys asks.
        assert.deepEqual([...cert.extensions.keys()], [...cert.extensions.keys()].sort());
      } else {
        assert.equal(cert.criticalOptions.size, 0);
        assert.equal(cert.extensions.size, 0);
      }
      // The user certificates carry source-address=10.1.0.0/16: a client inside it.
      verifyCertificate(cert, { trustedCAs: [caPub], now: new Date(), type, principal: 'b', clientAddress: '10.1.2.3' });
    });
  }
}

// (d) keys generated by ssh-keygen, read by parseOpenSSHPrivateKey
const keygenKinds: Array<[string, string[]]> = [
  ['ed25519', ['-t', 'ed25519']],
  ['ecdsa 256', ['-t', 'ecdsa', '-b', '256']],
  ['ecdsa 384', ['-t', 'ecdsa', '-b', '384']],
  ['ecdsa 521', ['-t', 'ecdsa', '-b', '521']],
  ['rsa 3072', ['-t', 'rsa', '-b', '3072']],
];
for (const [name, flags] of keygenKinds) {
  test(`reads an unencrypted ${name} key made by ssh-keygen, and ssh-keygen reads it back after re-encoding`, async () => {
    const path = file('k');
    await sshKeygen(['-q', ...flags, '-N', '', '-C', 'bob@laptop', '-f', path]);
    const parsed = parseOpenSSHPrivateKey(readFileSync(path, 'utf8'));
    const pub = parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8'));
    assert.equal(parsed.comment, 'bob@laptop');
    assert.deepEqual(parsed.publicKey.blob, pub.key.blob);
    const again = file('k2');
    writeFileSync(again, encodeOpenSSHPrivateKey(parsed.privateKey, parsed.comment), { mode: 0o600 });
    assert.equal((await sshKeygen(['-y', '-f', again])).trim(), readFileSync(`${path}.pub`, 'utf8').trim());
  });
}

test('refuses a passphrase-protected key made by ssh-keygen with KEY_ENCRYPTED', async () => {
  const path = file('enc');
  await sshKeygen(['-q', '-t', 'ed25519', '-N', 'pass', '-f', path]);
  assert.throws(
    () => parseOpenSSHPrivateKey(readFileSync(path, 'utf8')),
    (err: unknown) => err instanceof CertError && err.code === 'KEY_ENCRYPTED' && /passphrase/.test(err.message),
  );
});

// (e) fingerprints
for (const kind of KINDS) {
  test(`fingerprintSha256 of a ${kind} key equals ssh-keygen -lf`, async () => {
    const path = file('fp.pub');
    const pk = keyPair(kind).publicKey;
    writeFileSync(path, formatPublicKeyLine(pk, 'c') + '\n');
    const out = await sshKeygen(['-l', '-f', path]);
    assert.equal(out.split(' ')[1], fingerprintSha256(pk.blob));
  });
}
