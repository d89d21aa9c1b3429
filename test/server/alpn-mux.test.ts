/**
 * The web port's ClientHello peek (server/proxy/alpn-mux.ts): real
 * ClientHellos from node:tls (what tsh and Node clients send), cut at every
 * length, and bytes that are not TLS; then peekAlpn on a real socket puts
 * every byte back for the TLS server that follows.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { clientHelloAlpn, peekAlpn } from '../../src/server/proxy/alpn-mux.js';

/** The first bytes a TLS client sends with these ALPN protocols (captured from a real node:tls client). */
async function clientHello(alpn: string[] | undefined): Promise<Buffer> {
  let got: (b: Buffer) => void;
  const first = new Promise<Buffer>((r) => (got = r));
  const server = createServer((s) => s.once('data', (b: Buffer) => { got(b); s.destroy(); }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const c = tlsConnect({ host: '127.0.0.1', port, ...(alpn ? { ALPNProtocols: alpn } : {}), rejectUnauthorized: false });
  c.on('error', () => {});
  const b = await first;
  c.destroy();
  server.close();
  return b;
}

describe('clientHelloAlpn', () => {
  test('reads the offered protocols from a real ClientHello, "more" at every shorter cut', async () => {
    const hello = await clientHello(['jumpgate-ssh/1', 'http/1.1']);
    assert.deepEqual(clientHelloAlpn(hello), ['jumpgate-ssh/1', 'http/1.1']);
    for (let n = 0; n < hello.length; n++) assert.equal(clientHelloAlpn(hello.subarray(0, n)), 'more', `cut at ${n}`);
  });

  test('no ALPN extension gives [], and bytes that are not a ClientHello give undefined', async () => {
    assert.deepEqual(clientHelloAlpn(await clientHello(undefined)), []);
    assert.equal(clientHelloAlpn(Buffer.from('GET / HTTP/1.1\r\n\r\n')), undefined);
    assert.equal(clientHelloAlpn(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')), undefined);
    // A handshake record whose first message is not a ClientHello (2 = ServerHello).
    assert.equal(clientHelloAlpn(Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0])), undefined);
  });

  test('a ClientHello whose ALPN list overruns its extension is malformed, not read past', async () => {
    const hello = Buffer.from(await clientHello(['jumpgate-ssh/1']));
    const at = hello.indexOf(Buffer.from('jumpgate-ssh/1'));
    hello[at - 1] = 200; // the protocol name's length now runs past the list
    assert.equal(clientHelloAlpn(hello), undefined);
  });
});

describe('peekAlpn', () => {
  test('hands over the socket with every byte it read put back', async () => {
    const hello = await clientHello(['jumpgate-ssh/1']);
    let seen: { alpn: string[] | undefined; rest: Buffer } | undefined;
    const done = new Promise<void>((resolve) => {
      const server = createServer((s: Socket) =>
        peekAlpn(s, 2_000, (alpn) => {
          const chunks: Buffer[] = [];
          s.on('data', (b: Buffer) => chunks.push(b));
          s.on('end', () => {
            seen = { alpn, rest: Buffer.concat(chunks) };
            server.close();
            resolve();
          });
        }),
      );
      server.listen(0, '127.0.0.1', () => {
        const c = netConnect((server.address() as { port: number }).port, '127.0.0.1', () => {
          // Split in two writes: the peek must wait for the whole record.
          c.write(hello.subarray(0, 10));
          setTimeout(() => c.end(Buffer.concat([hello.subarray(10), Buffer.from('after')])), 50);
        });
      });
    });
    await done;
    assert.deepEqual(seen!.alpn, ['jumpgate-ssh/1']);
    assert.ok(seen!.rest.equals(Buffer.concat([hello, Buffer.from('after')])));
  });
});
