/**
 * The web terminal: a WebSocket on the web port (`GET /web/api/terminal`,
 * `ws` 8, RFC 6455) joined to an SSH session the proxy itself opens to the
 * node, as the user's login, with a per-session certificate (principal = the
 * login, minutes, `source-address` = the proxy's address toward the node).
 *
 * The upgrade is refused (plain HTTP answer, no WebSocket) unless the
 * `Origin` is this server and the session cookie names a live web session;
 * the first message must then arrive within START_TIMEOUT_MS and carry the
 * session's CSRF token (it is never in a URL):
 *
 *   browser → proxy   text   {"type":"start","csrf":…,"node":…,"login":…,"cols":…,"rows":…}
 *                     text   {"type":"resize","cols":…,"rows":…}
 *                     binary keystrokes and pastes (UTF-8), written to the shell as they are
 *   proxy → browser   text   {"type":"ready","session_id":…,"node":…,"login":…}
 *                     binary what the shell printed
 *                     text   {"type":"end","reason":"exit"|"locked"|"signed_out"|"error","message":…}
 *
 * The node, the login, locks and `proxy.limits` (sessions per user, node
 * dials) are decided by the process's one NodeAccess
 * (proxy/node-access.ts `authorizeNodeRoute`, `via: web`), exactly as for
 * the SSH port and the TLS route; a refusal is audited as `access.denied`.
 *
 * Back-pressure both ways: input is written to the SSH channel and, while
 * the channel's write() says its buffer is full (a node that does not read),
 * the WebSocket is paused (`ws` 8 `WebSocket#pause()`: its socket is not
 * read) until the channel's 'drain'; output waits for the browser: beyond
 * MAX_BUFFERED_BYTES not yet sent the channel is paused (no SSH window
 * adjust, so the node waits). The proxy holds at most about 2 MiB (ssh2's
 * channel high-water mark) + one message per direction per terminal.
 *
 * Caps: MAX_MESSAGE_BYTES per message (ws closes with 1009 beyond),
 * MAX_TERMINALS_PER_USER and MAX_TERMINALS per proxy. Every terminal is
 * audited like an ssh session (`session.start` durable before a byte moves,
 * `session.end` with byte counts; `via: web`). With
 * `auth.session_recording: proxy` it is recorded (recording/recorder.ts:
 * output, resize, and input when a role has `record_input`), and
 * session.start/session.end name the recording; a recording that cannot be
 * started refuses the session (fail closed, as the recording proxy does). A running terminal re-checks
 * its web session every SESSION_RECHECK_MS: signed out, expired, or a lock
 * that covers it (`endWhere`) ends it with a message the page shows.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import * as v from 'valibot';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { formatHostPort, type NodeConfig } from '../../config/index.js';
import { generateKeyPair } from '../../sshcert/index.js';
import { certConnectConfig, certIdentity, clientHostKeyAlgorithms, hostCertVerifier } from '../../sshconn/index.js';
import type { NodeAccess, SessionRequester } from '../proxy/node-access.js';
import type { Slot } from '../proxy/session-limits.js';
import { startRecording, type SessionRecorder } from '../recording/recorder.js';
import type { ServerRuntime } from '../runtime.js';
import { issueSessionCertificate, SessionCertRequest } from '../auth/issuer.js';
import { sameOrigin, type WebSession, type WebSessions } from './sessions.js';

/** The WebSocket's path on the web port. */
export const TERMINAL_PATH = '/web/api/terminal';
/** Largest WebSocket message either way is this (a paste of 64 KiB; the shell's output is sent in chunks below it). */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** Web terminals one user may have open through one proxy. */
export const MAX_TERMINALS_PER_USER = 8;
/** Web terminals one proxy holds in all. */
export const MAX_TERMINALS = 1_000;
/** The start message must arrive within this after the upgrade. */
export const START_TIMEOUT_MS = 10_000;
/** Lifetime of the per-session node certificate (it is used once, at authentication). */
export const SESSION_CERT_TTL_SECONDS = 5 * 60;
/** How often a running terminal checks that its web session still exists (sign-out on another tab or proxy, expiry). */
export const SESSION_RECHECK_MS = 2_000;
/** Output the browser has not taken yet, beyond which the shell is paused (back-pressure). */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** While the browser's input is paused (the node is not reading), how often the proxy pings it to notice that it went away. */
export const PAUSED_PING_MS = 10_000;
/** Terminal sizes accepted (xterm.js reports them; sshd takes any, but nobody needs more). */
const MAX_COLS = 1_000;
const MAX_ROWS = 500;

