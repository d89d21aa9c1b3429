/**
 * tsh's one dialer for the TLS route (TLS routing): one TLS 1.3 connection
 * to the proxy's web port, through HTTPS_PROXY when set (HTTP CONNECT,
 * NO_PROXY honoured: net/connect.ts dial), offering ALPN TLS_ROUTE_ALPN and
 * presenting the login's X.509 client certificate with the profile's own
 * private key (from the keystore, as loadCredentials read it: it never
 * leaves tsh). Then one request line (node, port, login; or `ls`), one
 * answer line (api/schema.ts TlsRouteAnswerSchema), and the stream is the
 * node's sshd from the next byte on.
 *
 * The proxy's certificate is checked like the HTTPS API's: the system's CAs
 * (NODE_EXTRA_CA_CERTS), for the web address's host name; not at all for a
 * profile made with --insecure (the node's host certificate is still checked
 * end to end by ssh, or by tsh ssh).
 */
import { readFileSync } from 'node:fs';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { AuthError, UserError } from '../errors.js';
import { refusalHint } from './refusal-hint.js';
import { TlsRouteAnswerSchema, parseShape } from '../api/schema.js';
import type { TlsRouteRequest } from '../api/types.js';
// Not the net/ barrel: it re-exports http.ts, whose undici (1 MB) the ProxyCommand path never uses.
import { dial } from '../net/connect.js';
import type { Env } from '../net/proxy-env.js';
import { TLS_ROUTE_ALPN, TLS_ROUTE_MAX_LINE } from '../shared/wire-names.js';
import { printable } from '../util/printable.js';
import type { Credentials } from './credentials.js';
import type { TshPaths } from './paths.js';

/**
 * TLS 1.3 suites in tsh's order of preference: AES-128-GCM first (AES-NI
 * makes it the cheapest AEAD on x86-64 and arm64; BENCHMARKS.md "TLS routing").
 */
export const TLS_ROUTE_CLIENT_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384';
/** Stream buffer of the route's socket: large reads and writes, fewer wake-ups (the relay's 1 MiB, node-access.ts). */
export const TLS_ROUTE_BUFFER_BYTES = 1 << 20;
/** How long the TLS handshake plus the proxy's answer may take. */
export const TLS_ROUTE_TIMEOUT_MS = 20_000;

/** The proxy refused the route; `exit` is what tsh exits with (4: log in again may help; 2: a bad request). */
export class TlsRouteRefusal extends UserError {
  constructor(
    code: string,
    message: string,
    readonly exit: 1 | 2 | 4,
  ) {
    super(code, message);
  }
}

/** The X.509 client certificate a login left for the profile, or undefined (an older login or proxy: use the SSH port). */
export function readTlsCertificate(paths: TshPaths, creds: Credentials): string | undefined {
  if (creds.profile.tlsRouting !== true) return undefined;
  try {
    return readFileSync(paths.tlsCertificate(creds.profile.name, creds.profile.username), 'utf8');
  } catch {
    return undefined;
  }
}

export interface TlsRouteOptions {
  creds: Credentials;
  /** PEM, from readTlsCertificate. */
  tlsCert: string;
  env: Env;
  log?: (line: string) => void;
}

/**
 * Opens the route and sends `request`; resolves with the TLS socket once the
 * proxy accepted (paused; what came after the answer line is put back), or
 * rejects with TlsRouteRefusal (the proxy's reason, escaped), AuthError
 * (the proxy refused the client certificate), or the dial's NetError.
 */
