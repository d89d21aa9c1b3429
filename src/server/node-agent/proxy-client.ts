/**
 * How the node agent reaches the proxy's HTTPS API: every request goes
 * through net/'s one dispatcher (net/http.ts createHttpDispatcher), so
 * HTTPS_PROXY/NO_PROXY mean on a node exactly what they mean for tsh (CONNECT
 * tunnel, NO_PROXY syntax, the same NetError codes), and the proxy's
 * certificate is checked against `--ca-file` when given (else Node's roots
 * plus NODE_EXTRA_CA_CERTS), or not at all with `--insecure`.
 *
 * A pin is the CA file passed as `ca` with verification ON: with
 * rejectUnauthorized false Node never calls checkServerIdentity, so "insecure
 * plus a fingerprint check" would check nothing.
 */
import { request, type Dispatcher } from 'undici';
import * as v from 'valibot';
import { ApiErrorSchema, parseShape } from '../../api/schema.js';
import { UserError } from '../../errors.js';
import { createHttpDispatcher, NetError, type Env } from '../../net/index.js';
import { formatHostPort, type HostPort } from '../../shared/address.js';
import { printable } from '../../util/printable.js';

/** Largest answer the agent reads from the proxy. */
export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
/** A request with no answer (headers, or body progress) within this fails and is retried by the loop. */
export const REQUEST_TIMEOUT_MS = 90_000;

/** Refused by the proxy in a way retrying cannot fix (a removed node, a bad token). */
export class NodeRefusedError extends UserError {
  /** The proxy's error code (api/schema.ts ApiErrorSchema), e.g. NODE_CREDENTIAL_REFUSED; undefined when the answer had none. */
  serverCode: string | undefined;
}

export interface ProxyClientOptions {
  /** The proxy's HTTPS address (--proxy). */
  proxy: HostPort;
  /** Accept any TLS certificate from the proxy (--insecure: self-signed test setups). */
  insecure: boolean;
  /** --ca-file: the PEM CA certificates the proxy's certificate must chain to (instead of Node's roots). */
  ca?: { file: string; pem: string };
  /** The environment: HTTPS_PROXY, NO_PROXY and friends (net/proxy-env.ts). */
  env: Env;
  /** Aborts every request in flight (SIGTERM/SIGINT). */
  signal: AbortSignal;
  /** One line per new origin: direct or through which HTTP proxy. */
  log?: (line: string) => void;
}

/** The agent's HTTPS client for the proxy's node API (POST + JSON both ways). */
export class ProxyClient {
  private readonly dispatcher: Dispatcher;
  private readonly origin: string;

  constructor(private readonly opts: ProxyClientOptions) {
    this.dispatcher = createHttpDispatcher({
      env: opts.env,
      ...(opts.ca ? { ca: opts.ca.pem } : {}),
      insecureSkipVerify: opts.insecure,
      ...(opts.log ? { log: opts.log } : {}),
    });
    this.origin = `https://${formatHostPort(opts.proxy)}`;
  }

