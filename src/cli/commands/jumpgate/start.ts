import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadServerConfig } from '../../../config/index.js';
import { startServer } from '../../../server/index.js';
import { keepYoungGenerationSmall } from '../../../server/heap.js';
import { startSshProxy } from '../../../server/proxy/ssh-proxy.js';
import { textLog } from '../../../server/runtime.js';
import type { Deps } from '../../deps.js';
import { DEFAULT_CONFIG_PATH } from '../../server-context.js';

/** Below this open-files limit `jumpgate start` warns: each proxied SSH session holds two descriptors (client and node). */
export const LOW_OPEN_FILES_LIMIT = 8192;

/**
 * The process's soft limit on open files, from /proc/self/limits (Linux;
 * undefined elsewhere or when unreadable). Node itself raises the soft limit
 * to the hard limit at start-up, so this is the hard limit the service was
 * given (`ulimit -Hn`, systemd `LimitNOFILE=`): Jumpgate cannot go higher.
 */
export function openFilesLimit(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(read('/proc/self/limits'));
    if (!m) return undefined;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return undefined;
  }
}

export interface StartOptions {
  config?: string;
}

/**
 * `jumpgate start`: validates the config, starts every service, prints where
 * they listen, and runs until SIGINT/SIGTERM (then closes listeners and the
 * audit log). A bad config or a busy port stops it before anything listens.
 */
export async function run(opts: StartOptions, deps: Deps): Promise<void> {
  const file = resolve(deps.cwd, opts.config ?? deps.env['JUMPGATE_CONFIG'] ?? DEFAULT_CONFIG_PATH);
  const config = loadServerConfig(file);
  const log = textLog({ write: (t) => deps.io.stderr.write(t), clock: deps.clock, debug: deps.debug });
  for (const w of config.warnings ?? []) log.warn(w.message);
  const nofile = (deps.platform === 'linux' ? openFilesLimit : () => undefined)();
  if (nofile !== undefined && nofile < LOW_OPEN_FILES_LIMIT) {
    log.warn(`open files limit is ${nofile}: the SSH proxy can hold about ${Math.floor((nofile - 100) / 2)} sessions (two descriptors each); raise the hard limit (ulimit -Hn, or LimitNOFILE= for a systemd service) to ${LOW_OPEN_FILES_LIMIT} or more`);
  }
  // A long-running server: no 32 MiB young generation kept after a burst (server/heap.ts).
  keepYoungGenerationSmall(process.execArgv, deps.env['NODE_OPTIONS']);
  const server = await startServer(config, { clock: deps.clock, log, env: deps.env, startSshProxy });
  const addrs = server.publicAddrs();
  log.info(`cluster ${config.clusterName}: HTTPS API on ${config.proxy.webListenAddr.host}:${server.webPort} (public ${addrs.web}), SSH proxy on ${config.proxy.sshListenAddr.host}:${server.sshPort} (public ${addrs.ssh})`);
  log.info(`state store: ${server.rt.store.kind} at ${server.rt.store.location}; server id ${server.rt.serverId}`);
  if (server.tls.selfSigned) log.info(`self-signed HTTPS certificate ${server.tls.fingerprint256}: users log in with tsh login --proxy=${addrs.web} --insecure`);
  if (!config.auth.oidc) log.warn('no auth.oidc in the config: tsh login is refused until single sign-on is configured');
  // One line a supervisor (or a test) can wait for.
  deps.io.stdout.write(`ready web=${server.webPort} ssh=${server.sshPort}\n`);
  const signal = await deps.waitForShutdown();
  log.info(`${signal}: stopping`);
  await server.close();
}
