/**
 * The cluster's X.509 user CA: the TLS half of the user CA (Teleport's user
 * CA has an SSH and a TLS key pair too). It signs the short-lived client
 * certificate a login hands out next to the SSH certificate, which tsh
 * presents on the web port's TLS route (mutual TLS, tls-route.ts).
 *
 * Keys: one ed25519 key per user-CA key GENERATION, never the SSH CA key
 * itself: derived from the stored SSH CA private key with HKDF-SHA256
 * (RFC 5869; salt "jumpgate", info "x509 user CA <key id>"). Deriving, not
 * storing a second key, means: nothing new in either storage backend (the
 * seed is the SSH CA key, 0600 in the dir backend, AES-GCM at rest in
 * PostgreSQL), every proxy computes the same key without coordination, CAs
 * made before this change get one too, and `tctl auth rotate --type=user`
 * rotates it with the same grace period (each trusted SSH key = one trusted
 * X.509 CA). Compromise of one implies the other anyway: both sit in the
 * same record. The CA certificate is deterministic as well (ed25519
 * signatures are, RFC 8032), so every proxy serves byte-identical ones.
 *
 * The client certificate (RFC 5280): subject O=<cluster>, CN=<user>; the
 * user's OpenSSH certificate itself in a non-critical extension
 * (SSH_CERT_EXTENSION_OID): the identity (principals = logins,
 * roles@jumpgate.dev, traits, source-address) is the SSH certificate's, read
 * by the one identity module (sshcert/identity.ts), so the TLS route and the
 * SSH port cannot disagree. notBefore/notAfter are the SSH certificate's
 * validity; the public key is the SSH certificate's key (the same key tsh
 * holds: its private half never leaves tsh).
 *
 * Library: @peculiar/asn1-x509 + @peculiar/asn1-schema (PeculiarVentures,
 * the ASN.1 schemas under @peculiar/x509 and PKI.js's successor) encode and
 * decode the DER; node:crypto signs (ed25519). node-forge cannot do ed25519;
 * @peculiar/x509 itself needs a global reflect-metadata polyfill (tsyringe)
 * and async WebCrypto for what is a synchronous sign here.
 */
import { createHash, createPrivateKey, createPublicKey, hkdfSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate as X509Certificate,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectKeyIdentifier,
  id_kp_clientAuth,
} from '@peculiar/asn1-x509';
import type { Certificate as SshCertificate } from '../../sshcert/index.js';
import type { CaKey } from './ca.js';

/**
 * The extension carrying the user's OpenSSH certificate (its wire blob,
 * PROTOCOL.certkeys) as an OCTET STRING. Under the unregistered 1.3.9999 arc
 * Teleport also uses for its own extensions: private to this cluster.
 */
export const SSH_CERT_EXTENSION_OID = '1.3.9999.7347.1';
/** Ed25519 (RFC 8410 §3): the algorithm identifier has no parameters. */
const ED25519_OID = '1.3.101.112';
const OID_CN = '2.5.4.3';
const OID_O = '2.5.4.10';
// DER header of a PKCS#8 Ed25519 private key around its 32-byte seed (RFC 8410).
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** The CA certificate's validity: the trust window is decided by which CA keys are trusted now, not by dates. */
const CA_CERT_YEARS = 20;

/** One generation's X.509 CA: the signing key and its self-signed certificate (PEM and DER). */
export interface X509Ca {
  keyId: string;
  privateKey: KeyObject;
  certDer: Buffer;
  certPem: string;
  subject: Name;
  subjectKeyId: Buffer;
}

const derived = new Map<string, X509Ca>();

/**
 * The X.509 CA of one user-CA key generation (see the top of this file),
 * computed once per process. `cluster` goes into the subject.
 */
export function x509CaFor(caKey: CaKey, cluster: string): X509Ca {
  const memo = `${caKey.id}\0${cluster}`;
  const hit = derived.get(memo);
  if (hit) return hit;
  const ikm = caKey.privateKey.export({ format: 'der', type: 'pkcs8' });
  const seed = Buffer.from(hkdfSync('sha256', ikm, 'jumpgate', `x509 user CA ${caKey.id}`, 32));
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spkiDer = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const subjectKeyId = keyIdOf(spkiDer);
  const subject = name([
    [OID_O, cluster],
    [OID_CN, `Jumpgate user CA ${caKey.id}`],
  ]);
  const notBefore = caKey.createdAt;
  const notAfter = new Date(notBefore.getTime());
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_CERT_YEARS);
  const tbs = new TBSCertificate({
    version: Version.v3,
    // Deterministic: the same on every proxy. Positive: the top bit cleared (RFC 5280 §4.1.2.2).
    serialNumber: positiveSerial(createHash('sha256').update(`ca ${caKey.id}`).digest().subarray(0, 16)),
    signature: ed25519Alg(),
    issuer: subject,
    validity: new Validity({ notBefore, notAfter }),
    subject,
    subjectPublicKeyInfo: AsnConvert.parse(spkiDer, SubjectPublicKeyInfo),
    extensions: new Extensions([
      ext(id_ce_basicConstraints, true, new BasicConstraints({ cA: true, pathLenConstraint: 0 })),
      ext(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)),
      ext(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(subjectKeyId)),
    ]),
  });
  const certDer = signTbs(tbs, privateKey);
  const ca: X509Ca = { keyId: caKey.id, privateKey, certDer, certPem: pem(certDer), subject, subjectKeyId };
  derived.set(memo, ca);
  return ca;
}

