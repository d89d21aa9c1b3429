/**
 * The one way Jumpgate opens an outbound TCP connection: direct, or through an
 * HTTP CONNECT tunnel (RFC 9110 §9.3.6) when HTTPS_PROXY applies. tsh's SSH
 * connection to the proxy, the server's calls out, and every HTTPS request
 * (through http.ts) come through here, so NO_PROXY means the same everywhere.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { NetError, describeSocketError, hostPort, printable } from './errors.js';
import { ProxyEnvironment, type Env, type ProxyDecision, type ProxyScheme } from './proxy-env.js';

/** How long a connection (and the proxy's answer to CONNECT) may take by default. */
export const DEFAULT_DIAL_TIMEOUT_MS = 20_000;

/** The largest CONNECT response head we read; a proxy's answer is a few hundred bytes. */
const MAX_RESPONSE_HEAD = 16 * 1024;

export interface DialTarget {
  host: string;
  port: number;
}

export interface DialOptions {
  /** The environment (deps.env): HTTPS_PROXY, NO_PROXY and friends. */
  env: Env;
  /** Deadline for the TCP connection plus the proxy's answer. Default 20 s. */
  timeoutMs?: number;
  /** Gets one line per connection: direct or through which proxy (password masked). `--debug` prints it. */
  log?: (line: string) => void;
  /** Gets warnings about ignored NO_PROXY entries. Default: `log`. */
  warn?: (message: string) => void;
  signal?: AbortSignal;
  /** Which proxy variables apply. Default 'ssh' (the HTTPS ones). */
  scheme?: ProxyScheme;
}

/**
 * Opens a TCP connection to target, through the HTTP proxy the environment
 * names unless NO_PROXY matches. Resolves once the connection (or tunnel) is
 * ready for the application protocol; bytes that arrived right behind the
 * proxy's answer (an SSH banner) are kept for the caller. Rejects with a
 * NetError (NET_PROXY_*, NET_UNREACHABLE, NET_TIMEOUT) or the signal's reason.
 */
export async function dial(target: DialTarget, opts: DialOptions): Promise<Socket> {
  const proxies = new ProxyEnvironment(opts.env);
  const decision = proxies.resolve({ ...target, scheme: opts.scheme ?? 'ssh' });
  for (const w of decision.warnings) (opts.warn ?? opts.log)?.(`warning: ${w}`);
  opts.log?.(describeRoute(target, decision));
  return dialWith(target, decision, opts);
}

/** The --debug line for a connection: `net: host:port direct (why)` or `net: host:port through HTTP proxy P (from VAR)`. */
export function describeRoute(target: DialTarget, decision: ProxyDecision): string {
  const where = hostPort(target.host, target.port);
  return decision.kind === 'direct'
    ? `net: ${where} direct (${decision.reason})`
    : `net: ${where} through HTTP proxy ${decision.display} (from ${decision.source})`;
}

