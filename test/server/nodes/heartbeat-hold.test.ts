/**
 * A held heartbeat over the real HTTPS API (startServer's wiring, real TLS)
 * outlives the server's requestTimeout: Node's request timers stop once a
 * request has arrived, so a long poll is bounded by the heartbeat interval
 * (node-service.ts MAX_HEARTBEAT_HOLD_SECONDS), while a request that is still
 * arriving on any route is cut off with a 408 at the same requestTimeout.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { parseServerConfig } from '../../../src/config/index.js';
import { API } from '../../../src/api/types.js';
import { startServer, type RunningServer } from '../../../src/server/index.js';
import { createToken } from '../../../src/server/nodes/tokens.js';
import { formatPublicKeyLine, generateKeyPair } from '../../../src/sshcert/index.js';
import { rawTls, statusOf, untilClosed } from '../../helpers/web-api.js';
import { tempDir } from '../../helpers/tools.js';

/** Short request limits; heartbeat_ttl 6s holds a heartbeat for 2 s, longer than the 1 s requestTimeout. */
const LIMITS = { headersTimeoutMs: 800, requestTimeoutMs: 1_000, timeoutCheckIntervalMs: 100 };

describe('a held heartbeat and the HTTPS request timeouts', () => {
  const tmp = tempDir('heartbeat-hold');
  let server: RunningServer;
  const agent = new Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });

  const post = (path: string, body: unknown, credential?: string) =>
    new Promise<{ status: number; json: Record<string, unknown>; ms: number }>((resolve, reject) => {
      const data = Buffer.from(JSON.stringify(body));
      const t0 = performance.now();
      const req = request(
        { agent, host: '127.0.0.1', port: server.webPort, method: 'POST', path, headers: { 'content-type': 'application/json', 'content-length': data.length, ...(credential ? { authorization: `Bearer ${credential}` } : {}) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>, ms: performance.now() - t0 }));
        },
      );
      req.on('error', reject);
      req.end(data);
    });

  before(async () => {
    const yaml = ['cluster_name: hold.test', `data_dir: ${join(tmp.dir, 'data')}`, 'proxy:', '  web_listen_addr: 127.0.0.1:0', '  ssh_listen_addr: 127.0.0.1:0', 'node_agent: { heartbeat_ttl: 6s }', ''].join('\n');
    const file = join(tmp.dir, 'jumpgate.yaml');
    writeFileSync(file, yaml);
    server = await startServer(parseServerConfig(yaml, file), {
      clock: () => new Date(),
      log: { info: () => {}, warn: () => {}, debug: () => {} },
      env: {},
      startSshProxy: async () => ({ port: 0, close: async () => {} }),
      webLimits: LIMITS,
    });
  });
  after(async () => {
    agent.destroy();
    await server.close();
    tmp.cleanup();
  });

  test('a heartbeat is held past the requestTimeout and answered 200 at its interval; a body still arriving is cut off with a 408', async () => {
    const { token } = await createToken({ ttlSeconds: 600, labels: {}, reusable: false }, { items: server.rt.store.items, audit: server.rt.audit, clock: () => new Date() });
    const joined = await post(API.nodeJoin, { token, name: 'held1', addr: '127.0.0.1:2222', labels: {}, public_key: formatPublicKeyLine(generateKeyPair('ed25519').publicKey) });
    assert.equal(joined.status, 200, JSON.stringify(joined.json));
    assert.equal(joined.json['heartbeat_interval_seconds'], 2);
    const slow = (async () => {
      const s = await rawTls(server.webPort);
      const closed = untilClosed(s);
      s.write(`POST ${API.nodeHeartbeat} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n`);
      const timer = setInterval(() => s.writable && s.write(' '), 100);
      const { text } = await closed;
      clearInterval(timer);
      return statusOf(text);
    })();
    const hb = await post(API.nodeHeartbeat, { name: 'held1', addr: '127.0.0.1:2222', labels: {}, state: joined.json['state'] }, joined.json['credential'] as string);
    assert.equal(hb.status, 200, JSON.stringify(hb.json));
    assert.equal(hb.json['user_ca'], undefined, 'answered at the interval, not for a change');
    assert.ok(hb.ms > LIMITS.requestTimeoutMs, `held ${hb.ms.toFixed(0)} ms, past the ${LIMITS.requestTimeoutMs} ms requestTimeout`);
    assert.equal(await slow, 408, 'a heartbeat body trickling in still gets the request timeout');
  });
});
