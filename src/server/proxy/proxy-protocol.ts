/**
 * The PROXY protocol (HAProxy's `send-proxy` / `send-proxy-v2`) on the
 * proxy's two listeners: a TCP load balancer in front of several
 * `jumpgate start` processes prefixes each connection with a header naming the
 * real client, and everything that decides per client address (per-source
 * limits, audit `client_addr`, a certificate's source-address) sees that client
 * instead of the balancer.
 *
 * Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
 * - v1: `PROXY TCP4|TCP6|UNKNOWN SRC DST SPORT DPORT\r\n`, at most 107 bytes.
 * - v2: 12-byte signature, version/command, family/transport, 2-byte length,
 *   then `length` bytes of addresses and TLVs.
 *
 * Trust: only connections whose TCP peer lies in `proxy.proxy_protocol_from`
 * must (and may) start with a header. A header from anyone else is never
 * honoured: the connection is refused, so a client that reaches the proxy
 * directly cannot claim another address. We frame the bytes (bounded, with a
 * deadline); `proxy-protocol-js` parses the framed header; the addresses it
 * returns are checked again (its v1 parser accepts any text as an address).
 */
import type { Socket } from 'node:net';
import { V1ProxyProtocol, V2ProxyProtocol, Command, AddressFamilyType, TransportProtocol, IPv4ProxyAddress, IPv6ProxyAddress } from 'proxy-protocol-js';
import { addressInRanges, ipText, parseIPv4, parseIPv6, type AddressRange } from '../../util/ip.js';
import { printable } from '../../util/printable.js';
import type { ServerLog } from '../runtime.js';
import type { SourceCounter } from '../limits.js';

/** A v1 header is at most 107 bytes, CRLF included (spec section 2.1). */
export const V1_MAX_BYTES = 107;
/** The v2 fixed part: signature (12), version/command, family/transport, length (2). */
export const V2_FIXED_BYTES = 16;
/**
 * Largest v2 address+TLV block we accept. Addresses take at most 216 bytes
 * (AF_UNIX); HAProxy adds TLVs only when told to (`proxy-v2-options`). The
 * spec suggests receivers accept 536 bytes in all.
 */
export const V2_MAX_LENGTH = 536 - V2_FIXED_BYTES;
/** A balancer sends the header with its first segment: 5 s is generous. */
export const HEADER_TIMEOUT_MS = 5_000;

