/**
 * `tsh logout` in-process (run + testDeps) against a real OpenSSH ssh-agent,
 * for the profiles a login did not leave whole: the profile file gone or
 * damaged, the key files gone, entries added under a foreign comment. The
 * logout after real logins is test/e2e/agent-logout.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run as logout } from '../../src/cli/commands/tsh/logout.js';
import { AgentClient } from '../../src/client/agent.js';
import { agentComment, recordKey } from '../../src/client/agent-entries.js';
import { FileStore } from '../../src/client/keystore.js';
import { TshPaths } from '../../src/client/paths.js';
import { ProfileStore, type Profile } from '../../src/client/profile.js';
import { encodeCertificateLine, encodeOpenSSHPrivateKey, formatPublicKeyLine } from '../../src/sshcert/index.js';
import { testDeps } from '../helpers/deps.js';
import { startSshAgent, type SshAgent } from '../helpers/ssh-agent.js';
import { startRefusingAgent } from '../helpers/refusing-agent.js';
import { UserError } from '../../src/errors.js';
import { tempDir } from '../helpers/tools.js';
import { certify, keyPair } from '../sshconn/fixtures.js';

const tmp = tempDir('logout');
const ca = keyPair('ed25519', 'logout-ca');
let agent: SshAgent;
let client: AgentClient;
let homes = 0;

before(async () => {
  agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
  client = await AgentClient.connect({ env: { SSH_AUTH_SOCK: agent.sock }, platform: 'linux' });
});
after(async () => {
  client?.close();
  await agent?.stop();
  tmp.cleanup();
});

/** What a file-keystore login of `user` to profile `jump` leaves, with its certificate in the agent. */
async function loggedIn(role: string, user = 'alice') {
  const home = join(tmp.dir, `home${++homes}`);
  const deps = testDeps({ env: { TSH_HOME: join(home, '.tsh'), SSH_AUTH_SOCK: agent.sock }, homedir: home });
  const paths = new TshPaths(deps);
  const store = new ProfileStore(paths);
  const kp = keyPair('ed25519', role);
  const cert = certify(ca, kp.publicKey, { type: 'user', principals: [user] });
  const profile: Profile = {
    version: 1, name: 'jump', webProxyAddr: 'jump:3080', sshProxyAddr: 'jump:3023', clusterName: 'c.test', username: user,
    logins: [user], roles: ['user'], validBefore: new Date(Date.now() + 3600_000).toISOString(), keystore: 'file', insecure: false, nodeNames: [],
  };
  await store.locked(async () => {
    store.ensureDirs('jump');
    await new FileStore(paths).save('jump', user, encodeOpenSSHPrivateKey(kp.privateKey, user));
    writeFileSync(paths.publicKey('jump', user), formatPublicKeyLine(kp.publicKey, user) + '\n');
    writeFileSync(paths.certificate('jump', user), encodeCertificateLine(cert, user) + '\n');
    recordKey(paths, 'jump', kp.publicKey.blob);
    store.save(profile);
  });
  await client.addCertificate({ privateKey: kp.privateKey, certBlob: cert.blob, comment: agentComment('jump', user, 'c.test'), lifetimeSeconds: 600 });
  return { deps, paths, kp, cert };
}

const holds = async (blob: Buffer) => (await client.list()).some((id) => id.blob.equals(blob));

