/**
 * The proxy's HTTPS API in-process for tests: startServer (the same wiring as
 * `jumpgate start`) with a real LoginService, a real TLS certificate, the
 * audit log in a temp data directory, a pinned or real clock, and the SSH
 * proxy left out. Plus the two clients the tests need: a plain HTTPS request
 * and a raw TLS socket for byte-level abuse.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { parseServerConfig } from '../../src/config/index.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import type { WebLimits } from '../../src/server/proxy/web.js';

export interface TestWebApi {
  server: RunningServer;
  port: number;
  dataDir: string;
  /** Server log lines (info, warn and debug). */
  logs: string[];
  audit(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

export interface TestWebApiOptions {
  dir: string;
  /** An OIDC issuer (scripts/dev-idp.ts) with client jumpgate / web-test-secret; none = login start answers 501. */
  issuer?: string;
  /** Fixed web port (the IdP's redirect URI names it); default any. */
  port?: number;
  limits?: Partial<WebLimits>;
  loginRate?: { perMinute: number; burst: number };
  clock?: () => Date;
  /** proxy.tls_routing (default: the config's default, on). */
  tlsRouting?: boolean;
  /** proxy.proxy_protocol_from: clients from these addresses must send a PROXY header (rawTlsProxied). */
  proxyProtocolFrom?: string[];
}

export const WEB_TEST_SECRET = 'web-test-secret';

/** Starts the HTTPS API on 127.0.0.1 the way `jumpgate start` does. */
export async function startTestWebApi(o: TestWebApiOptions): Promise<TestWebApi> {
  const yaml = `cluster_name: web.test
data_dir: ./data
proxy:
  web_listen_addr: 127.0.0.1:${o.port ?? 0}
  ssh_listen_addr: 127.0.0.1:0
  ssh_public_addr: localhost:3023
${o.tlsRouting === undefined ? '' : `  tls_routing: ${o.tlsRouting}\n`}${o.proxyProtocolFrom ? `  proxy_protocol_from: [${o.proxyProtocolFrom.join(', ')}]\n` : ''}${o.issuer ? `auth:
  oidc:
    issuer: ${o.issuer}
    client_id: jumpgate
    client_secret: ${WEB_TEST_SECRET}
    claims_to_roles: [{ claim: email_verified, value: true, roles: [user] }]
` : ''}roles:
  user: { logins: ["{{username}}"], node_labels: { "*": "*" } }
`;
  const file = join(o.dir, 'jumpgate.yaml');
  writeFileSync(file, yaml);
  const config = parseServerConfig(yaml, file);
  const logs: string[] = [];
  const line = (level: string) => (l: string) => logs.push(`${level} ${l}`);
  const server = await startServer(config, {
    clock: o.clock ?? (() => new Date()),
    log: { info: line('INFO'), warn: line('WARN'), debug: line('DEBUG') },
    env: {},
    startSshProxy: async () => ({ port: 0, close: async () => {} }),
    ...(o.limits ? { webLimits: o.limits } : {}),
    ...(o.loginRate ? { loginRate: o.loginRate } : {}),
  });
  return {
    server,
    port: server.webPort,
    dataDir: config.dataDir,
    logs,
    audit: () =>
      readFileSync(join(config.dataDir, 'audit.log'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    close: () => server.close(),
  };
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTPS request on its own connection (the test server's certificate is self-signed). */
export function request(port: number, opts: { method?: string; path?: string; headers?: Record<string, string | number>; body?: string | Buffer } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const ro: RequestOptions = {
      host: '127.0.0.1',
      port,
      method: opts.method ?? 'GET',
      path: opts.path ?? '/v1/ping',
      headers: opts.headers ?? {},
      rejectUnauthorized: false,
      agent: false,
    };
    const req = httpsRequest(ro, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A raw TLS connection to the server, for requests written byte by byte. */
export function rawTls(port: number, extra: ConnectionOptions = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...extra }, () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * A raw TLS connection that first sends `header` (a PROXY protocol header, as
 * a balancer would) on the TCP connection, then starts TLS on it.
 */
export function rawTlsProxied(port: number, header: string | Buffer, extra: ConnectionOptions = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const tcp = netConnect({ host: '127.0.0.1', port }, () => {
      tcp.write(header);
      const s = tlsConnect({ socket: tcp, rejectUnauthorized: false, ...extra }, () => resolve(s));
      s.once('error', reject);
    });
    tcp.once('error', reject);
  });
}

/** Collects what a socket receives until it closes; resolves with the text and when it closed. */
export function untilClosed(s: { on(ev: 'data', f: (b: Buffer) => void): unknown; once(ev: 'close', f: () => void): unknown }): Promise<{ text: string; closedAt: number }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (b: Buffer) => chunks.push(b));
    s.once('close', () => resolve({ text: Buffer.concat(chunks).toString('latin1'), closedAt: performance.now() }));
  });
}

/** The status code of a raw HTTP/1.1 answer, or 0 when there was none. */
export function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.1 (\d{3}) /.exec(raw)?.[1] ?? 0);
}

/** The header block of a raw HTTP/1.1 answer, lower-cased names. */
export function headersOf(raw: string): Record<string, string> {
  const head = raw.split('\r\n\r\n')[0] ?? '';
  const out: Record<string, string> = {};
  for (const l of head.split('\r\n').slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) out[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return out;
}
