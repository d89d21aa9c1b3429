/**
 * Behaviour that depends on the operating system, with the platform injected:
 * where TSH_HOME and ~/.ssh/config live, how a browser is opened (macOS,
 * Linux, Windows, and WSL: wslview or cmd.exe), and which file modes tsh
 * enforces, how a single executable loads its native addon. The Windows agent pipe is in test/client/agent.test.ts and the
 * Windows ProxyCommand quoting in test/client/ssh-config.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TshPaths, tshHome } from '../../src/client/paths.js';
import { ProfileStore } from '../../src/client/profile.js';
import { loadAddonAsset } from '../../src/cli/sea.js';
import { browserCommand, browserSystem, cmdEscapeUrl, isWsl, openBrowser, type BrowserSystem } from '../../src/cli/ui.js';
import { REPO, tempDir } from '../helpers/tools.js';

describe('TSH_HOME and the ssh config per OS', () => {
  const cases: Array<{ name: string; platform: NodeJS.Platform; env: Record<string, string>; homedir: string; home: string; sshConfig: string }> = [
    { name: 'Linux: ~/.tsh', platform: 'linux', env: {}, homedir: '/home/al', home: join('/home/al', '.tsh'), sshConfig: join('/home/al', '.ssh', 'config') },
    { name: 'macOS: ~/.tsh', platform: 'darwin', env: {}, homedir: '/Users/al', home: join('/Users/al', '.tsh'), sshConfig: join('/Users/al', '.ssh', 'config') },
    {
      name: 'Windows: %USERPROFILE%\\.tsh, even when the home directory Node reports differs (HOME set by Git Bash or MSYS)',
      platform: 'win32',
      env: { USERPROFILE: 'C:\\Users\\al', HOME: '/c/Users/al' },
      homedir: 'D:\\roaming\\al',
      home: join('C:\\Users\\al', '.tsh'),
      sshConfig: join('C:\\Users\\al', '.ssh', 'config'),
    },
    { name: 'Windows without USERPROFILE: the home directory', platform: 'win32', env: {}, homedir: 'C:\\Users\\al', home: join('C:\\Users\\al', '.tsh'), sshConfig: join('C:\\Users\\al', '.ssh', 'config') },
    { name: 'TSH_HOME wins on Linux', platform: 'linux', env: { TSH_HOME: '/srv/tsh' }, homedir: '/home/al', home: '/srv/tsh', sshConfig: join('/home/al', '.ssh', 'config') },
    { name: 'TSH_HOME wins on Windows', platform: 'win32', env: { TSH_HOME: 'E:\\tsh', USERPROFILE: 'C:\\Users\\al' }, homedir: 'C:\\Users\\al', home: 'E:\\tsh', sshConfig: join('C:\\Users\\al', '.ssh', 'config') },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const penv = { env: c.env, homedir: c.homedir, platform: c.platform };
      assert.equal(tshHome(penv), c.home);
      const paths = new TshPaths(penv);
      assert.equal(paths.home, c.home);
      assert.equal(paths.sshConfig(), c.sshConfig);
      assert.ok(paths.profile('jump.example.org').startsWith(c.home));
    });
  }
});

describe('file modes: 0700 directories where the OS has modes, nothing attempted on Windows', () => {
  test('on Linux and macOS a TSH_HOME left group/world-readable is narrowed to 0700', () => {
    for (const platform of ['linux', 'darwin'] as const) {
      const tmp = tempDir('platform-modes');
      try {
        const home = join(tmp.dir, '.tsh');
        mkdirSync(home, { mode: 0o755 });
        chmodSync(home, 0o755);
        new ProfileStore(new TshPaths({ env: { TSH_HOME: home }, homedir: tmp.dir, platform })).ensureDirs('jump.example.org');
        assert.equal(statSync(home).mode & 0o777, 0o700, platform);
        assert.equal(statSync(join(home, 'keys', 'jump.example.org')).mode & 0o777, 0o700);
      } finally {
        tmp.cleanup();
      }
    }
  });

  test('on Windows (ACLs, no modes) tsh creates the directories but never chmods them', () => {
    const tmp = tempDir('platform-modes');
    try {
      const home = join(tmp.dir, '.tsh');
      mkdirSync(home, { mode: 0o755 });
      chmodSync(home, 0o755);
      new ProfileStore(new TshPaths({ env: { TSH_HOME: home }, homedir: tmp.dir, platform: 'win32' })).ensureDirs('jump.example.org');
      assert.equal(statSync(home).mode & 0o777, 0o755, 'left as it was');
      assert.ok(statSync(join(home, 'keys', 'jump.example.org')).isDirectory());
    } finally {
      tmp.cleanup();
    }
  });
});

/** A system that records what would run instead of running it. */
function fakeSystem(over: Partial<BrowserSystem>): BrowserSystem & { ran: Array<[string, string[]]>; opened: string[] } {
  const ran: Array<[string, string[]]> = [];
  const opened: string[] = [];
  return {
    platform: 'linux',
    env: { PATH: '' },
    osRelease: () => '6.1.0-13-amd64',
    spawn: async (cmd, args) => void ran.push([cmd, args]),
    openDefault: async (url) => void opened.push(url),
    ...over,
    ran,
    opened,
  };
}

