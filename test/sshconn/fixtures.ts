/**
 * Fixtures for the sshconn tests: CAs and certificates made with sshcert in
 * the test (no tctl), written where OpenSSH wants them, and small ssh2
 * helpers (connect, exec) that fail with a readable message.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { ClientChannel, ConnectConfig } from 'ssh2';
import { run, type RunResult } from '../helpers/tools.js';
import { hostCertKey, verifyUserCertAuth } from '../../src/sshconn/index.js';
import {
  CertError,
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

export interface AuthRecord {
  algo: string;
  hashAlgo: string | undefined;
  signed: boolean;
  cert?: Certificate;
  error?: CertError;
}

/** The host name the ssh2 test server's certificate is issued for. */
export const CERT_SERVER_HOST = 'proxy.sshconn.test';

/**
 * An ssh2 Server on 127.0.0.1:0 presenting a host certificate of `kind` and
 * checking user certificates from `userCA`, as the proxy will. Commands:
 * `download N` sends N bytes (`download N rekey`: the server re-keys halfway),
 * `upload` counts stdin, anything else echoes itself (stdout), writes to
 * stderr and exits 3.
 */
export async function startCertServer(kind: KeyKind, hostCA: KeyPair, userCA: KeyPair, hostPrincipals: string[] = [CERT_SERVER_HOST]) {
  const hostKey = keyPair(kind, 'server-host');
  const hostCert = certify(hostCA, hostKey.publicKey, { type: 'host', principals: hostPrincipals });
  const auths: AuthRecord[] = [];
  const stats = { rekeys: 0 };
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
          const download = /^download (\d+)( rekey)?$/.exec(info.command);
          if (download) {
            // Write in chunks, honouring back-pressure, then exit.
            let left = Number(download[1]);
            let rekeyAt = download[2] ? left / 2 : -1;
            const chunk = Buffer.alloc(64 * 1024, 0x61);
            const pump = (): void => {
              while (left > 0) {
                if (left <= rekeyAt) {
                  rekeyAt = -1;
                  conn.rekey(() => stats.rekeys++);
                }
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
    stats,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Real OpenSSH `ssh -v` to the test server: no config file, no agent, only
 * the key, its certificate and a known_hosts with the @cert-authority line;
 * StrictHostKeyChecking=yes and BatchMode, so nothing can prompt.
 */
export function sshToCertServer(
  ssh: string,
  o: { port: number; key: string; knownHosts: string; login: string; command: string; extra?: string[]; input?: Buffer },
): Promise<RunResult> {
  return run(
    ssh,
    [
      '-v',
      '-F', 'none',
      '-p', String(o.port),
      '-i', o.key,
      '-o', `CertificateFile=${o.key}-cert.pub`,
      '-o', 'IdentitiesOnly=yes',
      '-o', 'IdentityAgent=none',
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', `UserKnownHostsFile=${o.knownHosts}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'UpdateHostKeys=no',
      // The name ssh checks the host certificate's principals against.
      '-o', `HostKeyAlias=${CERT_SERVER_HOST}`,
      '-o', 'ConnectTimeout=10',
      ...(o.extra ?? []),
      '-l', o.login,
      '127.0.0.1',
      o.command,
    ],
    { timeoutMs: 60_000, ...(o.input ? { input: o.input } : {}) },
  );
}
