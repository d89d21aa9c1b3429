/**
 * Dialling a node's sshd from the proxy (both the plain relay in
 * ssh-proxy.ts and the recording proxy in recording-proxy.ts).
 */
import { connect as netConnect, type NetConnectOpts, type Socket } from 'node:net';
import type { NodeConfig } from '../../config/index.js';

/** How long dialling a node may take. */
export const NODE_DIAL_TIMEOUT_MS = 10_000;
/**
 * Stream buffers on the relay. Node's default (16 KiB) makes the relay stall
 * between SSH window adjustments; 1 MiB was measured to lift a 1 GiB transfer
 * from ~150 to ~190-250 MB/s (FACTS.md). It is a ceiling, not an allocation:
 * a stream holds only what is queued, so an idle session costs nothing for it
 * (npm run load: 1,000 idle sessions, same RSS with 16 KiB and with 1 MiB).
 */
export const RELAY_BUFFER_BYTES = 1 << 20;

/**
 * Opens TCP to a node's sshd. Directly, never through HTTPS_PROXY: nodes sit
 * on the proxy's own network (that is what a bastion is for), the inventory
 * addresses are internal, and a corporate HTTP proxy in the server's
 * environment is meant for its calls out (the IdP), not for them.
 */
export function dialNode(node: NodeConfig): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // highWaterMark is passed through to the stream (Node >= 18); @types/node omits it from the connect options.
    const sock = netConnect({ host: node.addr.host, port: node.addr.port, noDelay: true, highWaterMark: RELAY_BUFFER_BYTES } as NetConnectOpts);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer within ${NODE_DIAL_TIMEOUT_MS / 1000} s`));
    }, NODE_DIAL_TIMEOUT_MS);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(err.code === 'ECONNREFUSED' ? 'connection refused' : err.code === 'EHOSTUNREACH' ? 'host unreachable' : err.message));
    });
  });
}

