/**
 * Turns a failed first contact with the proxy (`tsh login`'s ping) into a
 * message about the --proxy address: the SSH port given instead of the web
 * port, a plain-HTTP server, nothing listening, an unknown host name, no
 * answer, a certificate tsh does not trust, something that is not Jumpgate.
 * Each names the address and the fix, with a command that works as printed.
 */
import { UserError } from '../errors.js';
import { NetError } from '../net/errors.js';
import { probeService } from '../net/probe.js';
import type { Env } from '../net/proxy-env.js';
import { DEFAULT_WEB_PORT, loginCommand, type LoginCommandInput } from './proxy-addr.js';

export interface ProxyDiagnosis {
  /** The parsed --proxy. */
  proxy: { host: string; port: number; addr: string };
  env: Env;
  /** The login being tried, for commands in hints. */
  login: LoginCommandInput;
  program: string;
  /** The web address a stored profile of this host has (profile.webProxyAddr): a better guess than the default port. */
  knownWebAddr?: string;
}

const errnoOf = (err: unknown): string | undefined => {
  for (let e: unknown = err, i = 0; e instanceof Error && i < 4; e = e.cause, i++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && !code.startsWith('NET_')) return code;
  }
  return undefined;
};

/** The error to show for `err`, thrown while reaching the proxy at d.proxy; other errors come back unchanged. */
export async function diagnoseProxyError(err: unknown, d: ProxyDiagnosis): Promise<unknown> {
  const where = d.proxy.addr;
  const cmd = (over: Partial<LoginCommandInput>) => loginCommand({ ...d.login, ...over }, d.program);
  const known = d.knownWebAddr !== undefined && d.knownWebAddr !== d.proxy.addr ? d.knownWebAddr : undefined;
  const webGuess = known ?? (d.proxy.port === DEFAULT_WEB_PORT ? undefined : `${d.proxy.host.includes(':') ? `[${d.proxy.host}]` : d.proxy.host}:${DEFAULT_WEB_PORT}`);
  const tryWeb = known
    ? `; your profile for ${d.proxy.host} uses the web address ${known}: \`${cmd({ webProxyAddr: known })}\``
    : webGuess
      ? `; the web address is usually port ${DEFAULT_WEB_PORT}: \`${cmd({ webProxyAddr: webGuess })}\``
      : '';
  if (err instanceof NetError) {
    if (err.code === 'NET_TLS_FAILED' || err.code === 'NET_HTTP_PROTOCOL' || err.code === 'NET_TIMEOUT') {
      const service = await probeService(d.proxy, { env: d.env });
      if (service === 'ssh') {
        return new UserError('PROXY_IS_SSH_PORT', `${where} is an SSH port, not the proxy's web address: --proxy takes the HTTPS address (the server's proxy.public_addr)`, {
          cause: err,
          hint: `give the web port instead${tryWeb || `: \`${cmd({ webProxyAddr: 'HOST:PORT' })}\` with the proxy's HTTPS port`}`,
        });
      }
      if (service === 'http') {
        return new UserError('PROXY_PLAIN_HTTP', `${where} answers plain HTTP, not HTTPS: it is not the Jumpgate proxy's web address (Jumpgate serves HTTPS only)`, {
          cause: err,
          hint: `check the host and port in --proxy (the server's proxy.public_addr)${tryWeb}`,
        });
      }
    }
    if (err.code === 'NET_TLS_UNTRUSTED') {
      return new NetError('NET_TLS_UNTRUSTED', `the HTTPS certificate of ${where} is not trusted (${err.message.replace(/^.*?: /, '')})`, {
        cause: err,
        hint:
          `if your organisation's CA signed it (or a corporate proxy intercepts TLS), point NODE_EXTRA_CA_CERTS at a PEM file with that CA and run the command again; ` +
          `for a development cluster with a self-signed certificate only (it turns the check off for this proxy): \`${cmd({ insecure: true })}\``,
      });
    }
    if (err.code === 'NET_UNREACHABLE') {
      const code = errnoOf(err);
      if (code === 'ECONNREFUSED') {
        return new NetError('NET_UNREACHABLE', `nothing is listening at ${where} (connection refused)`, {
          cause: err,
          hint: `check the port in --proxy (the server's proxy.public_addr) and that \`jumpgate start\` runs there${tryWeb}`,
        });
      }
      if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL') {
        return new NetError('NET_UNREACHABLE', `the host name ${d.proxy.host} is not known (DNS lookup failed${code === 'EAI_AGAIN' ? ', temporarily' : ''})`, {
          cause: err,
          hint: 'check the spelling of --proxy, and your network, VPN or DNS settings',
        });
      }
    }
    if (err.code === 'NET_TIMEOUT') {
      return new NetError('NET_TIMEOUT', `${where} did not answer: ${err.message}`, {
        cause: err,
        hint: `check the address in --proxy and that a firewall lets you reach it; if your network needs an HTTP proxy, set HTTPS_PROXY=http://HOST:PORT${tryWeb}`,
      });
    }
  }
  if (err instanceof UserError && err.code === 'PROXY_BAD_ANSWER') {
    return new UserError('PROXY_NOT_JUMPGATE', `${where} answers HTTPS but is not a Jumpgate proxy (${err.message})`, {
      cause: err,
      hint: `check the host and port in --proxy (the server's proxy.public_addr)${tryWeb}`,
    });
  }
  return err;
}
