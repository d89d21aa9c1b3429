import { UsageError, UserError } from '../../../errors.js';
import { TshPaths } from '../../../client/paths.js';
import { checkLogin, defaultLogin, type Credentials } from '../../../client/credentials.js';
import { openNodeStream } from '../../../client/node-route.js';
import type { Deps } from '../../deps.js';
import { coalesceWrites } from '../../../util/coalesce-writes.js';
import { proxyCredentials, type ReloginMode } from './relogin.js';

export interface ProxySshOptions {
  /** `[user@]host[:port]`, as ssh's `%r@%h:%p` gives it. */
  target: string;
  /** The profile's proxy (HOST[:PORT]); default $TSH_PROXY, then the current profile. */
  proxy?: string;
  /** `--relogin`: with a certificate a login would fix, log in through the browser (`auto`) or print the `tsh login` line and exit 4 (`never`, the default). */
  relogin?: ReloginMode;
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

/**
 * Keychain keystore: the block's identity is the certificate file and the
 * agent signs, so an agent that lost the certificate (restarted, `ssh-add
 * -D`) gets it back from the keychain (restoreAgentEntry), no login needed.
 * Agent trouble is not fatal here: ssh then reports what it can do.
 */
async function keepInAgent(creds: Credentials, deps: Deps, log: ((l: string) => void) | undefined): Promise<void> {
  const { profile } = creds;
  if (profile.keystore !== 'keychain' || profile.addKeysToAgent === 'no') return;
  const [{ AgentClient }, { agentComment, restoreAgentEntry }] = await Promise.all([import('../../../client/agent.js'), import('../../../client/agent-entries.js')]);
  let agent;
  try {
    agent = await AgentClient.connect({ env: deps.env, platform: deps.platform, timeoutMs: 3_000 });
    const added = await restoreAgentEntry(agent, {
      privateKey: creds.privateKey,
      certBlob: creds.cert.blob,
      comment: agentComment(profile.name, profile.username, profile.clusterName),
      lifetimeSeconds: Number(creds.cert.validBefore) - deps.clock().getTime() / 1000,
    });
    if (added) deps.io.stderr.write(`tsh: the ssh-agent no longer held your certificate for ${profile.name}; added it again from the keychain\n`);
  } catch (err) {
    log?.(`could not check the ssh-agent: ${(err as Error).message}`);
  } finally {
    agent?.close();
  }
}

async function relay(opts: ProxySshOptions, deps: Deps): Promise<void> {
  const target = parseProxyTarget(opts.target);
  const paths = new TshPaths(deps);
  const creds = await proxyCredentials(opts, paths, deps);
  const login = target.user ?? defaultLogin(creds, deps.env);
  checkLogin(creds, login);
  const log = deps.debug ? (l: string) => deps.io.stderr.write(`tsh: ${l}\n`) : undefined;
  await keepInAgent(creds, deps, log);
  // The TLS route on the web port when the login recorded it, else the SSH port (client/node-route.ts).
  const node = await openNodeStream({ creds, paths, env: deps.env, login, now: deps.clock, stderr: (t) => deps.io.stderr.write(t), ...(log ? { log } : {}) }, target.host, target.port);
  const ch = node.stream;
  try {
    await new Promise<void>((resolve) => {
      // ssh closed its end of our stdout (it exited): nothing left to relay.
      deps.io.stdout.on('error', () => node.close());
      // Each chunk read in one tick (TLS records of 16 KiB) leaves in one write (util/coalesce-writes.ts).
      coalesceWrites(deps.io.stdin, ch);
      coalesceWrites(ch, deps.io.stdout);
      deps.io.stdin.pipe(ch);
      // stdout stays open: the process exits right after, once it has drained (runMain).
      ch.pipe(deps.io.stdout, { end: false });
      ch.on('close', () => {
        deps.io.stdin.unpipe(ch);
        resolve();
      });
    });
  } finally {
    node.close();
  }
}
