import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execute } from '../../src/cli/main.js';
import { buildTctl } from '../../src/cli/tctl.js';
import { VERSION } from '../../src/version.js';
import { parseCertificateLine, parsePublicKeyLine } from '../../src/sshcert/index.js';
import { readClientCertificate } from '../../src/server/auth/x509-ca.js';
import { REPO, tempDir } from '../helpers/tools.js';
import { testDeps } from '../helpers/deps.js';

const T0 = new Date('2026-11-21T08:00:00Z');

function setup() {
  const t = tempDir('tctl');
  const config = join(t.dir, 'jumpgate.yaml');
  writeFileSync(
    config,
    [
      'cluster_name: unit.test',
      'data_dir: ./data',
      'auth:',
      '  cert_ttl: 24h',
      'roles:',
      '  user:',
      '    logins: ["{{username}}", deploy]',
      '    node_labels: { env: "*" }',
      '  short:',
      '    logins: ["{{username}}"]',
      '    max_session_ttl: 1h',
      'nodes:',
      '  - { name: node1, addr: "127.0.0.1:2222", labels: { env: test } }',
      '  - { name: db1, addr: "[::1]:22", labels: { env: prod, role: db } }',
      '',
    ].join('\n'),
  );
  const tctl = async (args: string[]) => {
    const deps = testDeps({ cwd: t.dir, clock: () => T0 });
    const code = await execute(buildTctl, ['--config', config, ...args], deps);
    return { code, out: deps.out(), err: deps.err() };
  };
  return { ...t, config, tctl };
}

