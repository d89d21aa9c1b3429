import { formatHostPort } from '../shared/address.js';
import { UserError, type ErrorDetails } from '../errors.js';

/**
 * Stable codes of every network failure a user can act on. Scripts and tests
 * match on these; the messages may be reworded, the codes may not.
 */
export type NetErrorCode =
  /** HTTPS_PROXY is not a usable URL. */
  | 'NET_PROXY_INVALID'
  /** HTTPS_PROXY names an https:// or SOCKS proxy: only http:// CONNECT proxies are supported. */
  | 'NET_PROXY_UNSUPPORTED'
  /** The proxy itself cannot be reached (refused, DNS, no route). */
  | 'NET_PROXY_UNREACHABLE'
  /** The proxy answered 407: credentials missing or rejected. */
  | 'NET_PROXY_AUTH'
  /** The proxy answered CONNECT with another non-2xx status. */
  | 'NET_PROXY_REFUSED'
  /** The proxy's answer is not HTTP, too large, or it hung up before answering. */
  | 'NET_PROXY_PROTOCOL'
  /** A direct connection failed. */
  | 'NET_UNREACHABLE'
  /** No connection (or no answer to CONNECT) within the deadline. */
  | 'NET_TIMEOUT'
  /** The server's TLS certificate does not chain to a trusted CA. */
  | 'NET_TLS_UNTRUSTED'
  /** Any other TLS failure: wrong name, expired certificate, handshake failure. */
  | 'NET_TLS_FAILED'
  /** An HTTP answer that cannot be used: not JSON, too large. */
  | 'NET_HTTP_PROTOCOL';

/** A network failure with a stable code, a hint, and the original error as `cause`. Exit code 1. */
export class NetError extends UserError {
  declare readonly code: NetErrorCode;
  /** The proxy's HTTP status, for NET_PROXY_AUTH and NET_PROXY_REFUSED. */
  readonly status: number | undefined;

  constructor(code: NetErrorCode, message: string, details: ErrorDetails & { status?: number } = {}) {
    super(code, message, details);
    this.status = details.status;
  }
}

const SOCKET_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'temporary DNS failure',
  EAI_FAIL: 'DNS failure',
  EHOSTUNREACH: 'no route to host',
  EHOSTDOWN: 'host is down',
  ENETUNREACH: 'network is unreachable',
  ENETDOWN: 'network is down',
  ETIMEDOUT: 'timed out',
  EADDRNOTAVAIL: 'address not available',
  EACCES: 'permission denied',
};

/** A short, human reason for a socket error ("connection refused"), without the stack of Node detail. */
export function describeSocketError(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && SOCKET_ERRORS[code]) return SOCKET_ERRORS[code];
  return err instanceof Error ? err.message : String(err);
}

/** host:port, with brackets around an IPv6 address. */
export function hostPort(host: string, port: number): string {
  return formatHostPort({ host: host.replace(/^\[(.*)\]$/, '$1'), port });
}

export { printable } from '../util/printable.js';
