/**
 * `tctl tokens add|ls|rm`: join tokens for `jumpgate node start`
 * (server/nodes/tokens.ts). The token itself is printed once, by `add`;
 * `ls` shows ids only (the store holds only each token's SHA-256).
 */
import { formatHostPort } from '../../../shared/address.js';
import { printable } from '../../../util/printable.js';
import { createToken, listTokens, removeToken, DEFAULT_TOKEN_TTL_SECONDS, MAX_TOKEN_TTL_SECONDS } from '../../../server/nodes/tokens.js';
import { UsageError } from '../../../errors.js';
import type { Deps } from '../../deps.js';
import type { ServerContext } from '../../server-context.js';

export interface TokensAddOptions {
  type: 'node';
  ttlSeconds?: number;
  labels: Record<string, string>;
  reusable: boolean;
  format: 'text' | 'json';
}

/** Makes a token; prints it and the `jumpgate node start` line that uses it (stdout: it is the data asked for). */
export async function add(opts: TokensAddOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  const ttlSeconds = opts.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  if (ttlSeconds < 60 || ttlSeconds > MAX_TOKEN_TTL_SECONDS) {
    throw new UsageError('USAGE_BAD_TTL', `--ttl: a join token lives from 1m to ${MAX_TOKEN_TTL_SECONDS / 86_400}d`, { hint: 'e.g. --ttl=1h; a long-lived, reusable token is a standing right to add nodes' });
  }
  const { token, stored } = await createToken({ ttlSeconds, labels: opts.labels, reusable: opts.reusable }, { items: ctx.store.items, audit: ctx.audit, clock: deps.clock });
  const proxy = formatHostPort(ctx.config.proxy.publicAddr);
  const command = `jumpgate node start --token=${token} --proxy=${proxy} --name=NODE_NAME --addr=NODE_HOST:22 --data-dir=/var/lib/jumpgate-node`;
  if (opts.format === 'json') {
    deps.io.stdout.write(JSON.stringify({ token, id: stored.id, type: stored.type, reusable: stored.reusable, labels: stored.labels, expires_at: stored.expires_at, command }, null, 2) + '\n');
    return;
  }
  deps.io.stdout.write(
    [
      `join token: ${token}`,
      `id ${stored.id}, ${stored.reusable ? 'reusable' : 'single use'}, expires ${stored.expires_at}${Object.keys(stored.labels).length ? `, labels ${labelText(stored.labels)}` : ''}`,
      '',
      'On the node, beside its sshd (as root), run:',
      `  ${command}`,
      '',
    ].join('\n'),
  );
  deps.io.stderr.write(
    `Replace NODE_NAME and NODE_HOST; if the proxy's HTTPS certificate is self-signed or from a private CA, add --ca-file=PATH with that certificate or CA (--insecure only for a throwaway test). The token is shown only now.\n` +
      `On a shared node, keep it out of the process list: JUMPGATE_NODE_TOKEN=... or --token-file=FILE instead of --token.\n`,
  );
}

export interface TokensLsOptions {
  format: 'text' | 'json';
}

/** Lists the tokens by id (never the token). */
export async function ls(opts: TokensLsOptions, ctx: ServerContext, deps: Deps): Promise<void> {
  const tokens = await listTokens(ctx.store.items);
  if (opts.format === 'json') {
    deps.io.stdout.write(JSON.stringify(tokens, null, 2) + '\n');
    return;
  }
  const rows = [['Id', 'Type', 'Use', 'Expires', 'Labels'], ...tokens.map((t) => [t.id, t.type, t.reusable ? 'reusable' : 'single', t.expires_at, printable(labelText(t.labels), 200)])];
  writeTable(rows, deps);
}

/** Removes a token named by itself or its id. */
export async function rm(tokenOrId: string, ctx: ServerContext, deps: Deps): Promise<void> {
  const t = await removeToken(tokenOrId, { items: ctx.store.items, audit: ctx.audit });
  deps.io.stderr.write(`removed join token ${t.id}\n`);
}

export function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

export function writeTable(rows: string[][], deps: Deps): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) deps.io.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
}
