/**
 * `host:port` addresses as they appear in the config and on the command line:
 * `127.0.0.1:3080`, `[::1]:3023`, `proxy.example.com:443`. IPv6 literals need
 * brackets (RFC 3986 §3.2.2), because `::1:3023` cannot be split unambiguously.
 */
import { isIP, isIPv4, isIPv6 } from 'node:net';

/** A parsed address; `host` is stored without IPv6 brackets. */
export interface HostPort {
  host: string;
  port: number;
}

/** An address that does not parse; the message says what a valid one looks like. */
export class AddressError extends Error {
  constructor(
    readonly text: string,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'AddressError';
  }
}

export interface ParseHostPortOptions {
  /** Used when the text has no port; without it a missing port is an error. */
  defaultPort?: number;
  /** Allow port 0 ("any free port"): only meaningful for listen addresses. */
  allowPortZero?: boolean;
}

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/** True for a DNS host name (letters, digits, hyphens; dot-separated labels of at most 63). */
export function isHostname(text: string): boolean {
  // All-numeric dotted names such as 999.1.1.1 are typos of IPv4 addresses, not names.
  return HOSTNAME.test(text) && !/^[\d.]+$/.test(text);
}

/**
 * Parses `host:port`, `[v6]:port`, or (with `defaultPort`) a bare host.
 * @throws AddressError
 */
export function parseHostPort(text: string, options: ParseHostPortOptions = {}): HostPort {
  const shown = JSON.stringify(text);
  const example = 'e.g. 127.0.0.1:3080, [::1]:3080 or proxy.example.com:3080';
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new AddressError(text, `${shown} is missing the closing "]" of the IPv6 address; ${example}`);
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) {
      throw new AddressError(text, `${shown} is not host:port; ${example}`);
    }
    portText = rest === '' ? undefined : rest.slice(1);
    if (!isIPv6(host)) throw new AddressError(text, `${shown}: "${host}" is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(':');
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
    if (host.includes(':')) {
      throw new AddressError(text, `${shown}: put an IPv6 address in brackets, e.g. [::1]:3080`);
    }
    if (host === '') throw new AddressError(text, `${shown} has no host; ${example}`);
    if (!isIPv4(host) && !isHostname(host)) {
      throw new AddressError(text, `${shown}: "${host}" is neither an IP address nor a host name; ${example}`);
    }
  }
  if (portText === undefined) {
    if (options.defaultPort !== undefined) return { host, port: options.defaultPort };
    throw new AddressError(text, `${shown} has no port; add one, ${example}`);
  }
  const min = options.allowPortZero ? 0 : 1;
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < min || Number(portText) > 65535) {
    throw new AddressError(text, `${shown}: the port must be a number from ${min} to 65535`);
  }
  return { host, port: Number(portText) };
}

/** Formats an address back to `host:port`, bracketing IPv6 literals. */
export function formatHostPort(addr: HostPort): string {
  return `${isIPv6(addr.host) ? `[${addr.host}]` : addr.host}:${addr.port}`;
}

/** True when the host is 0.0.0.0 or ::, i.e. "every interface": fine to listen on, useless to dial. */
export function isUnspecifiedHost(host: string): boolean {
  return host === '0.0.0.0' || (isIP(host) === 6 && /^[0:]+$/.test(host));
}

/** True for hosts that can only be this machine: localhost, 127.0.0.0/8, ::1. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (isIPv6(h)) return /^(0{0,4}:){2,7}0{0,3}1$/.test(h) || h === '::1';
  return false;
}
