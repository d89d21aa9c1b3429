/**
 * The client's own guards against a hostile proxy, below the end-to-end test
 * (test/e2e/hostile-proxy.test.ts): the ssh_config and known_hosts renderers
 * refuse unsafe values whoever calls them, the scope rule (cluster-scope.ts)
 * decides names against other profiles, and a hand-edited profile is refused
 * when read with an error naming the file and the fix.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../src/errors.js';
import { TshPaths } from '../../src/client/paths.js';
import { ProfileStore, type Profile } from '../../src/client/profile.js';
import { claimClusterScope, droppedNotes, scopeNodeAddrs } from '../../src/client/cluster-scope.js';
import { clusterHostPatterns, nodeHostPatterns, renderSshConfigBlock, type SshConfigBlockInput } from '../../src/client/ssh-config.js';
import { formatHostCaLines, knownHostsPatterns, writeClusterHostCAs } from '../../src/client/known-hosts.js';
import { run as configRun } from '../../src/cli/commands/tsh/config.js';
import { run as logoutRun } from '../../src/cli/commands/tsh/logout.js';
import { generateKeyPair } from '../../src/sshcert/index.js';
import { testDeps } from '../helpers/deps.js';
import { tempDir } from '../helpers/tools.js';

const input: SshConfigBlockInput = {
  profileName: 'jump.example.org',
  clusterName: 'example.org',
  webProxyAddr: 'jump.example.org:3080',
  sshProxyAddr: 'jump.example.org:3023',
  nodeNames: ['node1', 'db-2'],
  nodeAddrs: [],
  keystore: 'keychain',
  tshHome: '/home/al/.tsh',
  knownHostsFile: '/home/al/.tsh/known_hosts',
  identityFile: '/home/al/.tsh/keys/jump.example.org/al',
  certificateFile: '/home/al/.tsh/keys/jump.example.org/al-cert.pub',
  tshCommand: ['/usr/local/bin/tsh'],
  platform: 'linux',
};

const MATCH = 'example.org\nMatch exec "touch /tmp/pwned"';

/** Asserts `fn` throws a UserError with `code` whose message and hint hold no control character. */
function refuses(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, String(err));
    assert.equal(err.code, code, err.message);
    assert.doesNotMatch(`${err.message} ${err.hint ?? ''}`, /[\x00-\x1f]/, 'the refusal is printable');
    return true;
  });
}

describe('the ssh_config renderer refuses unsafe values itself', () => {
  test('the block of a normal profile renders, and every Host pattern is within the cluster', () => {
    const block = renderSshConfigBlock(input);
    assert.match(block, /^Match host node1,db-2,\*\.example\.org,!jump\.example\.org$/m);
    assert.deepEqual(clusterHostPatterns('example.org', ['node1', 'NODE1', 'web.example.org']), ['node1', 'web.example.org', '*.example.org']);
  });

  const cases: [string, Partial<SshConfigBlockInput>][] = [
    ['a node named *', { nodeNames: ['*'] }],
    ['a node named !x', { nodeNames: ['!x'] }],
    ['a node named "a b"', { nodeNames: ['a b'] }],
    ['a node named *.com', { nodeNames: ['*.com'] }],
    ['a node named github.com outside the cluster', { nodeNames: ['github.com'] }],
    ['a node named node? (a pattern)', { nodeNames: ['node?'] }],
    ['a node named -oProxyCommand=x', { nodeNames: ['-oProxyCommand=x'] }],
    ['a node name with a line break', { nodeNames: ['node1\nHost *'] }],
    ['a node that is an IP address', { nodeNames: ['10.0.0.1'] }],
    ['a single-label cluster (com)', { clusterName: 'com' }],
    ['an IP cluster name', { clusterName: '10.0.0.1' }],
    ['a cluster name with a Match exec line', { clusterName: MATCH }],
    ['a profile name with a line break', { profileName: 'jump.example.org\nHost *' }],
    ['a proxy address with a space', { webProxyAddr: 'jump.example.org:3080 x' }],
    ['an SSH proxy outside the profile host and the cluster', { sshProxyAddr: 'github.com:22' }],
    ['an SSH proxy address with a wildcard', { sshProxyAddr: '*:22' }],
    ['an SSH proxy on the cluster name itself (a cluster claiming github.com)', { clusterName: 'github.com', sshProxyAddr: 'github.com:22' }],
  ];
  for (const [what, change] of cases) {
    test(`refuses ${what}`, () => refuses(() => renderSshConfigBlock({ ...input, ...change }), 'SSH_CONFIG_UNSAFE_VALUE'));
  }
});

