/**
 * The HTTPS certificate of the proxy: the configured files, or a self-signed
 * one made once (node-forge) and kept in <data_dir>/tls/ so clients that
 * pinned it keep working across restarts.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { ConfigError, UserError } from '../errors.js';
import type { ServerConfig } from '../config/index.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { ensurePrivateDir } from '../util/private-dir.js';
import type { ServerLog } from './runtime.js';

export interface TlsMaterial {
  cert: string;
  key: string;
  selfSigned: boolean;
  /** SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint256: string;
}

/** Loads the configured TLS files, or the kept self-signed pair (made now if absent or expired). */
export function loadTlsMaterial(config: ServerConfig, log: ServerLog, now: Date): TlsMaterial {
  const { tlsCertFile, tlsKeyFile } = config.proxy;
  if (tlsCertFile && tlsKeyFile) {
    const cert = readPem(config.file, 'proxy.tls_cert_file', tlsCertFile);
    const key = readPem(config.file, 'proxy.tls_key_file', tlsKeyFile);
    return { cert, key, selfSigned: false, fingerprint256: fingerprintOf(cert, config.file, 'proxy.tls_cert_file') };
  }
  const dir = join(config.dataDir, 'tls');
  const certPath = join(dir, 'self-signed-cert.pem');
  const keyPath = join(dir, 'self-signed-key.pem');
  try {
    const cert = readFileSync(certPath, 'utf8');
    const key = readFileSync(keyPath, 'utf8');
    const x = new X509Certificate(cert);
    if (new Date(x.validTo) > now) return { cert, key, selfSigned: true, fingerprint256: x.fingerprint256 };
    log.warn(`the self-signed HTTPS certificate in ${dir} expired on ${x.validTo}; making a new one (clients using --insecure are unaffected)`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UserError('TLS_UNREADABLE', `cannot read the self-signed HTTPS certificate in ${dir}: ${(err as Error).message}`, {
        cause: err,
        hint: `remove ${dir} to have a new one made, or set proxy.tls_cert_file and proxy.tls_key_file`,
      });
    }
  }
  const made = makeSelfSigned(config, now);
  ensurePrivateDir(dir);
  writeFileAtomic(keyPath, made.key, 0o600);
  writeFileAtomic(certPath, made.cert, 0o644);
  log.info(`made a self-signed HTTPS certificate for ${config.proxy.publicAddr.host} in ${dir} (clients need tsh login --insecure, or set proxy.tls_cert_file/tls_key_file)`);
  return { ...made, selfSigned: true, fingerprint256: new X509Certificate(made.cert).fingerprint256 };
}

function makeSelfSigned(config: ServerConfig, now: Date): { cert: string; key: string } {
  // PEM straight out of the generator: no later export of the KeyObject (see sshcert/keys.ts on the Node 20 deadlock).
  const pair = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(pair.publicKey);
  cert.serialNumber = '01' + Buffer.from(forge.random.getBytesSync(15), 'binary').toString('hex');
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  cert.validity.notAfter = new Date(now.getTime() + 365 * 24 * 3600 * 1000);
  const subject = [{ name: 'commonName', value: config.proxy.publicAddr.host }, { name: 'organizationName', value: `Jumpgate ${config.clusterName}` }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  const names = new Set([config.proxy.publicAddr.host, config.proxy.webListenAddr.host, 'localhost', '127.0.0.1', '::1']);
  const altNames = [...names]
    .filter((n) => n !== '0.0.0.0' && n !== '::')
    .map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n }));
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(pair.privateKey), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: pair.privateKey };
}

function readPem(configFile: string, key: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(configFile, key, `cannot read ${path}: ${(err as Error).message}`, { cause: err, hint: 'check the path and its permissions' });
  }
}

function fingerprintOf(cert: string, configFile: string, key: string): string {
  try {
    return new X509Certificate(cert).fingerprint256;
  } catch (err) {
    throw new ConfigError(configFile, key, `is not a PEM certificate: ${(err as Error).message}`, { cause: err });
  }
}
