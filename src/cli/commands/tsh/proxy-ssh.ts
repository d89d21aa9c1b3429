import { UsageError, UserError } from '../../../errors.js';
import { TshPaths } from '../../../client/paths.js';
import { checkLogin, connectProxy, credentialsFor, defaultLogin, openNodeChannel } from '../../../client/proxy-conn.js';
import { profileNameFor, proxyAddrFor } from '../../../client/proxy-addr.js';
import type { Deps } from '../../deps.js';
import { credentialOptions } from './client-context.js';

export interface ProxySshOptions {
  /** `[user@]host[:port]`, as ssh's `%r@%h:%p` gives it. */
  target: string;
  /** The profile's proxy (HOST[:PORT]); default $TSH_PROXY, then the current profile. */
  proxy?: string;
}

/** Splits `[user@]host[:port]`; port 0 when absent (the proxy then uses the node's inventory port). */
export function parseProxyTarget(target: string): { user: string | undefined; host: string; port: number } {
  const at = target.lastIndexOf('@');
  const user = at >= 0 ? target.slice(0, at) : undefined;
  const hp = at >= 0 ? target.slice(at + 1) : target;
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(hp) ?? /^([^:[\]\s]+)(?::(\d{1,5}))?$/.exec(hp) ?? /^([0-9a-fA-F:]+:[0-9a-fA-F:]*)$/.exec(hp);
  const port = m?.[2] === undefined ? 0 : Number(m[2]);
  if (!m || user === '' || port > 65535) throw new UsageError('USAGE_BAD_TARGET', `"${target}" is not [user@]host[:port]`, { hint: 'ssh_config passes %r@%h:%p' });
  return { user, host: m[1]!, port };
}

/**
 * `tsh proxy ssh`: the ProxyCommand helper. Joins stdin/stdout to the node's
 * sshd through the proxy; ssh on the other end does the real SSH session.
 * Every failure is ONE line on stderr (ssh shows a ProxyCommand's stderr as
 * is; without it the user would only see "Connection closed"), with the fix
 * in the same line: an expired or missing certificate says to run `tsh login`.
 */
export async function run(opts: ProxySshOptions, deps: Deps): Promise<void> {
  try {
    await relay(opts, deps);
  } catch (err) {
    if (err instanceof UserError && err.hint) {
      const Kind = err.constructor as new (code: string, message: string, details: { cause?: unknown }) => UserError;
      throw new Kind(err.code, `${err.message}; ${err.hint}`, { cause: err });
    }
    throw err;
  }
}

async function relay(opts: ProxySshOptions, deps: Deps): Promise<void> {
  const target = parseProxyTarget(opts.target);
  const paths = new TshPaths(deps);
  const creds = await credentialsFor(paths, profileNameFor(opts.proxy, deps.env), deps.clock(), { ...credentialOptions(deps), proxyAddr: proxyAddrFor(opts.proxy, deps.env) });
  const login = target.user ?? defaultLogin(creds, deps.env);
  checkLogin(creds, login);
  const log = deps.debug ? (l: string) => deps.io.stderr.write(`tsh: ${l}\n`) : undefined;
  const proxy = await connectProxy({ creds, paths, env: deps.env, login, now: deps.clock, ...(log ? { log } : {}) });
  try {
    const ch = await openNodeChannel(proxy, target.host, target.port, (t) => deps.io.stderr.write(t), creds.relogin);
    await new Promise<void>((resolve) => {
      // ssh closed its end of our stdout (it exited): nothing left to relay.
      deps.io.stdout.on('error', () => ch.close());
      deps.io.stdin.pipe(ch);
      // stdout stays open: the process exits right after, once it has drained (runMain).
      ch.pipe(deps.io.stdout, { end: false });
      ch.on('close', () => {
        deps.io.stdin.unpipe(ch);
        resolve();
      });
    });
  } finally {
    proxy.end();
  }
}
