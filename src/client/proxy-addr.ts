/**
 * The proxy address users give (`--proxy`, TSH_PROXY) and the profile it
 * names. Light on purpose: `tsh proxy ssh`, run by every plain `ssh`, imports it.
 */
import { UsageError } from '../errors.js';
import { AddressError, formatHostPort, parseHostPort } from '../shared/address.js';

/** The proxy's HTTPS port when --proxy names only a host. */
export const DEFAULT_WEB_PORT = 3080;

/**
 * host and port of the proxy's HTTPS API from `HOST[:PORT]`. The host is
 * lower-cased: it is also the profile's name, and host names are
 * case-insensitive, so `--proxy=Jump.Example.org` and `jump.example.org`
 * are the same login.
 */
export function parseProxyFlag(text: string): { host: string; port: number; addr: string } {
  try {
    const hp = parseHostPort(text.trim(), { defaultPort: DEFAULT_WEB_PORT });
    const host = hp.host.toLowerCase();
    return { host, port: hp.port, addr: formatHostPort({ host, port: hp.port }) };
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    throw new UsageError('USAGE_BAD_PROXY', `--proxy: ${err.message}`, { cause: err, hint: 'e.g. --proxy=jump.example.org or --proxy=jump.example.org:3080' });
  }
}

/**
 * The profile a command acts on: the one for `--proxy` (or TSH_PROXY), whose
 * name is the proxy's host; undefined means the current profile.
 */
export function profileNameFor(proxyFlag: string | undefined, env: Record<string, string | undefined>): string | undefined {
  const proxy = proxyFlag ?? env['TSH_PROXY'];
  return proxy ? parseProxyFlag(proxy).host : undefined;
}
