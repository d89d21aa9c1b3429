/**
 * The proxy's SSH service on `proxy.ssh_listen_addr`: the bastion every
 * connection to a node goes through.
 *
 * - Presents a host certificate signed by the cluster's host CA (an
 *   in-memory ed25519 key, re-signed when the host CA rotates or the
 *   certificate nears its end), so clients need no trust-on-first-use.
 * - Authenticates users by certificate only (verifyUserCertAuth: user CA,
 *   type, validity, critical options, principal = the SSH user name, the
 *   user's signature). The roles in `roles@jumpgate.dev` are read against the
 *   current config (routing.ts).
 * - Serves, on a session channel, the subsystem `proxy:HOST:PORT` (tsh and
 *   `ProxyCommand ssh -s`) and `nodes@jumpgate.dev` (the JSON list behind
 *   `tsh ls`); and `direct-tcpip` channels, so `ssh -J user@proxy:PORT node` works.
 * - Relays bytes to the node's sshd with back-pressure; the node checks the
 *   certificate again (TrustedUserCAKeys), so both hops authenticate the user.
 * - Audits session.start / session.end / access.denied. session.start is
 *   durable before any byte is relayed; when the node ends a session first,
 *   session.end is durable before the client's channel closes (a client that
 *   saw its session complete knows the audit log holds it).
 * - Caps what one authenticated user can hold (connections, channels, node
 *   sessions, node connections still logging in): session-limits.ts.
 *
 * Limits on connections that have not authenticated yet (hostile or broken
 * clients; every number is also in README.md "SSH proxy limits"):
 * - HANDSHAKE_TIMEOUT_MS (30 s): key exchange and authentication must finish
 *   within it, or the socket is closed (a client that connects and sends
 *   nothing, or trickles a banner, is gone after 30 s).
 * - MAX_PREAUTH_BYTES (64 KiB): what a client may send before it is
 *   authenticated; a certificate login takes under 10 KiB.
 * - MAX_UNAUTHENTICATED_PER_SOURCE (50): connections from one source
 *   (limits.ts sourceKey: an IPv4 address, an IPv6 /64) still in their handshake; more are closed at once, before any SSH byte
 *   (sshd's MaxStartups, per source address).
 * - MAX_UNAUTHENTICATED_PER_PREFIX (500, limits.ts prefixKey: IPv4 /24, IPv6
 *   /48, loopback as one) and MAX_UNAUTHENTICATED (4,096 in all): the same,
 *   against one attacker with many addresses; users in other prefixes are
 *   not affected by the first.
 * - MAX_AUTH_FAILURES (6, OpenSSH's MaxAuthTries) failed and
 *   MAX_AUTH_REQUESTS (20) authentication requests of any outcome per
 *   connection ("none" not counted); then the connection is closed.
 * - ssh2 itself: the client's identification line must be the first line
 *   (no lines before it) and at most 8192 bytes long (MAX_LINE_LEN in
 *   ssh2/lib/protocol/Protocol.js); a packet may be at most 35000 bytes
 *   (MAX_PACKET_SIZE in ssh2/lib/protocol/crypto.js, the minimum RFC 4253 §6.1
 *   asks every implementation to accept). Beyond either ssh2 ends the connection.
 */
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { Duplex } from 'node:stream';
import type { AuthContext, Connection, ServerChannel } from 'ssh2';
import { formatHostPort, type HostPort } from '../../config/index.js';
import { CertError, OPT_FORCE_COMMAND, encodeCertificateLine, encodeOpenSSHPrivateKey, generateKeyPair, parseCertificate, type Certificate } from '../../sshcert/index.js';
import { hostCertKey, sendAuthBanner, verifyUserCertAuth } from '../../sshconn/index.js';
import { issueHostCertificate } from '../auth/issuer.js';
import { claimedIdentity } from '../auth/audit.js';
import { addLock, lockedMessage } from '../auth/locks.js';
import { prefixKey, SourceCounter } from '../limits.js';
import { NODES_SUBSYSTEM, PROXY_SUBSYSTEM_PREFIX, REVOKE_SUBSYSTEM } from '../../shared/wire-names.js';
import { inventoryNodes, type RunningService, type ServerRuntime } from '../runtime.js';
import { parseProxySubsystem, reachableNodes } from './routing.js';
import { isRefusal, type Slot } from './session-limits.js';
import { NodeAccess, RELAY_BUFFER_BYTES, type Requester, type Who } from './node-access.js';
import { closeRecordedSessions, serveRecordedSession } from './recording-proxy.js';
import { rejectWithReason } from '../../sshconn/channels.js';
import { acceptProxied, refusalReporter } from './proxy-protocol.js';

