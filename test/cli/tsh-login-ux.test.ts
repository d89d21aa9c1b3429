/**
 * The pure parts of tsh login's and tsh status's messages: the clock, the
 * agent warning per keystore, --bind-addr, and the DNS failure (a real DNS
 * lookup would leave loopback; the other --proxy failures are end to end in
 * test/e2e/tsh-ux.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentWarning, clockWarning, parseBindAddr } from '../../src/cli/commands/tsh/login.js';
import { certValidity, DEFAULT_CLOCK_LEEWAY_SECONDS } from '../../src/client/credentials.js';
import { diagnoseProxyError } from '../../src/client/proxy-diagnose.js';
import { NetError } from '../../src/net/errors.js';
import { UsageError, UserError } from '../../src/errors.js';

const T = new Date('2026-11-30T12:00:00Z');
const at = (s: number) => new Date(T.getTime() + s * 1000);
const sec = (d: Date) => BigInt(Math.floor(d.getTime() / 1000));

test('certValidity: valid, expired, and not valid yet only beyond the leeway', () => {
  const cert = (fromS: number, toS: number) => ({ validAfter: sec(at(fromS)), validBefore: sec(at(toS)) });
  assert.deepEqual(certValidity(cert(-60, 3600), T), { state: 'valid', behindSeconds: 0 });
  assert.deepEqual(certValidity(cert(120, 3600), T), { state: 'valid', behindSeconds: 120 }, 'a clock 3 minutes slow: within the default 5m');
  assert.deepEqual(certValidity(cert(540, 3600), T), { state: 'not-yet-valid', from: at(540), behindSeconds: 540 });
  assert.equal(certValidity(cert(540, 3600), T, 600).state, 'valid');
  assert.equal(certValidity(cert(1, 3600), T, 0).state, 'not-yet-valid');
  assert.deepEqual(certValidity(cert(-7200, -3600), T), { state: 'expired', at: at(-3600) });
  assert.equal(certValidity(cert(-7200, 0), T).state, 'expired', 'valid_before is exclusive');
  assert.equal(DEFAULT_CLOCK_LEEWAY_SECONDS, 300);
});

test('clockWarning: silent within the back-dating, names the skew behind or ahead beyond it', () => {
  assert.equal(clockWarning(undefined, T, T, 300), undefined);
  assert.equal(clockWarning(at(30), T, T, 300), undefined);
  assert.equal(clockWarning(at(-30), T, T, 300), undefined);
  assert.match(clockWarning(at(180), T, T, 300)!, /clock is about 3m behind the proxy's \(within TSH_CLOCK_LEEWAY=5m/);
  assert.match(clockWarning(at(600), T, T, 300)!, /clock is about 10m behind .* tsh will refuse it for a while: .*timedatectl/);
  assert.match(clockWarning(at(-600), T, T, 300)!, /clock is about 9m59s ahead of the proxy's: tsh will call the certificate expired that much early/);
});

test('the agent warning is true for each keystore: the file keystore\'s block still makes plain ssh work', () => {
  const paths = { privateKey: () => '/h/.tsh/keys/p/u', certificate: () => '/h/.tsh/keys/p/u-cert.pub' };
  const gpg = { status: 'dropped' as const, agentName: "GnuPG's gpg-agent" };
  const file = agentWarning(gpg, { keystore: 'file', name: 'p', username: 'u' }, paths, true);
  assert.match(file, /^note: GnuPG's gpg-agent accepted the certificate but does not list it .*; plain ssh still works: the Jumpgate block in ~\/\.ssh\/config names the key and certificate files/);
  assert.doesNotMatch(file, /cannot/);
  const keychain = agentWarning(gpg, { keystore: 'keychain', name: 'p', username: 'u' }, paths, true);
  assert.match(keychain, /^warning: .*so plain ssh cannot use it\. To fix: start one with `eval "\$\(ssh-agent\)"` and log in again/);
  assert.doesNotMatch(keychain, /IdentityFile/);
  const noBlock = agentWarning({ status: 'refused', agentName: 'X' }, { keystore: 'file', name: 'p', username: 'u' }, paths, false);
  assert.match(noBlock, /^warning: X refused the certificate, so plain ssh cannot use it\..*IdentityFile \/h\/\.tsh\/keys\/p\/u/);
});

test('--bind-addr: loopback host:port only, as given', () => {
  assert.deepEqual(parseBindAddr('127.0.0.1:8765'), { host: '127.0.0.1', port: 8765 });
  assert.deepEqual(parseBindAddr('localhost:8765'), { host: 'localhost', port: 8765 });
  assert.deepEqual(parseBindAddr('[::1]:8765'), { host: '::1', port: 8765 });
  for (const bad of ['0.0.0.0:8765', '[::]:8765', '10.0.0.1:8765', 'myhost:8765', '127.0.0.1', ':8765', '127.0.0.1:0x']) {
    assert.throws(() => parseBindAddr(bad), (e: unknown) => e instanceof UsageError && e.code === 'USAGE_BAD_BIND_ADDR' && /^--bind-addr: /.test(e.message), bad);
  }
  assert.throws(() => parseBindAddr('0.0.0.0:8765'), (e: unknown) => /not a loopback address/.test((e as Error).message) && /ssh -L 8765:127\.0\.0\.1:8765/.test((e as UserError).hint ?? ''));
});

test('an unknown proxy host name is named with the fix, not as a raw getaddrinfo error', async () => {
  const cause = Object.assign(new Error('getaddrinfo ENOTFOUND jump.exmaple.com'), { code: 'ENOTFOUND' });
  // What net/connect.ts directFailed throws for a failed lookup.
  const raw = new NetError('NET_UNREACHABLE', 'cannot connect to jump.exmaple.com:3080: host name not found (connected directly: no proxy configured)', { cause });
  const d = { proxy: { host: 'jump.exmaple.com', port: 3080, addr: 'jump.exmaple.com:3080' }, env: {}, login: { webProxyAddr: 'jump.exmaple.com:3080' }, program: 'tsh' };
  const e = (await diagnoseProxyError(raw, d)) as NetError;
  assert.equal(e.code, 'NET_UNREACHABLE');
  assert.equal(e.message, 'the host name jump.exmaple.com is not known (DNS lookup failed)');
  assert.match(e.hint ?? '', /spelling of --proxy/);
  const other = new Error('something else');
  assert.equal(await diagnoseProxyError(other, d), other, 'anything else passes through');
});

test('--proxy at the SSH port: the hint names the web address a profile of that host already has, else the default port', async () => {
  const { createServer } = await import('node:net');
  const server = createServer((s) => s.end('SSH-2.0-OpenSSH_9.2p1\r\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as { port: number }).port;
    const addr = `127.0.0.1:${port}`;
    const base = { proxy: { host: '127.0.0.1', port, addr }, env: {}, login: { webProxyAddr: addr, insecure: true }, program: 'tsh' };
    const tls = () => new NetError('NET_TLS_FAILED', `TLS to ${addr} failed: wrong version number`);
    const known = (await diagnoseProxyError(tls(), { ...base, knownWebAddr: '127.0.0.1:13080' })) as UserError;
    assert.equal(known.code, 'PROXY_IS_SSH_PORT');
    assert.match(known.hint ?? '', /your profile for 127\.0\.0\.1 uses the web address 127\.0\.0\.1:13080: `tsh login --proxy=127\.0\.0\.1:13080 --insecure`/);
    const guess = (await diagnoseProxyError(tls(), base)) as UserError;
    assert.match(guess.hint ?? '', /usually port 3080: `tsh login --proxy=127\.0\.0\.1:3080 --insecure`/);
  } finally {
    server.close();
  }
});
