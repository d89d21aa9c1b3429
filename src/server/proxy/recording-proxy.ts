/**
 * The recording proxy (`auth.session_recording: proxy`; Teleport's "recording
 * proxy mode" for OpenSSH nodes). Instead of relaying the user's encrypted
 * bytes to the node, the proxy ends the user's SSH connection itself, sees
 * the session in clear, records it, and opens its own SSH connection to the
 * node for the user.
 *
 * One user connection (`serveRecordedSession`, on any Duplex: the proxy
 * subsystem's channel, a direct-tcpip channel, a TLS route's stream):
 * 1. An ssh2 Server on the stream presents a host certificate for the node's
 *    name (and `name.<cluster>`, and its inventory host) signed by the host
 *    CA, made on demand and cached (NodeHostCerts), so plain ssh with
 *    `StrictHostKeyChecking yes` and only the `@cert-authority` line works.
 * 2. The user authenticates with the certificate exactly as at the SSH port
 *    (verifyUserCertAuth: CA, type, validity, source-address against the real
 *    client, principal = the login, signature; certificateSelectors + routeToNode
 *    against the current config). It must be the user the outer hop
 *    authenticated (`target.user`): the route was decided for that user.
 * 3. The proxy dials the node, makes a fresh ed25519 key (never stored) and
 *    has the issuer sign a per-session certificate for it
 *    (issueSessionCertificate: the login only, key id
 *    `<user>/session/<session id>`, SESSION_CERT_TTL_SECONDS, source-address =
 *    the proxy's address on that very TCP connection, the permit-* extensions
 *    the user's certificate carries AND the current roles allow), and logs in
 *    with an ssh2 Client that checks the node's host certificate.
 * 4. Channels are relayed one by one: session (pty-req, env, window-change,
 *    signal, auth-agent-req when permitted, shell/exec/subsystem, exit-status
 *    /exit-signal, EOF/CLOSE in order) and direct-tcpip (`ssh -L`, when the
 *    certificate permits port forwarding). Streams are piped, so a slow side
 *    pauses the other (SSH windows are withheld), both ways.
 * 5. Audit: session.start (durable before the first channel's bytes move;
 *    with the recording's name), session.exec per exec request (durable
 *    before it runs), session.scp for `scp -t/-f`, session.sftp per file
 *    operation (sftp-audit.ts), session.end with byte counts and the name.
 *
 * What is recorded (SessionRecorder, server/recording/): PTY sessions
 * (shell and exec with a PTY): output, resizes, and input when a role sets
 * `record_input`; exec without a PTY: stdout and stderr as output, except
 * file transfers (scp, rsync --server, sftp-server), whose content is not a
 * terminal session (their operations are audited instead); subsystems
 * (sftp): not recorded, audited. One recording per user connection.
 *
 * Limits: a user connection holds the node-session slot the caller admitted;
 * its channels count against `max_channels_per_connection`; the inner
 * handshake must finish within INNER_HANDSHAKE_TIMEOUT_MS with at most
 * MAX_INNER_AUTH_FAILURES failures; env requests are capped
 * (MAX_ENV_VARS, MAX_ENV_BYTES); the node connection ends when the user's does.
 */
import { randomUUID } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { AuthContext, ClientChannel, Connection, PseudoTtyInfo, PublicKeyAuthMethod, ServerChannel } from 'ssh2';
import type { NodeConfig } from '../../config/index.js';
import { CertError, OPT_FORCE_COMMAND, EXT_PERMIT_AGENT_FORWARDING, EXT_PERMIT_PORT_FORWARDING, EXT_PERMIT_PTY, encodeCertificateLine, encodeOpenSSHPrivateKey, generateKeyPair, type Certificate } from '../../sshcert/index.js';
import { certIdentity, clientHostKeyAlgorithms, hostCertKey, hostCertVerifier, sendAuthBanner, verifyUserCertAuth } from '../../sshconn/index.js';
import { openAgentChannel, openSubsystem, rejectWithReason } from '../../sshconn/channels.js';
import { printable } from '../../util/printable.js';
import type { AuditEvent } from '../auth/audit.js';
import { lockedMessage } from '../auth/locks.js';
import { hostCertPrincipals, issueHostCertificate, issueSessionCertificate, SessionCertRequest } from '../auth/issuer.js';
import { inventoryNodes, type ServerRuntime } from '../runtime.js';
import { startRecording as startStoredRecording, type RecordingMeta, type SessionRecorder } from '../recording/recorder.js';
import type { EndReason } from './active-sessions.js';
import { dialNode, type Via } from './node-access.js';
import { certificateSelectors, routeToNode } from './routing.js';
import { isRefusal, type LimitRefusal, type Slot } from './session-limits.js';
import { SftpAuditError, SftpAuditor } from './sftp-audit.js';

