import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NetError } from '../../src/net/errors.js';
import { displayProxyUrl, resolveProxy, type Env, type ProxyScheme } from '../../src/net/proxy-env.js';

const jump = { host: 'jump.example.org', port: 3023 };

// [env, scheme, expected: display + source of the proxy, or 'direct']
const precedence: [string, Env, ProxyScheme, { display: string; source: string } | 'direct'][] = [
  ['nothing set means direct', {}, 'ssh', 'direct'],
  ['empty values count as unset', { HTTPS_PROXY: '', https_proxy: '  ' }, 'https', 'direct'],
  ['HTTPS_PROXY for HTTPS', { HTTPS_PROXY: 'http://p1:3128' }, 'https', { display: 'http://p1:3128', source: 'HTTPS_PROXY' }],
  ['HTTPS_PROXY for SSH too', { HTTPS_PROXY: 'http://p1:3128' }, 'ssh', { display: 'http://p1:3128', source: 'HTTPS_PROXY' }],
  ['https_proxy when HTTPS_PROXY is unset', { https_proxy: 'http://p2:3128' }, 'ssh', { display: 'http://p2:3128', source: 'https_proxy' }],
  ['HTTPS_PROXY before https_proxy', { https_proxy: 'http://p2:3128', HTTPS_PROXY: 'http://p1:3128' }, 'ssh', { display: 'http://p1:3128', source: 'HTTPS_PROXY' }],
  ['HTTP_PROXY as the fallback for HTTPS', { HTTP_PROXY: 'http://p3:8080' }, 'https', { display: 'http://p3:8080', source: 'HTTP_PROXY' }],
  ['http_proxy as the last fallback for SSH', { http_proxy: 'http://p4:8080' }, 'ssh', { display: 'http://p4:8080', source: 'http_proxy' }],
  ['any HTTPS variable before HTTP_PROXY', { HTTP_PROXY: 'http://p3:8080', https_proxy: 'http://p2:3128' }, 'https', { display: 'http://p2:3128', source: 'https_proxy' }],
  ['plain http uses HTTP_PROXY only', { HTTPS_PROXY: 'http://p1:3128', HTTP_PROXY: 'http://p3:8080' }, 'http', { display: 'http://p3:8080', source: 'HTTP_PROXY' }],
  ['plain http ignores HTTPS_PROXY', { HTTPS_PROXY: 'http://p1:3128' }, 'http', 'direct'],
  ['no scheme means http://', { HTTPS_PROXY: 'proxy.corp:3128' }, 'ssh', { display: 'http://proxy.corp:3128', source: 'HTTPS_PROXY' }],
  ['no port means 80', { HTTPS_PROXY: 'http://proxy.corp' }, 'ssh', { display: 'http://proxy.corp:80', source: 'HTTPS_PROXY' }],
  ['a trailing slash is fine', { HTTPS_PROXY: 'http://proxy.corp:3128/' }, 'ssh', { display: 'http://proxy.corp:3128', source: 'HTTPS_PROXY' }],
  ['upper-case scheme and host', { HTTPS_PROXY: 'HTTP://Proxy.Corp:3128' }, 'ssh', { display: 'http://proxy.corp:3128', source: 'HTTPS_PROXY' }],
  ['an IPv6 proxy', { HTTPS_PROXY: 'http://[fd00::1]:3128' }, 'ssh', { display: 'http://[fd00::1]:3128', source: 'HTTPS_PROXY' }],
  ['the password is masked', { HTTPS_PROXY: 'http://alice:s3cr%40t@proxy:3128' }, 'ssh', { display: 'http://alice:****@proxy:3128', source: 'HTTPS_PROXY' }],
  ['a user without password stays visible', { HTTPS_PROXY: 'http://alice@proxy:3128' }, 'ssh', { display: 'http://alice@proxy:3128', source: 'HTTPS_PROXY' }],
  ['loopback targets are not special', { HTTPS_PROXY: 'http://proxy:3128' }, 'ssh', { display: 'http://proxy:3128', source: 'HTTPS_PROXY' }],
];

for (const [name, env, scheme, expected] of precedence) {
  test(`proxy variables: ${name}`, () => {
    const d = resolveProxy(env, { ...jump, scheme });
    if (expected === 'direct') {
      assert.equal(d.kind, 'direct');
    } else {
      assert.equal(d.kind, 'proxy');
      assert.deepEqual({ display: d.display, source: d.source }, expected);
    }
  });
}

test('the decision carries the host and port to dial and the full URL with credentials', () => {
  const d = resolveProxy({ HTTPS_PROXY: 'http://alice:s3cr%40t@[::1]:3128' }, { ...jump, scheme: 'ssh' });
  assert.equal(d.kind, 'proxy');
  assert.equal(d.host, '::1');
  assert.equal(d.port, 3128);
  assert.equal(decodeURIComponent(d.url.password), 's3cr@t');
  assert.ok(!d.display.includes('s3cr'));
});

test('loopback goes through the proxy unless NO_PROXY says otherwise', () => {
  const env = { HTTPS_PROXY: 'http://proxy:3128' };
  assert.equal(resolveProxy(env, { host: '127.0.0.1', port: 3023, scheme: 'ssh' }).kind, 'proxy');
  assert.equal(resolveProxy(env, { host: 'localhost', port: 3023, scheme: 'ssh' }).kind, 'proxy');
  assert.equal(resolveProxy({ ...env, NO_PROXY: 'localhost,127.0.0.1' }, { host: '127.0.0.1', port: 3023, scheme: 'ssh' }).kind, 'direct');
});

