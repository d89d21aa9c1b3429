/**
 * `tsh login --add-keys-to-agent=auto|yes|no`: which key store goes with it
 * (ssh reads a key from the agent or a file, never from the OS keychain),
 * and the setting remembered in the profile for the next login.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { agentAndKeystore } from '../../src/cli/commands/tsh/login.js';
import { execute } from '../../src/cli/main.js';
import { buildTsh } from '../../src/cli/tsh.js';
import { TshPaths } from '../../src/client/paths.js';
import { ProfileStore, type Profile } from '../../src/client/profile.js';
import { testDeps } from '../helpers/deps.js';
import { tempDir } from '../helpers/tools.js';

describe('agentAndKeystore', () => {
  test('default auto; the flag wins over the remembered value; the remembered value over the default', () => {
    assert.deepEqual(agentAndKeystore(undefined, undefined, 'auto'), { addKeysToAgent: 'auto', keystore: 'auto' });
    assert.deepEqual(agentAndKeystore('yes', 'no', 'keychain'), { addKeysToAgent: 'yes', keystore: 'keychain' });
    assert.equal(agentAndKeystore(undefined, 'yes', 'auto').addKeysToAgent, 'yes');
    assert.equal(agentAndKeystore(undefined, 'maybe' as never, 'auto').addKeysToAgent, 'auto', 'a damaged profile value is ignored');
  });

  test('no + file: the key file is what ssh reads', () => {
    assert.deepEqual(agentAndKeystore('no', undefined, 'file'), { addKeysToAgent: 'no', keystore: 'file' });
  });

  test('no + auto: the file store, with a note saying why', () => {
    const r = agentAndKeystore('no', undefined, 'auto');
    assert.equal(r.keystore, 'file');
    assert.match(r.note ?? '', /0600 file under TSH_HOME, where plain ssh reads it/);
  });

  test('no + keychain is refused (exit 2), naming both flags and the fix; a remembered no says so', () => {
    assert.throws(() => agentAndKeystore('no', undefined, 'keychain'), (err: Error & { code?: string; hint?: string }) => {
      assert.equal(err.code, 'USAGE_AGENT_KEYCHAIN');
      assert.match(err.message, /--add-keys-to-agent=no cannot go with --keystore=keychain: plain ssh reads keys from the agent or a file/);
      assert.match(err.hint ?? '', /--keystore=file/);
      return true;
    });
    assert.throws(() => agentAndKeystore(undefined, 'no', 'keychain'), /remembered from your last login/);
  });
});

describe('tsh login --add-keys-to-agent through argv', () => {
  test('no with --keystore=keychain exits 2 before contacting the proxy', async () => {
    const deps = testDeps({ env: { TSH_HOME: '/nonexistent-tsh-home' } });
    const code = await execute(buildTsh, ['login', '--proxy=127.0.0.1:1', '--add-keys-to-agent=no', '--keystore=keychain'], deps);
    assert.equal(code, 2, deps.err());
    assert.match(deps.err(), /cannot go with --keystore=keychain/);
  });

  test('an unknown value is a usage error listing the choices', async () => {
    const deps = testDeps();
    const code = await execute(buildTsh, ['login', '--proxy=127.0.0.1:1', '--add-keys-to-agent=maybe'], deps);
    assert.equal(code, 2);
    assert.match(deps.err(), /auto, yes, no/);
  });

  test('a remembered no is used when the flag is absent', async () => {
    const tmp = tempDir('login-agent');
    try {
      const paths = new TshPaths({ env: { TSH_HOME: join(tmp.dir, 'tsh') }, homedir: tmp.dir, platform: 'linux' });
      const store = new ProfileStore(paths);
      const profile: Profile = {
        version: 1, name: '127.0.0.1', webProxyAddr: '127.0.0.1:1', sshProxyAddr: '127.0.0.1:2', clusterName: 'c.test', username: 'al',
        logins: ['al'], roles: ['user'], validBefore: new Date(0).toISOString(), keystore: 'file', insecure: false, nodeNames: [], addKeysToAgent: 'no',
      };
      await store.locked(async () => store.save(profile));
      const deps = testDeps({ env: { TSH_HOME: paths.home }, homedir: tmp.dir });
      const code = await execute(buildTsh, ['login', '--proxy=127.0.0.1:1', '--keystore=keychain'], deps);
      assert.equal(code, 2, deps.err());
      assert.match(deps.err(), /--add-keys-to-agent=no \(remembered from your last login; give --add-keys-to-agent=auto to change it\) cannot go with --keystore=keychain/);
    } finally {
      tmp.cleanup();
    }
  });
});
