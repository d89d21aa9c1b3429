/**
 * startServer and the state store: the store is opened before anything
 * listens; a store that cannot be reached stops the start with an error
 * naming it, nothing listens, and the store is closed again.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { parseServerConfig } from '../../src/config/index.js';
import { serverIdOf, startServer } from '../../src/server/index.js';
import { DirBackend } from '../../src/server/storage/dir/index.js';
import { StoreUnavailableError } from '../../src/server/storage/backend.js';
import { freePort } from '../helpers/sshd.js';
import { tempDir } from '../helpers/tools.js';

describe('startServer and the state store', () => {
  test('a store that cannot be reached at start: the error names its location, nothing listens, the store is closed', async () => {
    const { dir, cleanup } = tempDir('start-store');
    try {
      const port = await freePort();
      const config = parseServerConfig(`cluster_name: start.test\ndata_dir: ./data\nproxy:\n  web_listen_addr: 127.0.0.1:${port}\n  ssh_listen_addr: 127.0.0.1:0\n`, `${dir}/jumpgate.yaml`);
      const clock = () => new Date();
      const store = new DirBackend(config.dataDir, { serverId: 't', clock, warn: () => {} });
      store.ca.read = async () => {
        throw new StoreUnavailableError('postgres://jumpgate@db.start.test:5432/jumpgate', 'reading the user CA', new Error('connect ECONNREFUSED'));
      };
      let closed = false;
      const close = store.close.bind(store);
      store.close = async () => {
        closed = true;
        await close();
      };
      let sshStarted = false;
      await assert.rejects(
        startServer(config, {
          clock,
          log: { info: () => {}, warn: () => {}, debug: () => {} },
          env: {},
          store,
          startSshProxy: async () => {
            sshStarted = true;
            return { port: 0, close: async () => {} };
          },
        }),
        (e: unknown) => e instanceof StoreUnavailableError && e.code === 'STORE_UNAVAILABLE' && e.message.includes('postgres://jumpgate@db.start.test:5432/jumpgate'),
      );
      assert.equal(closed, true, 'the store is closed again');
      assert.equal(sshStarted, false, 'the SSH proxy never started');
      const refused = await new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve(false)));
        s.once('error', () => resolve(true));
      });
      assert.equal(refused, true, 'nothing listens on the web port');
    } finally {
      cleanup();
    }
  });

  test('the server id: <hostname>:<web port> when the config names the port, else <hostname>:pid<pid>', () => {
    const cfg = (port: number) => parseServerConfig(`cluster_name: start.test\ndata_dir: /tmp/x\nproxy:\n  web_listen_addr: 127.0.0.1:${port}\n`, '/tmp/jumpgate.yaml');
    assert.equal(serverIdOf(cfg(3080), 42, 'bastion1'), 'bastion1:3080');
    assert.equal(serverIdOf(cfg(0), 42, 'bastion1'), 'bastion1:pid42');
  });
});
