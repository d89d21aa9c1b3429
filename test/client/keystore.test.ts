/**
 * The key stores: the 0600 file store, `auto` falling back when there is no
 * usable Secret Service (none at all, a bus socket that is missing, a bus that
 * accepts and never answers), and a real Secret Service (gnome-keyring in a
 * private D-Bus session, checked with libsecret's `secret-tool`).
 */
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import {
  checkSessionBus,
  FileStore,
  openKeyStore,
  openProfileKeyStore,
  probeKeychain,
  sessionBusSockets,
  type KeyringModule,
} from '../../src/client/keystore.js';
import { TshPaths } from '../../src/client/paths.js';
import { UserError } from '../../src/errors.js';
import { tempDir } from '../helpers/tools.js';
import { lastJsonLine, runInKeyringSession } from './keyring-session.js';

const tmp = tempDir('keystore');
after(() => tmp.cleanup());

let n = 0;
/** A fresh TSH_HOME under a fake home directory, with the given environment. */
function pathsWith(env: Record<string, string | undefined> = {}): TshPaths {
  const home = join(tmp.dir, `home${n++}`);
  return new TshPaths({ env, homedir: home, platform: 'linux' });
}

/** A loader that fails the test if anything loads the native addon. */
const forbiddenLoader = async (): Promise<KeyringModule> => {
  throw new Error('the keychain addon must not be loaded here');
};

describe('file store', () => {
  test('keeps the key in TSH_HOME/keys/<profile>/<user>, 0600, in 0700 directories, and removes it', async () => {
    const paths = pathsWith();
    const store = await openKeyStore('file', { paths, notice: () => assert.fail('no notice expected'), loadKeyring: forbiddenLoader });
    assert.equal(store.kind, 'file');
    assert.equal(await store.load('jump.example.test', 'alice'), undefined);
    await store.save('jump.example.test', 'alice', 'PEM-1\n');
    const file = paths.privateKey('jump.example.test', 'alice');
    assert.equal(store.where('jump.example.test', 'alice'), file);
    assert.equal(readFileSync(file, 'utf8'), 'PEM-1\n');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(paths.keysDir('jump.example.test')).mode & 0o777, 0o700);
    assert.equal(statSync(paths.home).mode & 0o777, 0o700);

    await store.save('jump.example.test', 'alice', 'PEM-2\n');
    assert.equal(await store.load('jump.example.test', 'alice'), 'PEM-2\n');
    assert.deepEqual(readdirSync(paths.keysDir('jump.example.test')), ['alice'], 'no temp files left behind');

    await store.remove('jump.example.test', 'alice');
    assert.equal(await store.load('jump.example.test', 'alice'), undefined);
    await store.remove('jump.example.test', 'alice');
  });

  test("a profile saved with the file store reopens without loading the keychain addon", async () => {
    const paths = pathsWith();
    const store = await openProfileKeyStore('file', { paths, loadKeyring: forbiddenLoader });
    assert.equal(store.kind, 'file');
  });

  test('refuses profile and user names that would escape TSH_HOME', async () => {
    const store = new FileStore(pathsWith());
    await assert.rejects(store.save('..', 'alice', 'x'));
    await assert.rejects(store.save('p', '../../etc/x', 'x'));
  });
});

