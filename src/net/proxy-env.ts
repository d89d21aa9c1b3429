/**
 * Which HTTP proxy, if any, a connection uses: HTTPS_PROXY and NO_PROXY as
 * the Jumpgate contract defines them. Pure: the environment comes in as a
 * record (commands get it from deps.env), nothing here reads process.env.
 *
 * Variables, first non-empty one wins:
 * - HTTPS requests and SSH connections: HTTPS_PROXY, https_proxy, then
 *   HTTP_PROXY, http_proxy. SSH uses the HTTPS variables because both are
 *   tunnelled with CONNECT, and a site that sets HTTPS_PROXY for tsh's login
 *   means the same proxy for its SSH port.
 *   The HTTP_PROXY fallback is a deliberate deviation from curl: curl reads
 *   http_proxy only for http:// URLs and never falls back to it for https://.
 *   Many sites set only HTTP_PROXY (often a proxy that serves both), and a
 *   gateway that silently goes direct in that case is the bug users had with
 *   tsh, so we fall back, and the `--debug` line names the variable used.
 *   Upper case first, as the contract lists them (curl prefers lower case;
 *   they almost always hold the same value).
 * - plain http:// requests (rare: a test IdP on loopback): HTTP_PROXY, http_proxy.
 * - NO_PROXY, then no_proxy (see no-proxy.ts for the syntax).
 * ALL_PROXY is not read.
 *
 * A proxy URL without a scheme means http://; without a port, port 80 (as in
 * Go, Python and undici; curl alone defaults to 1080). Only http:// proxies are
 * supported: TLS to the proxy and SOCKS are refused with a clear error, but only
 * when a connection would actually use the proxy, so a stale HTTPS_PROXY does
 * not break destinations NO_PROXY sends direct. Loopback destinations get no
 * special treatment: like curl, only NO_PROXY sends them direct.
 */
import { NetError, hostPort } from './errors.js';
import { findNoProxyMatch, parseNoProxy, type NoProxyList } from './no-proxy.js';

export type Env = Record<string, string | undefined>;

/** What a connection is for; it decides which variables apply. */
export type ProxyScheme = 'https' | 'ssh' | 'http';

export interface ProxyTarget {
  host: string;
  port: number;
  scheme: ProxyScheme;
}

/** How to reach a target. `warnings` are for the user (malformed NO_PROXY entries). */
export type ProxyDecision =
  | {
      kind: 'direct';
      /** Why, for the --debug line and error messages: "NO_PROXY entry \"x\" matches". */
      reason: string;
      /** Set when a proxy was configured but NO_PROXY sent this target around it. */
      bypassed?: { proxy: string; source: string; entry: string };
      warnings: string[];
    }
  | {
      kind: 'proxy';
      /** The proxy URL, credentials included: never print it, print `display`. */
      url: URL;
      /** The proxy URL with the password masked: http://alice:****@proxy:3128 */
      display: string;
      /** The variable it came from, e.g. HTTPS_PROXY. */
      source: string;
      /** Where to open the TCP connection. IPv6 without brackets. */
      host: string;
      port: number;
      warnings: string[];
    };

const PROXY_VARIABLES: Record<ProxyScheme, readonly string[]> = {
  https: ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'],
  ssh: ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'],
  http: ['HTTP_PROXY', 'http_proxy'],
};

/**
 * The proxy environment, parsed once. Build it once per process (or per
 * dispatcher) and call `resolve` per connection; warnings are then shown once.
 */
export class ProxyEnvironment {
  readonly noProxy: NoProxyList;
  readonly noProxySource: string;
  private readonly env: Env;

  constructor(env: Env) {
    this.env = env;
    const noProxy = firstSet(env, ['NO_PROXY', 'no_proxy']);
    this.noProxySource = noProxy?.name ?? 'NO_PROXY';
    this.noProxy = parseNoProxy(noProxy?.value, this.noProxySource);
  }

  /** Malformed NO_PROXY entries that were ignored, one message each. */
  get warnings(): string[] {
    return this.noProxy.warnings;
  }