/** A connection must finish key exchange and authentication within this (half-open and idle pre-auth connections are dropped). */
export const HANDSHAKE_TIMEOUT_MS = 30_000;
/** Bytes a client may send before it is authenticated (a certificate login sends under 10 KiB). */
export const MAX_PREAUTH_BYTES = 64 * 1024;
/** Connections from one source (limits.ts sourceKey) that have not authenticated yet; more are closed at once. */
export const MAX_UNAUTHENTICATED_PER_SOURCE = 50;
/** Connections from one prefix (limits.ts prefixKey) that have not authenticated yet. */
export const MAX_UNAUTHENTICATED_PER_PREFIX = 500;
/** Connections that have not authenticated yet, in all. */
export const MAX_UNAUTHENTICATED = 4_096;
/** Failed authentication requests per connection, as OpenSSH's MaxAuthTries default. */
export const MAX_AUTH_FAILURES = 6;
/** Authentication requests of any outcome per connection ("none" not counted): each one costs signature checks. */
export const MAX_AUTH_REQUESTS = 20;
/** Lifetime of the proxy's own host certificate; re-signed when less than half is left. */
const HOST_CERT_TTL_SECONDS = 24 * 3600;
/**
 * chacha20-poly1305 first: with ssh2's native binding it relays faster than
 * AES-GCM (FACTS.md); the AES modes stay for clients that prefer them.
 */
const CIPHERS = ['chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr'];

/** Overrides of the limits above (tests). */
export interface SshProxyOptions {
  handshakeTimeoutMs?: number;
  maxPreauthBytes?: number;
  maxUnauthenticatedPerSource?: number;
  maxUnauthenticatedPerPrefix?: number;
  maxUnauthenticated?: number;
  maxAuthFailures?: number;
  maxAuthRequests?: number;
  /** The authorisation and relay shared with the TLS route (server/index.ts makes one per process); default: a new one, closed with the service. */
  access?: NodeAccess;
}

interface Limits {
  handshakeMs: number;
  preauthBytes: number;
  perSource: number;
  perPrefix: number;
  total: number;
  authFailures: number;
  authRequests: number;
}

interface HostIdentity {
  caKeyId: string;
  validBefore: number;
  server: ssh2.Server;
}

/**
 * Starts the SSH proxy on `listen` (port 0 = any free port). Resolves when
 * it listens; `close()` stops accepting and ends every open connection.
 */