/** Lifetime of a per-session node certificate: it is used once, at the node's login, right after it is signed. */
export const SESSION_CERT_TTL_SECONDS = 5 * 60;
/** Lifetime of a node name's host certificate at the proxy; replaced when less than half is left. */
export const NODE_HOST_CERT_TTL_SECONDS = 3600;
/** Node names whose host certificate (and ssh2 Server) the proxy keeps; the least recently used goes first. */
export const MAX_NODE_HOST_CERTS = 1_024;
/** The user's SSH handshake inside the channel must finish within this. */
export const INNER_HANDSHAKE_TIMEOUT_MS = 30_000;
/** Failed authentication requests on the inner connection (OpenSSH's MaxAuthTries). */
export const MAX_INNER_AUTH_FAILURES = 6;
/** env requests kept per session channel, and their total size. */
export const MAX_ENV_VARS = 64;
export const MAX_ENV_BYTES = 16 * 1024;
/** Longest command written to the audit log (the audit log cuts at 1,024 too). */
const MAX_COMMAND_CHARS = 1_024;
/** How long a node connection may take to log in (TCP, key exchange, authentication). */
const NODE_LOGIN_TIMEOUT_MS = 15_000;
/** chacha20-poly1305 first (ssh2's native binding relays it fastest: FACTS.md). */
const CIPHERS = ['chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr'];

/** Starts a recording (server/recording/recorder.ts startRecording). */
export type { RecordingMeta, SessionRecorder };
export type StartRecording = (rt: ServerRuntime, meta: RecordingMeta) => Promise<SessionRecorder>;

/** Where an authorised user connection goes: decided by the caller (SSH port or TLS route) before any byte of the inner SSH is read. */
export interface RecordingTarget {
  node: NodeConfig;
  /** The user the outer hop authenticated (their certificate's key id); the inner certificate must be the same user's. */
  user: string;
  /** The real client, host:port (audit `client_addr`). */
  clientAddr: string;
  /** The real client's IP address (checked against the certificate's source-address). */
  clientIp: string;
  via: Via;
}

/** What the caller lends a user connection: its node-session slot and the channel limit of its outer connection. */
export interface RecordingOptions {
  /** The node-session slot (session-limits.ts admitNodeSession); released when the connection ends. */
  slot: Slot;
  /** Admits channels of the inner connection (SessionLimiter.channels); default: max_channels_per_connection, unaudited. */
  channels?: { admit(): Slot | LimitRefusal };
  /** Default: server/recording/recorder.ts startRecording (asciicast v2 through the storage interface). */
  startRecording?: StartRecording;
}

interface HostServer {
  caKeyId: string;
  validBefore: number;
  server: ssh2.Server;
}

/**
 * ssh2 Servers presenting a host certificate per node name, signed on first
 * use and kept (LRU, MAX_NODE_HOST_CERTS) until less than half of
 * NODE_HOST_CERT_TTL_SECONDS is left or the host CA's newest trusted key
 * changed. One in-memory ed25519 key for all of them.
 */
export class NodeHostCerts {
  private readonly key = generateKeyPair('ed25519');
  private readonly keyText = encodeOpenSSHPrivateKey(this.key.privateKey, 'jumpgate recording proxy');
  private readonly servers = new Map<string, HostServer>();
  private readonly signing = new Map<string, Promise<ssh2.Server>>();

  constructor(
    private readonly rt: ServerRuntime,
    private readonly onConnection: (conn: Connection) => void,
    private readonly max = MAX_NODE_HOST_CERTS,
  ) {}

  get size(): number {
    return this.servers.size;
  }

  /** The names a node's certificate names: its inventory name and host (hostCertPrincipals adds name.<cluster>). */
  static names(node: NodeConfig): string[] {
    return [node.name, node.addr.host];
  }

  server(node: NodeConfig): Promise<ssh2.Server> {
    const key = node.name.toLowerCase();
    const signer = this.signer();
    const nowSec = Math.floor(this.rt.clock().getTime() / 1000);
    const have = this.servers.get(key);
    if (have && have.caKeyId === signer.id && have.validBefore - nowSec > NODE_HOST_CERT_TTL_SECONDS / 2) {
      this.servers.delete(key); // most recently used last
      this.servers.set(key, have);
      return Promise.resolve(have.server);
    }
    let pending = this.signing.get(key);
    if (!pending) {
      pending = this.sign(node, key).finally(() => this.signing.delete(key));
      this.signing.set(key, pending);
    }
    return pending;
  }

  /** The oldest host CA key still trusted, as for the proxy's own certificate (ssh-proxy.ts: users who logged in before a rotation know only it). */
  private signer() {
    const trusted = this.rt.ca.get('host').trusted;
    return trusted[trusted.length - 1]!;
  }

  private async sign(node: NodeConfig, key: string): Promise<ssh2.Server> {
    const signer = this.signer();
    const cert = await issueHostCertificate(
      { names: NodeHostCerts.names(node), publicKey: this.key.publicKey, ttlSeconds: NODE_HOST_CERT_TTL_SECONDS, via: 'recording-proxy', signer },
      { config: this.rt.config, ca: this.rt.ca, audit: this.rt.audit, clock: this.rt.clock },
    );
    const server = new ssh2.Server(
      { hostKeys: [hostCertKey(this.keyText, encodeCertificateLine(cert, key))], algorithms: { cipher: CIPHERS as ssh2.CipherAlgorithm[] }, ident: 'Jumpgate' },
      (conn) => this.onConnection(conn),
    );
    this.servers.delete(key);
    this.servers.set(key, { caKeyId: signer.id, validBefore: Number(cert.validBefore), server });
    while (this.servers.size > this.max) this.servers.delete(this.servers.keys().next().value!);
    return server;
  }
}

