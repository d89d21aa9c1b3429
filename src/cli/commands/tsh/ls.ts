import { UsageError } from '../../../errors.js';
import { TshPaths } from '../../../client/paths.js';
import { credentialsFor, defaultLogin } from '../../../client/credentials.js';
import type { NodeEntry } from '../../../client/proxy-conn.js';
import { listNodesVia } from '../../../client/node-route.js';
import { profileNameFor, proxyAddrFor } from '../../../client/proxy-addr.js';
import { printable } from '../../../util/printable.js';
import type { Deps } from '../../deps.js';
import { credentialOptions } from './client-context.js';

export interface LsOptions {
  format: 'text' | 'json';
  /** `label=value` filters; every one must match. */
  labels: string[];
  proxy?: string;
}

/** Parses `label=value` arguments. */
export function parseLabelFilters(args: string[]): [string, string][] {
  return args.map((a) => {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new UsageError('USAGE_BAD_LABEL', `"${a}" is not label=value`, { hint: 'e.g. tsh ls env=prod' });
    return [a.slice(0, eq), a.slice(eq + 1)];
  });
}

/**
 * `tsh ls`: the nodes the user may reach, asked from the proxy over the
 * user's own SSH connection (subsystem nodes@jumpgate.dev): the proxy applies
 * the certificate's roles to the current inventory, so the list is exactly
 * what `tsh ssh` and plain ssh will be allowed to reach.
 */
export async function run(opts: LsOptions, deps: Deps): Promise<void> {
  const filters = parseLabelFilters(opts.labels);
  const paths = new TshPaths(deps);
  const creds = await credentialsFor(paths, profileNameFor(opts.proxy, deps.env), deps.clock(), { ...credentialOptions(deps), proxyAddr: proxyAddrFor(opts.proxy, deps.env) });
  const log = deps.debug ? (l: string) => deps.io.stderr.write(`tsh: ${l}\n`) : undefined;
  // The TLS route on the web port when the login recorded it, else the SSH port (client/node-route.ts).
  let { nodes }: { nodes: NodeEntry[] } = await listNodesVia({ creds, paths, env: deps.env, login: defaultLogin(creds, deps.env), now: deps.clock, ...(log ? { log } : {}) });
  nodes = nodes.filter((n) => filters.every(([k, v]) => n.labels[k] === v)).sort((a, b) => a.name.localeCompare(b.name));
  if (opts.format === 'json') {
    deps.io.stdout.write(JSON.stringify(nodes, null, 2) + '\n');
    return;
  }
  const rows = [['Node', 'Address', 'Labels'], ...nodes.map((n) => [n.name, n.addr, Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',')].map((c) => printable(c, 500)))];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  rows.forEach((r, n) => {
    const line = r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
    deps.io.stdout.write((n === 0 ? deps.colors.out.bold(line) : line) + '\n');
  });
  if (nodes.length === 0) deps.io.stderr.write(filters.length > 0 ? 'no node you may reach matches those labels\n' : 'your roles reach no node in this cluster\n');
}
