import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSshArgs } from '../../src/cli/commands/tsh/ssh.js';
import { parseProxyTarget } from '../../src/cli/commands/tsh/proxy-ssh.js';
import { parseForwardSpec, signalExitCode } from '../../src/client/ssh-session.js';

describe('tsh ssh arguments are parsed the way ssh(1) parses them', () => {
  test('options end at the destination; the rest is the remote command, untouched', () => {
    const o = parseSshArgs(['-p', '2222', '-l', 'al', 'node1', 'ls', '-l', '/tmp'])!;
    assert.equal(o.port, 2222);
    assert.equal(o.login, 'al');
    assert.equal(o.destination, 'node1');
    assert.deepEqual(o.command, ['ls', '-l', '/tmp']);
  });
  test('clustered flags and glued values (-tA, -p2222, -L8080:localhost:80)', () => {
    const o = parseSshArgs(['-tA', '-p2222', '-L8080:localhost:80', '-R', '[::1]:9000:db:5432', 'al@node1'])!;
    assert.equal(o.tty, 'force');
    assert.equal(o.forwardAgent, true);
    assert.equal(o.port, 2222);
    assert.deepEqual(o.localForwards, [{ bindAddress: undefined, bindPort: 8080, host: 'localhost', hostPort: 80 }]);
    assert.deepEqual(o.remoteForwards, [{ bindAddress: '::1', bindPort: 9000, host: 'db', hostPort: 5432 }]);
    assert.equal(o.destination, 'al@node1');
  });
  test('-- ends the options; --proxy and --help are understood', () => {
    assert.deepEqual(parseSshArgs(['--proxy=jump:3080', '-T', '--', '-weird-host', 'cmd'])!, {
      destination: '-weird-host',
      command: ['cmd'],
      port: 0,
      localForwards: [],
      remoteForwards: [],
      forwardAgent: false,
      tty: 'no',
      proxy: 'jump:3080',
    });
    assert.equal(parseSshArgs(['--help']), undefined);
  });
  const bad: Array<[string[], RegExp]> = [
    [[], /needs a destination/],
    [['-p'], /-p needs a value/],
    [['-p', 'http', 'n'], /-p http: not a port number/],
    [['-x', 'n'], /unknown option -x/],
    [['-L', '8080', 'n'], /-L 8080: expected \[bind_address:\]port:host:hostport/],
  ];
  for (const [args, re] of bad) {
    test(`refuses ${JSON.stringify(args)} as a usage error`, () => {
      assert.throws(() => parseSshArgs(args), (e: Error & { code?: string }) => re.test(e.message) && e.constructor.name === 'UsageError');
    });
  }
  test('forward specs with a bind address, * and IPv6 brackets', () => {
    assert.deepEqual(parseForwardSpec('-L', '127.0.0.2:8080:web:80'), { bindAddress: '127.0.0.2', bindPort: 8080, host: 'web', hostPort: 80 });
    assert.deepEqual(parseForwardSpec('-L', '*:8080:web:80'), { bindAddress: '0.0.0.0', bindPort: 8080, host: 'web', hostPort: 80 });
    assert.deepEqual(parseForwardSpec('-L', '8080:[fe80::1]:80'), { bindAddress: undefined, bindPort: 8080, host: 'fe80::1', hostPort: 80 });
    assert.throws(() => parseForwardSpec('-R', '1:2:3:4:5'));
  });
  test('a remote command killed by a signal exits 128+n, like a shell', () => {
    assert.equal(signalExitCode('TERM'), 143);
    assert.equal(signalExitCode('SIGKILL'), 137);
    assert.equal(signalExitCode('NOPE'), 255);
  });
});

describe('tsh proxy ssh target (%r@%h:%p)', () => {
  const cases: Array<[string, unknown]> = [
    ['al@node1:22', { user: 'al', host: 'node1', port: 22 }],
    ['node1', { user: undefined, host: 'node1', port: 0 }],
    ['al@[::1]:2222', { user: 'al', host: '::1', port: 2222 }],
    ['a@b@node1:22', { user: 'a@b', host: 'node1', port: 22 }],
  ];
  for (const [t, want] of cases) test(`${t}`, () => assert.deepEqual(parseProxyTarget(t), want));
  test('refuses what is not [user@]host[:port]', () => {
    assert.throws(() => parseProxyTarget('@node1:22'), /is not \[user@\]host\[:port\]/);
    assert.throws(() => parseProxyTarget('node1:99999'), /is not/);
  });
});