describe('tctl', () => {
  test('auth export prints one OpenSSH line for the user CA and an @cert-authority line for the host CA', async () => {
    const s = setup();
    try {
      const user = await s.tctl(['auth', 'export', '--type=user']);
      assert.equal(user.code, 0, user.err);
      const line = user.out.trim();
      assert.equal(line.split('\n').length, 1);
      assert.equal(parsePublicKeyLine(line).key.type, 'ssh-ed25519');
      assert.match(line, / jumpgate user CA unit\.test /);
      const host = await s.tctl(['auth', 'export', '--type=host', '--hosts=*.unit.test,node1']);
      assert.match(host.out, /^@cert-authority \*\.unit\.test,node1 ssh-ed25519 AAAA\S+ jumpgate host CA unit\.test \S+\n$/);
      assert.equal((await s.tctl(['auth', 'export', '--type=user'])).out, user.out, 'the CA is not regenerated');
    } finally {
      s.cleanup();
    }
  });

  test('auth sign --user writes a 0600 key and a certificate with the logins the roles grant', async () => {
    const s = setup();
    try {
      const r = await s.tctl(['auth', 'sign', '--user=alice', '--roles=user', '--format=openssh', '--out=alice']);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, '', 'stdout carries data only');
      assert.match(r.err, /wrote .*alice, .*alice-cert\.pub and .*alice-x509\.pem/);
      assert.equal(statSync(join(s.dir, 'alice')).mode & 0o777, 0o600);
      const { cert } = parseCertificateLine(readFileSync(join(s.dir, 'alice-cert.pub'), 'utf8'));
      assert.equal(cert.type, 'user');
      assert.equal(cert.keyId, 'alice');
      assert.deepEqual(cert.principals, ['alice', 'deploy']);
      assert.equal(Number(cert.validBefore) - T0.getTime() / 1000, 24 * 3600);
      assert.equal(cert.extensions.get('roles@jumpgate.dev'), 'user');
      assert.ok(cert.extensions.has('permit-pty'));
      const audit = readFileSync(join(s.dir, 'data', 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const issued = audit.find((e) => e.event === 'cert.issued');
      assert.equal(issued.user, 'alice');
      assert.equal(issued.serial, cert.serial.toString());
      assert.doesNotMatch(readFileSync(join(s.dir, 'data', 'audit.log'), 'utf8'), /PRIVATE KEY/);
    } finally {
      s.cleanup();
    }
  });

  test('auth sign --user also writes PATH-x509.pem: the X.509 client certificate for the same key, identity and expiry, with the SSH certificate inside', async () => {
    const s = setup();
    try {
      const r = await s.tctl(['auth', 'sign', '--user=alice', '--roles=user', '--out=alice']);
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, /alice-x509\.pem \(X\.509 client certificate, same key\)/);
      assert.equal(statSync(join(s.dir, 'alice-x509.pem')).mode & 0o777, 0o600);
      const pem = readFileSync(join(s.dir, 'alice-x509.pem'), 'utf8');
      const x509 = new X509Certificate(pem);
      const certLine = readFileSync(join(s.dir, 'alice-cert.pub'), 'utf8');
      const { cert } = parseCertificateLine(certLine);
      assert.match(x509.subject, /CN=alice/);
      assert.equal(new Date(x509.validTo).getTime(), Number(cert.validBefore) * 1000, 'the same expiry');
      const inside = readClientCertificate(x509.raw);
      assert.ok(inside.sshCertBlob.equals(cert.blob), 'the SSH certificate is inside');
      assert.ok(inside.spkiDer.equals(cert.key.key.export({ format: 'der', type: 'spki' })), 'the same key as the SSH certificate');
      assert.match(x509.issuer, /O=unit\.test/);
      const host = await s.tctl(['auth', 'sign', '--host=node9', '--out=node9']);
      assert.equal(host.code, 0, host.err);
      assert.throws(() => statSync(join(s.dir, 'node9-x509.pem')), 'no X.509 certificate for a host');
    } finally {
      s.cleanup();
    }
  });

  test("a role's max_session_ttl caps the requested --ttl", async () => {
    const s = setup();
    try {
      const r = await s.tctl(['auth', 'sign', '--user=bob', '--roles=short', '--out=bob', '--ttl=10h']);
      assert.equal(r.code, 0, r.err);
      const { cert } = parseCertificateLine(readFileSync(join(s.dir, 'bob-cert.pub'), 'utf8'));
      assert.equal(Number(cert.validBefore) - T0.getTime() / 1000, 3600);
    } finally {
      s.cleanup();
    }
  });

  test('auth sign --host writes a host certificate for the names, lower-cased, each with its long name.<cluster> form', async () => {
    const s = setup();
    try {
      const r = await s.tctl(['auth', 'sign', '--host=WebServer01,127.0.0.1,db.unit.test', '--format=openssh', '--out=hk']);
      assert.equal(r.code, 0, r.err);
      const { cert } = parseCertificateLine(readFileSync(join(s.dir, 'hk-cert.pub'), 'utf8'));
      assert.equal(cert.type, 'host');
      assert.deepEqual(cert.principals, ['webserver01', 'webserver01.unit.test', '127.0.0.1', 'db.unit.test']);
      assert.equal(cert.keyId, 'webserver01');
      assert.match(r.err, /host certificate for webserver01, webserver01\.unit\.test, 127\.0\.0\.1, db\.unit\.test/);
    } finally {
      s.cleanup();
    }
  });

  test('usage errors exit 2 and name the flag', async () => {
    const s = setup();
    try {
      const both = await s.tctl(['auth', 'sign', '--host=a', '--user=b', '--roles=user', '--out=x']);
      assert.equal(both.code, 2);
      assert.match(both.err, /exactly one of --host=NAMES or --user=NAME/);
      const ttl = await s.tctl(['auth', 'sign', '--user=b', '--roles=user', '--out=x', '--ttl=25x']);
      assert.equal(ttl.code, 2);
      assert.match(ttl.err, /--ttl: .*25x/);
      const type = await s.tctl(['auth', 'export', '--type=bogus']);
      assert.equal(type.code, 2);
      assert.match(type.err, /bogus/);
      const noRoles = await s.tctl(['auth', 'sign', '--user=b', '--out=x']);
      assert.equal(noRoles.code, 2);
      const unknownCmd = await s.tctl(['frobnicate']);
      assert.equal(unknownCmd.code, 2);
    } finally {
      s.cleanup();
    }
  });

  test('an unknown role is refused with its name', async () => {
    const s = setup();
    try {
      const r = await s.tctl(['auth', 'sign', '--user=b', '--roles=nosuch', '--out=x']);
      assert.notEqual(r.code, 0);
      assert.match(r.err, /nosuch/);
    } finally {
      s.cleanup();
    }
  });

  test('a missing config file is an error naming the file', async () => {
    const deps = testDeps({ cwd: '/' });
    const code = await execute(buildTctl, ['--config', '/nonexistent/jumpgate.yaml', 'auth', 'export', '--type=user'], deps);
    assert.equal(code, 1);
    assert.match(deps.err(), /\/nonexistent\/jumpgate\.yaml/);
    assert.doesNotMatch(deps.err(), /    at /, 'no stack trace without --debug');
  });

  test('nodes ls lists the inventory as a table and as JSON', async () => {
    const s = setup();
    try {
      const json = await s.tctl(['nodes', 'ls', '--format=json']);
      assert.deepEqual(JSON.parse(json.out), [
        { name: 'node1', addr: '127.0.0.1:2222', labels: { env: 'test' }, source: 'static' },
        { name: 'db1', addr: '[::1]:22', labels: { env: 'prod', role: 'db' }, source: 'static' },
      ]);
      const text = await s.tctl(['nodes', 'ls']);
      assert.match(text.out, /^Node +Address +Source +Last heartbeat +Labels\nnode1 +127\.0\.0\.1:2222 +static +- +env=test\ndb1 +\[::1\]:22 +static +- +env=prod,role=db\n$/);
    } finally {
      s.cleanup();
    }
  });

  test('--help shows examples and exits 0; version matches package.json', async () => {
    const deps = testDeps();
    assert.equal(await execute(buildTctl, ['--help'], deps), 0);
    assert.match(deps.out(), /Examples:\n {2}\$ tctl/);
    const v = testDeps();
    assert.equal(await execute(buildTctl, ['version'], v), 0);
    assert.equal(v.out(), `tctl ${VERSION}\n`);
    assert.equal(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version, VERSION);
  });
});