  /** Direct or through which proxy; throws NetError for a proxy URL that cannot be used. */
  resolve(target: ProxyTarget): ProxyDecision {
    const warnings = this.warnings;
    const variable = firstSet(this.env, PROXY_VARIABLES[target.scheme]);
    if (!variable) {
      return { kind: 'direct', reason: `none of ${PROXY_VARIABLES[target.scheme].join(', ')} is set`, warnings };
    }
    const match = findNoProxyMatch(this.noProxy.rules, target.host, target.port);
    if (match) {
      const proxy = maskedValue(variable.value);
      return {
        kind: 'direct',
        reason: `${this.noProxySource} entry ${JSON.stringify(match.entry)} matches ${hostPort(target.host, target.port)}`,
        bypassed: { proxy, source: variable.name, entry: match.entry },
        warnings,
      };
    }
    const url = parseProxyUrl(variable.value, variable.name);
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port === '' ? 80 : Number(url.port);
    return { kind: 'proxy', url, display: displayProxyUrl(url), source: variable.name, host, port, warnings };
  }
}

/** Direct, or through which HTTP proxy, a connection to `target` goes under `env`. */
export function resolveProxy(env: Env, target: ProxyTarget): ProxyDecision {
  return new ProxyEnvironment(env).resolve(target);
}

/**
 * Parses a proxy variable's value; a value without a scheme means http://.
 * Throws NET_PROXY_UNSUPPORTED for https:// and SOCKS, NET_PROXY_INVALID otherwise.
 */
export function parseProxyUrl(value: string, source: string): URL {
  const text = value.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch (cause) {
    throw new NetError('NET_PROXY_INVALID', `${source} is not a valid proxy URL: ${maskedValue(text)}`, {
      cause,
      hint: `set ${source}=http://HOST:PORT (or http://USER:PASSWORD@HOST:PORT, percent-encoding special characters)`,
    });
  }
  const shown = displayProxyUrl(url);
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  if (scheme === 'https') {
    throw new NetError('NET_PROXY_UNSUPPORTED', `${source} names an HTTPS proxy (${shown}); only http:// proxies are supported`, {
      hint: `most proxies answer plain HTTP CONNECT: try ${source}=${shown.replace(/^https:/, 'http:')} (the tunnel inside stays end-to-end encrypted)`,
    });
  }
  if (scheme.startsWith('socks')) {
    throw new NetError('NET_PROXY_UNSUPPORTED', `${source} names a SOCKS proxy (${shown}); SOCKS proxies are not supported, only HTTP CONNECT proxies (http://)`, {
      hint: `set ${source}=http://HOST:PORT to your HTTP proxy, or unset it and add the destination to NO_PROXY`,
    });
  }
  if (scheme !== 'http') {
    throw new NetError('NET_PROXY_UNSUPPORTED', `${source} has the unsupported scheme "${scheme}:" (${shown}); only http:// proxies are supported`, {
      hint: `set ${source}=http://HOST:PORT`,
    });
  }
  if (url.hostname === '') {
    throw new NetError('NET_PROXY_INVALID', `${source} names no proxy host: ${shown}`, { hint: `set ${source}=http://HOST:PORT` });
  }
  return url;
}

/** The proxy URL for people: scheme, user, masked password, host and explicit port; no path. */
export function displayProxyUrl(url: URL): string {
  const auth = url.username ? `${url.username}${url.password ? ':****' : ''}@` : url.password ? ':****@' : '';
  const port = url.port || (url.protocol === 'http:' ? '80' : url.protocol === 'https:' ? '443' : '');
  return `${url.protocol}//${auth}${url.hostname}${port ? `:${port}` : ''}`;
}

/** The raw value of a proxy variable with any password masked, even when it does not parse. */
function maskedValue(value: string): string {
  const text = value.trim();
  try {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
    return displayProxyUrl(url);
  } catch {
    // user:password@ before the last @ is the only secret a broken URL can hold
    return text.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:****@').replace(/^([^/@:]*):[^/@]*@/, '$1:****@');
  }
}

function firstSet(env: Env, names: readonly string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value.trim() !== '') return { name, value };
  }
  return undefined;
}
