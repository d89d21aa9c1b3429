/**
 * The TLS route: SSH to a node through the web port (proxy.tls_routing).
 * web.ts hands over the connections whose ClientHello offers
 * TLS_ROUTE_ALPN (alpn-mux.ts); here they get a TLS 1.3 handshake that
 * REQUIRES a client certificate signed by a trusted X.509 user CA key
 * (x509-ca.ts: the active one and those rotated out but still in their grace
 * period), then:
 *
 * 1. The SSH certificate inside the client certificate is checked as the SSH
 *    port checks one (sshcert verifyCertificate: user CA, type, validity,
 *    critical options with source-address against the client's address) and
 *    must certify the same public key; its roles come from the one identity
 *    module (NodeAccess.identify).
 * 2. tsh sends one request line (api/schema.ts TlsRouteRequestSchema): a node,
 *    a port and a login, or `ls`.
 * 3. NodeAccess decides exactly as for the SSH port (authorizeNodeRoute:
 *    login, node, labels, limits, audit); the node's sshd is dialled; once
 *    session.start is stored the answer line `{"ok":true}` goes out and the
 *    two streams are piped: one layer of encryption on the outer hop (TLS,
 *    native), the user's SSH session to the node inside it, unchanged.
 *
 * Limits before authentication (the SSH port's constants, ssh-proxy.ts, not
 * a copy): HANDSHAKE_TIMEOUT_MS for the TLS handshake and the request line
 * together; MAX_UNAUTHENTICATED_PER_SOURCE / _PER_PREFIX / MAX_UNAUTHENTICATED
 * connections still in that phase; MAX_PREAUTH_BYTES for the request line.
 * After: proxy.limits per user (connections, node sessions, node dials),
 * shared with the SSH port through the one NodeAccess. One node session per
 * TLS connection, so the channel cap is 1 by construction.
 */
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import type { Socket } from 'node:net';
import { formatHostPort } from '../../config/index.js';
import { parseShape, TlsRouteRequestSchema } from '../../api/schema.js';
import type { TlsRouteAnswer } from '../../api/types.js';
import { CertError, OPT_FORCE_COMMAND, parseCertificate, verifyCertificate, type Certificate } from '../../sshcert/index.js';
import { TLS_ROUTE_ALPN } from '../../shared/wire-names.js';
import { printable } from '../../util/printable.js';
import { readClientCertificate, x509CaFor } from '../auth/x509-ca.js';
import { prefixKey, SourceCounter } from '../limits.js';
import { inventoryNodes, type ServerRuntime } from '../runtime.js';
import { lockedMessage } from '../auth/locks.js';
import { serveRecordedSession } from './recording-proxy.js';
import type { TlsMaterial } from '../tls.js';
import { reachableNodes } from './routing.js';
import { isRefusal, type Slot } from './session-limits.js';
import { HANDSHAKE_TIMEOUT_MS, lockOwnCertificate, MAX_PREAUTH_BYTES, MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_PREFIX, MAX_UNAUTHENTICATED_PER_SOURCE } from './ssh-proxy.js';
import type { NodeAccess, Requester, Who } from './node-access.js';

/**
 * TLS 1.3 suites, AES-128-GCM first: with AES-NI it is the cheapest AEAD on
 * the outer hop (measured in BENCHMARKS.md "TLS routing"); ChaCha20 for
 * machines without it.
 */
export const TLS_ROUTE_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384';
/** Read buffer of the route's sockets (see node-access.ts RELAY_BUFFER_BYTES). */
const ROUTE_BUFFER_BYTES = 1 << 20;

/** Overrides of the pre-authentication limits (tests). */
export interface TlsRouteOptions {
  handshakeTimeoutMs?: number;
  maxPreauthBytes?: number;
  maxUnauthenticatedPerSource?: number;
  maxUnauthenticatedPerPrefix?: number;
  maxUnauthenticated?: number;
}