export async function openTlsRoute(opts: TlsRouteOptions, request: TlsRouteRequest): Promise<TLSSocket> {
  const { profile } = opts.creds;
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(profile.webProxyAddr) ?? /^([^:]+):(\d+)$/.exec(profile.webProxyAddr);
  if (!m) throw new UserError('PROFILE_CORRUPT', `the profile ${profile.name} has no usable web proxy address ("${profile.webProxyAddr}")`, { hint: `run \`${opts.creds.relogin}\`` });
  const host = m[1]!;
  const port = Number(m[2]);
  const raw: Socket = await dial({ host, port }, { env: opts.env, scheme: 'https', ...(opts.log ? { log: opts.log } : {}) });
  raw.setNoDelay(true);
  const sock = tlsConnect({
    socket: raw,
    ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
    ALPNProtocols: [TLS_ROUTE_ALPN],
    minVersion: 'TLSv1.3',
    ciphers: TLS_ROUTE_CLIENT_CIPHERS,
    cert: opts.tlsCert,
    key: opts.creds.privateKey.export({ format: 'pem', type: 'pkcs8' }),
    rejectUnauthorized: !profile.insecure,
    highWaterMark: TLS_ROUTE_BUFFER_BYTES,
  } as ConnectionOptions);
  return new Promise<TLSSocket>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(() => fail(new UserError('TLS_ROUTE_TIMEOUT', `the proxy ${host}:${port} did not answer the route request within ${TLS_ROUTE_TIMEOUT_MS / 1000} s`)), TLS_ROUTE_TIMEOUT_MS);
    const cleanup = () => {
      clearTimeout(timer);
      sock.removeListener('data', onData);
      sock.removeListener('error', onError);
      sock.removeListener('close', onClose);
    };
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      cleanup();
      sock.destroy();
      reject(err);
    };
    const onError = (err: NodeJS.ErrnoException) => {
      // A proxy with tls_routing off answers our ALPN with no_application_protocol (RFC 7301 §3.2): use the SSH port.
      if (/no.application.protocol/i.test(err.message)) {
        return fail(new UserError('TLS_ROUTE_NO_ALPN', `the proxy ${host}:${port} does not route SSH over TLS (${err.message})`));
      }
      // TLS 1.3: a refused client certificate arrives as an alert after the client's handshake finished.
      if (/alert|certificate/i.test(err.message) || err.code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') {
        return fail(new AuthError('TLS_ROUTE_CERT_REFUSED', `the proxy ${host}:${port} refused the client certificate (${err.message})`, { hint: `run \`${opts.creds.relogin}\` to get a new one` }));
      }
      fail(new UserError('TLS_ROUTE_FAILED', `cannot open the TLS route to ${host}:${port}: ${err.message}`, { cause: err }));
    };
    const onClose = () => fail(new UserError('TLS_ROUTE_CLOSED', `the proxy ${host}:${port} closed the TLS route before answering (is proxy.tls_routing on, and its client CA current? \`${opts.creds.relogin}\` gets a new certificate)`));
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (buf.length > TLS_ROUTE_MAX_LINE) fail(new UserError('TLS_ROUTE_BAD_ANSWER', `the proxy's answer is longer than ${TLS_ROUTE_MAX_LINE} bytes`));
        return;
      }
      let json: unknown;
      try {
        json = JSON.parse(buf.subarray(0, nl).toString('utf8'));
      } catch {
        json = undefined;
      }
      const answer = parseShape(TlsRouteAnswerSchema, json);
      if (!answer.ok) return fail(new UserError('TLS_ROUTE_BAD_ANSWER', `the proxy's answer is not valid: ${answer.field} ${answer.reason}`));
      if (!answer.value.ok) {
        const a = answer.value;
        const message = printable(a.message, 2000);
        return fail(a.exit === 4 ? new AuthError(printable(a.code, 64), message, { hint: refusalHint(a.code, message, opts.creds.relogin) }) : new TlsRouteRefusal(printable(a.code, 64), message, a.exit ?? 1));
      }
      settled = true;
      cleanup();
      sock.pause();
      const rest = buf.subarray(nl + 1);
      if (rest.length > 0) sock.unshift(rest);
      resolve(sock);
    };
    sock.once('secureConnect', () => {
      opts.log?.(`tls route: ${host}:${port} ${sock.getProtocol()} ${sock.getCipher().name} alpn=${String(sock.alpnProtocol)}`);
      if (sock.alpnProtocol !== TLS_ROUTE_ALPN) return fail(new UserError('TLS_ROUTE_UNSUPPORTED', `the proxy ${host}:${port} does not route SSH over TLS (no ALPN ${TLS_ROUTE_ALPN})`));
      sock.write(JSON.stringify(request) + '\n');
    });
    sock.on('data', onData);
    sock.on('error', onError);
    sock.on('close', onClose);
  });
}