describe('opening the browser', () => {
  test('macOS, Linux and Windows use the open package (open, xdg-open, Start-Process)', async () => {
    for (const platform of ['darwin', 'linux', 'win32'] as const) {
      const sys = fakeSystem({ platform });
      await openBrowser('http://127.0.0.1:41234/0123abcd', sys);
      assert.deepEqual(sys.opened, ['http://127.0.0.1:41234/0123abcd'], platform);
      assert.deepEqual(sys.ran, []);
    }
  });

  const wsl: Array<[string, Partial<BrowserSystem>, boolean]> = [
    ['WSL_DISTRO_NAME set', { env: { WSL_DISTRO_NAME: 'Debian' } }, true],
    ['a WSL 2 kernel', { osRelease: () => '5.15.167.4-microsoft-standard-WSL2\n' }, true],
    ['a WSL 1 kernel', { osRelease: () => '4.4.0-19041-Microsoft\n' }, true],
    ['a Debian kernel', { osRelease: () => '6.1.0-13-amd64\n' }, false],
    ['no /proc (a container without it)', { osRelease: () => undefined }, false],
    ['macOS, even with WSL_DISTRO_NAME set', { platform: 'darwin', env: { WSL_DISTRO_NAME: 'x' } }, false],
  ];
  for (const [name, over, expected] of wsl) {
    test(`WSL detection: ${name} → ${expected}`, () => assert.equal(isWsl(fakeSystem(over)), expected));
  }

  test('WSL with wslview on PATH: wslview URL', () => {
    const tmp = tempDir('platform-wslview');
    try {
      const wslview = join(tmp.dir, 'wslview');
      writeFileSync(wslview, '#!/bin/sh\n', { mode: 0o755 });
      const how = browserCommand('https://idp.example/authorize?a=1&b=(2)', fakeSystem({ env: { WSL_DISTRO_NAME: 'Debian', PATH: `/nonexistent:${tmp.dir}` } }));
      assert.deepEqual(how, { cmd: wslview, args: ['https://idp.example/authorize?a=1&b=(2)'] });
    } finally {
      tmp.cleanup();
    }
  });

  test('WSL without wslview: cmd.exe /d /c start "" with cmd\'s special characters escaped (< and > arrive percent-encoded)', () => {
    const how = browserCommand('https://idp.example/authorize?a=1&b=2|3^4<5>(6)', fakeSystem({ env: { WSL_DISTRO_NAME: 'Debian', PATH: '/usr/bin' } }));
    assert.deepEqual(how, { cmd: 'cmd.exe', args: ['/d', '/c', 'start', '', 'https://idp.example/authorize?a=1^&b=2^|3^^4%3C5%3E^(6^)'] });
  });

  const escapes: Array<[string, string]> = [
    ['http://127.0.0.1:41234/0123abcd', 'http://127.0.0.1:41234/0123abcd'],
    ['https://x/?a=1&b=2', 'https://x/?a=1^&b=2'],
    ['https://x/?q=a^b', 'https://x/?q=a^^b'],
    ['https://x/(p)', 'https://x/^(p^)'],
  ];
  for (const [url, escaped] of escapes) {
    test(`cmd escaping: ${url}`, () => assert.equal(cmdEscapeUrl(url), escaped));
  }

  test('spaces and quotes never reach cmd: the URL is normalised (percent-encoded) first', () => {
    const how = browserCommand('https://idp.example/a b?x="y"', fakeSystem({ env: { WSL_DISTRO_NAME: 'Debian' } }));
    assert.ok(how !== 'default');
    assert.equal(how.args.at(-1), 'https://idp.example/a%20b?x=%22y%22');
  });

  test('only http and https URLs are opened', () => {
    for (const url of ['file:///etc/passwd', 'javascript:alert(1)', 'ms-settings:privacy']) {
      assert.throws(() => browserCommand(url, fakeSystem({ env: { WSL_DISTRO_NAME: 'Debian' } })), /refusing to open/);
    }
  });

  test('the real spawn runs wslview from PATH with the URL as its only argument', async () => {
    const tmp = tempDir('platform-wslview-run');
    try {
      const record = join(tmp.dir, 'argv');
      writeFileSync(join(tmp.dir, 'wslview'), `#!/bin/sh\nprintf '%s\\n' "$@" > '${record}.part' && mv '${record}.part' '${record}'\n`, { mode: 0o755 });
      const sys = { ...browserSystem({ env: { PATH: `${tmp.dir}:/usr/bin:/bin`, WSL_DISTRO_NAME: 'Debian' }, platform: 'linux' }), openDefault: async () => assert.fail('not the open package on WSL') };
      await openBrowser('https://idp.example/authorize?a=1&b=2', sys);
      await waitForFile(record);
      assert.equal(readFileSync(record, 'utf8'), 'https://idp.example/authorize?a=1&b=2\n');
    } finally {
      tmp.cleanup();
    }
  });

  test('the real spawn runs cmd.exe with exactly /d /c start "" and the escaped URL when wslview is missing', async () => {
    const tmp = tempDir('platform-cmd-run');
    try {
      const record = join(tmp.dir, 'argv');
      // Stands in for Windows' cmd.exe (WSL puts it on PATH): records the argv it gets.
      writeFileSync(join(tmp.dir, 'cmd.exe'), `#!/bin/sh\nfor a in "$@"; do printf '[%s]' "$a"; done > '${record}.part' && mv '${record}.part' '${record}'\n`, { mode: 0o755 });
      const sys = { ...browserSystem({ env: { PATH: `${tmp.dir}:/usr/bin:/bin` }, platform: 'linux' }), osRelease: () => '5.15.167.4-microsoft-standard-WSL2' };
      await openBrowser('https://idp.example/authorize?a=1&b=2', sys);
      await waitForFile(record);
      assert.equal(readFileSync(record, 'utf8'), '[/d][/c][start][][https://idp.example/authorize?a=1^&b=2]');
    } finally {
      tmp.cleanup();
    }
  });

  test('a browser that cannot be started is an error the login turns into "open the URL yourself"', async () => {
    const sys = { ...browserSystem({ env: { PATH: '/nonexistent', WSL_DISTRO_NAME: 'Debian' }, platform: 'linux' }) };
    await assert.rejects(openBrowser('http://127.0.0.1:1/x', sys), /ENOENT/);
  });
});