describe('without a usable Secret Service', () => {
  const saved = process.env['DBUS_SESSION_BUS_ADDRESS'];
  afterEach(() => {
    if (saved === undefined) delete process.env['DBUS_SESSION_BUS_ADDRESS'];
    else process.env['DBUS_SESSION_BUS_ADDRESS'] = saved;
  });

  test('auto falls back to the file store with one notice when the bus socket does not exist', async () => {
    // The addon reads the real environment: point it at nothing, as on a headless server.
    const bus = `unix:path=${join(tmp.dir, 'no-such-bus')}`;
    process.env['DBUS_SESSION_BUS_ADDRESS'] = bus;
    const paths = pathsWith({ DBUS_SESSION_BUS_ADDRESS: bus });
    const notices: string[] = [];
    const t0 = Date.now();
    const store = await openKeyStore('auto', { paths, notice: (l) => notices.push(l), debug: true });
    assert.ok(Date.now() - t0 < 10_000, 'the probe is bounded');
    assert.equal(store.kind, 'file');
    assert.equal(notices.length, 1, notices.join('\n'));
    assert.match(notices[0]!, /^no OS keychain available \(no D-Bus session bus at .*no-such-bus \(ENOENT\)\); keeping the private key in ~\/\.tsh\/keys\/… \(0600\)$/);
  });

  test('without --debug the fallback notice is one plain line with no D-Bus or addon error text', async () => {
    for (const env of [{ DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(tmp.dir, 'no-such-bus')}` }, {}]) {
      if (env.DBUS_SESSION_BUS_ADDRESS) process.env['DBUS_SESSION_BUS_ADDRESS'] = env.DBUS_SESSION_BUS_ADDRESS;
      else delete process.env['DBUS_SESSION_BUS_ADDRESS'];
      const notices: string[] = [];
      const store = await openKeyStore('auto', { paths: pathsWith(env), notice: (l) => notices.push(l) });
      assert.equal(store.kind, 'file');
      assert.deepEqual(notices, ['no OS keychain available (no Secret Service); keeping the private key in ~/.tsh/keys/… (0600); --debug says why']);
    }
  });

  test('auto falls back when the addon itself finds no Secret Service (no bus address at all)', async () => {
    delete process.env['DBUS_SESSION_BUS_ADDRESS'];
    const notices: string[] = [];
    const store = await openKeyStore('auto', { paths: pathsWith({}), notice: (l) => notices.push(l), debug: true });
    assert.equal(store.kind, 'file');
    assert.equal(notices.length, 1);
    // What @napi-rs/keyring says here (headless Linux without D-Bus): see FACTS.md.
    assert.match(notices[0]!, /^no OS keychain available \(.*(AccessDenied|DBus).*\); keeping/);
  });

  test('keychain mode is KEYCHAIN_UNAVAILABLE with the reason and a way out', async () => {
    const bus = `unix:path=${join(tmp.dir, 'no-such-bus')}`;
    await assert.rejects(
      openKeyStore('keychain', { paths: pathsWith({ DBUS_SESSION_BUS_ADDRESS: bus }), notice: () => assert.fail('no notice') }),
      (e: unknown) => {
        assert.ok(e instanceof UserError);
        assert.equal(e.code, 'KEYCHAIN_UNAVAILABLE');
        assert.match(e.message, /Secret Service.*no D-Bus session bus/);
        assert.match(e.hint ?? '', /--keystore=file/);
        return true;
      },
    );
  });

  test('a bus that accepts and never answers cannot hang the probe', async () => {
    const sock = join(tmp.dir, 'hung-bus');
    const conns: Socket[] = [];
    const server = createServer((c) => conns.push(c));
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const bus = `unix:path=${sock},guid=0123456789abcdef`;
      process.env['DBUS_SESSION_BUS_ADDRESS'] = bus;
      const notices: string[] = [];
      const t0 = Date.now();
      const store = await openKeyStore('auto', { paths: pathsWith({ DBUS_SESSION_BUS_ADDRESS: bus }), notice: (l) => notices.push(l), probeTimeoutMs: 400, debug: true });
      const took = Date.now() - t0;
      assert.equal(store.kind, 'file');
      assert.ok(took >= 350 && took < 10_000, `took ${took} ms`);
      assert.match(notices[0]!, /the D-Bus session bus at .*hung-bus did not answer within \d+ ms/);
      assert.ok(conns.length >= 1, 'the probe did try the bus');
    } finally {
      for (const c of conns) c.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  test('a keychain profile reopened where the bus is gone is KEYCHAIN_UNAVAILABLE on use, within the deadline', async () => {
    const bus = `unix:path=${join(tmp.dir, 'no-such-bus')}`;
    const store = await openProfileKeyStore('keychain', { paths: pathsWith({ DBUS_SESSION_BUS_ADDRESS: bus }) });
    assert.equal(store.kind, 'keychain');
    await assert.rejects(store.load('p', 'alice'), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.code, 'KEYCHAIN_UNAVAILABLE');
      assert.match(e.message, /^cannot read the private key from the Secret Service .* account "p\/alice"\): no D-Bus session bus/);
      return true;
    });
  });

  test('a keychain addon that does not load means no keychain, not a crash', async () => {
    const r = await probeKeychain({
      platform: 'darwin',
      env: {},
      loadKeyring: async () => {
        throw new Error('no prebuilt binary for this platform');
      },
    });
    assert.deepEqual(r, { ok: false, reason: 'the keychain library did not load: no prebuilt binary for this platform' });
  });

  test('D-Bus addresses: unix path and abstract entries in order, others skipped, %-escapes decoded', () => {
    assert.deepEqual(sessionBusSockets('unix:path=/run/user/1000/bus'), ['/run/user/1000/bus']);
    assert.deepEqual(sessionBusSockets('tcp:host=x,port=1;unix:abstract=/tmp/dbus-A,guid=1;unix:path=/a%20b'), ['\0/tmp/dbus-A', '/a b']);
    assert.deepEqual(sessionBusSockets('autolaunch:'), []);
  });

  test('checkSessionBus skips the check when there is no address to check', async () => {
    assert.equal(await checkSessionBus({}, 100), undefined);
  });
});

describe('with gnome-keyring as the Secret Service (private D-Bus session)', () => {
  test('auto picks the keychain; save, load, secret-tool sees it, remove, gone', async () => {
    const r = await runInKeyringSession('test/client/fixtures/keychain-roundtrip.ts', { components: 'secrets' });
    const got = lastJsonLine<Record<string, unknown>>(r);
    assert.equal(got['kind'], 'keychain', JSON.stringify(got));
    assert.deepEqual(got['notices'], []);
    assert.ok((got['probeMs'] as number) < 3_000);
    assert.equal(got['where'], 'the Secret Service (GNOME Keyring, KWallet, KeePassXC) (service "jumpgate", account "jump.example.test/alice")');
    assert.equal(got['loadedEqualsSaved'], true);
    assert.equal(got['sameKey'], true);
    // @napi-rs/keyring stores the account under the Secret Service attribute "username", not "account".
    assert.deepEqual(got['secretToolUsername'], { code: 0, matches: true });
    assert.deepEqual(got['secretToolAccount'], { code: 1, empty: true });
    assert.equal(got['fileWritten'], false, 'the keychain store never writes the key to disk');
    assert.equal(got['afterRemove'], null);
    assert.deepEqual(got['lookupAfterRemove'], { code: 1, empty: true });
    assert.equal(got['strictKind'], 'keychain');
    assert.equal(got['strictBack'], 'x');
    assert.equal(got['leftovers'], '', 'the probe entry and the test entries are all gone');
  });
});
