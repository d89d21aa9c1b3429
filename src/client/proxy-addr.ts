/**
 * The proxy address users give (`--proxy`, TSH_PROXY) and the profile it
 * names, and the `tsh login` command every hint prints. Light on purpose:
 * `tsh proxy ssh`, run by every plain `ssh`, imports it.
 */
import { UsageError } from '../errors.js';
import { AddressError, formatHostPort, parseHostPort } from '../shared/address.js';

/** The proxy's HTTPS port when --proxy names only a host. */
export const DEFAULT_WEB_PORT = 3080;

/** What an example proxy looks like in a hint when tsh knows no real one: clearly an example. */
export const EXAMPLE_PROXY = 'jump.example.com:3080';

const PROXY_EXAMPLES = 'e.g. --proxy=jump.example.com, --proxy=jump.example.com:3080 or --proxy=https://jump.example.com:3080';

/**
 * host and port of the proxy's HTTPS API from `HOST`, `HOST:PORT`,
 * `[v6]:PORT` or an https URL `https://HOST[:PORT][/]` (what a browser's
 * address bar shows; without a port the URL means 443, as in a browser). A
 * bare host gets `defaultPort` (DEFAULT_WEB_PORT unless given). Refused with a UsageError naming the flag:
 * `http://` (the API is HTTPS only), other schemes, a path, query, fragment
 * or user name. The host is lower-cased: it is also the profile's name, and
 * host names are case-insensitive, so `--proxy=Jump.Example.org` and
 * `jump.example.org` are the same login.
 */
export function parseProxyFlag(text: string, flag = '--proxy', defaultPort = DEFAULT_WEB_PORT): { host: string; port: number; addr: string } {
  const t = text.trim();
  const bad = (message: string, cause?: unknown) =>
    new UsageError('USAGE_BAD_PROXY', `${flag}: ${message}`, { ...(cause ? { cause } : {}), hint: PROXY_EXAMPLES });
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(t)?.[1]?.toLowerCase();
  if (scheme !== undefined) {
    if (scheme === 'http') {
      throw bad(`"${t}" is plain http://: the Jumpgate proxy serves its API over HTTPS only; use https://${t.slice(7).replace(/\/+$/, '')} or leave the scheme out`);
    }
    if (scheme !== 'https') throw bad(`"${t}": ${scheme}:// is not a proxy address; give the proxy's HTTPS address (host[:port] or https://host[:port])`);
    let url: URL;
    try {
      url = new URL(t);
    } catch (err) {
      throw bad(`"${t}" is not a valid URL`, err);
    }
    if (url.username || url.password) throw bad(`"${t}" has a user name in it; give the proxy's address only (tsh login --user=NAME for the user)`);
    if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
      throw bad(`"${t}" has a path, query or fragment; give only https://host[:port]`);
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
    const port = url.port === '' ? 443 : Number(url.port);
    return { host, port, addr: formatHostPort({ host, port }) };
  }
  if (/[/?#]/.test(t)) throw bad(`"${t}" has a path in it; give host[:port] or https://host[:port]`);
  try {
    const hp = parseHostPort(t, { defaultPort });
    const host = hp.host.toLowerCase();
    return { host, port: hp.port, addr: formatHostPort({ host, port: hp.port }) };
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    throw bad(err.message, err);
  }
}

/**
 * The profile a command acts on: the one for `--proxy` (or TSH_PROXY), whose
 * name is the proxy's host; undefined means the current profile.
 */
export function profileNameFor(proxyFlag: string | undefined, env: Record<string, string | undefined>): string | undefined {
  return proxyOf(proxyFlag, env)?.host;
}

/** host:port of `--proxy` (else TSH_PROXY) as given, for hints that must name the exact web address; undefined when neither is set. */
export function proxyAddrFor(proxyFlag: string | undefined, env: Record<string, string | undefined>): string | undefined {
  return proxyOf(proxyFlag, env)?.addr;
}

function proxyOf(proxyFlag: string | undefined, env: Record<string, string | undefined>): { host: string; addr: string } | undefined {
  const proxy = proxyFlag ?? env['TSH_PROXY'];
  return proxy ? parseProxyFlag(proxy, proxyFlag !== undefined ? '--proxy' : 'TSH_PROXY') : undefined;
}

/** One word for a POSIX shell (and PowerShell/cmd for the characters a host name or user name holds): quoted only when needed. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** What a hint needs to print a `tsh login` that works as printed. */
export interface LoginCommandInput {
  /** host:port of the proxy's HTTPS API (a profile's webProxyAddr). */
  webProxyAddr: string;
  /** The profile was made with --insecure: the proxy's certificate is self-signed. */
  insecure?: boolean;
  /** The --user given at that login (the identity provider's login hint). */
  user?: string;
  /** TSH_HOME when it is not the default one (paths.ts nonDefaultTshHome): the command then names it (`--tsh-home=`). */
  tshHome?: string;
}

/**
 * The exact `tsh login` command that renews a profile, e.g.
 * `tsh login --proxy=localhost:3080 --insecure`: the proxy, and the
 * remembered --user and --insecure (and --tsh-home when TSH_HOME is not the
 * default), so it works as printed even where the current profile, TSH_PROXY
 * or TSH_HOME says otherwise. `program` is how to run tsh
 * (cli/ui.ts tshProgram: `tsh` when that is on PATH, else this program's path).
 */
export function loginCommand(p: LoginCommandInput, program = 'tsh'): string {
  const words = [program, 'login', `--proxy=${p.webProxyAddr}`];
  if (p.user) words.push(`--user=${shellWord(p.user)}`);
  if (p.insecure) words.push('--insecure');
  // A hint printed by ssh's ProxyCommand runs in a shell that may lack the TSH_HOME the login used.
  if (p.tshHome) words.push(`--tsh-home=${shellWord(p.tshHome)}`);
  return words.join(' ');
}