describe('the known_hosts writer refuses unsafe patterns itself', () => {
  const key = generateKeyPair('ed25519').publicKey;
  test('scoped patterns and the proxy address are written', () => {
    const [line] = formatHostCaLines('example.org', ['node1', 'web.example.org', '*.example.org', '[jump.example.org]:3023'], [key], { proxyHost: 'jump.example.org', nodeNames: ['node1'] });
    assert.match(line!, /^@cert-authority node1,web\.example\.org,\*\.example\.org,\[jump\.example\.org\]:3023 ssh-ed25519 \S+ jumpgate-cluster=example\.org$/);
    formatHostCaLines('example.org', ['[ssh.example.org]:3023'], [key]);
    formatHostCaLines('example.org', ['jump.other.test'], [key], { proxyHost: 'jump.other.test' });
  });
  for (const bad of ['*', '*.com', '*.org', 'github.com', '[github.com]:22', '[example.org]:22', 'example.org', '!node1', 'a b', 'node1\n@cert-authority *', '140.82.112.3', '[140.82.112.3]:22', '2001:db8::1', '[jump.example.org]:0', '']) {
    test(`refuses the pattern ${JSON.stringify(bad)}`, () => refuses(() => formatHostCaLines('example.org', ['node1', bad], [key], { proxyHost: 'jump.example.org', nodeNames: ['node1'] }), 'KNOWN_HOSTS_UNSAFE_VALUE'));
  }
  test('refuses a cluster name that is not one (com, a Match line), and an empty pattern list', () => {
    refuses(() => formatHostCaLines('com', ['*.com'], [key]), 'KNOWN_HOSTS_UNSAFE_VALUE');
    refuses(() => formatHostCaLines(MATCH, ['node1'], [key]), 'KNOWN_HOSTS_UNSAFE_VALUE');
    refuses(() => formatHostCaLines('example.org', [], [key]), 'KNOWN_HOSTS_UNSAFE_VALUE');
  });
  test('the proxy host is allowed only when it is the given proxy host', () => {
    refuses(() => formatHostCaLines('example.org', ['[jump.other.test]:3023'], [key]), 'KNOWN_HOSTS_UNSAFE_VALUE');
    refuses(() => formatHostCaLines('example.org', ['jump.other.test'], [key], { proxyHost: 'jump.example.org' }), 'KNOWN_HOSTS_UNSAFE_VALUE');
  });
  test('with the node names given, a bare pattern must be one of them (an SSH proxy "gateway:22" is not a node)', () => {
    refuses(() => formatHostCaLines('example.org', ['node1', 'gateway'], [key], { proxyHost: 'jump.example.org', nodeNames: ['node1'] }), 'KNOWN_HOSTS_UNSAFE_VALUE');
    formatHostCaLines('example.org', ['NODE1', 'jump'], [key], { proxyHost: 'jump', nodeNames: ['node1'] });
  });
});

function profile(over: Partial<Profile>): Profile {
  return {
    version: 1,
    name: 'jump.a.test',
    webProxyAddr: 'jump.a.test:3080',
    sshProxyAddr: 'jump.a.test:3023',
    clusterName: 'a.test',
    username: 'alice',
    logins: ['alice'],
    roles: ['user'],
    validBefore: '2026-12-01T00:00:00.000Z',
    keystore: 'file',
    insecure: false,
    nodeNames: ['node1', 'web'],
    ...over,
  };
}

