/**
 * Fixtures for the sshconn tests: CAs and certificates made with sshcert in
 * the test (no tctl), written where OpenSSH wants them, and small ssh2
 * helpers (connect, exec) that fail with a readable message.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ClientChannel, ConnectConfig } from 'ssh2';
import {
  CertRequest,
  encodeCertificateLine,
  encodeOpenSSHPrivateKey,
  formatPublicKeyLine,
  generateKeyPair,
  signCertificate,
  STANDARD_USER_EXTENSIONS,
  type CAKeyPair,
  type Certificate,
  type KeyKind,
  type PublicKey,
} from '../../src/sshcert/index.js';

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: PublicKey;
}

const pairs = new Map<string, KeyPair>();

/** One key pair per (kind, role) per process: RSA generation is slow. */
export function keyPair(kind: KeyKind, role: string): KeyPair {
  const id = `${kind}/${role}`;
  let kp = pairs.get(id);
  if (!kp) {
    kp = generateKeyPair(kind);
    pairs.set(id, kp);
  }
  return kp;
}

export interface CertOptions {
  type: 'user' | 'host';
  principals: string[];
  /** Default: now. Sign in the past to get an expired certificate. */
  signedAt?: Date;
  ttlSeconds?: number;
  keyId?: string;
}

/** Signs an OpenSSH certificate for `key` with `ca` (what tctl does, minus the store). */
export function certify(ca: CAKeyPair, key: PublicKey, opts: CertOptions): Certificate {
  const extensions = opts.type === 'user' ? Object.fromEntries(STANDARD_USER_EXTENSIONS.map((e) => [e, ''])) : undefined;
  return signCertificate(
    new CertRequest({
      publicKey: key,
      type: opts.type,
      keyId: opts.keyId ?? `${opts.type}-${opts.principals[0]}`,
      principals: opts.principals,
      ttlSeconds: opts.ttlSeconds ?? 3600,
      ...(extensions ? { extensions } : {}),
    }),
    ca,
    opts.signedAt ?? new Date(),
  );
}

/** Writes `base` (private key, 0600) and `base-cert.pub`, as ssh-keygen and tctl lay them out. */
export function writeKeyAndCert(base: string, kp: KeyPair, cert: Certificate): { key: string; cert: string } {
  writeFileSync(base, encodeOpenSSHPrivateKey(kp.privateKey, 'sshconn-test'), { mode: 0o600 });
  chmodSync(base, 0o600);
  writeFileSync(`${base}-cert.pub`, encodeCertificateLine(cert, 'sshconn-test') + '\n');
  writeFileSync(`${base}.pub`, formatPublicKeyLine(kp.publicKey, 'sshconn-test') + '\n');
  return { key: base, cert: `${base}-cert.pub` };
}

/** A known_hosts file holding only `@cert-authority * <host CA>`: no host key at all. */
export function writeKnownHosts(dir: string, hostCA: PublicKey): string {
  const file = join(dir, 'known_hosts');
  writeFileSync(file, `@cert-authority * ${formatPublicKeyLine(hostCA)}\n`);
  return file;
}

/** Connects an ssh2 Client, resolving on `ready` and rejecting with the first error. */
export function connect(cfg: ConnectConfig): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.once('ready', () => {
      c.removeListener('error', reject);
      resolve(c);
    });
    c.once('error', (err) => {
      c.end();
      reject(err);
    });
    c.connect({ readyTimeout: 15_000, ...cfg });
  });
}

export interface ExecResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a command over an ssh2 connection, optionally feeding `input`, and collects the output. */
export function exec(client: ssh2.Client, command: string, input?: Buffer): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, ch: ClientChannel) => {
      if (err) return reject(err);
      const out: Buffer[] = [];
      let stderr = '';
      let code: number | null = null;
      ch.on('data', (b: Buffer) => out.push(b));
      ch.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      ch.on('exit', (c: number | null) => (code = c));
      ch.on('close', () => resolve({ code, stdout: Buffer.concat(out), stderr }));
      if (input) ch.end(input);
      else ch.end();
    });
  });
}
