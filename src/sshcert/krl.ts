/**
 * OpenSSH key revocation lists (sshd's `RevokedKeys`, `ssh-keygen -Q`), the
 * format of OpenSSH's PROTOCOL.krl:
 *
 *   #define KRL_MAGIC 0x5353484b524c0a00ULL   ("SSHKRL\n\0")
 *   uint64 KRL_MAGIC; uint32 KRL_FORMAT_VERSION (1); uint64 krl_version;
 *   uint64 generated_date; uint64 flags; string reserved; string comment;
 *   then sections (none here).
 *
 * Only the header: a valid KRL that revokes nothing. The `locks` branch owns
 * this module and adds the certificate sections (serials, key ids) behind the
 * same `encodeKrl`; the node agent only ever writes what the server sends.
 */
import { WireWriter } from '../sshwire/writer.js';

/** "SSHKRL\n\0", PROTOCOL.krl KRL_MAGIC. */
export const KRL_MAGIC = Buffer.from('SSHKRL\n\0', 'latin1');
export const KRL_FORMAT_VERSION = 1;

export interface KrlHeader {
  /** Increases with every change (PROTOCOL.krl krl_version). */
  version: bigint;
  /** When it was made (generated_date, seconds since the epoch). */
  generatedAt: Date;
  comment?: string;
}

/** Encodes a KRL with no revocations (PROTOCOL.krl header only); `ssh-keygen -Q` and sshd read it. */
export function encodeEmptyKrl(h: KrlHeader): Buffer {
  return new WireWriter(64)
    .raw(KRL_MAGIC)
    .u32(KRL_FORMAT_VERSION)
    .u64(h.version)
    .u64(BigInt(Math.floor(h.generatedAt.getTime() / 1000)))
    .u64(0n)
    .string('')
    .string(h.comment ?? '')
    .finish();
}

/** True when `b` starts like a KRL (magic and format version): what the node agent checks before writing it. */
export function looksLikeKrl(b: Buffer): boolean {
  return b.length >= 44 && b.subarray(0, 8).equals(KRL_MAGIC) && b.readUInt32BE(8) === KRL_FORMAT_VERSION;
}