interface Pending {
  rt: ServerRuntime;
  target: RecordingTarget;
  opts: RecordingOptions;
}

/** The stream each inner connection runs on → what it is for (ssh2 hands the stream back as `conn._sock`). */
const pendingByStream = new WeakMap<object, Pending>();
const hostCertsByRuntime = new WeakMap<ServerRuntime, NodeHostCerts>();

/** Open user connections per runtime, so the SSH proxy's close() can end them. */
const openConnections = new WeakMap<ServerRuntime, Set<Duplex>>();

/**
 * Serves one user connection in recording mode on `stream` (any Duplex: an
 * SSH channel of the proxy subsystem or direct-tcpip, or a TLS route's
 * stream), for a node the caller has already authorised for `target.user`
 * and a node-session slot it has admitted. Never throws; the slot is
 * released when the connection ends (also on failure).
 */
export function serveRecordedSession(rt: ServerRuntime, stream: Duplex, target: RecordingTarget, opts: RecordingOptions): void {
  let certs = hostCertsByRuntime.get(rt);
  if (!certs) {
    certs = new NodeHostCerts(rt, (conn) => {
      const sock = (conn as unknown as { _sock: object })._sock;
      const p = pendingByStream.get(sock);
      if (!p) return void conn.end();
      handleUserConnection(p.rt, conn, sock as Duplex, p.target, p.opts);
    });
    hostCertsByRuntime.set(rt, certs);
  }
  let open = openConnections.get(rt);
  if (!open) openConnections.set(rt, (open = new Set()));
  open.add(stream);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    open.delete(stream);
    opts.slot.release();
  };
  stream.once('close', release);
  // The user's side of the transport ended (tsh's ProxyCommand saw ssh die and sent EOF, then waits for the close):
  // an SSH connection cannot go on without it, so end ours too; the stream's close then ends the session and the node's.
  stream.once('end', () => {
    if (!stream.writableEnded) stream.end();
    setTimeout(() => stream.destroy(), 5_000).unref();
  });
  stream.on('error', (err: Error) => rt.log.debug(`recording proxy: ${target.user}: stream: ${err.message}`));
  pendingByStream.set(stream, { rt, target, opts: { ...opts, slot: { release } } });
  certs.server(target.node).then(
    (server) => {
      if (stream.destroyed) return release();
      server.injectSocket(stream as unknown as Socket);
    },
    (err: Error) => {
      rt.log.warn(`recording proxy: no host certificate for ${target.node.name}: ${err.message}`);
      release();
      stream.destroy();
    },
  );
}

/** Ends every recorded connection of this runtime (the SSH proxy is closing). */
export function closeRecordedSessions(rt: ServerRuntime): void {
  for (const s of openConnections.get(rt) ?? []) s.destroy();
}

/** How many node names have a cached host certificate (tests). */
export function cachedNodeHostCerts(rt: ServerRuntime): number {
  return hostCertsByRuntime.get(rt)?.size ?? 0;
}

/** What the user's certificate and the current roles both allow. */
interface Permits {
  pty: boolean;
  portForwarding: boolean;
  agentForwarding: boolean;
  extensions: string[];
  recordInput: boolean;
}

function permitsOf(rt: ServerRuntime, cert: Certificate, roles: string[]): Permits {
  const roleConfigs = roles.map((r) => rt.config.roles.get(r)!).filter(Boolean);
  const allowedByRoles: Record<string, boolean> = {
    'permit-X11-forwarding': roleConfigs.some((r) => r.x11Forwarding),
    [EXT_PERMIT_AGENT_FORWARDING]: roleConfigs.some((r) => r.forwardAgent),
    [EXT_PERMIT_PORT_FORWARDING]: roleConfigs.some((r) => r.portForwarding),
    [EXT_PERMIT_PTY]: roleConfigs.some((r) => r.permitPty),
    'permit-user-rc': roleConfigs.some((r) => r.permitUserRc),
  };
  // X11 is not relayed: never asked of the node.
  const extensions = Object.keys(allowedByRoles).filter((e) => allowedByRoles[e] && cert.extensions.has(e) && e !== 'permit-X11-forwarding');
  return {
    pty: extensions.includes(EXT_PERMIT_PTY),
    portForwarding: extensions.includes(EXT_PERMIT_PORT_FORWARDING),
    agentForwarding: extensions.includes(EXT_PERMIT_AGENT_FORWARDING),
    extensions,
    recordInput: roleConfigs.some((r) => r.recordInput),
  };
}

