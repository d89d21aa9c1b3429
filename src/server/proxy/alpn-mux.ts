/**
 * The web port's multiplexer: reads a new connection's TLS ClientHello
 * without consuming it, and says which ALPN protocols (RFC 7301) it offers,
 * so web.ts hands the socket to the HTTPS server or to the TLS route
 * (tls-route.ts) before any TLS byte is answered. Browsers and the HTTPS API
 * therefore never see a CertificateRequest; only the route asks for a client
 * certificate. Teleport's proxy peeks the same way (lib/srv/alpnproxy).
 *
 * Bounds: one TLS record (RFC 8446 §5.1: at most 2^14 bytes of payload plus
 * the 5-byte header), within a deadline. A ClientHello split over several
 * records (legal, never done by tsh or browsers for a hello this small) is
 * read as "no ALPN offered": it goes to HTTPS, where TLS sorts it out.
 */
import type { Socket } from 'node:net';

/** A TLS record's payload is at most 2^14 bytes (RFC 8446 §5.1). */
export const MAX_RECORD_BYTES = 5 + (1 << 14);

/**
 * The ALPN protocol names a ClientHello offers, from the first TLS record's
 * bytes: `'more'` while the record is incomplete, `undefined` when the bytes
 * are not a TLS handshake record starting with a ClientHello (plain HTTP, SSH,
 * garbage), `[]` when it offers none. Pure; never throws.
 * Layout: RFC 8446 §4.1.2 (ClientHello), §4.2 (extensions); RFC 7301 §3.1.
 */
export function clientHelloAlpn(b: Buffer): string[] | 'more' | undefined {
  if (b.length === 0) return 'more';
  if (b[0] !== 0x16) return undefined; // handshake record
  if (b.length < 5) return 'more';
  const recordLen = b.readUInt16BE(3);
  if (recordLen > MAX_RECORD_BYTES - 5) return undefined;
  if (b.length < 5 + recordLen) return 'more';
  const rec = b.subarray(5, 5 + recordLen);
  try {
    let p = 0;
    if (rec[p++] !== 0x01) return undefined; // client_hello
    const helloLen = (rec[p]! << 16) | (rec[p + 1]! << 8) | rec[p + 2]!;
    p += 3;
    // A hello longer than this record continues in the next one: treat as no ALPN seen.
    if (4 + helloLen > rec.length) return [];
    const end = 4 + helloLen;
    p += 2 + 32; // legacy_version, random
    p += 1 + rec[p]!; // legacy_session_id
    p += 2 + rec.readUInt16BE(p); // cipher_suites
    p += 1 + rec[p]!; // legacy_compression_methods
    if (p === end) return [];
    const extEnd = p + 2 + rec.readUInt16BE(p);
    p += 2;
    if (extEnd > end) return undefined;
    while (p + 4 <= extEnd) {
      const type = rec.readUInt16BE(p);
      const len = rec.readUInt16BE(p + 2);
      p += 4;
      if (p + len > extEnd) return undefined;
      if (type === 16) {
        // application_layer_protocol_negotiation: ProtocolNameList
        const names: string[] = [];
        let q = p + 2;
        const listEnd = p + 2 + rec.readUInt16BE(p);
        if (listEnd > p + len) return undefined;
        while (q < listEnd) {
          const n = rec[q++]!;
          if (n === 0 || q + n > listEnd) return undefined;
          names.push(rec.subarray(q, q + n).toString('latin1'));
          q += n;
        }
        return names;
      }
      p += len;
    }
    return [];
  } catch {
    return undefined; // read past the end: malformed
  }
}

/**
 * Reads the first TLS record of `socket` (at most MAX_RECORD_BYTES, within
 * `timeoutMs`), puts the bytes back (unshift) and calls `done` with the ALPN
 * names offered (`undefined`: not a ClientHello). On timeout or a closed
 * socket, destroys it and calls nothing.
 */
export function peekAlpn(socket: Socket, timeoutMs: number, done: (alpn: string[] | undefined) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  let finished = false;
  const finish = (result: string[] | undefined | 'gone') => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeListener('readable', onReadable);
    socket.removeListener('close', onGone);
    if (result === 'gone') return void socket.destroy();
    // As in proxy-protocol.ts readFraming: hand over on the next tick, after node's readable bookkeeping.
    process.nextTick(() => {
      if (socket.destroyed) return;
      if (buf.length > 0) socket.unshift(buf);
      done(result);
    });
  };
  const onReadable = () => {
    let chunk: Buffer | null;
    while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = clientHelloAlpn(buf);
      if (r === 'more') {
        if (buf.length >= MAX_RECORD_BYTES) finish(undefined);
        continue;
      }
      finish(r);
    }
  };
  const onGone = () => finish('gone');
  const timer = setTimeout(() => finish('gone'), timeoutMs);
  socket.on('readable', onReadable);
  socket.once('close', onGone);
  onReadable();
}