/** Like dial, with the route already decided (http.ts decides once per origin). */
export function dialWith(
  rawTarget: DialTarget,
  decision: ProxyDecision,
  opts: { timeoutMs?: number; signal?: AbortSignal },
): Promise<Socket> {
  // "[::1]" is how URLs and ssh_config write it; the socket wants "::1".
  const target = { host: rawTarget.host.replace(/^\[(.*)\]$/, '$1'), port: rawTarget.port };
  const timeoutMs = opts.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
  const where = hostPort(target.host, target.port);
  const viaProxy = decision.kind === 'proxy' ? decision : undefined;
  const endpoint = viaProxy ? { host: viaProxy.host, port: viaProxy.port } : target;

  return new Promise<Socket>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(opts.signal.reason);
      return;
    }
    let phase: 'connecting' | 'awaiting-answer' = 'connecting';
    let settled = false;
    let head: Buffer = Buffer.alloc(0);
    const socket = netConnect({ host: endpoint.host, port: endpoint.port });

    const cleanup = (): void => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      socket.removeListener('readable', onReadable);
    };
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      cleanup();
      socket.destroy();
      reject(err);
    };
    const succeed = (rest?: Buffer): void => {
      if (settled) return;
      settled = true;
      cleanup();
      if (rest && rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };

    const onAbort = (): void => fail(opts.signal?.reason);
    const onError = (err: Error): void => {
      if (phase === 'awaiting-answer' && viaProxy) {
        fail(proxyHungUp(viaProxy, where, err));
      } else if (viaProxy) {
        fail(proxyUnreachable(viaProxy, where, err));
      } else {
        fail(directFailed(decision, where, err));
      }
    };
    const onClose = (): void => {
      if (viaProxy) fail(proxyHungUp(viaProxy, where));
      else fail(directFailed(decision, where, new Error('connection closed')));
    };
    const onReadable = (): void => {
      if (!viaProxy) return;
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
        const end = findHeadEnd(head);
        if (end >= 0) {
          const answer = parseAnswer(head.subarray(0, end).toString('latin1'));
          if (answer === undefined) {
            fail(notHttp(viaProxy, where, head.subarray(0, end).toString('latin1')));
          } else if (answer.status >= 200 && answer.status < 300) {
            succeed(head.subarray(end));
          } else {
            fail(refusedError(viaProxy, target, answer));
          }
          return;
        }
        if (head.length > MAX_RESPONSE_HEAD) {
          fail(
            new NetError('NET_PROXY_PROTOCOL', `the HTTP proxy ${viaProxy.display} sent an answer to CONNECT larger than ${MAX_RESPONSE_HEAD / 1024} KiB`, {
              hint: `check that ${viaProxy.source} names an HTTP proxy`,
            }),
          );
          return;
        }
      }
    };

    const timer = setTimeout(() => fail(timeoutError(decision, where, phase, timeoutMs)), timeoutMs);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.once('connect', () => {
      socket.setNoDelay(true);
      if (!viaProxy) {
        succeed();
        return;
      }
      phase = 'awaiting-answer';
      socket.on('readable', onReadable);
      socket.write(connectRequest(target, viaProxy.url));
    });
  });
}

/** The CONNECT request head, with Proxy-Authorization: Basic when the URL carries credentials. */
export function connectRequest(target: DialTarget, proxyUrl: URL): string {
  const authority = hostPort(target.host, target.port);
  const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
  if (proxyUrl.username !== '' || proxyUrl.password !== '') {
    const credentials = `${percentDecode(proxyUrl.username)}:${percentDecode(proxyUrl.password)}`;
    lines.push(`Proxy-Authorization: Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

export interface ProxyAnswer {
  status: number;
  reason: string;
  /** Lower-cased header names; repeated headers joined with ", ". */
  headers: Map<string, string>;
}

/** Parses a CONNECT response head (without the blank line); undefined when it is not HTTP/1.x. */
export function parseAnswer(head: string): ProxyAnswer | undefined {
  const lines = head.split(/\r?\n/);
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return { status: Number(m[1]), reason: m[2] ?? '', headers };
}

/** The error for a non-2xx answer to CONNECT: NET_PROXY_AUTH for 407, NET_PROXY_REFUSED for everything else. */
function refusedError(proxy: Extract<ProxyDecision, { kind: 'proxy' }>, target: DialTarget, answer: { status: number; reason?: string; headers?: Map<string, string> }): NetError {
  const where = hostPort(target.host, target.port);
  const said = `${answer.status}${answer.reason ? ` ${printable(answer.reason, 80)}` : ''}`;
  if (answer.status === 407) {
    const user = percentDecode(proxy.url.username);
    const offered = (answer.headers?.get('proxy-authenticate') ?? '')
      .split(',')
      .map((c) => /^\s*([A-Za-z][\w-]*)(?:\s|$)/.exec(c)?.[1])
      .filter((s): s is string => s !== undefined);
    const basicMissing = offered.length > 0 && !offered.some((s) => s.toLowerCase() === 'basic');
    const message =
      proxy.url.username === '' && proxy.url.password === ''
        ? `the proxy ${proxy.display} requires credentials`
        : `the proxy ${proxy.display} rejected the credentials for user ${printable(user, 80)}`;
    const host = proxy.url.host;
    return new NetError('NET_PROXY_AUTH', message, {
      status: 407,
      hint: basicMissing
        ? `the proxy only offers ${offered.map((s) => printable(s, 20)).join(', ')} authentication; Jumpgate supports Basic: ask for a Basic account, or add ${where} to NO_PROXY if it is reachable directly`
        : `set ${proxy.source}=http://USER:PASSWORD@${host} (percent-encode special characters, e.g. @ as %40)`,
    });
  }
  return new NetError('NET_PROXY_REFUSED', `the proxy refused CONNECT to ${where}; add ${where} to NO_PROXY if that port is reachable directly`, {
    status: answer.status,
    hint: `the proxy ${proxy.display} (from ${proxy.source}) answered "${said}"; if the port must go through the proxy, ask its administrators to allow CONNECT to port ${target.port}`,
  });
}

