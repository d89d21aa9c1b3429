import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { builtProgram, requireTool, run, runProgram, tempDir } from '../helpers/tools.js';

describe('jumpgate node start: a proxy it cannot use (or cannot trust) is named with the fix', () => {
  const tmp = tempDir('node-agent-errors');
  let server: Server;
  let port: number;
  let certFile: string;
  let otherCa: string;

  before(async () => {
    builtProgram('jumpgate');
    const openssl = requireTool('openssl', 'apt-get install -y openssl');
    const key = join(tmp.dir, 'key.pem');
    const cert = join(tmp.dir, 'cert.pem');
    const made = await run(openssl, ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-days', '1', '-keyout', key, '-out', cert]);
    assert.equal(made.code, 0, made.stderr);
    certFile = cert;
    otherCa = join(tmp.dir, 'other-ca.pem');
    const other = await run(openssl, ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-subj', '/CN=other-ca', '-days', '1', '-keyout', join(tmp.dir, 'other-key.pem'), '-out', otherCa]);
    assert.equal(other.code, 0, other.stderr);
    server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => res.end('{}'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise((r) => server?.close(r));
    tmp.cleanup();
  });

  test('a self-signed proxy certificate: the hint says --ca-file, NODE_EXTRA_CA_CERTS or --insecure (development), not "this looks like a bug"', async () => {
    const r = await runProgram('jumpgate', ['node', 'start', '--token=not-a-real-token-0123456789', `--proxy=localhost:${port}`, '--name=web1', '--addr=127.0.0.1:22', `--data-dir=${join(tmp.dir, 'data')}`], { timeoutMs: 20_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot reach the proxy at localhost:\d+: self-signed certificate/);
    assert.match(r.stderr, /hint: .*--ca-file=PATH.*NODE_EXTRA_CA_CERTS.*--insecure/);
    assert.doesNotMatch(r.stderr, /looks like a bug/);
  });

  test('--ca-file with a CA that did not sign the proxy\'s certificate: refused, naming the file and the fix', async () => {
    const r = await runProgram('jumpgate', ['node', 'start', '--token=not-a-real-token-0123456789', `--proxy=localhost:${port}`, '--name=web1', '--addr=127.0.0.1:22', `--data-dir=${join(tmp.dir, 'data')}`, `--ca-file=${otherCa}`], { timeoutMs: 20_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot reach the proxy at localhost:\d+: self-signed certificate/);
    assert.ok(r.stderr.includes(`hint: the proxy's HTTPS certificate is not signed by a CA in --ca-file=${otherCa}: point --ca-file at the PEM file of the CA that signed`), r.stderr);
  });

  test('--ca-file with the proxy\'s own certificate: TLS is verified and passes (the fake proxy\'s empty answer is what fails)', async () => {
    const r = await runProgram('jumpgate', ['node', 'start', '--token=not-a-real-token-0123456789', `--proxy=localhost:${port}`, '--name=web1', '--addr=127.0.0.1:22', `--data-dir=${join(tmp.dir, 'data')}`, `--ca-file=${certFile}`], { timeoutMs: 20_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /cannot reach the proxy|certificate/);
    assert.match(r.stderr, /the proxy's answer to \/.* is not valid/);
  });
});