const V1_SIGNATURE = Buffer.from('PROXY ');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** The client a header names. */
export interface ProxiedPeer {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

/** What a framed header says: a client, or "keep the balancer's address" (v2 LOCAL health checks, UNKNOWN/unsupported families). */
export type ProxyHeader = { kind: 'peer'; peer: ProxiedPeer } | { kind: 'local'; why: string };

/** A header that cannot be used: the connection is closed. */
export class ProxyHeaderError extends Error {
  readonly code = 'PROXY_HEADER_INVALID';
}

/** Options of acceptProxied. */
export interface AcceptProxiedOptions {
  /** TCP peers that must send a header (`proxy.proxy_protocol_from`); empty = the PROXY protocol is off. */
  trusted: readonly AddressRange[];
  /** How long a trusted peer (or, with `untrusted: 'peek'`, any peer) has to send the first bytes, ms. */
  timeoutMs?: number;
  /**
   * How a header from a peer NOT in `trusted` is caught (it is never honoured either way):
   * - `'peek'`: wait for the first bytes (at most 12) before `onReady`; for protocols whose client speaks first (TLS).
   * - `'watch'`: `onReady` at once and look at the first chunk as it passes (SSH: the server sends its banner first,
   *   and a client may wait for it); needs a consumer that reads with 'data' events, as ssh2 does.
   */
  untrusted: 'peek' | 'watch';
  /**
   * With `'peek'`: counts an unlisted peer's connections while their first bytes are awaited (limits.ts sourceKey),
   * refusing more than its limit, so that wait cannot hold more sockets per source than the listener's own cap.
   */
  peekingPerSource?: SourceCounter;
}

/**
 * Takes a freshly accepted socket. From a trusted balancer: reads the PROXY
 * header (v1 or v2) off it, puts back whatever followed (`socket.unshift`),
 * makes the socket report the client (`remoteAddress`, `remotePort`,
 * `remoteFamily`; see adoptProxiedPeer for TLS sockets) and calls
 * `onReady(socket)`. From anyone else: `onReady(socket)` with the socket as it
 * is, unless it starts with a PROXY signature. On any refusal the socket is
 * destroyed and `onRefused(reason, kind)` is called (reason: printable text).
 * With `trusted` empty this is exactly `onReady(socket)`.
 */
export function acceptProxied(socket: Socket, opts: AcceptProxiedOptions, onReady: (socket: Socket) => void, onRefused: (reason: string, kind: RefusalKind) => void): void {
  if (opts.trusted.length === 0) return onReady(socket);
  const balancer = socket.remoteAddress;
  // No peer address: the connection was already reset when it was accepted (a health check that sent its
  // header and closed at once). Nothing to serve and nothing to verify: close it without a warning.
  if (balancer === undefined) return void socket.destroy();
  const refuse = (reason: string, kind: RefusalKind = 'balancer') => {
    socket.destroy();
    onRefused(reason, kind);
  };
  if (!addressInRanges(balancer, opts.trusted)) {
    if (opts.untrusted === 'watch') {
      onReady(socket);
      socket.prependOnceListener('data', (chunk: Buffer) => {
        if (startsLikeHeader(chunk)) refuse(`a PROXY protocol header from ${balancer}, which is not in proxy.proxy_protocol_from`, 'spoofed');
      });
      return;
    }
    const release = opts.peekingPerSource ? opts.peekingPerSource.acquire(balancer ?? 'unknown') : () => {};
    if (!release) return refuse(`${balancer} already has ${opts.peekingPerSource!.count(balancer ?? 'unknown')} connections that have sent nothing yet`, 'untrusted');
    return readFraming(socket, opts.timeoutMs ?? HEADER_TIMEOUT_MS, peekFrame, (head, err) => {
      release();
      if (err !== undefined) return refuse(`${balancer}: ${err}`, 'untrusted');
      if (startsLikeHeader(head)) return refuse(`a PROXY protocol header from ${balancer}, which is not in proxy.proxy_protocol_from`, 'spoofed');
      if (socket.destroyed) return; // reset during the wait: there is nothing to serve
      socket.unshift(head);
      onReady(socket);
    });
  }
  readFraming(socket, opts.timeoutMs ?? HEADER_TIMEOUT_MS, headerFrame, (bytes, err) => {
    if (err !== undefined) return refuse(`balancer ${balancer}: ${err}`);
    const length = headerFrame(bytes);
    if (typeof length !== 'number') return refuse(`balancer ${balancer}: ${String(length)}`); // unreachable: readFraming stopped on a number
    let header: ProxyHeader;
    try {
      header = parseProxyHeader(bytes.subarray(0, length));
    } catch (e) {
      return refuse(`balancer ${balancer}: ${(e as Error).message}`);
    }
    if (socket.destroyed) return;
    if (bytes.length > length) socket.unshift(bytes.subarray(length));
    if (header.kind === 'peer') overridePeer(socket, header.peer);
    onReady(socket);
  });
}

/**
 * Gives a TLS socket made over a proxied socket the client's address: node's
 * TLSSocket asks the TCP handle for its peer, not the net.Socket it wraps, so
 * the override set by acceptProxied must be copied. Call it from the TLS
 * server's 'secureConnection' (the HTTP layer reads `req.socket.remoteAddress`
 * only later, per request). A no-op for sockets that were not proxied.
 */
export function adoptProxiedPeer(tlsSocket: Socket): void {
  // `_parent` is node's (undocumented) link from a TLSSocket to the socket it wraps; test/server/proxy-protocol.test.ts
  // checks through node:https that the client's address arrives, so a node change here fails a test.
  const parent = (tlsSocket as Socket & { _parent?: unknown })._parent;
  const peer = parent ? proxiedPeers.get(parent as Socket) : undefined;
  if (peer) overridePeer(tlsSocket, peer);
}

/** The client a proxied socket's header named, or undefined (not proxied, LOCAL, UNKNOWN). */
export function proxiedPeerOf(socket: Socket): ProxiedPeer | undefined {
  return proxiedPeers.get(socket);
}

/**
 * Parses one complete, framed header (v1 text or v2 binary, nothing after it)
 * with proxy-protocol-js and checks what it says. Throws ProxyHeaderError.
 */
export function parseProxyHeader(bytes: Uint8Array): ProxyHeader {
  if (startsWith(bytes, V2_SIGNATURE)) return parseV2(bytes);
  if (startsWith(bytes, V1_SIGNATURE)) return parseV1(Buffer.from(bytes).toString('latin1'));
  throw new ProxyHeaderError('not a PROXY protocol header');
}

function parseV1(text: string): ProxyHeader {
  // "PROXY UNKNOWN" may be followed by anything up to CRLF (spec 2.1): the balancer's own address is kept.
  if (/^PROXY UNKNOWN[ \r]/.test(text)) return { kind: 'local', why: 'v1 UNKNOWN' };
  let p: V1ProxyProtocol;
  try {
    p = V1ProxyProtocol.parse(text);
  } catch (e) {
    throw new ProxyHeaderError(`malformed v1 header ${JSON.stringify(printable(text.replace(/\r\n$/, ''), 120))}: ${(e as { message?: string }).message ?? String(e)}`);
  }
  const v4 = p.inetProtocol === 'TCP4';
  const check = (what: string, addr: string, port: number) => {
    const bytes = v4 ? parseIPv4(addr) : parseIPv6(addr.toLowerCase());
    if (!bytes) throw new ProxyHeaderError(`v1 header: ${what} address ${JSON.stringify(printable(addr, 60))} is not an ${v4 ? 'IPv4' : 'IPv6'} address`);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ProxyHeaderError(`v1 header: ${what} port ${port} is not a port number`);
    return ipText(bytes);
  };
  const address = check('source', p.source.ipAddress, p.source.port);
  check('destination', p.destination.ipAddress, p.destination.port);
  return { kind: 'peer', peer: { address, port: p.source.port, family: v4 ? 'IPv4' : 'IPv6' } };
}

function parseV2(bytes: Uint8Array): ProxyHeader {
  let p: V2ProxyProtocol;
  try {
    p = V2ProxyProtocol.parse(bytes);
  } catch (e) {
    // The library throws plain objects with a message, not Errors.
    throw new ProxyHeaderError(`malformed v2 header: ${(e as { message?: string }).message ?? String(e)}`);
  }
  // LOCAL: the balancer speaks for itself (health checks); the addresses, if any, are to be ignored (spec 2.2).
  if (p.command === Command.LOCAL) return { kind: 'local', why: 'v2 LOCAL' };
  if (p.transportProtocol !== TransportProtocol.STREAM) return { kind: 'local', why: 'v2 non-stream transport' };
  const a = p.proxyAddress;
  if (p.addressFamilyType === AddressFamilyType.INET && a instanceof IPv4ProxyAddress) {
    return { kind: 'peer', peer: { address: ipText(a.sourceAddress.address), port: a.sourcePort, family: 'IPv4' } };
  }
  if (p.addressFamilyType === AddressFamilyType.INET6 && a instanceof IPv6ProxyAddress) {
    return { kind: 'peer', peer: { address: ipText(a.sourceAddress.address), port: a.sourcePort, family: 'IPv6' } };
  }
  return { kind: 'local', why: `v2 address family ${AddressFamilyType[p.addressFamilyType] ?? p.addressFamilyType}` };
}

/**
 * Why a connection was refused: `balancer` (a listed address sent no usable
 * header: a misconfigured balancer, or someone on its host), `spoofed` (a
 * header from an address that is not listed), `untrusted` (an unlisted peer
 * sent nothing in time while its first bytes were awaited).
 */
export type RefusalKind = 'balancer' | 'spoofed' | 'untrusted';

/** A frame decision: the header's total length, 'more' (need more bytes), or a reason to refuse. */
type Frame = number | 'more' | { refuse: string };

/** The length of the complete header at the start of `b` (v1: through CRLF; v2: 16 + length). */
function headerFrame(b: Buffer): Frame {
  const n = Math.min(b.length, V2_SIGNATURE.length);
  if (b.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) {
    if (b.length < V2_FIXED_BYTES) return 'more';
    if (b[12]! >> 4 !== 2) return { refuse: `v2 header: version ${b[12]! >> 4} is not 2` };
    const length = b.readUInt16BE(14);
    if (length > V2_MAX_LENGTH) return { refuse: `v2 header: ${length} bytes of addresses and TLVs is more than the ${V2_MAX_LENGTH} allowed` };
    return b.length < V2_FIXED_BYTES + length ? 'more' : V2_FIXED_BYTES + length;
  }
  const m = Math.min(b.length, V1_SIGNATURE.length);
  if (b.subarray(0, m).equals(V1_SIGNATURE.subarray(0, m))) {
    const crlf = b.subarray(0, V1_MAX_BYTES).indexOf('\r\n');
    if (crlf >= 0) return crlf + 2;
    return b.length >= V1_MAX_BYTES ? { refuse: `v1 header: no CRLF within ${V1_MAX_BYTES} bytes` } : 'more';
  }
  return { refuse: `the connection did not start with a PROXY protocol header (first bytes ${JSON.stringify(printable(b.subarray(0, 16).toString('latin1'), 40))}); is the balancer's server line missing send-proxy-v2?` };
}

/** For an untrusted peer: enough bytes to tell whether it starts like a header (any non-prefix byte decides). */
function peekFrame(b: Buffer): Frame {
  if (b.length === 0) return 'more';
  const prefixOf = (sig: Buffer) => b.length < sig.length && b.equals(sig.subarray(0, b.length));
  return prefixOf(V1_SIGNATURE) || prefixOf(V2_SIGNATURE) ? 'more' : b.length;
}

/** Whether `b` starts with a PROXY signature, or with a prefix of one when shorter than it. */
function startsLikeHeader(b: Buffer): boolean {
  const like = (sig: Buffer) => {
    const n = Math.min(b.length, sig.length);
    return n > 0 && b.subarray(0, n).equals(sig.subarray(0, n));
  };
  return like(V1_SIGNATURE) || like(V2_SIGNATURE);
}

/**
 * Reads from `socket` until `frame` decides, at most V2_FIXED_BYTES +
 * V2_MAX_LENGTH bytes, within `timeoutMs`; then stops reading (the rest stays
 * in the socket for the next reader) and calls `done(bytes read)` or
 * `done(bytes, reason)`.
 */
function readFraming(socket: Socket, timeoutMs: number, frame: (b: Buffer) => Frame, done: (bytes: Buffer, err?: string) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  let finished = false;
  const finish = (err?: string) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeListener('readable', onReadable);
    socket.removeListener('end', onEnd);
    socket.removeListener('close', onEnd);
    // Hand over on the next tick. Removing the 'readable' listener schedules node's updateReadableListening, which
    // resumes the socket if it has 'data' listeners by then, even when their owner paused it: ssh2 pauses a new
    // socket until its crypto is ready, and the client's first bytes would flow past it to nobody.
    process.nextTick(() => done(buf, err));
  };
  const onReadable = () => {
    let chunk: Buffer | null;
    while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const f = frame(buf);
      if (f === 'more') {
        if (buf.length >= V2_FIXED_BYTES + V2_MAX_LENGTH) finish(`no complete header within ${V2_FIXED_BYTES + V2_MAX_LENGTH} bytes`);
        continue;
      }
      finish(typeof f === 'number' ? undefined : f.refuse);
    }
  };
  const onEnd = () => finish(buf.length === 0 ? 'closed before sending anything' : 'closed in the middle of the PROXY header');
  const timer = setTimeout(() => finish(`no ${frame === headerFrame ? 'complete PROXY header' : 'data'} within ${timeoutMs} ms`), timeoutMs);
  socket.on('readable', onReadable);
  socket.once('end', onEnd);
  socket.once('close', onEnd);
  socket.on('error', () => {}); // a reset while waiting ends in 'close'
}