/** The web port's SSH route; `accept` takes a socket whose ClientHello offered TLS_ROUTE_ALPN. */
export class TlsRoute {
  private readonly limits: Required<TlsRouteOptions>;
  private readonly perSource: SourceCounter;
  private readonly perPrefix: SourceCounter;
  private readonly total: SourceCounter;
  private readonly sockets = new Set<Socket>();
  private context: { ids: string; ctx: SecureContext } | undefined;
  private lastLimitWarning = 0;

  constructor(
    private readonly rt: ServerRuntime,
    private readonly tls: TlsMaterial,
    private readonly access: NodeAccess,
    opts: TlsRouteOptions = {},
  ) {
    this.limits = {
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
      maxPreauthBytes: opts.maxPreauthBytes ?? MAX_PREAUTH_BYTES,
      maxUnauthenticatedPerSource: opts.maxUnauthenticatedPerSource ?? MAX_UNAUTHENTICATED_PER_SOURCE,
      maxUnauthenticatedPerPrefix: opts.maxUnauthenticatedPerPrefix ?? MAX_UNAUTHENTICATED_PER_PREFIX,
      maxUnauthenticated: opts.maxUnauthenticated ?? MAX_UNAUTHENTICATED,
    };
    this.perSource = new SourceCounter(this.limits.maxUnauthenticatedPerSource);
    this.perPrefix = new SourceCounter(this.limits.maxUnauthenticatedPerPrefix, prefixKey);
    this.total = new SourceCounter(this.limits.maxUnauthenticated, () => '*');
  }

  /**
   * The TLS context: the proxy's web certificate, and as client CAs the
   * X.509 CA certificate of every user CA key trusted now (rebuilt when that
   * set changes: a rotation, the end of a grace period).
   */
  private secureContext(): SecureContext {
    const trusted = this.rt.ca.get('user').trusted;
    const ids = trusted.map((k) => k.id).join(',');
    if (this.context?.ids !== ids) {
      const ca = trusted.map((k) => x509CaFor(k, this.rt.config.clusterName).certPem);
      this.context = { ids, ctx: createSecureContext({ cert: this.tls.cert, key: this.tls.key, ca, minVersion: 'TLSv1.3', ciphers: TLS_ROUTE_CIPHERS, honorCipherOrder: true }) };
    }
    return this.context.ctx;
  }

  /** Serves one connection (the raw TCP socket, PROXY header already read, ClientHello not consumed). */
  accept(socket: Socket): void {
    const { rt } = this;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const ip = socket.remoteAddress ?? 'unknown';
    const clientAddr = formatHostPort({ host: ip, port: socket.remotePort ?? 0 });
    const releases = [this.perSource.acquire(ip), this.perPrefix.acquire(ip), this.total.acquire(ip)];
    if (releases.some((r) => r === undefined)) {
      for (const r of releases) r?.();
      if (Date.now() - this.lastLimitWarning > 60_000) {
        this.lastLimitWarning = Date.now();
        rt.log.warn(`tls route: ${ip} (or its prefix ${prefixKey(ip)}) has too many connections still in their handshake; closing new ones`);
      }
      return void socket.destroy();
    }
    let preauth = true;
    const handshakeOver = () => {
      if (!preauth) return;
      preauth = false;
      clearTimeout(timer);
      for (const r of releases) r!();
    };
    socket.setNoDelay(true);
    let tlsSock: TLSSocket;
    try {
      tlsSock = new TLSSocket(socket, {
        isServer: true,
        secureContext: this.secureContext(),
        requestCert: true,
        rejectUnauthorized: true,
        ALPNProtocols: [TLS_ROUTE_ALPN],
        highWaterMark: ROUTE_BUFFER_BYTES,
      } as ConstructorParameters<typeof TLSSocket>[1]);
    } catch (err) {
      handshakeOver();
      rt.log.warn(`tls route: cannot serve a connection: ${(err as Error).message}`);
      return void socket.destroy();
    }
    const timer = setTimeout(() => {
      rt.log.debug(`tls route: ${clientAddr} did not finish its handshake and request within ${this.limits.handshakeTimeoutMs} ms; closing`);
      tlsSock.destroy();
    }, this.limits.handshakeTimeoutMs);
    tlsSock.once('close', handshakeOver);
    let secure = false;
    tlsSock.on('error', (err: NodeJS.ErrnoException) => {
      if (secure) return void rt.log.debug(`tls route: ${clientAddr}: ${err.message}`);
      // No certificate, one from an untrusted (or rotated-out) CA, an expired one, a wrong protocol version: refused by OpenSSL.
      rt.audit.unauthenticated({ event: 'access.denied', stage: 'authentication', login: '', client_addr: clientAddr, code: 'TLS_HANDSHAKE', reason: printable(err.message, 300) }, ip);
      tlsSock.destroy();
    });
    tlsSock.once('secure', () => {
      secure = true;
      this.authenticated(tlsSock, ip, clientAddr, handshakeOver).catch((err: Error) => {
        rt.log.warn(`tls route: ${clientAddr}: ${err.message}`);
        tlsSock.destroy();
      });
    });
  }