/** Commands whose output is file content, not a terminal session: audited, not recorded. */
const FILE_TRANSFER = /^\s*(?:\S*\/)?(?:scp\s|rsync\s+--server|sftp-server\b|internal-sftp\b)/;
/** `scp -t PATH` (upload to the node) / `scp -f PATH` (download), options in any order (legacy scp protocol). */
function scpOf(command: string): { direction: 'upload' | 'download'; path: string } | undefined {
  const m = /^\s*(?:\S*\/)?scp((?:\s+-[a-zA-Z]+)+)\s+(?:--\s+)?(.+)$/.exec(command);
  if (!m) return undefined;
  const flags = m[1]!;
  const direction = /-[a-zA-Z]*t/.test(flags) ? 'upload' : /-[a-zA-Z]*f/.test(flags) ? 'download' : undefined;
  return direction ? { direction, path: m[2]!.trim() } : undefined;
}

/** `::ffff:10.0.0.1` → `10.0.0.1` (source-address lists and sshd compare the IPv4 form). */
function plainAddress(a: string | undefined): string | undefined {
  if (!a) return undefined;
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return v4 ? v4[1] : a;
}

function handleUserConnection(rt: ServerRuntime, conn: Connection, stream: Duplex, target: RecordingTarget, opts: RecordingOptions): void {
  const node = target.node;
  let cert: Certificate | undefined;
  let login = '';
  let roles: string[] = [];
  let failures = 0;
  const log = (level: 'debug' | 'warn', msg: string) => rt.log[level](`recording proxy: ${target.user} → ${node.name}: ${msg}`);
  const timer = setTimeout(() => {
    log('debug', `no authentication within ${INNER_HANDSHAKE_TIMEOUT_MS / 1000} s; closing`);
    stream.destroy();
  }, INNER_HANDSHAKE_TIMEOUT_MS);
  conn.on('error', (err) => log('debug', err.message));
  conn.once('close', () => clearTimeout(timer));

  conn.on('authentication', (ctx: AuthContext) => {
    if (ctx.method === 'none') return ctx.reject(['publickey']);
    const refuse = (why?: string) => {
      if (why) sendAuthBanner(conn, `jumpgate proxy: ${why}`);
      ctx.reject(['publickey']);
      if (++failures >= MAX_INNER_AUTH_FAILURES) conn.end();
    };
    if (ctx.method !== 'publickey') return refuse();
    try {
      const c = verifyUserCertAuth(ctx, { trustedUserCAs: rt.ca.get('user').trusted.map((k) => k.publicKey), now: rt.clock(), clientAddress: target.clientIp });
      if (c.keyId !== target.user) return refuse(`this connection was opened for ${printable(target.user)}; log in to the node with that user's certificate`);
      const sel = certificateSelectors(rt.config, c);
      if ('ok' in sel) return refuse(sel.message);
      const route = routeToNode(rt.config, sel.selectors, node.name, node.addr.port, inventoryNodes(rt));
      if (!route.ok) return refuse(route.message);
      // The inner login may differ from the outer hop's: a lock on it (or on the user, role, node, certificate) holds here too.
      const lock = rt.locks.check({ user: c.keyId, roles: sel.roles, logins: [ctx.username], node: node.name, serial: c.serial });
      if (lock) return refuse(lockedMessage(lock));
      if (ctx.signature !== undefined) {
        cert = c;
        login = ctx.username;
        roles = sel.roles;
      }
      return ctx.accept();
    } catch (err) {
      if (!(err instanceof CertError)) log('warn', `authentication failed unexpectedly: ${(err as Error).message}`);
      return refuse(err instanceof CertError && /-cert-v01@openssh\.com$/.test(ctx.key.algo) ? err.message : undefined);
    }
  });

  conn.on('ready', () => {
    clearTimeout(timer);
    new RecordedSession(rt, conn, stream, target, opts, cert!, login, roles, permitsOf(rt, cert!, roles)).run();
  });
}

/** Everything one authenticated user connection holds: the node connection, the recording, the counters. */
class RecordedSession {
  readonly sessionId = randomUUID();
  private readonly startedAt = Date.now();
  private toNode = 0;
  private fromNode = 0;
  private recorder: Promise<SessionRecorder | undefined> | undefined;
  private recordingName: string | undefined;
  private started: Promise<void> | undefined;
  private ended = false;
  private node: Promise<ssh2.Client> | undefined;
  private nodeClient: ssh2.Client | undefined;
  private nodeSocket: Socket | undefined;
  private agentRequested = false;
  private readonly sftps = new Set<SftpAuditor>();
  /** The user's open session channels (a lock writes its message to their stderr). */
  readonly userChannels = new Set<ServerChannel>();
  private endReason: EndReason | undefined;
  private readonly channelAdmitter: { admit(): Slot | LimitRefusal };

  constructor(
    private readonly rt: ServerRuntime,
    private readonly conn: Connection,
    private readonly stream: Duplex,
    private readonly target: RecordingTarget,
    private readonly opts: RecordingOptions,
    private readonly cert: Certificate,
    private readonly login: string,
    private readonly roles: string[],
    private readonly permits: Permits,
  ) {
    this.channelAdmitter = opts.channels ?? countingAdmitter(() => rt.config.proxy.limits.maxChannelsPerConnection);
  }

