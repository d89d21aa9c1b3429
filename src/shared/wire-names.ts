/**
 * Names on the wire between tsh and the proxy, in one place so the two sides
 * cannot drift apart: SSH subsystem names (RFC 4254 §6.5; local names carry
 * `@domain`, RFC 4250 §4.6.1) and the certificate extension that carries the
 * roles (PROTOCOL.certkeys: custom extension names are `name@domain`).
 */

/** The subsystem name prefix tsh and `ProxyCommand ssh -s proxy:%h:%p` use: `proxy:HOST:PORT`. */
export const PROXY_SUBSYSTEM_PREFIX = 'proxy:';

/** `proxy:HOST:PORT` for a node; an IPv6 host goes in brackets. */
export const PROXY_SUBSYSTEM = (host: string, port: number) => `${PROXY_SUBSYSTEM_PREFIX}${host.includes(':') ? `[${host}]` : host}:${port}`;

/** The subsystem that lists the nodes the user may reach, as JSON (tsh ls). */
export const NODES_SUBSYSTEM = 'nodes@jumpgate.dev';

/** The certificate extension that carries a user's roles, comma-separated. */
export const ROLES_EXTENSION = 'roles@jumpgate.dev';

/** The subsystem by which tsh asks the proxy to lock the certificate it authenticated with (tsh logout --revoke). */
export const REVOKE_SUBSYSTEM = 'revoke@jumpgate.dev';