// ---------------------------------------------------------------------------

function findHeadEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n');
  if (crlf >= 0) return crlf + 4;
  const lf = buf.indexOf('\n\n'); // tolerated, as curl does
  return lf >= 0 ? lf + 2 : -1;
}

function percentDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text; // a stray % is taken literally rather than failing the login
  }
}

type ViaProxy = Extract<ProxyDecision, { kind: 'proxy' }>;

function proxyUnreachable(proxy: ViaProxy, where: string, cause: unknown): NetError {
  return new NetError('NET_PROXY_UNREACHABLE', `cannot reach the HTTP proxy ${proxy.display} (from ${proxy.source}): ${describeSocketError(cause)}`, {
    cause,
    hint: `check that the proxy runs and ${proxy.source} names it; to bypass it for ${where}, add ${where} to NO_PROXY`,
  });
}

function proxyHungUp(proxy: ViaProxy, where: string, cause?: unknown): NetError {
  return new NetError(
    'NET_PROXY_PROTOCOL',
    `the HTTP proxy ${proxy.display} (from ${proxy.source}) closed the connection before answering CONNECT to ${where}${cause ? `: ${describeSocketError(cause)}` : ''}`,
    { cause, hint: `check that ${proxy.source} names an HTTP proxy (not, say, an SSH or HTTPS port)` },
  );
}

function notHttp(proxy: ViaProxy, where: string, head: string): NetError {
  return new NetError(
    'NET_PROXY_PROTOCOL',
    `the HTTP proxy ${proxy.display} (from ${proxy.source}) did not answer CONNECT to ${where} with HTTP: "${printable(head.split(/\r?\n/)[0] ?? '', 80)}"`,
    { hint: `check that ${proxy.source} names an HTTP proxy` },
  );
}

function directFailed(decision: ProxyDecision, where: string, cause: unknown): NetError {
  const bypassed = decision.kind === 'direct' ? decision.bypassed : undefined;
  if (bypassed) {
    return new NetError(
      'NET_UNREACHABLE',
      `cannot connect to ${where}: ${describeSocketError(cause)} (connected directly: NO_PROXY entry ${JSON.stringify(bypassed.entry)} bypasses the proxy ${bypassed.proxy})`,
      { cause, hint: `if ${where} is only reachable through the proxy, remove ${JSON.stringify(bypassed.entry)} from NO_PROXY` },
    );
  }
  return new NetError('NET_UNREACHABLE', `cannot connect to ${where}: ${describeSocketError(cause)} (connected directly: no proxy configured)`, {
    cause,
    hint: `check the address and that the server runs; if your network needs an HTTP proxy, set HTTPS_PROXY=http://HOST:PORT`,
  });
}

function timeoutError(decision: ProxyDecision, where: string, phase: 'connecting' | 'awaiting-answer', ms: number): NetError {
  const secs = `${Math.round(ms / 100) / 10}s`;
  if (decision.kind === 'proxy') {
    return phase === 'connecting'
      ? new NetError('NET_TIMEOUT', `timed out after ${secs} connecting to the HTTP proxy ${decision.display} (from ${decision.source})`, {
          hint: `check that ${decision.source} names a reachable proxy; to bypass it for ${where}, add ${where} to NO_PROXY`,
        })
      : new NetError('NET_TIMEOUT', `the HTTP proxy ${decision.display} did not set up the tunnel to ${where} within ${secs}`, {
          hint: `the proxy may not reach ${where}; if it is reachable directly, add ${where} to NO_PROXY`,
        });
  }
  const how = decision.bypassed ? `directly: NO_PROXY entry ${JSON.stringify(decision.bypassed.entry)} bypasses the proxy ${decision.bypassed.proxy}` : 'directly: no proxy configured';
  return new NetError('NET_TIMEOUT', `timed out after ${secs} connecting to ${where} (${how})`, {
    hint: decision.bypassed
      ? `if ${where} is only reachable through the proxy, remove ${JSON.stringify(decision.bypassed.entry)} from NO_PROXY`
      : 'check the address and your network; if it needs an HTTP proxy, set HTTPS_PROXY=http://HOST:PORT',
  });
}