/** Sockets whose header named a client: what they report as their peer. */
const proxiedPeers = new WeakMap<Socket, ProxiedPeer>();

function overridePeer(socket: Socket, peer: ProxiedPeer): void {
  proxiedPeers.set(socket, peer);
  // Own properties shadow net.Socket's getters (ssh2's info.ip, http's req.socket.remoteAddress read these).
  for (const [key, value] of [['remoteAddress', peer.address], ['remotePort', peer.port], ['remoteFamily', peer.family]] as const) {
    Object.defineProperty(socket, key, { value, configurable: true, enumerable: false, writable: false });
  }
}

function startsWith(b: Uint8Array, sig: Buffer): boolean {
  return b.length >= sig.length && sig.every((x, i) => b[i] === x);
}

/**
 * The `onRefused` callback for acceptProxied: per kind of refusal, one WARN
 * line a minute at most with how many refusals it stands for (a flood of
 * spoofed headers must not flood the log); the rest at debug. `untrusted`
 * (a client that was slow to send its first bytes) is debug only: that is
 * what the listener's own handshake timeout would have done anyway.
 */
export function refusalReporter(log: ServerLog, listener: string, now: () => number = Date.now): (reason: string, kind: RefusalKind) => void {
  const last = new Map<RefusalKind, { at: number; held: number }>();
  return (reason, kind) => {
    if (kind === 'untrusted') return log.debug(`${listener}: closed a connection: ${reason}`);
    const seen = last.get(kind) ?? { at: -Infinity, held: 0 };
    last.set(kind, seen);
    seen.held++;
    const t = now();
    if (t - seen.at < 60_000) return log.debug(`${listener}: refused a connection: ${reason}`);
    log.warn(`${listener}: refused ${seen.held} connection${seen.held === 1 ? '' : 's'} (PROXY protocol) since the last such line; latest: ${reason}`);
    seen.at = t;
    seen.held = 0;
  };
}
