/**
 * Shared fixtures for the sshcert tests: CA key pairs made once per process
 * (RSA generation is slow) and a raw certificate builder that can write what
 * `signCertificate` never would (unsorted or duplicate options, bad types,
 * trailing bytes) and still sign it, so parse checks are tested in isolation
 * from signature checks.
 */
import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { WireWriter } from '../../src/sshwire/index.js';
import { CertError, generateKeyPair, signData, type KeyKind, type PublicKey } from '../../src/sshcert/index.js';

export const KINDS: readonly KeyKind[] = ['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'ecdsa-p521', 'rsa-3072'];

const cache = new Map<KeyKind, { privateKey: KeyObject; publicKey: PublicKey }>();

/** One key pair per kind per process. */
export function keyPair(kind: KeyKind): { privateKey: KeyObject; publicKey: PublicKey } {
  let kp = cache.get(kind);
  if (!kp) {
    kp = generateKeyPair(kind);
    cache.set(kind, kp);
  }
  return kp;
}

export const NOW = new Date('2026-11-21T10:00:00Z');
export const NOW_S = BigInt(NOW.getTime() / 1000);

export interface RawCert {
  algorithm?: string;
  nonce?: Buffer;
  /** The certified key's blob (its type string is stripped). */
  key?: PublicKey;
  serial?: bigint;
  type?: number;
  keyId?: string | Buffer;
  principals?: Array<string | Buffer>;
  /** Raw principals section, overriding `principals`. */
  principalsRaw?: Buffer;
  validAfter?: bigint;
  validBefore?: bigint;
  /** [name, data] pairs; data undefined = flag, string = string in a string, Buffer = raw data. */
  critical?: Array<[string, string | Buffer | undefined]>;
  extensions?: Array<[string, string | Buffer | undefined]>;
  reserved?: Buffer;
  /** The signing CA; its public blob goes in unless caBlob overrides it. */
  ca?: { privateKey: KeyObject; publicKey: PublicKey };
  caBlob?: Buffer;
  rsaAlgorithm?: 'rsa-sha2-256' | 'rsa-sha2-512';
  /** Replaces the signature blob. */
  signature?: Buffer;
  trailing?: Buffer;
}

function options(entries: Array<[string, string | Buffer | undefined]>): Buffer {
  const w = new WireWriter();
  for (const [name, data] of entries) {
    w.string(name);
    if (data === undefined) w.u32(0);
    else if (typeof data === 'string') w.string(new WireWriter().string(data).finish());
    else w.string(data);
  }
  return Buffer.from(w.finish());
}

/** Builds and signs a certificate field by field (PROTOCOL.certkeys layout). */
export function rawCert(o: RawCert = {}): Buffer {
  const key = o.key ?? keyPair('ed25519').publicKey;
  const ca = o.ca ?? keyPair('ed25519');
  const w = new WireWriter();
  w.string(o.algorithm ?? `${key.type}-cert-v01@openssh.com`);
  w.string(o.nonce ?? Buffer.alloc(32, 7));
  w.raw(key.blob.subarray(4 + key.blob.readUInt32BE(0)));
  w.u64(o.serial ?? 42n);
  w.u32(o.type ?? 1);
  w.string(o.keyId ?? 'alice');
  if (o.principalsRaw) w.string(o.principalsRaw);
  else {
    const p = new WireWriter();
    for (const s of o.principals ?? ['alice']) p.string(s);
    w.string(p.finish());
  }
  w.u64(o.validAfter ?? NOW_S - 60n);
  w.u64(o.validBefore ?? NOW_S + 3600n);
  w.string(options(o.critical ?? []));
  w.string(options(o.extensions ?? [['permit-pty', undefined]]));
  w.string(o.reserved ?? Buffer.alloc(0));
  w.string(o.caBlob ?? ca.publicKey.blob);
  const signed = Buffer.from(w.finish());
  w.string(o.signature ?? signData(ca.privateKey, signed, o.rsaAlgorithm));
  if (o.trailing) w.raw(o.trailing);
  return Buffer.from(w.finish());
}

/** The CertError code `fn` throws, or 'OK'; any other error fails the test. */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CertError, `expected CertError, got ${(err as Error)?.stack ?? String(err)}`);
    return err.code;
  }
  return 'OK';
}