/**
 * The PEM client certificate for `sshCert` (a user certificate just signed
 * by `caKey`'s generation): same key, same validity, the SSH certificate in
 * SSH_CERT_EXTENSION_OID. Synchronous (one ed25519 signature).
 */
export function issueClientCertificate(caKey: CaKey, cluster: string, sshCert: SshCertificate): string {
  const ca = x509CaFor(caKey, cluster);
  const spkiDer = sshCert.key.key.export({ format: 'der', type: 'spki' });
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: positiveSerial(randomBytes(16)),
    signature: ed25519Alg(),
    issuer: ca.subject,
    validity: new Validity({ notBefore: new Date(Number(sshCert.validAfter) * 1000), notAfter: new Date(Number(sshCert.validBefore) * 1000) }),
    subject: name([
      [OID_O, cluster],
      [OID_CN, sshCert.keyId],
    ]),
    subjectPublicKeyInfo: AsnConvert.parse(spkiDer, SubjectPublicKeyInfo),
    extensions: new Extensions([
      ext(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
      ext(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature)),
      ext(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_clientAuth])),
      ext(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(ca.subjectKeyId) })),
      new Extension({ extnID: SSH_CERT_EXTENSION_OID, critical: false, extnValue: new OctetString(AsnConvert.serialize(new OctetString(sshCert.blob))) }),
    ]),
  });
  return pem(signTbs(tbs, ca.privateKey));
}

/** What the TLS route needs from a verified client certificate: its public key (SPKI DER) and the embedded SSH certificate. */
export interface ClientCertContents {
  spkiDer: Buffer;
  sshCertBlob: Buffer;
  notAfter: Date;
}

/**
 * Reads a client certificate's DER (already verified by the TLS handshake
 * against the trusted X.509 CAs). @throws Error when it is not DER or has no
 * SSH certificate extension.
 */
export function readClientCertificate(der: Buffer): ClientCertContents {
  const cert = AsnConvert.parse(der, X509Certificate);
  const tbs = cert.tbsCertificate;
  const found = tbs.extensions?.find((e) => e.extnID === SSH_CERT_EXTENSION_OID);
  if (!found) throw new Error('the client certificate carries no SSH certificate (it was not issued by a Jumpgate login)');
  const inner = AsnConvert.parse(found.extnValue.buffer, OctetString);
  return {
    spkiDer: Buffer.from(AsnConvert.serialize(tbs.subjectPublicKeyInfo)),
    sshCertBlob: Buffer.from(inner.buffer),
    notAfter: tbs.validity.notAfter.getTime(),
  };
}

/** Checks `der`'s signature against `ca` (tests; the TLS stack does this for connections). */
export function verifiedBy(der: Buffer, ca: X509Ca): boolean {
  const cert = AsnConvert.parse(der, X509Certificate);
  const tbs = Buffer.from(cert.tbsCertificateRaw ?? AsnConvert.serialize(cert.tbsCertificate));
  return verify(null, tbs, createPublicKey(ca.privateKey), Buffer.from(cert.signatureValue));
}

function signTbs(tbs: TBSCertificate, key: KeyObject): Buffer {
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const cert = new X509Certificate({ tbsCertificate: tbs, signatureAlgorithm: ed25519Alg(), signatureValue: new Uint8Array(sign(null, tbsDer, key)).buffer });
  return Buffer.from(AsnConvert.serialize(cert));
}

function ed25519Alg(): AlgorithmIdentifier {
  return new AlgorithmIdentifier({ algorithm: ED25519_OID });
}

function ext(oid: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID: oid, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

function name(parts: [string, string][]): Name {
  return new Name(parts.map(([type, value]) => new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: value }) })])));
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the key; here the SHA-256 of the whole SPKI, cut to 20 bytes. */
function keyIdOf(spkiDer: Buffer): Buffer {
  return createHash('sha256').update(spkiDer).digest().subarray(0, 20);
}

function positiveSerial(bytes: Buffer): ArrayBuffer {
  const b = Buffer.from(bytes);
  b[0] = (b[0]! & 0x7f) | 0x01; // positive, and no leading zero byte to strip
  return new Uint8Array(b).buffer;
}

function pem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
