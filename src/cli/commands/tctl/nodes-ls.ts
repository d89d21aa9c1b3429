import type { Deps } from '../../deps.js';
import type { ServerContext } from '../../server-context.js';

export interface NodesLsOptions {
  format: 'text' | 'json';
}

/** Lists the static node inventory: name, address, labels. */
export function run(opts: NodesLsOptions, ctx: ServerContext, deps: Deps): void {
  const nodes = ctx.config.nodes.map((n) => ({ name: n.name, addr: `${formatHost(n.addr.host)}:${n.addr.port}`, labels: n.labels }));
  if (opts.format === 'json') {
    deps.io.stdout.write(JSON.stringify(nodes, null, 2) + '\n');
    return;
  }
  const rows = [['Node', 'Address', 'Labels'], ...nodes.map((n) => [n.name, n.addr, Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',')])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) deps.io.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