  /**
   * POST `path` with `body` as JSON (and `credential` as a Bearer token);
   * parses a 200 answer with `schema`. With `holdMs` the request is abandoned
   * after that long (undefined then); an abort of the signal gives undefined
   * too. @throws NodeRefusedError (400/401/403/409), UserError
   * NODE_PROXY_UNREACHABLE (below HTTP, with a hint), Error (others: retried)
   */
  call<S extends v.GenericSchema>(path: string, schema: S, body: unknown, credential: string | undefined): Promise<v.InferOutput<S>>;
  call<S extends v.GenericSchema>(path: string, schema: S, body: unknown, credential: string | undefined, o: { holdMs: number }): Promise<v.InferOutput<S> | undefined>;
  async call<S extends v.GenericSchema>(path: string, schema: S, body: unknown, credential: string | undefined, o?: { holdMs: number }): Promise<v.InferOutput<S> | undefined> {
    const abort = new AbortController();
    let held = false;
    const hold = o ? setTimeout(() => ((held = true), abort.abort()), o.holdMs) : undefined;
    const onAbort = () => abort.abort();
    this.opts.signal.addEventListener('abort', onAbort, { once: true });
    try {
      let res: Dispatcher.ResponseData;
      try {
        res = await request(this.origin + path, {
          dispatcher: this.dispatcher,
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(credential ? { authorization: `Bearer ${credential}` } : {}) },
          body: JSON.stringify(body),
          signal: abort.signal,
          headersTimeout: REQUEST_TIMEOUT_MS,
          bodyTimeout: REQUEST_TIMEOUT_MS,
        });
      } catch (err) {
        if (held || this.opts.signal.aborted) return undefined;
        throw proxyUnreachable(formatHostPort(this.opts.proxy), err as Error, this.opts.ca?.file);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        for await (const c of res.body) {
          size += (c as Buffer).length;
          if (size > MAX_ANSWER_BYTES) {
            res.body.destroy();
            throw new Error(`the proxy's answer to ${path} is larger than ${MAX_ANSWER_BYTES} bytes`);
          }
          chunks.push(c as Buffer);
        }
      } catch (err) {
        if (held || this.opts.signal.aborted) return undefined;
        throw err;
      }
      let json: unknown;
      try {
        json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        throw new Error(`the proxy answered ${path} with ${res.statusCode} and no JSON`);
      }
      if (res.statusCode !== 200) {
        const e = parseShape(ApiErrorSchema, json);
        const msg = e.ok ? `${e.value.error.code}: ${printable(e.value.error.message, 500)}` : `HTTP ${res.statusCode}`;
        const fatal = [400, 401, 403, 409].includes(res.statusCode);
        if (!fatal) throw new Error(`the proxy answered ${path}: ${msg}`);
        const refused = new NodeRefusedError('NODE_REFUSED', `the proxy refused ${path}: ${msg}`);
        refused.serverCode = e.ok ? e.value.error.code : undefined;
        throw refused;
      }
      const p = parseShape(schema, json);
      if (!p.ok) throw new Error(`the proxy's answer to ${path} is not valid: ${p.field}: ${p.reason}`);
      return p.value;
    } finally {
      clearTimeout(hold);
      this.opts.signal.removeEventListener('abort', onAbort);
    }
  }

  close(): void {
    void this.dispatcher.destroy().catch(() => undefined);
  }
}

/** TLS verification failures that --ca-file, --insecure or NODE_EXTRA_CA_CERTS fix (Node's codes and net/'s). */
const UNTRUSTED_CERT = new Set(['NET_TLS_UNTRUSTED', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY']);

/**
 * The error for a request to the proxy that failed below HTTP (`proxy` is
 * host:port as given; `caFile` the --ca-file in use), with a hint that says
 * what to change: an untrusted HTTPS certificate, nothing listening, an
 * unknown host name, an HTTP proxy that refused. The agent's loop logs it and
 * retries; at the first join it ends the program.
 */
export function proxyUnreachable(proxy: string, err: Error & { code?: string }, caFile?: string): UserError {
  // net/ wraps socket and TLS failures in a NetError; the socket's own code is its cause's.
  const inner = err instanceof NetError && err.cause instanceof Error ? (err.cause as Error & { code?: string }) : err;
  const code = inner.code ?? '';
  const untrusted = UNTRUSTED_CERT.has(err.code ?? '') || UNTRUSTED_CERT.has(code);
  const hint = untrusted
    ? caFile
      ? `the proxy's HTTPS certificate is not signed by a CA in --ca-file=${caFile}: point --ca-file at the PEM file of the CA that signed the proxy's certificate (proxy.tls_cert_file's issuer, or that certificate itself when it is self-signed)`
      : `the proxy's HTTPS certificate is not trusted: give --ca-file=PATH with the PEM of the CA that signed it (or the self-signed certificate itself), point NODE_EXTRA_CA_CERTS at it, or add --insecure for a development proxy`
    : code === 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? `the proxy's HTTPS certificate does not name ${proxy}: give --proxy the name in its certificate (proxy.public_addr)`
      : err instanceof NetError && err.code.startsWith('NET_PROXY_')
        ? (err.hint ?? 'check HTTPS_PROXY and NO_PROXY on this node')
        : code === 'ECONNREFUSED'
          ? `nothing listens at ${proxy}: is jumpgate running, and is that its web port (proxy.web_listen_addr, not the SSH port)?`
          : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
            ? `the name in --proxy=${proxy} does not resolve on this node`
            : `check --proxy=${proxy} (the proxy's web address, as in \`tctl tokens add\`'s line) and that this node can reach it`;
  // A failure through an HTTP proxy keeps net/'s message (it names the proxy); others say the socket's or TLS's own words.
  const why = err instanceof NetError && err.code.startsWith('NET_PROXY_') ? err.message : inner.message;
  return new UserError('NODE_PROXY_UNREACHABLE', `cannot reach the proxy at ${proxy}: ${printable(why, 500)}`, { cause: err, hint });
}