async function waitForFile(file: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      if (readFileSync(file, 'utf8').length > 0) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${file} never appeared`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('native addons carried by a single executable (src/cli/sea.ts)', () => {
  /** This machine's keychain addon, the one npm installed for it (@napi-rs/keyring-<platform>). */
  const addonFile = (() => {
    const scope = join(REPO, 'node_modules', '@napi-rs');
    for (const dir of readdirSync(scope).filter((d) => d.startsWith('keyring-'))) {
      const node = readdirSync(join(scope, dir)).find((f) => f.endsWith('.node'));
      if (node) return join(scope, dir, node);
    }
    throw new Error('no @napi-rs/keyring platform package is installed; run npm ci');
  })();

  test('POSIX: the real keychain addon loads from the asset bytes, and its private temp directory is gone at once', () => {
    const tmp = tempDir('platform-addon');
    try {
      const bytes = readFileSync(addonFile);
      let loadedFrom = '';
      let modeWhenLoaded = 0;
      const exports = loadAddonAsset('keyring.node', {
        platform: 'linux',
        tmpdir: tmp.dir,
        getAsset: (name) => (assert.equal(name, 'keyring.node'), bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)),
        dlopen: (module, file) => {
          loadedFrom = file;
          modeWhenLoaded = statSync(join(file, '..')).mode & 0o777;
          process.dlopen(module, file);
        },
      }) as { AsyncEntry?: unknown };
      assert.equal(typeof exports.AsyncEntry, 'function', 'the addon\'s AsyncEntry class');
      assert.match(loadedFrom, new RegExp(`^${tmp.dir}/jumpgate-native-[^/]+/keyring\\.node$`));
      assert.equal(modeWhenLoaded, 0o700, 'loaded from a directory only this user can enter');
      assert.deepEqual(readdirSync(tmp.dir), [], 'nothing left in the temp directory');
    } finally {
      tmp.cleanup();
    }
  });

  test('Windows: one copy per build under %TEMP%, named by its hash, reused, and rewritten when it was changed', () => {
    const tmp = tempDir('platform-addon-win');
    try {
      const bytes = new Uint8Array(Buffer.from('pretend this is a DLL'));
      const opened: string[] = [];
      const env = { platform: 'win32' as const, tmpdir: tmp.dir, getAsset: () => bytes, dlopen: (_m: { exports: unknown }, file: string) => void opened.push(readFileSync(file, 'utf8') + ' @ ' + file) };
      loadAddonAsset('keyring.node', env);
      const file = join(tmp.dir, `jumpgate-native-${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`, 'keyring.node');
      assert.deepEqual(opened, [`pretend this is a DLL @ ${file}`]);
      const first = statSync(file).mtimeMs;
      loadAddonAsset('keyring.node', env);
      assert.equal(statSync(file).mtimeMs, first, 'the second run reuses the file');
      writeFileSync(file, 'something else');
      loadAddonAsset('keyring.node', env);
      assert.equal(opened.at(-1), `pretend this is a DLL @ ${file}`, 'a changed file is replaced before it is loaded');
      assert.deepEqual(readdirSync(join(file, '..')), ['keyring.node'], 'no partial files left');
    } finally {
      tmp.cleanup();
    }
  });

  test('outside a single executable there is no asset to load, and the error says so', () => {
    assert.throws(() => loadAddonAsset('keyring.node'), /carried only by single-executable builds/);
  });
});
