import { formatHostPort } from '../../../shared/address.js';
import { printable } from '../../../util/printable.js';
import { isLive, readJoinedNodes, staticNodes } from '../../../server/nodes/inventory.js';
import { UserError } from '../../../errors.js';
import type { Deps } from '../../deps.js';
import type { ServerContext } from '../../server-context.js';
import { labelText, writeTable } from './tokens.js';

export interface NodesLsOptions {
  format: 'text' | 'json';
}

/**
 * Lists the inventory: the static `nodes:` and every joined node, with its
 * source and last heartbeat; a joined node past node_agent.heartbeat_ttl is
 * `offline` (routing and `tsh ls` leave it out).
 */
export async function run(opts: NodesLsOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  const now = deps.clock().getTime();
  const nodes = [
    ...staticNodes(ctx.config).map((n) => ({ name: n.name, addr: formatHostPort(n.addr), labels: n.labels, source: 'static' as const })),
    ...(await readJoinedNodes(ctx.store.items))
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((n) => ({
        name: n.name,
        addr: n.addr,
        labels: n.labels,
        source: 'joined' as const,
        status: isLive(n, ctx.config, now) ? 'online' : 'offline',
        last_heartbeat: new Date(n.last_heartbeat).toISOString(),
        cert_valid_before: n.cert_valid_before,
      })),
  ];
  if (opts.format === 'json') {
    // JSON escapes control characters itself; labels and names passed the schema's character rules anyway.
    deps.io.stdout.write(JSON.stringify(nodes, null, 2) + '\n');
    return;
  }
  const rows = [
    ['Node', 'Address', 'Source', 'Last heartbeat', 'Labels'],
    ...nodes.map((n) => [printable(n.name), printable(n.addr), 'status' in n ? `joined (${n.status})` : n.source, 'last_heartbeat' in n ? n.last_heartbeat : '-', printable(labelText(n.labels), 300)]),
  ];
  writeTable(rows, deps);
}

/** `tctl nodes rm NAME`: deletes a joined node's item: its credential is void at once, it leaves the inventory. Audited. */
export async function rm(name: string, ctx: ServerContext, deps: Deps): Promise<void> {
  if (ctx.config.nodes.some((n) => n.name.toLowerCase() === name.toLowerCase())) {
    throw new UserError('NODE_STATIC', `"${printable(name)}" is a static node (nodes: in ${ctx.config.file})`, { hint: 'remove it from the config file instead' });
  }
  if (!(await ctx.store.items.delete('node', name.toLowerCase()))) {
    throw new UserError('NODE_NOT_FOUND', `no joined node "${printable(name)}"`, { hint: '`tctl nodes ls` lists them' });
  }
  await ctx.audit.emit({ event: 'node.removed', node: name });
  deps.io.stderr.write(`removed node ${printable(name)}: its credential is refused from now on; its host certificate stays valid until it expires (lock it to end that sooner)\n`);
}