const dim = (max: number) => v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(max));
const StartSchema = v.strictObject({
  type: v.literal('start'),
  csrf: v.pipe(v.string(), v.maxLength(100)),
  node: v.pipe(v.string(), v.minLength(1), v.maxLength(253)),
  login: v.pipe(v.string(), v.minLength(1), v.maxLength(256)),
  cols: dim(MAX_COLS),
  rows: dim(MAX_ROWS),
});
const ResizeSchema = v.strictObject({ type: v.literal('resize'), cols: dim(MAX_COLS), rows: dim(MAX_ROWS) });

/** Why a terminal ended, as the page is told. */
export type EndReason = 'exit' | 'locked' | 'signed_out' | 'error';

/** One running terminal, as lock enforcement sees it. */
export interface RunningTerminal {
  sessionId: string;
  user: string;
  login: string;
  node: string;
  roles: string[];
  /** Its proxy.limits session slot (released when it ends). */
  slot: Slot;
  /** Ends it: the page shows `message`, session.end is written. */
  end(reason: EndReason, message: string): void;
}

/** What a refused upgrade answers (before any WebSocket exists). */
function refuseUpgrade(socket: Duplex, status: number, code: string, message: string, headers: Record<string, string>): void {
  const body = JSON.stringify({ error: { code, message } });
  const head = [
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : status === 429 ? 'Too Many Requests' : status === 404 ? 'Not Found' : 'Service Unavailable'}`,
    ...Object.entries(headers).map(([k, val]) => `${k}: ${val}`),
    'content-type: application/json; charset=utf-8',
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), 1_000).unref();
}

/** The web terminals of one proxy process. */
export class WebTerminals {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false, clientTracking: false });
  private readonly running = new Set<RunningTerminal>();
  private readonly perUser = new Map<string, number>();
  private upgrading = 0;

  constructor(
    private readonly rt: ServerRuntime,
    private readonly sessions: WebSessions,
    /** The process's one node authorisation (shared with the SSH port and the TLS route: proxy.limits count all three). */
    private readonly access: NodeAccess,
    /** Headers every HTTP answer carries (web.ts SECURITY_HEADERS). */
    private readonly securityHeaders: Record<string, string>,
  ) {}

  /** The terminals running now (lock enforcement walks them). */
  list(): RunningTerminal[] {
    return [...this.running];
  }

  /** Ends every running terminal `match` selects with `message` (a lock); returns how many. */
  endWhere(match: (t: RunningTerminal) => boolean, reason: EndReason, message: string): number {
    let n = 0;
    for (const t of this.list()) {
      if (match(t)) {
        t.end(reason, message);
        n++;
      }
    }
    return n;
  }

  /** The https server's 'upgrade' for TERMINAL_PATH: checks Origin, session and caps, then hands the socket to ws. */
  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const refuse = (status: number, code: string, message: string) => refuseUpgrade(socket, status, code, message, this.securityHeaders);
    if (!sameOrigin(req)) return refuse(403, 'CROSS_SITE', 'the WebSocket was opened from another site (its Origin is not this server)');
    let session: WebSession | undefined;
    try {
      session = await this.sessions.authenticate(req);
    } catch (err) {
      this.rt.log.warn(`web terminal: cannot read the session: ${(err as Error).message}`);
      return refuse(503, 'STORE_UNAVAILABLE', "the server's state store is unavailable; try again in a minute");
    }
    if (!session) return refuse(401, 'NOT_SIGNED_IN', 'not signed in (or the session ended); sign in at /web');
    if (this.running.size + this.upgrading >= MAX_TERMINALS) return refuse(503, 'TOO_MANY_TERMINALS', 'this proxy has too many web terminals open; try again later');
    if ((this.perUser.get(session.user) ?? 0) >= MAX_TERMINALS_PER_USER) return refuse(429, 'TOO_MANY_TERMINALS', `you have ${MAX_TERMINALS_PER_USER} web terminals open already; close one first`);
    const s = session;
    this.take(s.user);
    this.upgrading++;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.upgrading--;
      this.serve(ws, req, s).catch((err: Error) => {
        this.rt.log.warn(`web terminal: ${s.user}: ${err.message}`);
        sendEnd(ws, 'error', 'internal error; see the server log');
      });
    });
  }

  /** Stops every terminal (server shutdown). */
  close(): void {
    this.endWhere(() => true, 'error', 'the proxy is shutting down');
    this.wss.close();
  }

  private take(user: string): void {
    this.perUser.set(user, (this.perUser.get(user) ?? 0) + 1);
  }

  private release(user: string): void {
    const n = (this.perUser.get(user) ?? 1) - 1;
    if (n <= 0) this.perUser.delete(user);
    else this.perUser.set(user, n);
  }

  private async serve(ws: WebSocket, req: IncomingMessage, session: WebSession): Promise<void> {
    const clientAddr = req.socket.remoteAddress ?? 'unknown';
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        this.release(session.user);
      }
    };
    ws.once('close', release);
    ws.on('error', (err) => this.rt.log.debug(`web terminal: ${session.user}: websocket: ${err.message}`));
    const start = await firstMessage(ws);
    if (!start) return void ws.close(1008, 'no start message');
    // What the page sends while the node session is being opened (typing ahead, a paste) is kept, up to
    // MAX_MESSAGE_BYTES, and written once the shell is there.
    const early: Array<{ data: RawData; isBinary: boolean }> = [];
    let earlyBytes = 0;
    const keep = (data: RawData, isBinary: boolean) => {
      earlyBytes += Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer).length;
      if (earlyBytes > MAX_MESSAGE_BYTES) return void ws.close(1009, 'too much input before the session started');
      early.push({ data, isBinary });
    };
    ws.on('message', keep);
    const parsed = v.safeParse(StartSchema, start);
    if (!parsed.success) return sendEnd(ws, 'error', `the start message is not valid (${v.getDotPath(parsed.issues[0]) ?? 'message'}: ${parsed.issues[0].message})`);
    const m = parsed.output;
    try {
      this.sessions.checkStateChange(req, session, m.csrf);
    } catch (err) {
      return sendEnd(ws, 'error', (err as Error).message);
    }
    // The one decision (node-access.ts): login among the session's logins, the node and its labels, locks, proxy.limits; refusals audited there.
    const requester: SessionRequester = {
      who: { user: session.user, login: m.login, clientAddr },
      principals: session.access.logins,
      roles: session.roles,
      selectors: session.access.nodeLabelSets,
    };
    const grant = this.access.authorizeNodeRoute(requester, m.node, 0);
    if (!grant.ok) return sendEnd(ws, grant.code === 'ACCESS_LOCKED' ? 'locked' : 'error', grant.message);
    let slotHeld = true;
    const releaseSlot = () => {
      if (slotHeld) {
        slotHeld = false;
        grant.slot.release();
      }
    };
    try {
      await this.open(ws, session, grant.node, grant.slot, m, clientAddr, () => {
        releaseSlot();
        release();
      }, () => {
        ws.off('message', keep);
        return early;
      });
    } finally {
      // open() hands the slot to the running terminal (released by its finish) or returns having refused: then it goes now.
      if (![...this.running].some((t) => t.slot === grant.slot)) releaseSlot();
    }
  }

  /** Dials the node, signs the session certificate, logs in, opens a shell with a PTY, relays until either side ends. */
  private async open(ws: WebSocket, session: WebSession, node: NodeConfig, slot: Slot, m: v.InferOutput<typeof StartSchema>, clientAddr: string, release: () => void, takeEarly: () => Array<{ data: RawData; isBinary: boolean }>): Promise<void> {
    const sessionId = randomUUID();
    let sock: Socket;
    try {
      sock = await this.access.dial(node);
    } catch (err) {
      return sendEnd(ws, 'error', `cannot reach ${node.name}: ${(err as Error).message}`);
    }
    const gone = () => ws.readyState !== ws.OPEN;
    const key = generateKeyPair('ed25519');
    const cert = await issueSessionCertificate(
      new SessionCertRequest({
        user: session.user,
        login: m.login,
        sessionId,
        publicKey: key.publicKey,
        ttlSeconds: SESSION_CERT_TTL_SECONDS,
        sourceAddresses: [sock.localAddress!.replace(/^::ffff:/, '')],
        extensions: Object.keys(session.access.extensions),
      }),
      { config: this.rt.config, ca: this.rt.ca, audit: this.rt.audit, clock: this.rt.clock, store: this.rt.store },
    );
    if (gone()) return void sock.destroy();
    const client = new ssh2.Client();
    const verifier = hostCertVerifier({ trustedHostCAs: () => this.rt.ca.get('host').trusted.map((k) => k.publicKey), hostname: node.name.toLowerCase(), now: this.rt.clock });
    const ready = new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      client.once('error', (err) => reject(verifier.error ?? err));
    });
    client.connect(
      certConnectConfig({
        sock,
        username: m.login,
        privateKey: certIdentity(key.privateKey, cert.blob),
        hostVerifier: verifier,
        algorithms: { serverHostKey: clientHostKeyAlgorithms(), cipher: ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes256-ctr'] },
        readyTimeout: 15_000,
        keepaliveInterval: 30_000,
      }),
    );
    try {
      await ready;
    } catch (err) {
      client.end();
      this.rt.log.warn(`web terminal: ${session.user} → ${m.login}@${node.name}: ${(err as Error).message}`);
      return sendEnd(ws, 'error', `${node.name} refused the login as ${m.login}: ${(err as Error).message}`);
    }
    client.on('error', (err) => this.rt.log.debug(`web terminal: ${sessionId}: ssh: ${err.message}`));
    let shell: ClientChannel;
    try {
      shell = await new Promise<ClientChannel>((resolve, reject) => client.shell({ term: 'xterm-256color', cols: m.cols, rows: m.rows }, (err, ch) => (err ? reject(err) : resolve(ch))));
    } catch (err) {
      client.end();
      return sendEnd(ws, 'error', `${node.name} refused a shell: ${(err as Error).message}`);
    }
    const started = Date.now();
    let recorder: SessionRecorder | undefined;
    if (this.rt.config.auth.sessionRecording === 'proxy') {
      try {
        recorder = await startRecording(this.rt, {
          sessionId,
          user: session.user,
          login: m.login,
          node: node.name,
          clientAddr,
          cols: m.cols,
          rows: m.rows,
          term: 'xterm-256color',
          recordInput: session.roles.some((r) => this.rt.config.roles.get(r)?.recordInput === true),
        });
      } catch (err) {
        // Fail closed: no unrecorded session when recording is on.
        client.end();
        this.rt.log.warn(`web terminal: ${session.user}: recording: ${(err as Error).message}`);
        return sendEnd(ws, 'error', 'the proxy cannot record this session; the session was refused');
      }
    }
    const recording = recorder ? { recording: recorder.name } : {};
    try {
      await this.rt.audit.emit({ event: 'session.start', session_id: sessionId, user: session.user, login: m.login, node: node.name, node_addr: formatHostPort(node.addr), client_addr: clientAddr, via: 'web', ...recording });
    } catch (err) {
      // Fail closed: no session the audit log does not hold.
      client.end();
      void recorder?.close().catch(() => undefined);
      return sendEnd(ws, 'error', 'the proxy cannot write its audit log; the session was refused');
    }
    let toNode = 0;
    let fromNode = 0;
    let buffered = 0;
    // High-water marks of what the proxy held for each side (logged at the end: back-pressure at work).
    let heldForNode = 0;
    let heldForBrowser = 0;
    let pausedPing: NodeJS.Timeout | undefined;
    let ended = false;
    let recheck: NodeJS.Timeout | undefined;
    const terminal: RunningTerminal = {
      sessionId,
      user: session.user,
      login: m.login,
      node: node.name,
      roles: session.roles,
      slot,
      end: (reason, message) => finish(reason, message),
    };
    let unregister = () => {};
    const finish = (reason: EndReason, message: string, lockId?: string) => {
      if (ended) return;
      ended = true;
      if (recheck) clearInterval(recheck);
      this.running.delete(terminal);
      unregister();
      release();
      sendEnd(ws, reason, message);
      clearInterval(pausedPing);
      if (ws.isPaused) ws.resume(); // let the close handshake through
      client.end();
      this.rt.log.info(`web terminal ${sessionId} ended: held at most ${heldForNode} bytes for the node and ${heldForBrowser} for the browser`);
      // The recording is closed (last flush, final metadata) before session.end names it.
      void (recorder ? recorder.close().catch((err: Error) => this.rt.log.warn(`web terminal: recording: ${err.message}`)) : Promise.resolve())
        .then(() =>
          this.rt.audit.emit({ event: 'session.end', session_id: sessionId, user: session.user, login: m.login, node: node.name, client_addr: clientAddr, bytes_to_node: toNode, bytes_from_node: fromNode, duration_ms: Date.now() - started, ...recording, ...(lockId ? { reason: 'locked' as const, lock_id: lockId } : {}) }),
        )
        .catch((err: Error) => this.rt.log.warn(`web terminal: ${err.message}`));
    };
    this.running.add(terminal);
    // A lock that covers this session ends it (server/index.ts walks rt.sessions on every lock change).
    unregister = this.rt.sessions.register({
      id: sessionId,
      user: session.user,
      login: m.login,
      node: node.name,
      roles: session.roles,
      serial: cert.serial,
      clientAddr,
      end: (r) => finish('locked', r.message, r.lockId),
    });
    ws.send(JSON.stringify({ type: 'ready', session_id: sessionId, node: node.name, login: m.login }));
    const toBrowser = (b: Buffer) => {
      fromNode += b.length;
      recorder?.output(b);
      for (let i = 0; i < b.length; i += MAX_MESSAGE_BYTES) {
        const part = b.subarray(i, i + MAX_MESSAGE_BYTES);
        buffered += part.length;
        ws.send(part, { binary: true }, () => {
          buffered -= part.length;
          if (buffered < MAX_BUFFERED_BYTES / 2 && shell.isPaused()) shell.resume();
        });
      }
      heldForBrowser = Math.max(heldForBrowser, buffered);
      if (buffered > MAX_BUFFERED_BYTES) shell.pause();
    };
    shell.on('data', toBrowser);
    shell.stderr.on('data', toBrowser);
    let exitCode: number | null = null;
    shell.on('exit', (code: number | null) => (exitCode = code));
    shell.once('close', () => finish('exit', exitCode === null ? `the session on ${node.name} ended` : `the session on ${node.name} ended (exit status ${exitCode})`));
    const fromBrowser = (data: RawData, isBinary: boolean) => {
      if (ended) return;
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) {
        toNode += buf.length;
        recorder?.input(buf);
        // Back-pressure: a node that does not read (a stalled shell, `sleep` holding stdin) fills the SSH
        // window, then the channel's buffer (its high-water mark, 2 MiB in ssh2); from then on the browser's
        // socket is not read (ws pause) until the channel drains, so a paste or a script cannot make the proxy hold more.
        if (!shell.write(buf) && !ws.isPaused) {
          ws.pause();
          // A paused socket is not read, so a browser that went away would go unnoticed while the node does not
          // read: a ping now and then writes to it, and a write to a closed peer fails and closes the WebSocket.
          pausedPing = setInterval(() => ws.ping(), PAUSED_PING_MS);
          pausedPing.unref();
          shell.once('drain', () => {
            clearInterval(pausedPing);
            ws.resume();
          });
        }
        heldForNode = Math.max(heldForNode, shell.writableLength);
        return;
      }
      let msg: unknown;
      try {
        msg = JSON.parse(buf.toString('utf8'));
      } catch {
        return;
      }
      const r = v.safeParse(ResizeSchema, msg);
      if (r.success) {
        shell.setWindow(r.output.rows, r.output.cols, 0, 0);
        recorder?.resize(r.output.cols, r.output.rows);
      }
    };
    for (const e of takeEarly()) fromBrowser(e.data, e.isBinary);
    ws.on('message', fromBrowser);
    ws.once('close', () => finish('exit', 'the browser closed the terminal'));
    // Sign-out (any tab, any proxy), expiry, or a role taken away ends the terminal too.
    recheck = setInterval(() => {
      this.sessions
        .byDigest(session.digest)
        .then((now) => {
          if (!now) finish('signed_out', 'your web session ended (signed out or expired); the terminal is closed');
        })
        .catch(() => undefined);
    }, SESSION_RECHECK_MS);
    recheck.unref();
    if (gone()) finish('exit', 'the browser closed the terminal');
  }
}

/** The first message of a new WebSocket as JSON, or undefined (binary, not JSON, or none within START_TIMEOUT_MS). */
function firstMessage(ws: WebSocket): Promise<unknown> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), START_TIMEOUT_MS);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    ws.once('message', (data: RawData, isBinary: boolean) => {
      clearTimeout(timer);
      if (isBinary) return resolve(undefined);
      try {
        resolve(JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8')));
      } catch {
        resolve(undefined);
      }
    });
  });
}

function sendEnd(ws: WebSocket, reason: EndReason, message: string): void {
  if (ws.readyState === ws.OPEN) {
    ws.send(JSON.stringify({ type: 'end', reason, message }));
    ws.close(1000, reason);
  }
}