  private get who() {
    return { session_id: this.sessionId, user: this.target.user, login: this.login, node: this.target.node.name };
  }

  private log(level: 'debug' | 'warn', msg: string): void {
    this.rt.log[level](`recording proxy: session ${this.sessionId} (${this.target.user} → ${this.target.node.name}): ${msg}`);
  }

  run(): void {
    // A lock ends the session through the registry (auth/locks.ts → active-sessions.ts): tell the user on every open channel, then hang up both sides.
    const unregister = this.rt.sessions.register({
      id: this.sessionId,
      user: this.target.user,
      login: this.login,
      node: this.target.node.name,
      roles: this.roles,
      serial: this.cert.serial,
      clientAddr: this.target.clientAddr,
      end: (reason) => {
        if (this.ended || this.endReason) return;
        this.endReason = reason;
        this.log('warn', `ended by lock ${reason.lockId}`);
        for (const ch of this.userChannels) {
          try {
            ch.stderr.write(`\r\n${reason.message}\r\n`);
            // Closing the channel first lets ssh print what it holds: a DISCONNECT right behind the text made OpenSSH exit without it.
            ch.close();
          } catch {
            // the channel is already closing
          }
        }
        setTimeout(() => this.conn.end(), 250).unref();
        setTimeout(() => this.stream.destroy(), 1_000).unref();
      },
    });
    this.stream.once('close', unregister);
    this.node = this.connectNode();
    this.node.catch((err: Error) => {
      this.log('warn', `cannot log in to the node: ${err.message}`);
      // Channels waiting for it report the reason; then the connection goes.
      setTimeout(() => this.conn.end(), 100).unref();
    });
    this.conn.on('session', (accept, reject) => this.onSession(accept, reject));
    this.conn.on('tcpip', (accept, reject, info) => this.onDirectTcpip(accept, reject, info));
    this.conn.once('close', () => void this.finish());
    this.conn.once('end', () => void this.finish());
  }

