import { createPrivateKey, type KeyObject } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ConnectConfig, ParsedKey } from 'ssh2';
import { AuthError } from '../errors.js';
import {
  CertError,
  encodeOpenSSHPrivateKey,
  parseCertificate,
  parseCertificateLine,
  parseOpenSSHPrivateKey,
  publicKeyFromKeyObject,
  type Certificate,
  type CertType,
} from '../sshcert/index.js';
import { assertSsh2Patched } from './patch.js';

/**
 * A private key that presents an OpenSSH certificate (PROTOCOL.certkeys) to
 * ssh2. `type` is the certificate algorithm (e.g.
 * ssh-ed25519-cert-v01@openssh.com; typed as ssh2's KeyType only because
 * @types/ssh2 knows no certificate names) and `getPublicSSH()` the
 * certificate blob; signing is the key's own.
 */
export interface CertKey extends ParsedKey {
  /** The certificate this key presents. */
  readonly certificate: Certificate;
}

/**
 * Joins a private key and its certificate into one ssh2 key. The patched
 * ssh2 reads exactly `type` and `getPublicSSH()` to name and send a key, and
 * signs through the inherited `sign()`, which uses the private key.
 */
function certKey(privateKey: KeyObject, cert: Certificate, want: CertType): CertKey {
  assertSsh2Patched();
  if (cert.type !== want) {
    throw new CertError(
      'CERT_WRONG_TYPE',
      want === 'user'
        ? `this is a ${cert.type} certificate, not a user certificate; log in with \`tsh login\``
        : `this is a ${cert.type} certificate, not a host certificate; sign one with \`tctl auth sign --host=...\``,
    );
  }
  if (privateKey.type !== 'private') throw new RangeError('a certificate identity needs a private key');
  const pub = publicKeyFromKeyObject(privateKey);
  if (!pub.blob.equals(cert.key.blob)) {
    throw new AuthError('CERT_KEY_MISMATCH', `the ${cert.type} certificate (key id "${cert.keyId}") was issued for another key than this private key`, {
      hint: want === 'user' ? 'run `tsh login` again to get a matching key and certificate' : 'keep the private key and its -cert.pub from the same `tctl auth sign` run',
    });
  }
  const base = ssh2.utils.parseKey(encodeOpenSSHPrivateKey(privateKey));
  if (base instanceof Error || Array.isArray(base)) {
    throw new AuthError('KEY_UNSUPPORTED', `ssh2 cannot use this ${pub.type} key: ${base instanceof Error ? base.message : 'several keys'}`);
  }
  const blob = cert.blob;
  return Object.create(base, {
    type: { value: cert.algorithm, enumerable: true },
    comment: { value: cert.keyId, enumerable: true },
    certificate: { value: cert, enumerable: false },
    getPublicSSH: { value: () => blob },
  }) as CertKey;
}

/**
 * An ssh2 client identity that authenticates with a user certificate: pass
 * it as `privateKey` or as `key` of an authHandler `publickey` entry. Works
 * for Ed25519, ECDSA and RSA keys (RSA signs with rsa-sha2-256/512 as the
 * server's server-sig-algs allow, RFC 8332/8308).
 */
export function certIdentity(privateKey: KeyObject, certBlob: Buffer): CertKey {
  return certKey(privateKey, parseCertificate(certBlob), 'user');
}

/**
 * An entry for ssh2 Server's `hostKeys` that presents a host certificate: the
 * server then offers the certificate algorithm (e.g.
 * ssh-ed25519-cert-v01@openssh.com) and clients that trust the host CA
 * (`@cert-authority` in known_hosts) connect without a prompt.
 * `privateKeyText` is the OpenSSH private key `tctl auth sign --host` writes
 * (PKCS#8 PEM is accepted too); `certLine` the content of its `-cert.pub`.
 */
export function hostCertKey(privateKeyText: string, certLine: string): { key: CertKey } {
  let privateKey: KeyObject;
  if (privateKeyText.includes('-----BEGIN OPENSSH PRIVATE KEY-----')) {
    privateKey = parseOpenSSHPrivateKey(privateKeyText).privateKey;
  } else {
    try {
      privateKey = createPrivateKey(privateKeyText);
    } catch (err) {
      throw new CertError('KEY_MALFORMED', 'the host private key is neither an OpenSSH nor an unencrypted PEM private key', { cause: err });
    }
  }
  // ssh2's Server takes a bare Buffer/string as key text and any object as
  // { key, passphrase }; the wrapper is the form it passes through parseKey untouched.
  return { key: certKey(privateKey, parseCertificateLine(certLine).cert, 'host') };
}

/** ssh2's ConnectConfig with `privateKey` allowed to be a certificate identity. */
export type CertConnectConfig = Omit<ConnectConfig, 'privateKey'> & { privateKey?: ConnectConfig['privateKey'] | CertKey };

/**
 * Types a ConnectConfig whose `privateKey` is a `certIdentity`. The patched
 * ssh2 takes a parsed key there (unpatched it silently ignored one);
 * @types/ssh2 still declares only Buffer | string. The one cast lives here.
 */
export function certConnectConfig(cfg: CertConnectConfig): ConnectConfig {
  return cfg as ConnectConfig;
}