export async function startSshProxy(rt: ServerRuntime, listen: HostPort, opts: SshProxyOptions = {}): Promise<RunningService> {
  const hostKey = generateKeyPair('ed25519');
  const hostKeyText = encodeOpenSSHPrivateKey(hostKey.privateKey, 'jumpgate proxy');
  const limits: Limits = {
    handshakeMs: opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
    preauthBytes: opts.maxPreauthBytes ?? MAX_PREAUTH_BYTES,
    perSource: opts.maxUnauthenticatedPerSource ?? MAX_UNAUTHENTICATED_PER_SOURCE,
    perPrefix: opts.maxUnauthenticatedPerPrefix ?? MAX_UNAUTHENTICATED_PER_PREFIX,
    total: opts.maxUnauthenticated ?? MAX_UNAUTHENTICATED,
    authFailures: opts.maxAuthFailures ?? MAX_AUTH_FAILURES,
    authRequests: opts.maxAuthRequests ?? MAX_AUTH_REQUESTS,
  };
  const sockets = new Set<Socket>();
  /** Unauthenticated connections per source. */
  const unauthenticated = new SourceCounter(limits.perSource);
  const unauthenticatedPrefixes = new SourceCounter(limits.perPrefix, prefixKey);
  const unauthenticatedTotal = new SourceCounter(limits.total, () => '*');
  let lastLimitWarning = 0;
  let identity: HostIdentity | undefined;
  let port = listen.port;
  const access = opts.access ?? new NodeAccess(rt);

  // Names clients connect to the proxy by; ssh checks the certificate's principals against them.
  const principals = () =>
    [...new Set([rt.config.proxy.sshPublicAddr.host, listen.host, 'localhost', '127.0.0.1'])].filter((h) => h !== '0.0.0.0' && h !== '::');

  /**
   * The ssh2 Server presenting a certificate from the OLDEST host CA key still
   * trusted. After `tctl auth rotate --type=host`, users who logged in before
   * the rotation know only the old key (their known_hosts came with that
   * login); everyone who logs in during the grace period gets both. So the
   * proxy keeps the old key's certificate until the grace period ends, then
   * moves to the new key, which by then every logged-in user has.
   *
   * `fresh()` says synchronously whether the current one still fits (the
   * per-connection fast path); `currentServer()` re-signs when it does not,
   * through the async issuer (cert.issued is durable first). Concurrent
   * callers share one re-signing.
   */
  const signerNow = () => {
    const trusted = rt.ca.get('host').trusted;
    return trusted[trusted.length - 1]!;
  };
  const fresh = (): ssh2.Server | undefined => {
    const nowSec = Math.floor(rt.clock().getTime() / 1000);
    return identity && identity.caKeyId === signerNow().id && identity.validBefore - nowSec > HOST_CERT_TTL_SECONDS / 2 ? identity.server : undefined;
  };
  let resigning: Promise<ssh2.Server> | undefined;
  const currentServer = (): Promise<ssh2.Server> => {
    const ready = fresh();
    if (ready) return Promise.resolve(ready);
    resigning ??= resign().finally(() => (resigning = undefined));
    return resigning;
  };
  const resign = async (): Promise<ssh2.Server> => {
    const signer = signerNow();
    const cert = await issueHostCertificate(
      { names: principals(), publicKey: hostKey.publicKey, ttlSeconds: HOST_CERT_TTL_SECONDS, via: 'ssh-proxy', signer, longForms: false },
      { config: rt.config, ca: rt.ca, audit: rt.audit, clock: rt.clock },
    );
    const server = new ssh2.Server(
      {
        hostKeys: [hostCertKey(hostKeyText, encodeCertificateLine(cert, 'jumpgate proxy'))],
        algorithms: { cipher: CIPHERS as ssh2.CipherAlgorithm[] },
        ident: 'Jumpgate',
      },
      (conn, info) => handleConnection(rt, conn, info, limits, access),
    );
    if (identity) rt.log.info(`ssh proxy: host certificate re-signed (host CA key ${signer.id})`);
    identity = { caKeyId: signer.id, validBefore: Number(cert.validBefore), server };
    return server;
  };
  await currentServer(); // fail at start, not at the first connection, if the host CA cannot be used

  const refusedHeader = refusalReporter(rt.log, 'ssh proxy');
  // PROXY protocol from proxy.proxy_protocol_from (proxy-protocol.ts): the limits below and ssh2's info.ip see the real client.
  const net: NetServer = createServer({ noDelay: true, highWaterMark: RELAY_BUFFER_BYTES }, (raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw)); // also when refused before `accepted`
    acceptProxied(raw, { trusted: rt.config.proxy.proxyProtocolFrom, untrusted: 'watch' }, (socket) => accepted(socket), refusedHeader);
  });
  const accepted = (socket: Socket) => {
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {}); // ssh2 reports protocol errors; a reset socket needs no log line
    // On a protocol error ssh2 only half-closes (socket.end()) and the client could go on sending: once our side is done, so is the socket.
    socket.once('finish', () => socket.destroy());
    const source = socket.remoteAddress ?? 'unknown';
    const releases = [unauthenticated.acquire(source), unauthenticatedPrefixes.acquire(source), unauthenticatedTotal.acquire(source)];
    if (releases.some((r) => r === undefined)) {
      for (const r of releases) r?.();
      // One line a minute at most: a flood must not flood the log too.
      if (Date.now() - lastLimitWarning > 60_000) {
        lastLimitWarning = Date.now();
        const [which, held, max] = !releases[0]
          ? ['', unauthenticated.count(source), `${limits.perSource} per source`]
          : !releases[1]
            ? [`'s prefix ${prefixKey(source)}`, unauthenticatedPrefixes.count(source), `${limits.perPrefix} per prefix`]
            : [' (all sources)', unauthenticatedTotal.count(source), `${limits.total} in all`];
        rt.log.warn(`ssh proxy: ${source}${which} has ${held} connections still in their handshake (limit ${max}); closing new ones`);
      }
      socket.destroy();
      return;
    }
    const release = () => {
      for (const r of releases) r!();
    };
    let bytes = 0;
    const countBytes = (b: Buffer) => {
      bytes += b.length;
      if (bytes <= limits.preauthBytes) return;
      rt.log.debug(`ssh proxy: ${source}:${socket.remotePort} sent over ${limits.preauthBytes} bytes before authenticating; closing`);
      socket.destroy();
    };
    socket.on('data', countBytes);
    const timer = setTimeout(() => {
      rt.log.debug(`ssh proxy: ${source}:${socket.remotePort} did not authenticate within ${limits.handshakeMs} ms; closing`);
      socket.destroy();
    }, limits.handshakeMs);
    // Runs when the connection authenticates (handleConnection, on 'ready') or closes before that.
    const handshakeOver = () => {
      clearTimeout(timer);
      socket.removeListener('data', countBytes);
      release();
    };
    socket.once('close', handshakeOver);
    handshakes.set(socket, handshakeOver);
    const serve = (server: ssh2.Server) => {
      try {
        server.injectSocket(socket);
      } catch (err) {
        rt.log.warn(`ssh proxy: cannot serve a connection: ${(err as Error).message}`);
        socket.destroy();
      }
    };
    const ready = fresh();
    if (ready) return serve(ready);
    // Re-signing first (a rotation's grace period ended, or the certificate is half way through its life): hold the client's bytes meanwhile.
    socket.pause();
    currentServer().then(
      (server) => {
        if (socket.destroyed) return;
        serve(server);
        socket.resume();
      },
      (err: Error) => {
        rt.log.warn(`ssh proxy: cannot serve a connection: ${err.message}`);
        socket.destroy();
      },
    );
  };

  await new Promise<void>((resolve, reject) => {
    net.once('error', reject);
    net.listen(listen.port, listen.host, () => {
      net.removeListener('error', reject);
      resolve();
    });
  });
  net.on('error', (err) => rt.log.warn(`ssh proxy: ${err.message}`));
  port = (net.address() as { port: number }).port;
  rt.log.info(`ssh proxy: listening on ${formatHostPort({ host: listen.host, port })}`);

  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        net.close(() => resolve());
        for (const s of sockets) s.destroy();
        closeRecordedSessions(rt);
        if (!opts.access) access.close();
      }),
  };
}

