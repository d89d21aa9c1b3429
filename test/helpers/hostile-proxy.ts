/**
 * A hostile Jumpgate proxy for end-to-end tests of tsh: a real HTTPS server
 * on 127.0.0.1 (a self-signed certificate from openssl, so tsh needs
 * --insecure, as on a MITM'd path) that speaks the API: GET /v1/ping and
 * POST /v1/login/start. Its login "completes" at once: the login URL it
 * returns is tsh's own callback with a LoginResult sealed to tsh's key
 * (api/envelope.ts) holding a real user certificate for tsh's key, signed by
 * the hostile host's own CA. Each test rewrites the ping answer and the
 * sealed result as it likes.
 *
 * `driveLogin` runs the built `tsh login --browser=none` and does what the
 * browser would: GET the loopback URL, follow its redirect to the callback.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { get as httpGet } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { seal } from '../../src/api/envelope.js';
import type { LoginResult, PingResponse } from '../../src/api/types.js';
import { CertRequest, encodeCertificateLine, formatPublicKeyLine, generateKeyPair, parsePublicKeyLine, signCertificate } from '../../src/sshcert/index.js';
import { builtProgram, run } from './tools.js';

/** What the hostile proxy answers; each hook gets the honest answer and returns what is sent. */
export interface HostileCraft {
  /** HTTP status of the ping answer (default 200). */
  pingStatus?: number;
  ping?: (honest: PingResponse) => unknown;
  result?: (honest: LoginResult) => unknown;
}

export interface HostileProxy {
  port: number;
  /** The CA key line it puts in host_ca. */
  hostCaLine: string;
  /** Logins started (POST /v1/login/start bodies seen). */
  starts: number;
  craft: HostileCraft;
  close(): Promise<void>;
}

/** A self-signed TLS key and certificate (openssl) in `dir`, for startHostileProxy; made once per suite. */
export async function makeTls(dir: string): Promise<{ key: string; cert: string }> {
  const key = join(dir, 'tls.key');
  const cert = join(dir, 'tls.crt');
  const r = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost']);
  if (r.code !== 0) throw new Error(`openssl: ${r.stderr}`);
  return { key, cert };
}

/** Starts the hostile HTTPS proxy; `clusterName` is its honest-looking default. */
export async function startHostileProxy(
  tls: { key: string; cert: string },
  clusterName = 'example.test',
  nodes: string[] = ['node1'],
  craft: HostileCraft = {},
): Promise<HostileProxy> {
  const { key, cert } = tls;
  const ca = generateKeyPair('ed25519');
  const hostCaLine = formatPublicKeyLine(ca.publicKey, 'hostile host CA');
  const self: HostileProxy = { port: 0, hostCaLine, starts: 0, craft, close: async () => {} };
  const honestPing = (host: string): PingResponse => ({
    cluster_name: clusterName,
    server_version: '0.1.0',
    proxy: { web_public_addr: `${host}:${self.port}`, ssh_public_addr: `${host}:3023` },
    host_ca: [hostCaLine],
    auth: { type: 'oidc', issuer: 'https://idp.example.test' },
  });
  const server: Server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    const host = (req.headers.host ?? '127.0.0.1').replace(/:\d+$/, '');
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/v1/ping') {
      const honest = honestPing(host);
      return send(self.craft.pingStatus ?? 200, self.craft.ping ? self.craft.ping(honest) : honest);
    }
    if (req.method === 'POST' && req.url === '/v1/login/start') {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        self.starts++;
        const body = JSON.parse(text) as { public_key: string; callback_url: string; client_key: string; client_nonce: string };
        const user = parsePublicKeyLine(body.public_key).key;
        const signed = signCertificate(
          new CertRequest({ publicKey: user, type: 'user', keyId: 'alice', principals: ['alice'], ttlSeconds: 3600, extensions: { 'permit-pty': '' } }),
          ca,
          new Date(),
        );
        const requestId = randomBytes(16).toString('base64url');
        const honest: LoginResult = {
          v: 1,
          client_nonce: body.client_nonce,
          certificate: encodeCertificateLine(signed, 'alice'),
          cluster_name: clusterName,
          username: 'alice',
          logins: ['alice'],
          roles: ['user'],
          valid_before: new Date(Number(signed.validBefore) * 1000).toISOString(),
          host_ca: [hostCaLine],
          ssh_public_addr: `${host}:3023`,
          web_public_addr: `${host}:${self.port}`,
          nodes,
        };
        const answer = self.craft.result ? self.craft.result(honest) : honest;
        const sealed = seal(Buffer.from(body.client_key, 'base64url'), Buffer.from(JSON.stringify(answer)), Buffer.from(requestId));
        const back = new URL(body.callback_url);
        back.searchParams.set('request_id', requestId);
        back.searchParams.set('response', sealed);
        send(200, { request_id: requestId, login_url: back.toString(), expires_at: new Date(Date.now() + 600_000).toISOString() });
      });
      return;
    }
    send(404, { error: { code: 'NOT_FOUND', message: 'no' } });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  self.port = (server.address() as AddressInfo).port;
  self.close = () => new Promise((resolve) => server.close(() => resolve()));
  return self;
}

export interface DrivenLogin {
  code: number | null;
  stderr: string;
  /** The page tsh's loopback listener showed the "browser". */
  page: string;
}

/** Runs `tsh login --browser=none --insecure --keystore=file` against `proxy` and plays the browser. */
export async function driveLogin(proxy: string, env: NodeJS.ProcessEnv, args: string[] = []): Promise<DrivenLogin> {
  const child = spawn(process.execPath, [builtProgram('tsh'), 'login', `--proxy=${proxy}`, '--insecure', '--browser=none', '--keystore=file', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  child.stdout.resume();
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const urlSeen = (async () => {
    for (;;) {
      const m = /^(http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32})$/m.exec(stderr);
      if (m) return m[1]!;
      if (child.exitCode !== null) return undefined;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const url = await Promise.race([urlSeen, exited.then(() => undefined)]);
  let page = '';
  if (url) {
    const first = await plainGet(url);
    if (first.location) page = (await plainGet(first.location)).body;
  }
  const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 60_000))]);
  if (code === null && child.exitCode === null) child.kill('SIGKILL');
  return { code, stderr, page };
}

function plainGet(url: string): Promise<{ status: number; location: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet(url, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body }));
    }).on('error', reject);
  });
}
