/**
 * Which agent entries belong to a tsh profile, and removing them, against a
 * real OpenSSH ssh-agent (ssh-add -L as the independent reader) and a
 * scripted agent that cannot remove certificates. The whole logout and
 * relogin, with real logins and ssh through the proxy, is
 * test/e2e/agent-logout.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../src/client/agent.js';
import { agentComment, belongsToProfile, isProfileComment, MAX_RECORDED_KEYS, profileKeys, readRecordedKeys, recordKey, removeProfileEntries } from '../../src/client/agent-entries.js';
import { TshPaths } from '../../src/client/paths.js';
import { encodeCertificateLine, formatPublicKeyLine } from '../../src/sshcert/index.js';
import { startSshAgent, type SshAgent } from '../helpers/ssh-agent.js';
import { startRefusingAgent } from '../helpers/refusing-agent.js';
import { requireTool, run, tempDir } from '../helpers/tools.js';
import { certify, keyPair } from '../sshconn/fixtures.js';

const tmp = tempDir('agent-entries');
const ca = keyPair('ed25519', 'entries-ca');
let agent: SshAgent;
let client: AgentClient;

before(async () => {
  requireTool('ssh-add', 'apt-get install -y openssh-client');
  agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
  client = await AgentClient.connect({ env: { SSH_AUTH_SOCK: agent.sock }, platform: 'linux' });
});
after(async () => {
  client?.close();
  await agent?.stop();
  tmp.cleanup();
});

function login(role: string) {
  const kp = keyPair('ed25519', role);
  return { kp, cert: certify(ca, kp.publicKey, { type: 'user', principals: ['root'] }) };
}

async function listed(): Promise<string> {
  return (await run('ssh-add', ['-L'], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SSH_AUTH_SOCK: agent.sock } })).stdout;
}

describe('the profile marker in agent comments', () => {
  test('names the profile whole: similar names, other profiles and foreign comments do not match', () => {
    const c = agentComment('jump.example.org', 'alice', 'example');
    assert.equal(c, 'jumpgate:jump.example.org alice@example');
    assert.ok(isProfileComment(c, 'jump.example.org'));
    for (const other of ['example.org', 'jump.example.or', 'jump.example.org.evil', 'jump']) assert.ok(!isProfileComment(c, other), other);
    assert.ok(isProfileComment('jumpgate alice@jump.example.org', 'jump.example.org'), 'the comment of earlier tsh versions');
    assert.ok(!isProfileComment('jumpgate alice@xjump.example.org', 'jump.example.org'));
    assert.ok(!isProfileComment('jumpgate alice@jump.example.org.evil', 'jump.example.org'));
    assert.ok(!isProfileComment('/home/a/.ssh/id_ed25519', 'jump.example.org'));
  });

  test('user and cluster text from the server cannot break the marker or reach the terminal raw', () => {
    const c = agentComment('p', 'a b\u001b[2J', 'c\nd');
    assert.ok(c.startsWith('jumpgate:p '));
    assert.doesNotMatch(c, /[\u0000-\u001f]/);
    assert.equal(c.split(' ').length, 2);
  });
});

describe('the recorded keys of a profile', () => {
  test('are kept newest last, at most MAX_RECORDED_KEYS, and damaged lines are skipped', () => {
    const paths = new TshPaths({ env: { TSH_HOME: join(tmp.dir, 'rec') }, homedir: tmp.dir, platform: 'linux' });
    mkdirSync(paths.keysDir('p'), { recursive: true });
    const keys = Array.from({ length: MAX_RECORDED_KEYS + 3 }, (_, i) => keyPair('ed25519', `rec${i}`).publicKey.blob);
    for (const k of keys) recordKey(paths, 'p', k);
    assert.deepEqual(readRecordedKeys(paths, 'p'), keys.slice(-MAX_RECORDED_KEYS));
    writeFileSync(paths.agentKeys('p'), `garbage\n${keys[0]!.toString('base64')}\n!!\n`);
    assert.deepEqual(readRecordedKeys(paths, 'p'), [keys[0]]);
    assert.deepEqual(readRecordedKeys(paths, 'missing'), []);
  });

  test('profileKeys adds the keys of the public key and certificate files', () => {
    const paths = new TshPaths({ env: { TSH_HOME: join(tmp.dir, 'files') }, homedir: tmp.dir, platform: 'linux' });
    mkdirSync(paths.keysDir('p'), { recursive: true });
    const a = login('files-a');
    const b = login('files-b');
    writeFileSync(paths.publicKey('p', 'alice'), formatPublicKeyLine(a.kp.publicKey, 'alice') + '\n');
    writeFileSync(paths.certificate('p', 'bob'), encodeCertificateLine(b.cert, 'bob') + '\n');
    const keys = profileKeys(paths, 'p', ['alice', 'bob', 'nobody']);
    assert.deepEqual(keys, [a.kp.publicKey.blob, b.kp.publicKey.blob]);
  });
});

describe('removeProfileEntries against OpenSSH ssh-agent', () => {
  test("two logins, a stray plain key and a copy under a foreign comment all go; the other profile's and unrelated entries stay", async () => {
    const first = login('p-first');
    const second = login('p-second');
    const legacy = login('p-legacy');
    const other = login('other-profile');
    const mine = login('unrelated');
    await client.addCertificate({ privateKey: first.kp.privateKey, certBlob: first.cert.blob, comment: agentComment('jump', 'alice', 'c1'), lifetimeSeconds: 600 });
    await client.addCertificate({ privateKey: second.kp.privateKey, certBlob: second.cert.blob, comment: agentComment('jump', 'alice', 'c1'), lifetimeSeconds: 600 });
    await client.addKey(second.kp.privateKey, '/home/alice/.tsh/keys/jump/alice', 600); // ssh-add of the key file: a plain key, foreign comment
    await client.addCertificate({ privateKey: legacy.kp.privateKey, certBlob: legacy.cert.blob, comment: 'jumpgate alice@jump', lifetimeSeconds: 600 });
    await client.addCertificate({ privateKey: other.kp.privateKey, certBlob: other.cert.blob, comment: agentComment('jump2', 'alice', 'c2'), lifetimeSeconds: 600 });
    await client.addCertificate({ privateKey: mine.kp.privateKey, certBlob: mine.cert.blob, comment: 'my own key', lifetimeSeconds: 600 });

    const r = await removeProfileEntries(client, { profile: 'jump', keys: [second.kp.publicKey.blob] });
    assert.equal(r.removed, 4);
    assert.deepEqual(r.left, []);
    assert.equal(r.warning, undefined);
    const text = await listed();
    for (const gone of [first.cert.blob, second.cert.blob, second.kp.publicKey.blob, legacy.cert.blob]) assert.ok(!text.includes(gone.toString('base64')), text);
    assert.ok(text.includes(other.cert.blob.toString('base64')), "the other profile's certificate stays");
    assert.ok(text.includes(mine.cert.blob.toString('base64')), 'an unrelated identity stays');
    await client.remove(other.cert.blob);
    await client.remove(mine.cert.blob);
  });

  test("a relogin keeps its own new entry and removes the earlier login's", async () => {
    const old = login('relogin-old');
    const now = login('relogin-new');
    for (const l of [old, now]) await client.addCertificate({ privateKey: l.kp.privateKey, certBlob: l.cert.blob, comment: agentComment('jump', 'alice', 'c'), lifetimeSeconds: 600 });
    const r = await removeProfileEntries(client, { profile: 'jump', keys: [old.kp.publicKey.blob, now.kp.publicKey.blob] }, [now.cert.blob, now.kp.publicKey.blob]);
    assert.equal(r.removed, 1);
    const ids = await client.list();
    assert.ok(ids.some((id) => id.blob.equals(now.cert.blob)));
    assert.ok(!ids.some((id) => id.blob.equals(old.cert.blob)));
    assert.ok(belongsToProfile(ids.find((id) => id.blob.equals(now.cert.blob))!, { profile: 'jump', keys: [] }));
    await client.remove(now.cert.blob);
  });
});

describe('an agent that cannot remove certificates', () => {
  test('the removal is retried with the plain key; what stays is reported with the agent and the fix', async () => {
    const l = login('stuck');
    const held = [
      { blob: l.cert.blob, comment: agentComment('jump', 'alice', 'c') },
      { blob: l.kp.publicKey.blob, comment: agentComment('jump', 'alice', 'c') },
    ];
    const stuck = await startRefusingAgent(join(tmp.dir, 'keyring', 'ssh'), held);
    const removals = stuck.removals;
    const fake = await AgentClient.connect({ env: { SSH_AUTH_SOCK: stuck.sock }, platform: 'linux' });
    try {
      const r = await removeProfileEntries(fake, { profile: 'jump', keys: [] });
      assert.equal(r.left.length, 1);
      assert.ok(r.left[0]!.blob.equals(l.cert.blob));
      assert.ok(removals.some((b) => b.equals(l.kp.publicKey.blob)), 'the plain key was tried after the certificate was refused');
      assert.match(r.warning ?? '', /^gnome-keyring's SSH agent \(.*keyring\/ssh\) did not remove 1 of this profile's entries \("jumpgate:jump alice@c"\)/);
      assert.match(r.warning ?? '', /ssh-add -D/);
    } finally {
      fake.close();
      await stuck.stop();
    }
  });
});
