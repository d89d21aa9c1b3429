/**
 * Messages an ssh2 Server cannot send by itself. ssh2 sends its configured
 * `banner` once, right after the userauth service is accepted; it has no way
 * to tell a client, mid-authentication, why its key was refused. OpenSSH's
 * ssh prints an SSH_MSG_USERAUTH_BANNER to stderr at the default log level
 * (also for the jump host of `ssh -J`), so a refusal can carry its reason
 * ("certificate expired at ...; run tsh login ...") instead of a bare
 * "Permission denied".
 */
import type { Connection } from 'ssh2';
import ssh2Utils from 'ssh2/lib/protocol/utils.js';
import { printable } from '../util/printable.js';

/** SSH_MSG_USERAUTH_BANNER (RFC 4252 §5.4). */
const MSG_USERAUTH_BANNER = 53;
/** What one banner may carry: enough for a few lines of reason and fix. */
export const MAX_BANNER_CHARS = 2000;

interface PacketWriter {
  allocStart: number;
  alloc(size: number): Buffer;
  finalize(packet: Buffer): Buffer;
}

/**
 * Sends SSH_MSG_USERAUTH_BANNER (RFC 4252 §5.4: allowed at any time after
 * the userauth service starts and before authentication succeeds) on a
 * server-side ssh2 Connection. Each line of `text` goes through `printable`
 * (control characters escaped, at most MAX_BANNER_CHARS in all) and ends in
 * CRLF, so nothing from a certificate can drive the user's terminal. Does
 * nothing once the connection is closing.
 */
export function sendAuthBanner(conn: Connection, text: string): void {
  const proto = (conn as unknown as { _protocol?: { _packetRW?: { write: PacketWriter } } })._protocol;
  const writer = proto?._packetRW?.write;
  const sock = (conn as unknown as { _sock?: { writable?: boolean } })._sock;
  if (!writer || !sock?.writable) return;
  const body = Buffer.from(
    text
      .split(/\r?\n/)
      .map((line) => printable(line, MAX_BANNER_CHARS))
      .join('\r\n')
      .slice(0, MAX_BANNER_CHARS) + '\r\n',
    'utf8',
  );
  let p = writer.allocStart;
  const packet = writer.alloc(1 + 4 + body.length + 4);
  packet[p] = MSG_USERAUTH_BANNER;
  packet.writeUInt32BE(body.length, ++p);
  body.copy(packet, (p += 4));
  packet.writeUInt32BE(0, p + body.length); // empty language tag
  ssh2Utils.sendPacket(proto, writer.finalize(packet));
}
