import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { AuthError } from '../../src/errors.js';
import { loadCredentials } from '../../src/client/credentials.js';
import { TshPaths } from '../../src/client/paths.js';
import { ProfileStore } from '../../src/client/profile.js';
import { tempDir } from '../helpers/tools.js';

const tmp = tempDir('credentials');
after(() => tmp.cleanup());

test('not logged in: the hint names the web address asked for, port included (the block\'s --proxy=host:port), not the bare profile host', async () => {
  const paths = new TshPaths({ platform: 'linux', homedir: tmp.dir, env: { TSH_HOME: join(tmp.dir, '.tsh') } });
  const store = new ProfileStore(paths);
  await assert.rejects(
    loadCredentials({ store, keystore: async () => ({ load: async () => undefined }), now: new Date(), profile: 'localhost', proxyAddr: 'localhost:13080' }),
    (err: unknown) => {
      assert.ok(err instanceof AuthError);
      assert.equal(err.code, 'NOT_LOGGED_IN');
      assert.match(err.hint ?? '', /tsh login --proxy=localhost:13080`/);
      return true;
    },
  );
  // Without the address only the profile host is known: still a command that names it.
  await assert.rejects(loadCredentials({ store, keystore: async () => ({ load: async () => undefined }), now: new Date(), profile: 'localhost' }), (err: unknown) => {
    assert.match((err as AuthError).hint ?? '', /tsh login --proxy=localhost/);
    return true;
  });
});