describe('claimClusterScope: which names a login may claim', () => {
  const req = { profileName: 'jump.b.test', proxyHost: 'jump.b.test', clusterName: 'b.test', sshProxyAddr: 'jump.b.test:3023', nodeNames: ['node1', 'db', 'github.com', 'x.b.test', '10.0.0.1', 'jump.b.test', 'B.test', 'db'] };

  test('keeps bare names and names under the cluster; drops names outside it, IPs, the proxy, the cluster itself and duplicates', () => {
    const s = claimClusterScope(req, []);
    assert.deepEqual(s.nodeNames, ['node1', 'db', 'x.b.test']);
    assert.deepEqual(s.dropped.map((d) => d.name), ['github.com', '10.0.0.1', 'jump.b.test', 'B.test']);
  });

  test("does not take a bare name another profile routes, and says who keeps it and the long form (ignoring case)", () => {
    const s = claimClusterScope({ ...req, nodeNames: ['NODE1', 'db'] }, [profile({})]);
    assert.deepEqual(s.nodeNames, ['db']);
    assert.equal(s.dropped[0]!.reason, 'the profile jump.a.test already routes it; reach this one as NODE1.b.test');
    assert.match(droppedNotes('b.test', s.dropped)[0]!, /^note: node "NODE1" of b\.test is not added to ~\/\.ssh\/config: the profile jump\.a\.test already routes it/);
  });

  test('the profile being replaced does not count as another profile', () => {
    assert.deepEqual(claimClusterScope({ ...req, nodeNames: ['node1'] }, [profile({ name: 'jump.b.test', clusterName: 'b.test' })]).nodeNames, ['node1']);
  });

  for (const cluster of ['a.test', 'A.TEST', 'x.a.test']) {
    test(`refuses the cluster ${cluster} next to a profile of a.test`, () => refuses(() => claimClusterScope({ ...req, clusterName: cluster }, [profile({})]), 'LOGIN_SCOPE_CONFLICT'));
  }
  test('refuses a cluster that contains another profile\'s cluster (test around x.test)', () => {
    refuses(() => claimClusterScope({ ...req, clusterName: 'b.test' }, [profile({ clusterName: 'y.b.test' })]), 'LOGIN_SCOPE_CONFLICT');
  });
  for (const ssh of ['github.com:22', 'jump.a.test:3023', '10.0.0.9:3023', 'bad', 'b.test:22']) {
    test(`refuses the SSH proxy address ${ssh}`, () => refuses(() => claimClusterScope({ ...req, sshProxyAddr: ssh }, []), 'LOGIN_BAD_ANSWER'));
  }
  test('accepts an SSH proxy inside the cluster', () => {
    assert.ok(claimClusterScope({ ...req, sshProxyAddr: 'ssh.b.test:22' }, []));
  });
  test('refuses a cluster name that is not one', () => {
    for (const c of ['com', '10.0.0.1', MATCH]) refuses(() => claimClusterScope({ ...req, clusterName: c }, []), 'LOGIN_BAD_ANSWER');
  });
});

describe('a profile on disk is parsed with its schema', () => {
  const tmp = tempDir('hostile-profile');
  after(() => tmp.cleanup());

  function home(p: Record<string, unknown>): { deps: ReturnType<typeof testDeps>; file: string; paths: TshPaths } {
    const dir = join(tmp.dir, `h${Math.random().toString(36).slice(2)}`);
    mkdirSync(join(dir, '.tsh', 'profiles'), { recursive: true });
    const deps = testDeps({ env: { TSH_HOME: join(dir, '.tsh') }, homedir: dir });
    const paths = new TshPaths(deps);
    const file = paths.profile('jump.a.test');
    writeFileSync(file, JSON.stringify(p));
    writeFileSync(paths.currentProfile(), 'jump.a.test\n');
    return { deps, file, paths };
  }

  for (const [what, change] of [
    ['a cluster name with a Match exec line', { clusterName: MATCH }],
    ['a node named *', { nodeNames: ['node1', '*'] }],
    ['a user name with a line break', { username: 'al\nice' }],
    ['a proxy address with a space', { sshProxyAddr: 'a b:22' }],
    ['no keystore', { keystore: undefined }],
  ] as [string, Partial<Profile>][]) {
    test(`a hand-edited profile with ${what} is refused, naming the file and tsh logout + tsh login`, () => {
      const { deps, file } = home({ ...profile({}), ...change });
      assert.throws(() => configRun({}, deps), (err: unknown) => {
        assert.ok(err instanceof UserError);
        assert.equal(err.code, 'PROFILE_CORRUPT');
        assert.ok(err.message.startsWith(`${file} is damaged`), err.message);
        assert.doesNotMatch(err.message, /\n/);
        assert.match(err.hint ?? '', /tsh logout --proxy=jump\.a\.test` and then `tsh login --proxy=jump\.a\.test/);
        return true;
      });
      assert.equal(deps.out(), '', 'tsh config printed nothing');
    });
  }

  test('tsh logout removes a damaged profile so tsh login can start clean', async () => {
    const { deps, file, paths } = home({ ...profile({}), clusterName: MATCH });
    await logoutRun({}, deps);
    assert.ok(!existsSync(file));
    assert.match(deps.err(), /Removed the damaged profile jump\.a\.test/);
    assert.equal(new ProfileStore(paths).load(), undefined);
  });

  test('a valid profile still loads; saving a profile without the declared shape is refused', async () => {
    const { paths } = home(profile({}));
    const store = new ProfileStore(paths);
    assert.equal(store.load()?.clusterName, 'a.test');
    await store.locked(async () => refuses(() => store.save(profile({ clusterName: 'com' })), 'PROFILE_INVALID'));
    assert.equal(JSON.parse(readFileSync(paths.profile('jump.a.test'), 'utf8')).clusterName, 'a.test');
  });

  test('writeClusterHostCAs leaves the file untouched when the guard refuses', () => {
    const { paths } = home(profile({}));
    const key = generateKeyPair('ed25519').publicKey;
    writeClusterHostCAs(paths.knownHosts(), { clusterName: 'a.test', patterns: ['*.a.test'], caKeys: [key] });
    const before = readFileSync(paths.knownHosts(), 'utf8');
    refuses(() => writeClusterHostCAs(paths.knownHosts(), { clusterName: 'b.test', patterns: ['*'], caKeys: [key] }), 'KNOWN_HOSTS_UNSAFE_VALUE');
    assert.equal(readFileSync(paths.knownHosts(), 'utf8'), before);
  });
});