  private async authenticated(sock: TLSSocket, ip: string, clientAddr: string, handshakeOver: () => void): Promise<void> {
    const { rt, access } = this;
    const answer = (a: TlsRouteAnswer): void => void sock.end(JSON.stringify(a) + '\n');
    const refuseAuth = (code: string, message: string, user?: string): void => {
      rt.audit.unauthenticated({ event: 'access.denied', stage: 'authentication', ...(user !== undefined ? { user } : {}), login: '', client_addr: clientAddr, code, reason: message }, ip);
      answer({ ok: false, code, message, exit: 4 });
    };
    let cert: Certificate;
    try {
      const peer = sock.getPeerCertificate();
      const contents = readClientCertificate(peer.raw);
      cert = parseCertificate(contents.sshCertBlob);
      verifyCertificate(cert, {
        trustedCAs: rt.ca.get('user').trusted.map((k) => k.publicKey),
        now: rt.clock(),
        type: 'user',
        clientAddress: ip,
        loginCommand: `tsh login --proxy=${formatHostPort(rt.config.proxy.publicAddr)}`,
      });
      if (!cert.key.key.export({ format: 'der', type: 'spki' }).equals(contents.spkiDer)) {
        return refuseAuth('CERT_KEY_MISMATCH', 'the client certificate and the SSH certificate inside it certify different keys', cert.keyId);
      }
    } catch (err) {
      if (err instanceof CertError) return refuseAuth(err.code, err.message);
      return refuseAuth('CERT_MALFORMED', `the client certificate is not one a Jumpgate login issued (${(err as Error).message})`);
    }
    const sel = access.identify(cert);
    if ('ok' in sel) return refuseAuth(sel.code, sel.message, cert.keyId);

    const line = await readLine(sock, this.limits.maxPreauthBytes);
    if (line === undefined) return void sock.destroy();
    let parsedJson: unknown;
    try {
      parsedJson = JSON.parse(line);
    } catch {
      parsedJson = undefined;
    }
    const req = parseShape(TlsRouteRequestSchema, parsedJson);
    if (!req.ok) return answer({ ok: false, code: 'BAD_REQUEST', message: `the route request is not valid: ${req.field} ${req.reason}`, exit: 2 });
    handshakeOver();
    const who: Who = { user: cert.keyId, login: req.value.login, clientAddr };
    // A lock on the user, the login, a role or this certificate refuses the route as it refuses an SSH-port login (auth/locks.ts).
    const lock = access.connectionLock(cert, who.login, sel.roles);
    if (lock) return refuseAuth('ACCESS_LOCKED', lockedMessage(lock), cert.keyId);
    const connSlot = access.admitConnection(who);
    if (isRefusal(connSlot)) return answer({ ok: false, code: connSlot.code, message: connSlot.message, exit: 1 });
    sock.once('close', () => connSlot.release());
    const requester: Requester = { who, cert, selectors: sel.selectors };

    if (req.value.op === 'ls') {
      if (cert.criticalOptions.has(OPT_FORCE_COMMAND)) {
        return answer({ ok: false, code: 'FORCE_COMMAND', message: `this certificate is limited to one command (${OPT_FORCE_COMMAND}), so it cannot list nodes`, exit: 1 });
      }
      const nodes = reachableNodes(rt.config, sel.selectors, inventoryNodes(rt)).map((n) => ({ name: n.name, addr: formatHostPort(n.addr), labels: n.labels }));
      sock.write(JSON.stringify({ ok: true }) + '\n');
      return void sock.end(JSON.stringify({ cluster: rt.config.clusterName, nodes }) + '\n');
    }

    if (req.value.op === 'revoke') {
      // tsh logout --revoke behind a proxy that allows 443 only: the same lock as the SSH port's subsystem.
      try {
        const locked = await lockOwnCertificate(rt, who, cert);
        sock.write(JSON.stringify({ ok: true }) + '\n');
        return void sock.end(JSON.stringify(locked) + '\n');
      } catch (err) {
        rt.log.warn(`tls route: ${who.user}: cannot revoke certificate ${cert.serial.toString()}: ${(err as Error).message}`);
        return answer({ ok: false, code: 'REVOKE_FAILED', message: `the certificate was NOT revoked: ${printable((err as Error).message, 500)}`, exit: 1 });
      }
    }

    const route = access.authorizeNodeRoute(requester, req.value.host, req.value.port);
    if (!route.ok) return answer({ ok: false, code: route.code, message: route.message, exit: route.code === 'NO_ROLES' || route.code === 'BAD_IDENTITY' ? 4 : 1 });
    const { node } = route;
    if (rt.config.auth.sessionRecording === 'proxy') {
      // Recording mode: the proxy ends the user's SSH itself (recording-proxy.ts), on this TLS stream; it dials the node.
      sock.write(JSON.stringify({ ok: true }) + '\n');
      return serveRecordedSession(rt, sock, { node, user: who.user, clientAddr, clientIp: ip, via: 'tls-routing' }, { slot: route.slot, channels: access.limiter.channels(who) });
    }
    const slot: Slot = route.slot;
    // The dial and session.start's audit write overlap (relay); {"ok":true} once both are done.
    void access.relay(who, node, 'tls-routing', {
      stream: sock,
      onStart: () => void sock.write(JSON.stringify({ ok: true }) + '\n'),
      refuse: (message) => answer({ ok: false, code: 'AUDIT_UNAVAILABLE', message, exit: 1 }),
      unreachable: (reason) => answer({ ok: false, code: 'NODE_UNREACHABLE', message: `cannot reach ${node.name}: ${reason}`, exit: 1 }),
    }, access.dial(node), slot);
  }

  /** Ends every connection of the route. */
  close(): void {
    for (const s of this.sockets) s.destroy();
  }
}

/**
 * Reads one "\n"-terminated line of at most `max` bytes from `sock`, puts
 * back what came after it (tsh sends the SSH client's first bytes right
 * behind the request) and leaves the socket paused. Undefined when the
 * socket closed first or the line is too long.
 */
function readLine(sock: TLSSocket, max: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (value: string | undefined) => {
      sock.removeListener('data', onData);
      sock.removeListener('close', onClose);
      resolve(value);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (buf.length > max) done(undefined);
        return;
      }
      sock.pause();
      const rest = buf.subarray(nl + 1);
      if (rest.length > 0) sock.unshift(rest);
      done(nl > max ? undefined : buf.subarray(0, nl).toString('utf8'));
    };
    const onClose = () => done(undefined);
    sock.on('data', onData);
    sock.once('close', onClose);
  });
}
