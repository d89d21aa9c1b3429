/**
 * `tsh ssh`: a session on a node through the proxy, with ssh2 on both hops.
 *
 *   tsh ──TCP (net/dial, HTTPS_PROXY aware)──▶ proxy sshd (ssh2 #1, user certificate)
 *       └─ subsystem proxy:HOST:PORT ─────────▶ node sshd (ssh2 #2 over that channel, same certificate)
 *
 * Both host certificates are checked against the cluster's host CA. The
 * session is a shell with a PTY (raw mode, window resize) or a command with
 * stdout/stderr kept apart and the remote exit status returned; -L/-R
 * forwarding and agent forwarding (only when the certificate permits it)
 * ride on the node connection, like OpenSSH's.
 */
import { constants as osConstants } from 'node:os';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type ssh2 from 'ssh2';
import type { ClientChannel, PseudoTtyOptions } from 'ssh2';
import { UsageError, UserError } from '../errors.js';
import type { Env } from '../net/index.js';
import { EXT_PERMIT_AGENT_FORWARDING, EXT_PERMIT_PORT_FORWARDING, EXT_PERMIT_PTY } from '../sshcert/index.js';
import { AgentClient, startAgentHint } from './agent.js';
import type { Credentials } from './credentials.js';
import { clusterHostCAs, identityOf, sshOver } from './proxy-conn.js';
import { openNodeStream } from './node-route.js';
import type { TshPaths } from './paths.js';

/** One -L or -R: `[bind_address:]port:host:hostport` (ssh(1)). */
export interface ForwardSpec {
  bindAddress: string | undefined;
  bindPort: number;
  host: string;
  hostPort: number;
}

/**
 * Parses an ssh(1) forwarding spec `[bind_address:]port:host:hostport`;
 * IPv6 addresses go in brackets. Unix sockets are not supported.
 * @throws UsageError naming the flag.
 */
export function parseForwardSpec(flag: '-L' | '-R', spec: string): ForwardSpec {
  const parts: string[] = [];
  const re = /\[([^\]]*)\]|([^:]+)/g;
  let rest = spec;
  // Split on ':' outside brackets.
  while (rest.length > 0) {
    re.lastIndex = 0;
    const m = re.exec(rest);
    if (!m || m.index !== 0) break;
    parts.push(m[1] ?? m[2]!);
    rest = rest.slice(m[0].length);
    if (rest.startsWith(':')) rest = rest.slice(1);
    else break;
  }
  const bad = () => new UsageError('USAGE_BAD_FORWARD', `${flag} ${spec}: expected [bind_address:]port:host:hostport, e.g. ${flag} 8080:localhost:80`);
  if (rest !== '' || (parts.length !== 3 && parts.length !== 4)) throw bad();
  const [bindAddress, bindPortText, host, hostPortText] = parts.length === 4 ? parts : [undefined, ...parts];
  const port = (t: string | undefined) => (t !== undefined && /^\d{1,5}$/.test(t) && Number(t) <= 65535 ? Number(t) : undefined);
  const bindPort = port(bindPortText);
  const hostPort = port(hostPortText);
  if (bindPort === undefined || hostPort === undefined || !host || hostPort === 0) throw bad();
  return { bindAddress: bindAddress === '' || bindAddress === '*' ? (bindAddress === '*' ? '0.0.0.0' : undefined) : bindAddress, bindPort, host, hostPort };
}

/** The shell convention for a remote command killed by a signal: 128 + its number (255 when unknown). */
export function signalExitCode(signal: string): number {
  const n = (osConstants.signals as Record<string, number>)[`SIG${signal.replace(/^SIG/, '')}`];
  return n === undefined ? 255 : 128 + n;
}