  /** Dials the node, signs the per-session certificate for the proxy's address on that connection, logs in. */
  private async connectNode(): Promise<ssh2.Client> {
    const sock = await dialNode(this.target.node);
    this.nodeSocket = sock;
    if (this.ended) {
      sock.destroy();
      throw new Error('the user left');
    }
    const source = plainAddress(sock.localAddress);
    if (!source || isIP(source) === 0) {
      sock.destroy();
      throw new Error(`the proxy's address toward the node is unknown (${String(sock.localAddress)})`);
    }
    const key = generateKeyPair('ed25519');
    let cert: Certificate;
    try {
      cert = await issueSessionCertificate(
        new SessionCertRequest({
          user: this.target.user,
          login: this.login,
          sessionId: this.sessionId,
          publicKey: key.publicKey,
          ttlSeconds: SESSION_CERT_TTL_SECONDS,
          sourceAddresses: [source],
          extensions: this.permits.extensions,
          ...(this.cert.criticalOptions.has(OPT_FORCE_COMMAND) ? { forceCommand: this.cert.criticalOptions.get(OPT_FORCE_COMMAND)! } : {}),
        }),
        { config: this.rt.config, ca: this.rt.ca, audit: this.rt.audit, clock: this.rt.clock, store: this.rt.store },
      );
    } catch (err) {
      sock.destroy();
      throw err;
    }
    const client = new ssh2.Client();
    this.nodeClient = client;
    const verifier = hostCertVerifier({ trustedHostCAs: () => this.rt.ca.get('host').trusted.map((k) => k.publicKey), hostname: this.target.node.name.toLowerCase(), now: this.rt.clock });
    // An explicit list: only the session's certificate (never an agent's keys).
    const auth: PublicKeyAuthMethod = { type: 'publickey', username: this.login, key: certIdentity(key.privateKey, cert.blob) };
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      client.once('error', (err) => reject(verifier.error ?? err));
      client.once('close', () => reject(new Error('the node closed the connection while logging in')));
      client.connect({
        sock,
        username: this.login,
        authHandler: [auth],
        hostVerifier: verifier,
        algorithms: { serverHostKey: clientHostKeyAlgorithms(), cipher: CIPHERS as ssh2.CipherAlgorithm[] },
        readyTimeout: NODE_LOGIN_TIMEOUT_MS,
        keepaliveInterval: 30_000,
        ...(this.permits.agentForwarding ? { agent: new ForwardedAgent(this.conn, () => this.agentRequested) } : {}),
      });
    });
    client.on('error', (err) => this.log('debug', `node: ${err.message}`));
    // The node went away: so does the user's connection (channels were closed by ssh2 already).
    client.once('close', () => this.conn.end());
    if (this.ended) client.end();
    return client;
  }

  /**
   * session.start, once per connection, before the first channel's bytes move
   * (its channel waits); with the recording when this channel starts one.
   * Rejects when the audit log cannot store it (fail closed).
   */
  private start(record: Omit<RecordingMeta, 'sessionId' | 'user' | 'login' | 'node' | 'clientAddr' | 'recordInput'> | undefined): Promise<SessionRecorder | undefined> {
    const recorder = record ? this.startRecorder(record) : Promise.resolve(undefined);
    const started = (this.started ??= (async () => {
      await recorder;
      await this.rt.audit.emit({
        event: 'session.start',
        ...this.who,
        node_addr: `${this.target.node.addr.host}:${this.target.node.addr.port}`,
        client_addr: this.target.clientAddr,
        via: this.target.via,
        mode: 'recording',
        ...(this.recordingName !== undefined ? { recording: this.recordingName } : {}),
      });
    })());
    return started.then(() => recorder);
  }

  private startRecorder(meta: Omit<RecordingMeta, 'sessionId' | 'user' | 'login' | 'node' | 'clientAddr' | 'recordInput'>): Promise<SessionRecorder | undefined> {
    const startRecording = this.opts.startRecording ?? startStoredRecording;
    this.recorder ??= startRecording(this.rt, {
      ...meta,
      sessionId: this.sessionId,
      user: this.target.user,
      login: this.login,
      node: this.target.node.name,
      clientAddr: this.target.clientAddr,
      recordInput: this.permits.recordInput,
    }).then((r) => {
      this.recordingName = r.name;
      return r;
    });
    return this.recorder;
  }

  private onSession(accept: () => ssh2.Session, reject: () => void): void {
    const slot = this.channelAdmitter.admit();
    if (isRefusal(slot)) return rejectWithReason(this.conn, reject, slot.message);
    const session = accept();
    let pty: PseudoTtyInfo | undefined;
    const env: Record<string, string> = {};
    let envBytes = 0;
    let agent = false;
    let relay: ChannelRelay | undefined;
    let begun = false;
    session.once('close', () => {
      slot.release();
      relay?.userClosed();
    });
    session.on('pty', (acc, rej, info) => {
      if (!this.permits.pty || begun) return rej?.();
      pty = info;
      acc?.();
    });
    session.on('env', (acc, rej, info) => {
      const size = info.key.length + info.val.length;
      if (begun || Object.keys(env).length >= MAX_ENV_VARS || envBytes + size > MAX_ENV_BYTES) return rej?.();
      envBytes += size;
      Object.defineProperty(env, info.key, { value: info.val, enumerable: true, writable: true, configurable: true });
      acc?.();
    });
    session.on('window-change', (acc, _rej, info) => {
      if (pty) pty = { ...pty, cols: info.cols, rows: info.rows, width: info.width, height: info.height };
      relay?.resize(info);
      acc?.();
    });
    session.on('signal', (acc, _rej, info) => {
      relay?.signal(info.name);
      acc?.();
    });
    session.on('auth-agent', (acc, rej) => {
      if (!this.permits.agentForwarding || begun) return rej?.();
      agent = true;
      this.agentRequested = true;
      acc?.();
    });
    session.on('x11', (_acc, rej) => rej?.());
    const begin = (kind: { shell: true } | { exec: string } | { subsystem: string }, acc: () => ServerChannel | undefined) => {
      if (begun) return;
      begun = true;
      // Accepted at once: OpenSSH may send stdin before the reply, and ssh2 drops data for a channel not yet accepted.
      // The channel is not read until the node's channel is open (its window fills, then the client waits).
      const ch = acc();
      if (!ch) return;
      this.userChannels.add(ch);
      ch.once('close', () => this.userChannels.delete(ch));
      relay = new ChannelRelay(this, ch);
      void this.openNodeChannel(kind, pty, env, agent, relay).catch((err: Error) => relay!.fail(err.message));
    };
    session.on('shell', (acc) => begin({ shell: true }, acc));
    session.on('exec', (acc, _rej, info) => begin({ exec: info.command }, acc));
    session.on('subsystem', (acc, _rej, info) => begin({ subsystem: info.name }, acc));
  }

  private async openNodeChannel(kind: { shell: true } | { exec: string } | { subsystem: string }, pty: PseudoTtyInfo | undefined, env: Record<string, string>, agent: boolean, relay: ChannelRelay): Promise<void> {
    const client = await this.node!;
    const command = 'exec' in kind ? kind.exec : undefined;
    const records = 'subsystem' in kind ? false : pty !== undefined || (command !== undefined && !FILE_TRANSFER.test(command));
    const recorder = await this.start(records ? { cols: pty?.cols || 80, rows: pty?.rows || 24, term: pty?.term ?? '', env } : undefined);
    if (command !== undefined) {
      // Durable before the command runs (fail closed, as session.start).
      await this.rt.audit.emit({ event: 'session.exec', ...this.who, command: command.slice(0, MAX_COMMAND_CHARS), pty: pty !== undefined });
      const scp = scpOf(command);
      if (scp) await this.rt.audit.emit({ event: 'session.scp', ...this.who, ...scp });
    }
    const ptyOpts = pty ? { rows: pty.rows, cols: pty.cols, width: pty.width, height: pty.height, term: pty.term, modes: pty.modes as unknown as ssh2.TerminalModes } : undefined;
    const agentOpt = agent ? { agentForward: true } : {};
    const nodeCh = await new Promise<ClientChannel>((resolve, reject) => {
      const done = (err: Error | undefined, ch: ClientChannel) => (err ? reject(new Error(`the node refused: ${err.message}`)) : resolve(ch));
      if ('shell' in kind) client.shell(ptyOpts ?? false, { env, ...agentOpt }, done);
      else if (command !== undefined) client.exec(command, { env, ...(ptyOpts ? { pty: ptyOpts } : {}), ...agentOpt }, done);
      else openSubsystem(client, (kind as { subsystem: string }).subsystem, env).then((ch) => resolve(ch), reject);
    });
    let sftp: SftpAuditor | undefined;
    if ('subsystem' in kind && kind.subsystem === 'sftp') {
      sftp = new SftpAuditor((op) => void this.audit({ event: 'session.sftp', ...this.who, ...op }));
      this.sftps.add(sftp);
    }
    relay.join(nodeCh, { recorder, recordInput: this.permits.recordInput, pty: pty !== undefined, sftp });
  }

  private onDirectTcpip(accept: () => ServerChannel, reject: () => void, info: ssh2.TcpipRequestInfo): void {
    if (!this.permits.portForwarding) return rejectWithReason(this.conn, reject, 'port forwarding is not allowed by your roles');
    const slot = this.channelAdmitter.admit();
    if (isRefusal(slot)) return rejectWithReason(this.conn, reject, slot.message);
    void (async () => {
      const client = await this.node!;
      await this.start(undefined);
      const nodeCh = await new Promise<ClientChannel>((resolve, rej) =>
        client.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, ch) => (err ? rej(err) : resolve(ch))),
      );
      const ch = accept();
      if (!ch) {
        nodeCh.close();
        return slot.release();
      }
      ch.once('close', () => {
        slot.release();
        nodeCh.close();
      });
      nodeCh.once('close', () => ch.end());
      ch.on('data', (b: Buffer) => (this.toNode += b.length));
      nodeCh.on('data', (b: Buffer) => (this.fromNode += b.length));
      ch.on('error', () => {});
      nodeCh.on('error', () => {});
      (ch as unknown as Duplex).pipe(nodeCh);
      nodeCh.pipe(ch as unknown as NodeJS.WritableStream);
    })().catch((err: Error) => {
      slot.release();
      rejectWithReason(this.conn, reject, `the node refused the forwarding to ${printable(info.destIP)}:${info.destPort}: ${printable(err.message)}`);
    });
  }

  countToNode(n: number): void {
    this.toNode += n;
  }

  countFromNode(n: number): void {
    this.fromNode += n;
  }

  /** An SFTP stream the auditor could not follow: end the connection (what happened in it could no longer be told). */
  sftpBroken(err: SftpAuditError): void {
    this.log('warn', `${err.message}; ending the session`);
    this.conn.end();
  }

  private audit(event: AuditEvent): Promise<void> {
    return this.rt.audit.emit(event).catch((err: Error) => this.log('warn', err.message));
  }

  /** The user's connection closed: end the node's, close the recording, session.end, release the slot. */
  private async finish(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.nodeClient?.end();
    const sock = this.nodeSocket;
    if (sock) setTimeout(() => sock.destroy(), 5_000).unref();
    for (const s of this.sftps) s.end();
    try {
      const recorder = await this.recorder;
      await recorder?.close();
    } catch (err) {
      this.log('warn', `recording: ${(err as Error).message}`);
    }
    this.opts.slot.release();
    if (!this.started) return; // no channel ever ran: nothing started, nothing to end
    await this.started.catch(() => undefined);
    await this.audit({
      event: 'session.end',
      ...this.who,
      client_addr: this.target.clientAddr,
      bytes_to_node: this.toNode,
      bytes_from_node: this.fromNode,
      duration_ms: Date.now() - this.startedAt,
      ...(this.recordingName !== undefined ? { recording: this.recordingName } : {}),
      ...(this.endReason ? { reason: this.endReason.reason, lock_id: this.endReason.lockId } : {}),
    });
  }
}

