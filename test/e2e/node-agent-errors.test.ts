import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { builtProgram, requireTool, run, runProgram, tempDir } from '../helpers/tools.js';

describe('jumpgate node start: a proxy it cannot use is named with the fix', () => {
  const tmp = tempDir('node-agent-errors');
  let server: Server;
  let port: number;

  before(async () => {
    builtProgram('jumpgate');
    const openssl = requireTool('openssl', 'apt-get install -y openssl');
    const key = join(tmp.dir, 'key.pem');
    const cert = join(tmp.dir, 'cert.pem');
    const made = await run(openssl, ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-days', '1', '-keyout', key, '-out', cert]);
    assert.equal(made.code, 0, made.stderr);
    server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => res.end('{}'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise((r) => server?.close(r));
    tmp.cleanup();
  });

  test('a self-signed proxy certificate: the hint says --insecure (development) or NODE_EXTRA_CA_CERTS, not "this looks like a bug"', async () => {
    const r = await runProgram('jumpgate', ['node', 'start', '--token=not-a-real-token-0123456789', `--proxy=localhost:${port}`, '--name=web1', '--addr=127.0.0.1:22', `--data-dir=${join(tmp.dir, 'data')}`], { timeoutMs: 20_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot reach the proxy at localhost:\d+: self-signed certificate/);
    assert.match(r.stderr, /hint: .*--insecure.*NODE_EXTRA_CA_CERTS/);
    assert.doesNotMatch(r.stderr, /looks like a bug/);
  });
});
