/**
 * Node routing and authorization for the proxy's SSH service: which
 * inventory node a request names, and whether the certificate holder may
 * reach it. Pure: the config and a certificate in, a decision out, so every
 * rule has a table test (test/server/ssh-proxy-routing.test.ts).
 *
 * Rules:
 * - A request names a node by its inventory name, by `<name>.<cluster_name>`
 *   (the `*.<cluster>` pattern of the ssh_config block), or by the host of its
 *   inventory address when exactly one node has that host (or the port picks one).
 * - The port must be 0 or 22 (what ssh sends when the user gave none; the proxy
 *   then dials the inventory port) or the node's inventory port. Anything else
 *   is refused: the proxy reaches nodes' SSH ports, nothing else.
 * - The node must match a label selector of one of the certificate's roles
 *   (`roles@jumpgate.dev`), read against the CURRENT config: a role removed
 *   since the certificate was signed grants nothing, and a certificate whose
 *   roles are all gone is refused.
 * - The login is not decided here: it must be one of the certificate's
 *   principals, which verifyUserCertAuth checks at authentication.
 */
import type { NodeConfig, ServerConfig } from '../../config/index.js';
import type { Certificate } from '../../sshcert/index.js';
import { decodeIdentity, IdentityError } from '../../sshcert/identity.js';
import { matchLabels } from '../auth/roles.js';
import { PROXY_SUBSYSTEM_PREFIX, ROLES_EXTENSION } from '../../shared/wire-names.js';

/** Why a request was refused; `code` is stable (audit log, tests), `message` is for the user. */
export interface Refusal {
  ok: false;
  code: 'BAD_REQUEST' | 'BAD_IDENTITY' | 'NO_ROLES' | 'UNKNOWN_NODE' | 'AMBIGUOUS_NODE' | 'PORT_REFUSED' | 'NODE_DENIED';
  message: string;
}

/** A parsed `proxy:HOST:PORT` (HOST may be `[v6]`; PORT may be absent = 0). */
export function parseProxySubsystem(name: string): { host: string; port: number } | Refusal {
  if (!name.startsWith(PROXY_SUBSYSTEM_PREFIX)) return badRequest(`unknown subsystem "${name}"`);
  const rest = name.slice(PROXY_SUBSYSTEM_PREFIX.length);
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(rest);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else {
    const colon = rest.lastIndexOf(':');
    host = colon < 0 ? rest : rest.slice(0, colon);
    portText = colon < 0 ? undefined : rest.slice(colon + 1);
  }
  if (host === '' || host.length > 253 || /[\s\x00-\x1f]/.test(host)) return badRequest(`"${name}" does not name a host; use proxy:HOST:PORT`);
  if (portText === undefined || portText === '') return { host, port: 0 };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return badRequest(`"${name}" has an invalid port; use proxy:HOST:PORT`);
  return { host, port: Number(portText) };
}

function badRequest(message: string): Refusal {
  return { ok: false, code: 'BAD_REQUEST', message };
}

/** The label selectors of the certificate's roles that still exist in the config (and the roles kept). */
export function certificateSelectors(config: ServerConfig, cert: Certificate): { roles: string[]; selectors: Record<string, string | string[]>[] } | Refusal {
  let named: string[];
  try {
    // The same decoder the issuer's encoding is tested against (sshcert/identity.ts).
    named = decodeIdentity(cert).roles;
  } catch (err) {
    if (!(err instanceof IdentityError)) throw err;
    return { ok: false, code: 'BAD_IDENTITY', message: `the certificate of "${cert.keyId}" is not one this cluster issued (${err.message}); log in with \`tsh login\`` };
  }
  const roles = named.filter((r) => config.roles.has(r));
  if (roles.length === 0) {
    return {
      ok: false,
      code: 'NO_ROLES',
      message:
        named.length === 0
          ? `the certificate of "${cert.keyId}" carries no Jumpgate roles; log in with \`tsh login\``
          : `none of the certificate's roles (${named.join(', ')}) is defined on this cluster any more; ask the administrator, then run \`tsh login\` again`,
    };
  }
  return { roles, selectors: roles.map((r) => config.roles.get(r)!.nodeLabels) };
}

/** The nodes a set of selectors reaches, in inventory order. */
export function reachableNodes<N extends NodeConfig>(config: ServerConfig, selectors: Record<string, string | string[]>[], inventory: readonly N[]): N[] {
  return inventory.filter((n) => selectors.some((s) => matchLabels(s, n.labels)));
}

/**
 * Resolves a requested host and port to an inventory node the selectors
 * allow (rules at the top of this file). The refusal of a node that exists
 * but is not allowed reads like that of an unknown node's, except for its
 * code: a user learns nothing about nodes they may not reach.
 */
export function routeToNode(
  config: ServerConfig,
  selectors: Record<string, string | string[]>[],
  host: string,
  port: number,
  /** The live inventory (runtime.ts inventoryNodes: static + joined nodes); required so no caller routes on the static list alone. */
  inventory: readonly NodeConfig[],
): { ok: true; node: NodeConfig } | Refusal {
  const wanted = host.toLowerCase().replace(/\.$/, '');
  const suffix = `.${config.clusterName.toLowerCase()}`;
  const short = wanted.endsWith(suffix) ? wanted.slice(0, -suffix.length) : undefined;
  let node = inventory.find((n) => n.name.toLowerCase() === wanted) ?? (short ? inventory.find((n) => n.name.toLowerCase() === short) : undefined);
  if (!node) {
    const byAddr = inventory.filter((n) => n.addr.host.toLowerCase() === wanted);
    const byAddrPort = byAddr.filter((n) => n.addr.port === port);
    if (byAddrPort.length === 1) node = byAddrPort[0];
    else if (byAddr.length === 1) node = byAddr[0];
    else if (byAddr.length > 1) {
      const allowed = byAddr.filter((n) => selectors.some((s) => matchLabels(s, n.labels)));
      if (allowed.length > 0) {
        return {
          ok: false,
          code: 'AMBIGUOUS_NODE',
          message: `several nodes listen on ${host}; use a node name (${allowed.map((n) => n.name).join(', ')})`,
        };
      }
    }
  }
  const unknown = `no node "${host}" that you may reach in cluster ${config.clusterName}; \`tsh ls\` lists yours`;
  if (!node) return { ok: false, code: 'UNKNOWN_NODE', message: unknown };
  if (!selectors.some((s) => matchLabels(s, node.labels))) return { ok: false, code: 'NODE_DENIED', message: unknown };
  if (port !== 0 && port !== 22 && port !== node.addr.port) {
    return {
      ok: false,
      code: 'PORT_REFUSED',
      message: `the proxy reaches ${node.name} only on its SSH port (${node.addr.port}), not ${port}`,
    };
  }
  return { ok: true, node };
}
