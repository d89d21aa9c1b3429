/**
 * The one choice of path to a node for `tsh proxy ssh`, `tsh ssh` and
 * `tsh ls`: the TLS route on the proxy's web port (TLS routing: one TLS
 * connection, mutual TLS with the login's X.509 certificate, tls-route.ts)
 * when the login recorded that the proxy routes (profile.tlsRouting) and
 * left the certificate; otherwise the SSH port (proxy-conn.ts, ssh2), as
 * before TLS routing. A proxy that no longer routes (the ALPN protocol is
 * not offered back) falls back to the SSH port too.
 *
 * ssh2 is imported only on the SSH path: the TLS path of `tsh proxy ssh`
 * starts without it (bench/startup.ts).
 *
 * Which path the last connection took is kept in `+last-route` (paths.ts)
 * for `tsh status`; `--debug` prints it per connection.
 */
import type { Duplex } from 'node:stream';
import { UserError } from '../errors.js';
import type { Env } from '../net/proxy-env.js';
import { recordRoute, type RoutePath } from './last-route.js';
import type { Credentials } from './credentials.js';
import type { TshPaths } from './paths.js';
import { openTlsRoute, readTlsCertificate } from './tls-route.js';
import type { NodeEntry } from './proxy-conn.js';
import { parseRevokeAnswer, type RevokeAnswer } from './revoke-answer.js';

export type { RoutePath };

/** A stream joined to the node's sshd, the path it took, and how to let go of it. */
export interface NodeStream {
  stream: Duplex;
  path: RoutePath;
  close(): void;
}

export interface NodeRouteOptions {
  creds: Credentials;
  paths: TshPaths;
  env: Env;
  login: string;
  now: () => Date;
  /** Text the proxy writes on the SSH path's channel stderr after the channel opened. */
  stderr: (text: string) => void;
  /** --debug lines; the path taken is always one of them. */
  log?: (line: string) => void;
}

/** Errors of a proxy that does not (or no longer) route SSH over TLS: the SSH port is tried instead. */
const NOT_ROUTING = new Set(['TLS_ROUTE_UNSUPPORTED', 'TLS_ROUTE_NO_ALPN']);

/**
 * Opens a stream to `host`:`port` (0: the node's inventory port) as `login`,
 * through the path the profile allows (top of this file). Resolves once the
 * proxy accepted (TLS) or the node's first bytes came (SSH).
 */
export async function openNodeStream(o: NodeRouteOptions, host: string, port: number): Promise<NodeStream> {
  const tlsCert = readTlsCertificate(o.paths, o.creds);
  if (tlsCert !== undefined) {
    try {
      const sock = await openTlsRoute({ creds: o.creds, tlsCert, env: o.env, ...(o.log ? { log: o.log } : {}) }, { v: 1, op: 'node', host, port, login: o.login });
      o.log?.(`${host}: connected through the TLS route on the web port ${o.creds.profile.webProxyAddr}`);
      recordRoute(o.paths, o.creds, 'tls', host, o.now());
      return { stream: sock, path: 'tls', close: () => sock.destroy() };
    } catch (err) {
      if (!(err instanceof UserError && NOT_ROUTING.has(err.code))) throw err;
      o.log?.(`${err.message}; trying the SSH port ${o.creds.profile.sshProxyAddr}`);
    }
  }
  const { connectProxy, openNodeChannel } = await import('./proxy-conn.js');
  const proxy = await connectProxy({ creds: o.creds, paths: o.paths, env: o.env, login: o.login, now: o.now, ...(o.log ? { log: o.log } : {}) });
  try {
    const ch = await openNodeChannel(proxy, host, port, o.stderr, o.creds.relogin);
    o.log?.(`${host}: connected through the SSH port ${o.creds.profile.sshProxyAddr}`);
    recordRoute(o.paths, o.creds, 'ssh', host, o.now());
    return { stream: ch as unknown as Duplex, path: 'ssh', close: () => proxy.end() };
  } catch (err) {
    proxy.end();
    throw err;
  }
}