/**
 * One session channel: the user's (server side) joined to the node's
 * (client side) with back-pressure both ways, requests passed on, the exit
 * status and EOF/CLOSE forwarded in order: all of the node's output is
 * written to the user before exit-status, EOF and CLOSE.
 */
class ChannelRelay {
  private nodeCh: ClientChannel | undefined;
  private recorder: SessionRecorder | undefined;
  private closed = false;

  constructor(
    private readonly session: RecordedSession,
    private readonly ch: ServerChannel,
  ) {
    ch.on('error', () => {});
    ch.stderr.on('error', () => {});
  }

  join(nodeCh: ClientChannel, o: { recorder: SessionRecorder | undefined; recordInput: boolean; pty: boolean; sftp: SftpAuditor | undefined }): void {
    this.nodeCh = nodeCh;
    this.recorder = o.recorder;
    const ch = this.ch;
    nodeCh.on('error', () => {});
    if (this.closed) return void nodeCh.close();
    const rec = o.recorder;
    const sftp = o.sftp;
    ch.on('data', (b: Buffer) => {
      this.session.countToNode(b.length);
      if (rec && o.recordInput) rec.input(b);
      if (sftp) this.feed(() => sftp.fromClient(b));
    });
    nodeCh.on('data', (b: Buffer) => {
      this.session.countFromNode(b.length);
      rec?.output(b);
      if (sftp) this.feed(() => sftp.fromNode(b));
    });
    nodeCh.stderr.on('data', (b: Buffer) => {
      this.session.countFromNode(b.length);
      rec?.output(b);
    });
    let exit: { code: number } | { signal: string; dump: boolean; desc: string } | undefined;
    nodeCh.on('exit', (code: number | null, signal?: string, dump?: boolean, desc?: string) => {
      exit = typeof code === 'number' ? { code } : { signal: (signal ?? 'KILL').replace(/^SIG/, ''), dump: dump === true, desc: desc ?? '' };
    });
    (ch as unknown as Duplex).pipe(nodeCh);
    nodeCh.pipe(ch as unknown as NodeJS.WritableStream, { end: false });
    nodeCh.stderr.pipe(ch.stderr, { end: false });
    // Order at the end: all output written (both streams drained into the channel), then exit-status, then EOF + CLOSE (ch.end()).
    const ended = (r: NodeJS.ReadableStream & { readableEnded?: boolean }) => new Promise<void>((res) => (r.readableEnded ? res() : r.once('end', res).once('close', res)));
    const flushed = (w: NodeJS.WritableStream) => new Promise<void>((res) => w.write(Buffer.alloc(0), () => res()));
    nodeCh.once('close', () => {
      void Promise.all([ended(nodeCh), ended(nodeCh.stderr)])
        .then(() => Promise.all([flushed(ch as unknown as NodeJS.WritableStream), flushed(ch.stderr)]))
        .then(() => {
          if (exit && 'code' in exit) ch.exit(exit.code);
          else if (exit) ch.exit(exit.signal, exit.dump, exit.desc);
          ch.end();
        });
    });
  }