describe('tsh logout removes what is left of a profile', () => {
  test('the whole profile: files, key, and the agent entries (also a plain key added under another comment)', async () => {
    const l = await loggedIn('whole');
    await client.addKey(l.kp.privateKey, '/somewhere/else', 600);
    await logout({}, l.deps);
    assert.match(l.deps.err(), /Logged out alice from jump\./);
    assert.equal(await holds(l.cert.blob), false);
    assert.equal(await holds(l.kp.publicKey.blob), false);
    assert.equal(existsSync(l.paths.keysDir('jump')), false);
    assert.equal(existsSync(l.paths.profile('jump')), false);
  });

  test('a damaged profile file: logout still removes the agent entries and the files, and says so', async () => {
    const l = await loggedIn('damaged');
    writeFileSync(l.paths.profile('jump'), '{ not json');
    await logout({ proxy: 'jump' }, l.deps);
    assert.match(l.deps.err(), /note: .*jump\.json is damaged.*removing what is left of it/);
    assert.equal(await holds(l.cert.blob), false);
    assert.equal(existsSync(l.paths.keysDir('jump')), false);
  });

  test('--revoke that cannot reach the proxy removes nothing and says the certificate was NOT revoked', async () => {
    const l = await loggedIn('revoke-unreachable');
    const store = new ProfileStore(l.paths);
    // A port nothing listens on (loopback only: no name lookups).
    await store.locked(async () => store.save({ ...(store.load('jump') as Profile), webProxyAddr: '127.0.0.1:1', sshProxyAddr: '127.0.0.1:1' }));
    await assert.rejects(logout({ revoke: true }, l.deps), (err: UserError) => err.code === 'REVOKE_FAILED' && /NOT revoked and nothing was removed/.test(err.message));
    assert.equal(existsSync(l.paths.profile('jump')), true);
    assert.equal(existsSync(l.paths.certificate('jump', 'alice')), true);
    assert.equal(await holds(l.cert.blob), true);
    await logout({}, l.deps);
  });

  test('the profile file gone: `tsh logout --proxy` finds the entries by the recorded key and the marker', async () => {
    const l = await loggedIn('gone');
    rmSync(l.paths.profile('jump'));
    await logout({ proxy: 'jump:3080' }, l.deps);
    assert.match(l.deps.err(), /Logged out from jump\./);
    assert.equal(await holds(l.cert.blob), false);
  });

  test('the whole TSH_HOME gone: the marker alone finds the entries', async () => {
    const l = await loggedIn('nohome');
    rmSync(l.paths.home, { recursive: true });
    await logout({ proxy: 'jump' }, l.deps);
    assert.equal(await holds(l.cert.blob), false);
    assert.match(l.deps.err(), /Logged out from jump\./);
  });

  test("another profile's entries and files are left alone", async () => {
    const l = await loggedIn('mine');
    const other = keyPair('ed25519', 'other');
    const otherCert = certify(ca, other.publicKey, { type: 'user', principals: ['alice'] });
    await client.addCertificate({ privateKey: other.privateKey, certBlob: otherCert.blob, comment: agentComment('jump.example', 'alice', 'c'), lifetimeSeconds: 600 });
    mkdirSync(l.paths.keysDir('jump.example'), { recursive: true });
    await logout({ proxy: 'jump' }, l.deps);
    assert.equal(await holds(l.cert.blob), false);
    assert.equal(await holds(otherCert.blob), true);
    assert.equal(existsSync(l.paths.keysDir('jump.example')), true);
    await client.remove(otherCert.blob);
  });

  test('nothing to remove: says so', async () => {
    const deps = testDeps({ env: { TSH_HOME: join(tmp.dir, 'empty'), SSH_AUTH_SOCK: agent.sock }, homedir: tmp.dir });
    await logout({ proxy: 'nowhere' }, deps);
    assert.match(deps.err(), /no profile for nowhere; nothing to do/);
    await logout({}, deps);
    assert.match(deps.err(), /not logged in; nothing to do/);
  });

  test('an agent that will not remove the certificate: the files go, and logout fails (exit 1) naming the agent and what stays', async () => {
    const l = await loggedIn('refused');
    await client.remove(l.cert.blob);
    const stuck = await startRefusingAgent(join(tmp.dir, 'stuck', 'agent.sock'), [{ blob: l.cert.blob, comment: agentComment('jump', 'alice', 'c') }]);
    try {
      const deps = testDeps({ env: { ...l.deps.env, SSH_AUTH_SOCK: stuck.sock }, homedir: l.deps.homedir });
      await assert.rejects(logout({}, deps), (e: unknown) => {
        assert.ok(e instanceof UserError);
        assert.equal(e.code, 'AGENT_REMOVE_FAILED');
        assert.match(e.message, /^logged out of jump, but the SSH agent at .*agent\.sock .*did not remove 1 of this profile's entries \("jumpgate:jump alice@c"\).*ssh-add -D/);
        return true;
      });
      assert.equal(existsSync(l.paths.keysDir('jump')), false, 'the files are removed all the same');
      assert.ok(stuck.removals.some((b) => b.equals(l.kp.publicKey.blob)), 'the plain key was tried after the certificate was refused');
    } finally {
      await stuck.stop();
    }
  });
});
