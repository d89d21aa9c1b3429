/**
 * HTTPS for Jumpgate: an undici Dispatcher whose every connection goes through
 * dial() (connect.ts), so HTTPS_PROXY/NO_PROXY mean exactly what they mean for
 * SSH, and a 407 or 403 from the proxy is the same NetError in both places.
 *
 * Why not undici's ProxyAgent/EnvHttpProxyAgent: EnvHttpProxyAgent parses
 * NO_PROXY its own way, and ProxyAgent reports a refused CONNECT only as the
 * text "Proxy response (407) !== 200 when HTTP Tunneling". One Agent with a
 * custom connector (TCP or tunnel from dialWith, then TLS through undici's own
 * buildConnector over that socket, as ProxyAgent does) keeps one CONNECT
 * implementation, one set of errors and one --debug line format.
 */
import type { Socket } from 'node:net';
import { Agent, buildConnector, request, type Dispatcher } from 'undici';
import { NetError, describeSocketError, hostPort } from './errors.js';
import { DEFAULT_DIAL_TIMEOUT_MS, describeRoute, dialWith } from './connect.js';
import { ProxyEnvironment, type Env, type ProxyDecision } from './proxy-env.js';

export interface HttpDispatcherOptions {
  /** The environment (deps.env): HTTPS_PROXY, NO_PROXY and friends. */
  env: Env;
  /**
   * CA certificates (PEM) to trust instead of Node's bundled roots, as in
   * tls.connect: pass the certificate of a self-signed Jumpgate proxy here.
   */
  ca?: string | Buffer | Array<string | Buffer>;
  /**
   * Accept any server certificate. Only for `--insecure`: it makes the
   * connection readable and writable by anyone on the path.
   */
  insecureSkipVerify?: boolean;
  /** Gets one line per new origin: direct or through which proxy (password masked). */
  log?: (line: string) => void;
  /** Gets warnings about ignored NO_PROXY entries, once. Default: `log`. */
  warn?: (message: string) => void;
  /** Deadline for TCP connection + CONNECT, and again for the TLS handshake. Default 20 s. */
  timeoutMs?: number;
}

/** The Dispatcher for every HTTPS request Jumpgate makes: pass it to undici's fetch/request. */
export function createHttpDispatcher(opts: HttpDispatcherOptions): Dispatcher {
  const proxies = new ProxyEnvironment(opts.env);
  for (const w of proxies.warnings) (opts.warn ?? opts.log)?.(`warning: ${w}`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
  const tls = buildConnector({
    ...(opts.ca === undefined ? {} : { ca: opts.ca }),
    rejectUnauthorized: opts.insecureSkipVerify !== true,
    timeout: timeoutMs,
  });
  const logged = new Set<string>();

  const connect: buildConnector.connector = (o, callback) => {
    const https = o.protocol === 'https:';
    const host = o.hostname.startsWith('[') ? o.hostname.slice(1, -1) : o.hostname;
    const target = { host, port: Number(o.port) || (https ? 443 : 80) };
    let decision: ProxyDecision;
    try {
      decision = proxies.resolve({ ...target, scheme: https ? 'https' : 'http' });
    } catch (err) {
      callback(err as Error, null);
      return;
    }
    const origin = `${o.protocol}//${hostPort(target.host, target.port)}`;
    if (!logged.has(origin)) {
      logged.add(origin);
      opts.log?.(describeRoute(target, decision));
    }
    dialWith(target, decision, { timeoutMs }).then(
      (socket: Socket) => {
        if (!https) {
          callback(null, socket);
          return;
        }
        tls({ ...o, httpSocket: socket }, (err, tlsSocket) => {
          if (err) {
            socket.destroy();
            callback(tlsError(err, target, decision, timeoutMs), null);
          } else {
            callback(null, tlsSocket!);
          }
        });
      },
      (err: Error) => callback(err, null),
    );
  };

  return new Agent({ connect });
}

// Node/OpenSSL codes for "this chain does not end at a CA you trust".
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

/** Maps a TLS-phase failure to NET_TLS_UNTRUSTED, NET_TIMEOUT or NET_TLS_FAILED. */
function tlsError(err: Error, target: { host: string; port: number }, decision: ProxyDecision, timeoutMs: number): NetError {
  const where = hostPort(target.host, target.port);
  const code = (err as { code?: unknown }).code;
  const via = decision.kind === 'proxy' ? ` (through the HTTP proxy ${decision.display})` : '';
  if (typeof code === 'string' && UNTRUSTED.has(code)) {
    return new NetError('NET_TLS_UNTRUSTED', `the TLS certificate of ${where} is not trusted: ${err.message}${via}`, {
      cause: err,
      hint:
        'a corporate proxy that intercepts TLS presents its own certificate: point NODE_EXTRA_CA_CERTS at a PEM file ' +
        "with your organisation's CA (Node reads it at startup; it does not read SSL_CERT_FILE); " +
        'a server with a self-signed certificate needs its CA trusted explicitly',
    });
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new NetError('NET_TIMEOUT', `the TLS handshake with ${where} did not finish within ${Math.round(timeoutMs / 100) / 10}s${via}`, {
      cause: err,
      hint: `check that ${where} serves HTTPS`,
    });
  }
  return new NetError('NET_TLS_FAILED', `TLS with ${where} failed: ${describeSocketError(err)}${via}`, {
    cause: err,
    hint: `check that ${where} serves HTTPS with a valid certificate for that name`,
  });
}

/**
 * The NetError behind a failed fetch(): undici's fetch wraps connection
 * errors as TypeError("fetch failed") with the real one as `cause`.
 */
export function unwrapFetchError(err: unknown): unknown {
  if (err instanceof TypeError && err.cause instanceof NetError) return err.cause;
  return err;
}

export interface HttpRequestOptions {
  dispatcher: Dispatcher;
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD';
  headers?: Record<string, string>;
  body?: string | Buffer | Uint8Array;
  signal?: AbortSignal;
  /** Larger answers are refused (NET_HTTP_PROTOCOL). Default 8 MiB. */
  maxBodyBytes?: number;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text(): string;
  /** The body parsed as JSON; throws NetError NET_HTTP_PROTOCOL when it is not JSON. */
  json<T = unknown>(): T;
}

/**
 * One HTTP request through the dispatcher, body read in full. Resolves for
 * every status (the caller decides what a 4xx means); rejects with the
 * NetError for connection, proxy and TLS failures.
 */
export async function httpRequest(url: string | URL, opts: HttpRequestOptions): Promise<HttpResponse> {
  const max = opts.maxBodyBytes ?? 8 * 1024 * 1024;
  const res = await request(url, {
    dispatcher: opts.dispatcher,
    method: opts.method ?? 'GET',
    ...(opts.headers ? { headers: opts.headers } : {}),
    ...(opts.body === undefined ? {} : { body: opts.body }),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > max) {
      res.body.destroy();
      throw new NetError('NET_HTTP_PROTOCOL', `the answer from ${new URL(url).origin} is larger than ${max} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  const body = Buffer.concat(chunks);
  const origin = new URL(url).origin;
  return {
    status: res.statusCode,
    headers: res.headers,
    body,
    text: () => body.toString('utf8'),
    json: <T>() => {
      try {
        return JSON.parse(body.toString('utf8')) as T;
      } catch (cause) {
        throw new NetError('NET_HTTP_PROTOCOL', `the answer from ${origin} (status ${res.statusCode}) is not JSON`, {
          cause,
          hint: `check that ${origin} is a Jumpgate proxy address`,
        });
      }
    },
  };
}
