/**
 * What answers at an address when TLS failed there: an SSH server (it speaks
 * first, `SSH-2.0-…`, RFC 4253 §4.2), a plain HTTP server (it answers a
 * request with `HTTP/1.x`), or something else. For messages such as "this is
 * the SSH port"; one short connection through the same route as the request
 * (HTTPS_PROXY/NO_PROXY), bounded by a deadline.
 */
import type { Socket } from 'node:net';
import { dial } from './connect.js';
import type { Env } from './proxy-env.js';

export type ProbedService = 'ssh' | 'http' | 'unknown';

/** Connects to target, reads what it says first (or its answer to a HEAD request); never throws. */
export async function probeService(target: { host: string; port: number }, opts: { env: Env; timeoutMs?: number }): Promise<ProbedService> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  let sock: Socket;
  try {
    sock = await dial(target, { env: opts.env, timeoutMs, scheme: 'ssh' });
  } catch {
    return 'unknown';
  }
  return new Promise((resolve) => {
    let got = '';
    let asked = false;
    const done = (what: ProbedService): void => {
      clearTimeout(deadline);
      clearTimeout(ask);
      sock.destroy();
      resolve(what);
    };
    const deadline = setTimeout(() => done('unknown'), timeoutMs);
    // An SSH server speaks first; give it a moment, then ask as HTTP would.
    const ask = setTimeout(() => {
      asked = true;
      sock.write(`HEAD / HTTP/1.0\r\nHost: ${target.host}\r\n\r\n`);
    }, 500);
    sock.on('data', (b: Buffer) => {
      got += b.toString('latin1');
      if (got.startsWith('SSH-')) return done('ssh');
      if (/^HTTP\/\d/.test(got)) return done('http');
      if (got.length >= 8 || (asked && got.length >= 5)) done('unknown');
    });
    sock.on('error', () => done('unknown'));
    sock.on('close', () => done('unknown'));
  });
}