test('NO_PROXY sends a target direct and says which entry bypassed which proxy', () => {
  const d = resolveProxy({ HTTPS_PROXY: 'http://alice:pw@proxy:3128', NO_PROXY: 'other.test, jump.example.org:3023' }, { ...jump, scheme: 'ssh' });
  assert.deepEqual(d, {
    kind: 'direct',
    reason: 'NO_PROXY entry "jump.example.org:3023" matches jump.example.org:3023',
    bypassed: { proxy: 'http://alice:****@proxy:3128', source: 'HTTPS_PROXY', entry: 'jump.example.org:3023' },
    warnings: [],
  });
});

test('NO_PROXY port entries leave the other ports on the proxy', () => {
  const env = { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: 'jump.example.org:3023' };
  assert.equal(resolveProxy(env, { ...jump, scheme: 'ssh' }).kind, 'direct');
  assert.equal(resolveProxy(env, { host: 'jump.example.org', port: 3080, scheme: 'https' }).kind, 'proxy');
});

test('no_proxy is read when NO_PROXY is unset, and NO_PROXY wins when both are', () => {
  const base = { HTTPS_PROXY: 'http://proxy:3128' };
  const lower = resolveProxy({ ...base, no_proxy: '.example.org' }, { ...jump, scheme: 'ssh' });
  assert.equal(lower.kind, 'direct');
  assert.match(lower.kind === 'direct' ? lower.reason : '', /^no_proxy entry/);
  assert.equal(resolveProxy({ ...base, NO_PROXY: 'other.test', no_proxy: '.example.org' }, { ...jump, scheme: 'ssh' }).kind, 'proxy');
});

test('malformed NO_PROXY entries come back as warnings, the rest still applies', () => {
  const d = resolveProxy({ HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: 'host:99999,10.0.0.0/33,.example.org' }, { ...jump, scheme: 'ssh' });
  assert.equal(d.kind, 'direct');
  assert.deepEqual(d.warnings, [
    'ignoring NO_PROXY entry "host:99999": the port must be a number from 1 to 65535',
    'ignoring NO_PROXY entry "10.0.0.0/33": the prefix length must be a number from 0 to 32',
  ]);
});

// [value, code, message fragment, hint fragment]
const bad: [string, string, RegExp, RegExp][] = [
  ['https://alice:pw@proxy:3129', 'NET_PROXY_UNSUPPORTED', /^HTTPS_PROXY names an HTTPS proxy \(https:\/\/alice:\*\*\*\*@proxy:3129\); only http:\/\/ proxies are supported$/, /HTTPS_PROXY=http:\/\/alice:\*\*\*\*@proxy:3129/],
  ['socks5://proxy:1080', 'NET_PROXY_UNSUPPORTED', /SOCKS proxies are not supported/, /HTTPS_PROXY=http:\/\/HOST:PORT/],
  ['socks5h://proxy:1080', 'NET_PROXY_UNSUPPORTED', /SOCKS proxies are not supported/, /http:\/\//],
  ['socks://proxy:1080', 'NET_PROXY_UNSUPPORTED', /SOCKS proxies are not supported/, /http:\/\//],
  ['ftp://proxy:21', 'NET_PROXY_UNSUPPORTED', /unsupported scheme "ftp:"/, /http:\/\//],
  ['http://proxy:99999', 'NET_PROXY_INVALID', /not a valid proxy URL: http:\/\/proxy:99999/, /http:\/\/HOST:PORT/],
  ['http://alice:pw@proxy:99999', 'NET_PROXY_INVALID', /not a valid proxy URL: http:\/\/alice:\*\*\*\*@proxy:99999$/, /USER:PASSWORD/],
  ['http://', 'NET_PROXY_INVALID', /not a valid proxy URL/, /HOST:PORT/],
];
for (const [value, code, message, hint] of bad) {
  test(`HTTPS_PROXY=${value} fails with ${code} and leaks no password`, () => {
    assert.throws(
      () => resolveProxy({ HTTPS_PROXY: value }, { ...jump, scheme: 'ssh' }),
      (err: unknown) => {
        assert.ok(err instanceof NetError);
        assert.equal(err.code, code);
        assert.match(err.message, message);
        assert.match(err.hint ?? '', hint);
        assert.ok(!`${err.message} ${err.hint}`.includes(':pw@'));
        return true;
      },
    );
  });
}

test('an unusable proxy URL does not matter for targets NO_PROXY sends direct', () => {
  const d = resolveProxy({ HTTPS_PROXY: 'socks5://alice:pw@proxy:1080', NO_PROXY: '*' }, { ...jump, scheme: 'ssh' });
  assert.equal(d.kind, 'direct');
  assert.equal(d.kind === 'direct' ? d.bypassed?.proxy : '', 'socks5://alice:****@proxy:1080');
});

test('displayProxyUrl masks a password even without a user name', () => {
  assert.equal(displayProxyUrl(new URL('http://:pw@proxy:3128')), 'http://:****@proxy:3128');
});

test('the direct reason names the variables that were looked at', () => {
  const d = resolveProxy({ HTTPS_PROXY: 'http://p1:3128' }, { ...jump, scheme: 'http' });
  assert.equal(d.kind === 'direct' ? d.reason : '', 'none of HTTP_PROXY, http_proxy is set');
  const s = resolveProxy({}, { ...jump, scheme: 'ssh' });
  assert.equal(s.kind === 'direct' ? s.reason : '', 'none of HTTPS_PROXY, https_proxy, HTTP_PROXY, http_proxy is set');
});