/** CertErrors raised before (or instead of) the user CA's signature on the certificate verified: its key id is only claimed. */
const UNVERIFIED_CERT_CODES = new Set(['CERT_MALFORMED', 'CERT_WRONG_TYPE', 'CERT_UNTRUSTED_CA', 'CERT_UNSUPPORTED_ALGORITHM', 'CERT_BAD_SIGNATURE']);

/** Ends the pre-authentication limits of a raw socket (its deadline, byte count and per-source slot). */
const handshakes = new WeakMap<Socket, () => void>();

interface ClientInfo {
  ip: string;
  port: number;
}

/** Why authentication failed, kept for the access.denied event when the connection ends unauthenticated. */
interface Denial {
  code: string;
  message: string;
  /** The key id of a certificate that verified against the user CA. */
  user?: string;
  /** The key id of one that did not: nobody vouches for it. */
  claimedUser?: string;
  login: string;
}

function handleConnection(rt: ServerRuntime, conn: Connection, info: ClientInfo, limits: Limits, access: NodeAccess): void {
  const clientAddr = formatHostPort({ host: info.ip ?? 'unknown', port: info.port ?? 0 });
  const socket = (conn as unknown as { _sock: Socket })._sock;
  let cert: Certificate | undefined;
  let login = '';
  let denial: Denial | undefined;
  let selectors: Record<string, string | string[]>[] = [];
  let requests = 0;
  let failures = 0;
  let connectionSlot: Slot | undefined;
  const bannersSent = new Set<string>();
  /** Tells the client why (OpenSSH prints the banner; a bare "Permission denied" says nothing), once per reason. */
  const banner = (text: string) => {
    if (bannersSent.has(text) || bannersSent.size >= 3) return;
    bannersSent.add(text);
    sendAuthBanner(conn, `jumpgate proxy: ${text}`);
  };
  const loginCommand = `tsh login --proxy=${formatHostPort(rt.config.proxy.publicAddr)}`;

  conn.on('error', (err) => rt.log.debug(`ssh proxy: ${clientAddr}: ${err.message}`));

  conn.on('authentication', (ctx: AuthContext) => {
    // "none" is how clients ask which methods there are; OpenSSH does not count it either.
    if (ctx.method === 'none') return ctx.reject(['publickey']);
    requests++;
    const reject = () => {
      failures++;
      ctx.reject(['publickey']);
      if (failures >= limits.authFailures) tooMany(`${failures} failed authentication attempts`);
    };
    if (requests > limits.authRequests) return tooMany(`${requests} authentication requests`);
    authenticate(ctx, reject);
  });

  const tooMany = (what: string) => {
    rt.log.debug(`ssh proxy: ${clientAddr}: ${what}; closing`);
    conn.end();
  };

  const authenticate = (ctx: AuthContext, reject: () => void) => {
    if (ctx.method !== 'publickey') return reject();
    try {
      // Nodes see only the proxy's address: source-address is checked here, against the real client.
      const c = verifyUserCertAuth(ctx, {
        trustedUserCAs: rt.ca.get('user').trusted.map((k) => k.publicKey),
        now: rt.clock(),
        clientAddress: info.ip ?? '',
        loginCommand,
      });
      const sel = access.identify(c);
      if ('ok' in sel) {
        denial = { code: sel.code, message: sel.message, user: c.keyId, login: ctx.username };
        banner(sel.message);
        return reject();
      }
      // Locks (auth/locks.ts): a locked user, login, role or certificate gets the lock's message, no connection.
      const lock = access.connectionLock(c, ctx.username, sel.roles);
      if (lock) {
        denial = { code: 'ACCESS_LOCKED', message: lockedMessage(lock), user: c.keyId, login: ctx.username };
        banner(lockedMessage(lock));
        return reject();
      }
      if (ctx.signature !== undefined) {
        const slot = access.admitConnection({ user: c.keyId, login: ctx.username, clientAddr });
        if (isRefusal(slot)) {
          // Audited by the limiter (aggregated); the connection has nothing else to offer.
          banner(slot.message);
          ctx.reject(['publickey']);
          return conn.end();
        }
        connectionSlot = slot;
        cert = c;
        login = ctx.username;
        selectors = sel.selectors;
      }
      return ctx.accept();
    } catch (err) {
      if (!(err instanceof CertError)) {
        rt.log.warn(`ssh proxy: ${clientAddr}: authentication failed unexpectedly: ${(err as Error).message}`);
        return reject();
      }
      // A plain key offered before the certificate (ssh tries the agent's keys) is not worth reporting over a real reason.
      if (!denial || err.code !== 'CERT_MALFORMED') {
        // The key id is this cluster's word only when the user CA's signature on the certificate verified (sshcert verifyCertificate's order).
        const keyId = keyIdOf(ctx.key.data);
        denial = UNVERIFIED_CERT_CODES.has(err.code)
          ? { code: err.code, message: err.message, ...(keyId !== undefined ? { claimedUser: keyId } : {}), login: ctx.username }
          : { code: err.code, message: err.message, ...(keyId !== undefined ? { user: keyId } : {}), login: ctx.username };
      }
      if (/-cert-v01@openssh\.com$/.test(ctx.key.algo)) banner(err.message);
      return reject();
    }
  };

  conn.on('close', () => {
    connectionSlot?.release();
    if (!cert && denial) {
      const who = denial.user !== undefined ? { user: denial.user } : denial.claimedUser !== undefined ? { claimed_user: claimedIdentity(denial.claimedUser), untrusted: true as const } : {};
      rt.audit.unauthenticated(
        { event: 'access.denied', stage: 'authentication', ...who, login: claimedIdentity(denial.login), client_addr: clientAddr, code: denial.code, reason: denial.message },
        info.ip ?? 'unknown',
      );
    }
  });

  conn.on('ready', () => {
    if (socket) handshakes.get(socket)?.();
    const who: Who = { user: cert!.keyId, login, clientAddr };
    rt.log.debug(`ssh proxy: ${clientAddr}: ${who.user} authenticated as ${login}`);
    const channels = access.limiter.channels(who);
    const requester: Requester = { who, cert: cert!, selectors };

    conn.on('session', (accept, reject) => {
      const chSlot = channels.admit();
      if (isRefusal(chSlot)) return rejectWithReason(conn, reject, chSlot.message);
      const session = accept();
      session.once('close', () => chSlot.release());
      session.on('pty', (acc) => acc?.());
      session.on('env', (acc) => acc?.());
      session.on('window-change', (acc) => acc?.());
      const notAShell = (acc: () => ServerChannel | undefined) => {
        const ch = acc();
        if (!ch) return;
        ch.stderr.write('This is the Jumpgate proxy: it has no shell. Use `tsh ssh NODE`, `ssh NODE` after `tsh login`, or `ssh -J` with this host as the jump host.\r\n');
        ch.exit(1);
        ch.end();
      };
      session.on('shell', (acc) => notAShell(acc));
      session.on('exec', (acc) => notAShell(acc));
      session.on('subsystem', (acc, rej, req) => {
        if (req.name === NODES_SUBSYSTEM) {
          const ch = acc();
          if (!ch) return;
          if (cert!.criticalOptions.has(OPT_FORCE_COMMAND)) {
            // The node's sshd runs the forced command; at the proxy such a certificate only reaches nodes.
            ch.stderr.write(`jumpgate proxy: this certificate is limited to one command (${OPT_FORCE_COMMAND}), so it cannot list nodes\n`);
            ch.exit(1);
            ch.end();
            return;
          }
          const nodes = reachableNodes(rt.config, selectors, inventoryNodes(rt)).map((n) => ({ name: n.name, addr: formatHostPort(n.addr), labels: n.labels }));
          // exit-status must go before end(): ssh2 sends nothing on a channel that finished writing.
          ch.write(JSON.stringify({ cluster: rt.config.clusterName, nodes }) + '\n');
          ch.exit(0);
          ch.end();
          return;
        }
        if (req.name === REVOKE_SUBSYSTEM) {
          const ch = acc();
          if (!ch) return;
          void revokeOwnCertificate(rt, who, cert!, ch);
          return;
        }
        if (!req.name.startsWith(PROXY_SUBSYSTEM_PREFIX)) return rej?.();
        const ch = acc();
        if (!ch) return;
        ch.once('close', () => chSlot.release());
        const target = parseProxySubsystem(req.name);
        if ('ok' in target) access.deny(who, req.name, target);
        const route = 'ok' in target ? target : access.authorizeNodeRoute(requester, target.host, target.port);
        if (!route.ok) {
          ch.stderr.write(`jumpgate proxy: ${route.message}\n`);
          ch.exit(route.code === 'BAD_REQUEST' ? 2 : 1);
          ch.end();
          return;
        }
        const { slot } = route;
        if (rt.config.auth.sessionRecording === 'proxy') {
          // Recording mode: the proxy ends the user's SSH itself (recording-proxy.ts); the channel carries it.
          return serveRecordedSession(rt, ch as unknown as Duplex, { node: route.node, user: who.user, clientAddr: who.clientAddr, clientIp: info.ip ?? '', via: 'subsystem' }, {
            slot,
            channels: access.limiter.channels(who),
          });
        }
        const client = {
          stream: ch as unknown as Duplex,
          refuse: (message: string) => {
            ch.stderr.write(`jumpgate proxy: ${message}\n`);
            ch.exit(1);
            ch.end();
          },
          // A lock ended the session: the user reads why on ssh's stderr (tsh proxy ssh passes it on, escaped).
          notify: (message: string) => {
            ch.stderr.write(`\njumpgate proxy: ${message}\n`);
            ch.exit(1);
          },
        };
        access
          .dial(route.node)
          .then((sock) => void access.relay(who, route.node, 'subsystem', client, sock, slot))
          .catch((err: Error) => {
            slot.release();
            rt.log.warn(`ssh proxy: ${who.user}: cannot reach ${route.node.name} (${formatHostPort(route.node.addr)}): ${err.message}`);
            ch.stderr.write(`jumpgate proxy: cannot reach ${route.node.name}: ${err.message}\n`);
            ch.exit(1);
            ch.end();
          });
      });
    });

    conn.on('tcpip', (accept, reject, req) => {
      const chSlot = channels.admit();
      if (isRefusal(chSlot)) return rejectWithReason(conn, reject, chSlot.message);
      const route = access.authorizeNodeRoute(requester, req.destIP, req.destPort);
      if (!route.ok) {
        chSlot.release();
        return rejectWithReason(conn, reject, route.message);
      }
      const admitted = route.slot;
      const slot: Slot = {
        release: () => {
          admitted.release();
          chSlot.release();
        },
      };
      if (rt.config.auth.sessionRecording === 'proxy') {
        const ch = accept();
        if (!ch) return slot.release();
        return serveRecordedSession(rt, ch as unknown as Duplex, { node: route.node, user: who.user, clientAddr: who.clientAddr, clientIp: info.ip ?? '', via: 'direct-tcpip' }, {
          slot,
          channels: access.limiter.channels(who),
        });
      }
      access
        .dial(route.node)
        .then((sock) => {
          const ch = accept();
          if (!ch) {
            slot.release();
            return void sock.destroy();
          }
          const client = { stream: ch as unknown as Duplex, refuse: () => ch.end() };
          void access.relay(who, route.node, 'direct-tcpip', client, sock, slot);
        })
        .catch((err: Error) => {
          slot.release();
          rt.log.warn(`ssh proxy: ${who.user}: cannot reach ${route.node.name} (${formatHostPort(route.node.addr)}): ${err.message}`);
          rejectWithReason(conn, reject, `cannot reach ${route.node.name}: ${err.message}`);
        });
    });
  });
}