export interface SshSessionOptions {
  creds: Credentials;
  paths: TshPaths;
  env: Env;
  now: () => Date;
  login: string;
  host: string;
  /** 0 = the node's SSH port from the inventory. */
  port: number;
  /** Empty: an interactive shell. */
  command: string[];
  /** -t: force a PTY; -T: never; auto: a PTY for a shell on a terminal. */
  tty: 'auto' | 'force' | 'no';
  localForwards: ForwardSpec[];
  remoteForwards: ForwardSpec[];
  forwardAgent: boolean;
  io: { stdin: NodeJS.ReadableStream; stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
  log?: (line: string) => void;
}

interface TtyIn extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?(raw: boolean): void;
}
interface TtyOut extends NodeJS.WritableStream {
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

/** Runs the session to its end; resolves with the exit status tsh should exit with. */
export async function runSshSession(o: SshSessionOptions): Promise<number> {
  const ext = o.creds.cert.extensions;
  let agent: string | undefined;
  if (o.forwardAgent) {
    if (!ext.has(EXT_PERMIT_AGENT_FORWARDING)) {
      throw new UserError('AGENT_FORWARDING_DENIED', 'your roles do not allow agent forwarding (-A)', { hint: 'drop -A, or ask for a role with forward_agent: true and log in again' });
    }
    // The agent tsh itself uses: SSH_AUTH_SOCK, else on Windows the OpenSSH agent service's pipe.
    try {
      agent = AgentClient.resolveSocketPath({ env: o.env, platform: o.paths.penv.platform });
    } catch (err) {
      throw new UserError('AGENT_MISSING', '-A needs an ssh-agent, and SSH_AUTH_SOCK is not set', { cause: err, hint: startAgentHint(o.paths.penv.platform) });
    }
  }
  if ((o.localForwards.length > 0 || o.remoteForwards.length > 0) && !ext.has(EXT_PERMIT_PORT_FORWARDING)) {
    throw new UserError('PORT_FORWARDING_DENIED', 'your roles do not allow port forwarding (-L/-R)', { hint: 'ask for a role with port_forwarding: true and log in again' });
  }
  const stdin = o.io.stdin as TtyIn;
  const stdout = o.io.stdout as TtyOut;
  const wantPty = o.tty === 'force' || (o.tty === 'auto' && o.command.length === 0 && stdin.isTTY === true);
  if (wantPty && !ext.has(EXT_PERMIT_PTY) && o.tty === 'force') {
    throw new UserError('PTY_DENIED', 'your roles do not allow a terminal (-t)', { hint: 'run a command without -t' });
  }

  // The TLS route on the web port when the login recorded it, else the SSH port (node-route.ts).
  const route = await openNodeStream({ creds: o.creds, paths: o.paths, env: o.env, login: o.login, now: o.now, stderr: (t) => o.io.stderr.write(t), ...(o.log ? { log: o.log } : {}) }, o.host, o.port);
  const servers: Server[] = [];
  let node: ssh2.Client | undefined;
  try {
    const channel = route.stream;
    const cas = clusterHostCAs(o.paths, o.creds);
    node = await sshOver(channel, {
      what: o.host,
      hostname: o.host,
      login: o.login,
      identity: identityOf(o.creds),
      cas: () => cas,
      now: o.now,
      webProxyAddr: o.creds.profile.webProxyAddr,
      relogin: o.creds.relogin,
      clockLeewaySeconds: o.creds.clockLeewaySeconds,
      ...(agent ? { agent } : {}),
      ...(o.log ? { log: o.log } : {}),
    });
    for (const f of o.localForwards) servers.push(await startLocalForward(node, f, o.io.stderr));
    for (const f of o.remoteForwards) await startRemoteForward(node, f, o.io.stderr);

    const pty: PseudoTtyOptions | undefined = wantPty
      ? { term: o.env['TERM'] ?? 'xterm-256color', rows: stdout.rows ?? 24, cols: stdout.columns ?? 80, width: 0, height: 0 }
      : undefined;
    const ch = await new Promise<ClientChannel>((resolve, reject) => {
      const cb = (err: Error | undefined, c: ClientChannel) => (err ? reject(new UserError('SSH_SESSION_REFUSED', `${o.host} refused the session: ${err.message}`, { cause: err })) : resolve(c));
      const opts = { ...(pty ? { pty } : {}), ...(agent ? { agentForward: true } : {}) };
      if (o.command.length > 0) node!.exec(o.command.join(' '), opts, cb);
      else node!.shell(pty ?? false, (agent ? { agentForward: true } : {}) as ssh2.ShellOptions, cb);
    });
    return await pump(ch, stdin, stdout, o.io.stderr, wantPty);
  } finally {
    for (const s of servers) s.close();
    node?.end();
    route.close();
  }
}

/** Joins the channel to the terminal or pipes until the remote side closes; the exit status. */
function pump(ch: ClientChannel, stdin: TtyIn, stdout: TtyOut, stderr: NodeJS.WritableStream, pty: boolean): Promise<number> {
  return new Promise((resolve) => {
    let status = 255; // OpenSSH's answer when the remote side never reported one
    const raw = pty && stdin.isTTY === true && typeof stdin.setRawMode === 'function';
    if (raw) stdin.setRawMode!(true);
    const onResize = () => ch.setWindow(stdout.rows ?? 24, stdout.columns ?? 80, 0, 0);
    if (pty && stdout.isTTY) stdout.on('resize', onResize);
    stdin.pipe(ch as unknown as NodeJS.WritableStream);
    (ch as unknown as Duplex).pipe(stdout, { end: false });
    ch.stderr.pipe(stderr, { end: false });
    ch.on('exit', (code: number | null, signal?: string) => {
      if (typeof code === 'number') status = code;
      else if (signal) status = signalExitCode(signal);
    });
    ch.on('close', () => {
      stdin.unpipe(ch as unknown as NodeJS.WritableStream);
      if (raw) stdin.setRawMode!(false);
      stdin.pause();
      if (pty && stdout.isTTY) stdout.removeListener('resize', onResize);
      // Resolve once what the node sent has reached stdout.
      stdout.write('', () => resolve(status));
    });
  });
}

/** -L: listens locally and opens a direct-tcpip channel through the node for each connection. */
function startLocalForward(node: ssh2.Client, f: ForwardSpec, stderr: NodeJS.WritableStream): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer((sock: Socket) => {
      node.forwardOut(sock.remoteAddress ?? '127.0.0.1', sock.remotePort ?? 0, f.host, f.hostPort, (err, stream) => {
        if (err) {
          stderr.write(`tsh: -L ${f.bindPort}: the node refused to connect to ${f.host}:${f.hostPort}: ${err.message}\n`);
          sock.destroy();
          return;
        }
        join(sock, stream as unknown as Duplex);
      });
    });
    srv.once('error', (err) => reject(new UserError('FORWARD_LISTEN_FAILED', `-L ${f.bindPort}: cannot listen on ${f.bindAddress ?? '127.0.0.1'}:${f.bindPort}: ${err.message}`, { cause: err })));
    // Loopback unless an address was given, as ssh's GatewayPorts=no does.
    srv.listen(f.bindPort, f.bindAddress ?? '127.0.0.1', () => resolve(srv));
  });
}