describe("this machine's names and other profiles' proxies are never taken (found in review)", () => {
  const req = { profileName: 'jump.b.test', proxyHost: 'jump.b.test', clusterName: 'b.test', sshProxyAddr: 'jump.b.test:3023', nodeNames: ['node1'] };
  const local = ['localhost', 'LOCALHOST.', 'ip6-localhost', 'ip6-loopback', 'localhost.localdomain', 'x.localhost'];
  const localAddrs = ['127.0.0.1:22', '127.0.0.2:22', '[::1]:22', '[0:0:0:0:0:0:0:1]:2222', '[::ffff:127.0.0.1]:22', '[::ffff:7f00:2]:22', '0.0.0.0:22'];

  test('a node named like this machine is dropped, saying why', () => {
    const s = claimClusterScope({ ...req, nodeNames: ['node1', ...local] }, []);
    assert.deepEqual(s.nodeNames, ['node1']);
    for (const d of s.dropped) assert.match(d.reason, /this machine|outside b\.test|not a plain host name/, d.name);
  });

  test('a loopback or unspecified node address is never routed or trusted, in any spelling', () => {
    const s = claimClusterScope(req, []);
    assert.deepEqual(scopeNodeAddrs([...localAddrs, '10.0.0.5:22'], 'b.test', s, []), ['10.0.0.5:22']);
    assert.deepEqual(nodeHostPatterns(['node1'], 'b.test', localAddrs), ['node1', '*.b.test']);
    assert.deepEqual(knownHostsPatterns({ clusterName: 'b.test', nodeNames: ['node1'], sshProxyAddr: 'jump.b.test:3023', nodeAddrs: localAddrs }), ['node1', '*.b.test', '[jump.b.test]:3023']);
  });

  test("the writers refuse this machine's names themselves, except the profile's own proxy", () => {
    const key = generateKeyPair('ed25519').publicKey;
    for (const bad of ['localhost', '127.0.0.2', '::1', '[localhost]:22', '[127.0.0.1]:2222']) {
      refuses(() => formatHostCaLines('b.test', ['node1', bad], [key], { proxyHost: 'jump.b.test', nodeNames: ['node1'] }), 'KNOWN_HOSTS_UNSAFE_VALUE');
    }
    assert.equal(formatHostCaLines('b.test', ['node1', '[localhost]:3023'], [key], { proxyHost: 'localhost', nodeNames: ['node1'] }).length, 1);
    for (const bad of ['localhost', 'ip6-localhost']) refuses(() => clusterHostPatterns('b.test', ['node1', bad]), 'SSH_CONFIG_UNSAFE_VALUE');
  });

  test("another profile's proxy host is not routed as a node or an address, and no cluster name may cover it", () => {
    const a = profile({ name: 'bastion.corp.com', webProxyAddr: 'bastion.corp.com:443', sshProxyAddr: '10.0.0.9:3023', clusterName: 'a.test', nodeNames: [] });
    const s = claimClusterScope({ ...req, nodeNames: ['node1', 'bastion.corp.com'] }, [a]);
    assert.deepEqual(s.nodeNames, ['node1']);
    assert.match(s.dropped[0]!.reason, /proxy of the profile bastion\.corp\.com|outside/);
    const bare = profile({ name: 'localhost', webProxyAddr: 'localhost:3080', sshProxyAddr: 'localhost:3023', clusterName: 'a.test', nodeNames: [] });
    assert.deepEqual(claimClusterScope({ ...req, nodeNames: ['node1', 'localhost'] }, [bare]).nodeNames, ['node1']);
    assert.deepEqual(scopeNodeAddrs(['10.0.0.9:22', '10.0.0.5:22'], 'b.test', s, [a]), ['10.0.0.5:22']);
    refuses(() => claimClusterScope({ ...req, profileName: 'jump.corp.com', proxyHost: 'jump.corp.com', clusterName: 'corp.com', sshProxyAddr: 'jump.corp.com:3023' }, [a]), 'LOGIN_SCOPE_CONFLICT');
  });
});