/** The nodes the certificate reaches (`tsh ls`), through the same path choice as openNodeStream. */
export async function listNodesVia(o: Omit<NodeRouteOptions, 'stderr'>): Promise<{ nodes: NodeEntry[]; path: RoutePath }> {
  const tlsCert = readTlsCertificate(o.paths, o.creds);
  const { listNodes, connectProxy, parseNodeList } = await import('./proxy-conn.js');
  if (tlsCert !== undefined) {
    try {
      const sock = await openTlsRoute({ creds: o.creds, tlsCert, env: o.env, ...(o.log ? { log: o.log } : {}) }, { v: 1, op: 'ls', login: o.login });
      const answer = await readAnswer(sock, MAX_NODE_LIST_BYTES, () => new UserError('PROXY_BAD_ANSWER', `the proxy's node list is larger than ${MAX_NODE_LIST_BYTES} bytes`));
      o.log?.(`node list through the TLS route on the web port ${o.creds.profile.webProxyAddr}`);
      return { nodes: parseNodeList(answer, ''), path: 'tls' };
    } catch (err) {
      if (!(err instanceof UserError && NOT_ROUTING.has(err.code))) throw err;
      o.log?.(`${err.message}; trying the SSH port ${o.creds.profile.sshProxyAddr}`);
    }
  }
  const proxy = await connectProxy({ creds: o.creds, paths: o.paths, env: o.env, login: o.login, now: o.now, ...(o.log ? { log: o.log } : {}) });
  try {
    const nodes = await listNodes(proxy);
    o.log?.(`node list through the SSH port ${o.creds.profile.sshProxyAddr}`);
    return { nodes, path: 'ssh' };
  } finally {
    proxy.end();
  }
}

/**
 * Reads what the TLS route sends after its accepted line until the proxy
 * closes, as UTF-8; rejects with `tooLong()` past `max` bytes. Always
 * destroys the socket.
 */
function readAnswer(sock: Duplex, max: number, tooLong: () => Error): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  return new Promise<string>((resolve, reject) => {
    sock.on('data', (b: Buffer) => {
      size += b.length;
      if (size > max) return reject(tooLong());
      chunks.push(b);
    });
    const done = () => resolve(Buffer.concat(chunks).toString('utf8'));
    sock.once('end', done);
    sock.once('close', done);
    sock.once('error', reject);
    sock.resume();
  }).finally(() => sock.destroy());
}

/** The largest node list tsh reads (10,000 nodes with labels). */
export const MAX_NODE_LIST_BYTES = 16 * 1024 * 1024;

/**
 * `tsh logout --revoke`: locks the profile's certificate through the same
 * path choice as openNodeStream (the TLS route's op `revoke` behind a proxy
 * that allows 443 only, else the SSH port's revoke@jumpgate.dev subsystem).
 * @throws UserError REVOKE_FAILED (the proxy refused; nothing was locked), AuthError, NetError
 */
export async function revokeVia(o: Omit<NodeRouteOptions, 'stderr'>): Promise<RevokeAnswer> {
  const tlsCert = readTlsCertificate(o.paths, o.creds);
  if (tlsCert !== undefined) {
    try {
      const sock = await openTlsRoute({ creds: o.creds, tlsCert, env: o.env, ...(o.log ? { log: o.log } : {}) }, { v: 1, op: 'revoke', login: o.login });
      const answer = await readAnswer(sock, 4096, () => new UserError('REVOKE_FAILED', "the proxy's answer to the revocation is longer than 4096 bytes"));
      o.log?.(`revocation through the TLS route on the web port ${o.creds.profile.webProxyAddr}`);
      return parseRevokeAnswer(answer, '');
    } catch (err) {
      if (!(err instanceof UserError && NOT_ROUTING.has(err.code))) throw err;
      o.log?.(`${err.message}; trying the SSH port ${o.creds.profile.sshProxyAddr}`);
    }
  }
  const { connectProxy } = await import('./proxy-conn.js');
  const { revokeOwnCertificate } = await import('./revoke.js');
  const proxy = await connectProxy({ creds: o.creds, paths: o.paths, env: o.env, login: o.login, now: o.now, ...(o.log ? { log: o.log } : {}) });
  try {
    return await revokeOwnCertificate(proxy);
  } finally {
    proxy.end();
  }
}