  private feed(f: () => void): void {
    try {
      f();
    } catch (err) {
      if (err instanceof SftpAuditError) this.session.sftpBroken(err);
      else throw err;
    }
  }

  resize(info: { cols: number; rows: number; width: number; height: number }): void {
    this.nodeCh?.setWindow(info.rows, info.cols, info.height, info.width);
    this.recorder?.resize(info.cols, info.rows);
  }

  signal(name: string): void {
    this.nodeCh?.signal(name);
  }

  userClosed(): void {
    this.closed = true;
    this.nodeCh?.close();
  }

  /** The node channel could not be opened (or the audit log not written): say so on the user's channel, exit 1. */
  fail(message: string): void {
    if (this.closed) return;
    this.ch.stderr.write(`jumpgate proxy: ${printable(message)}\r\n`);
    this.ch.exit(1);
    this.ch.end();
  }
}

/**
 * An ssh2 agent whose only use is forwarding: when the node opens an
 * auth-agent@openssh.com channel (the user's session asked for agent
 * forwarding and the roles allow it), the proxy opens one to the user's ssh,
 * which joins it to the user's agent. The proxy never signs with it itself.
 */
class ForwardedAgent extends ssh2.BaseAgent {
  constructor(
    private readonly conn: Connection,
    private readonly requested: () => boolean,
  ) {
    super();
  }

  override getIdentities(cb: (err: Error | undefined, keys?: ssh2.ParsedKey[]) => void): void {
    cb(new Error('the forwarded agent is only relayed, never used by the proxy'));
  }

  override sign(_key: unknown, _data: Buffer, _opts: unknown, cb?: (err: Error | undefined, signature?: Buffer) => void): void {
    cb?.(new Error('the forwarded agent is only relayed, never used by the proxy'));
  }

  override getStream(cb: (err: Error | undefined, stream?: Duplex) => void): void {
    if (!this.requested()) return cb(new Error('the user did not forward an agent'));
    openAgentChannel(this.conn).then(
      (ch) => cb(undefined, ch as unknown as Duplex),
      (err: Error) => cb(err),
    );
  }
}

/** A per-connection channel counter when the caller lends none. */
function countingAdmitter(max: () => number): { admit(): Slot | LimitRefusal } {
  let open = 0;
  return {
    admit() {
      if (open >= max()) return { code: 'LIMIT_CHANNELS', message: `this connection already has ${open} open channels (proxy.limits.max_channels_per_connection)` };
      open++;
      let released = false;
      return {
        release: () => {
          if (released) return;
          released = true;
          open--;
        },
      };
    },
  };
}

// hostCertPrincipals is what NodeHostCerts' certificates name (re-exported for tests).
export { hostCertPrincipals };