/**
 * `tsh logout --revoke` (subsystem revoke@jumpgate.dev here, op `revoke` on
 * the TLS route, tls-route.ts): locks the certificate the connection
 * authenticated with, by serial, until it expires (a `cert` lock: the proxies
 * refuse it, the KRL lists it). Asking twice returns the lock already there.
 * The user can lock only their own certificate, so what one user makes the
 * server hold is one lock per certificate they were issued.
 * @returns the answer line's fields `{lock_id, serial, expires}` (client/revoke.ts RevokeAnswerSchema)
 * @throws whatever the store throws: nothing was locked
 */
export async function lockOwnCertificate(rt: ServerRuntime, who: Who, cert: Certificate): Promise<{ lock_id: string; serial: string; expires: string | null }> {
  const serial = cert.serial.toString();
  const existing = rt.locks.current().find((l) => l.target === 'cert' && l.value === serial);
  const lock =
    existing ??
    (await addLock(rt, {
      target: 'cert',
      value: serial,
      caKey: cert.signatureKey.blob,
      expiresAt: new Date(Number(cert.validBefore) * 1000),
      message: `certificate ${serial} revoked by its owner (tsh logout --revoke)`,
      createdBy: `${who.user} (tsh logout --revoke from ${who.clientAddr})`,
      user: who.user,
    }));
  await rt.locks.refresh();
  rt.log.info(`proxy: ${who.user} revoked their certificate ${serial} (lock ${lock.id})`);
  return { lock_id: lock.id, serial, expires: lock.expires ?? null };
}

/** The SSH port's revoke@jumpgate.dev subsystem: one JSON line and exit 0, or a reason on stderr and exit 1. */
async function revokeOwnCertificate(rt: ServerRuntime, who: Who, cert: Certificate, ch: ServerChannel): Promise<void> {
  try {
    ch.write(JSON.stringify(await lockOwnCertificate(rt, who, cert)) + '\n');
    ch.exit(0);
  } catch (err) {
    rt.log.warn(`ssh proxy: ${who.user}: cannot revoke certificate ${cert.serial.toString()}: ${(err as Error).message}`);
    ch.stderr.write(`jumpgate proxy: the certificate was NOT revoked: ${(err as Error).message}\n`);
    ch.exit(1);
  }
  ch.end();
}

function keyIdOf(blob: Buffer): string | undefined {
  try {
    return parseCertificate(blob).keyId;
  } catch {
    return undefined;
  }
}