/** -R: asks the node's sshd to listen and connects each incoming channel to host:hostport from here. */
function startRemoteForward(node: ssh2.Client, f: ForwardSpec, stderr: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    node.on('tcp connection', (info, accept, rejectConn) => {
      if (info.destPort !== f.bindPort) return;
      const sock = netConnect({ host: f.host, port: f.hostPort });
      sock.once('connect', () => join(sock, accept() as unknown as Duplex));
      sock.once('error', (err) => {
        stderr.write(`tsh: -R ${f.bindPort}: cannot connect to ${f.host}:${f.hostPort}: ${err.message}\n`);
        rejectConn();
      });
    });
    node.forwardIn(f.bindAddress ?? 'localhost', f.bindPort, (err) => {
      if (err) return reject(new UserError('FORWARD_REFUSED', `-R ${f.bindPort}: the node refused to listen: ${err.message}`, { cause: err }));
      resolve();
    });
  });
}

function join(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.end());
}

/** Splits `[user@]host` and validates the pieces the way ssh would. */
export function parseDestination(dest: string): { user: string | undefined; host: string } {
  const at = dest.lastIndexOf('@');
  const user = at >= 0 ? dest.slice(0, at) : undefined;
  const host = at >= 0 ? dest.slice(at + 1) : dest;
  if (host === '' || user === '' || /\s/.test(dest)) throw new UsageError('USAGE_BAD_DESTINATION', `"${dest}" is not [user@]host`);
  return { user, host };
}
