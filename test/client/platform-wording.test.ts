/**
 * What tsh tells people about keys, agents and files is true on the platform
 * it runs on, with the platform injected: no "0600" or `eval "$(ssh-agent)"`
 * on Windows (no file modes there; the key is protected by the ACL it
 * inherits, the agent is a Windows service), the Credential Manager named
 * when it is the keychain that failed, paths as %USERPROFILE%\... with
 * backslashes. The real Windows build says the same under Wine
 * (test/wine/tsh-exe.test.ts).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient, AgentError, startAgentHint } from '../../src/client/agent.js';
import { fileKeyProtection, FileStore, openKeyStore, openProfileKeyStore, type KeyringModule } from '../../src/client/keystore.js';
import { isUnderUserHome, shownPath, TshPaths, type PathEnv } from '../../src/client/paths.js';
import { agentMissingNote } from '../../src/cli/commands/tsh/login.js';
import { UserError } from '../../src/errors.js';
import { tempDir } from '../helpers/tools.js';

const tmp = tempDir('platform-wording');
after(() => tmp.cleanup());

/** What Wine 8 says when the win-x64 keychain addon loads (it lacks bcryptprimitives.dll). */
const wineLoadFailure = async (): Promise<KeyringModule> => {
  throw new Error('The specified module could not be found.\r\n\\\\?\\C:\\users\\al\\Temp\\jumpgate-native-1\\keyring.node');
};

const windows = (env: Record<string, string> = {}): PathEnv => ({ platform: 'win32', homedir: 'C:\\Users\\al', env: { USERPROFILE: 'C:\\Users\\al', ...env } });

describe('the notice when auto falls back to the file key store', () => {
  test('Windows: names the Credential Manager, %USERPROFILE%\\.tsh\\keys\\…, and the profile ACL instead of a mode', async () => {
    const notices: string[] = [];
    const store = await openKeyStore('auto', { paths: new TshPaths(windows()), notice: (l) => notices.push(l), loadKeyring: wineLoadFailure, debug: true });
    assert.equal(store.kind, 'file');
    assert.equal(notices.length, 1);
    const n = notices[0]!;
    assert.match(n, /^no OS keychain available: the Windows Credential Manager is not usable \(the keychain library did not load: The specified module could not be found\. /);
    assert.ok(
      n.endsWith('; keeping the private key in %USERPROFILE%\\.tsh\\keys\\… (readable by your account, SYSTEM and Administrators: the ACL of your user profile directory)'),
      n,
    );
    assert.doesNotMatch(n, /0600|0700|chmod|~\/|Secret Service|D-Bus/);
    assert.doesNotMatch(n, /[\r\n]/, 'one line, even when the reason had a line break');
  });

  test('Windows: a TSH_HOME outside the profile is said to be protected only by its own ACL, with the fix', async () => {
    const notices: string[] = [];
    await openKeyStore('auto', { paths: new TshPaths(windows({ TSH_HOME: 'D:\\tsh' })), notice: (l) => notices.push(l), loadKeyring: wineLoadFailure });
    assert.ok(notices[0]!.endsWith('keeping the private key in D:\\tsh\\keys\\… (protected only by the ACL of D:\\tsh, which tsh does not change; keep TSH_HOME inside %USERPROFILE%); --debug says why'), notices[0]);
    assert.match(notices[0]!, /^no OS keychain available: the Windows Credential Manager is not usable; keeping/, 'without --debug: no raw addon error');
  });

  test('Windows: the profile is recognised with forward slashes and another case (MSYS, Wine, typed by hand)', () => {
    const paths = new TshPaths(windows({ USERPROFILE: 'C:/Users/Al', TSH_HOME: 'c:\\users\\al\\.tsh' }));
    assert.equal(fileKeyProtection(paths), 'readable by your account, SYSTEM and Administrators: the ACL of your user profile directory');
    assert.equal(paths.shown('c:\\users\\al\\.tsh\\keys'), '%USERPROFILE%\\.tsh\\keys');
  });

  test('macOS: names the Keychain and keeps the mode; Linux: unchanged', async () => {
    const mac: string[] = [];
    await openKeyStore('auto', { paths: new TshPaths({ platform: 'darwin', homedir: '/Users/al', env: {} }), notice: (l) => mac.push(l), loadKeyring: wineLoadFailure, debug: true });
    assert.match(mac[0]!, /^no OS keychain available: the macOS Keychain is not usable \(.*\); keeping the private key in ~\/\.tsh\/keys\/… \(0600\)$/);
    const linux: string[] = [];
    await openKeyStore('auto', { paths: new TshPaths({ platform: 'linux', homedir: '/home/al', env: {} }), notice: (l) => linux.push(l), loadKeyring: wineLoadFailure, debug: true });
    assert.match(linux[0]!, /^no OS keychain available \(the keychain library did not load: .*\); keeping the private key in ~\/\.tsh\/keys\/… \(0600\)$/);
  });
});

describe('errors about the key store', () => {
  test('Windows --keystore=keychain: the Credential Manager and a Windows way out, no D-Bus', async () => {
    await assert.rejects(openKeyStore('keychain', { paths: new TshPaths(windows()), notice: () => assert.fail('no notice'), loadKeyring: wineLoadFailure }), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.code, 'KEYCHAIN_UNAVAILABLE');
      assert.match(e.message, /the Windows Credential Manager: the keychain library did not load/);
      assert.match(e.hint ?? '', /Windows session.*--keystore=file/);
      assert.doesNotMatch(e.hint ?? '', /D-Bus|gnome|Secret Service/);
      return true;
    });
  });

  test('Windows: a Credential Manager call that fails says to use your own Windows session, not to unlock a keychain', async () => {
    const failing: KeyringModule = {
      AsyncEntry: class {
        async setPassword(): Promise<void> {
          throw new Error('Platform secure storage failure: A specified logon session does not exist.');
        }
        async getPassword(): Promise<string | null> {
          throw new Error('Platform secure storage failure: A specified logon session does not exist.');
        }
        async deletePassword(): Promise<boolean> {
          return false;
        }
      },
    };
    const store = await openProfileKeyStore('keychain', { paths: new TshPaths(windows()), loadKeyring: async () => failing });
    await assert.rejects(store.load('p', 'alice'), (e: unknown) => {
      assert.ok(e instanceof UserError && e.code === 'KEYCHAIN_UNAVAILABLE');
      assert.match(e.message, /^cannot read the private key from the Windows Credential Manager \(service "jumpgate", account "p\/alice"\): Platform secure storage failure/);
      assert.match(e.hint ?? '', /your own interactive Windows session.*--keystore=file/);
      assert.doesNotMatch(e.hint ?? '', /unlock|D-Bus/);
      return true;
    });
  });

  test('an unreadable key file: icacls on Windows, owner and permissions elsewhere', async () => {
    for (const [platform, want, not] of [
      ['win32', /icacls ".*alice"/, /permissions/],
      ['linux', /owner and permissions of .*alice/, /icacls/],
    ] as const) {
      const home = join(tmp.dir, `unreadable-${platform}`);
      const paths = new TshPaths({ platform, homedir: home, env: { USERPROFILE: home, TSH_HOME: join(home, '.tsh') } });
      mkdirSync(paths.privateKey('p', 'alice'), { recursive: true }); // a directory where the key should be: EISDIR
      await assert.rejects(new FileStore(paths).load('p', 'alice'), (e: unknown) => {
        assert.ok(e instanceof UserError && e.code === 'KEY_UNREADABLE');
        assert.match(e.hint ?? '', want);
        assert.doesNotMatch(e.hint ?? '', not);
        return true;
      });
    }
  });
});

describe('agent hints', () => {
  test('how to start an agent: the OpenSSH service on Windows, ssh-agent in the shell elsewhere', () => {
    assert.match(startAgentHint('win32'), /Get-Service ssh-agent \| Set-Service -StartupType Automatic; Start-Service ssh-agent/);
    assert.doesNotMatch(startAgentHint('win32'), /eval/);
    for (const p of ['linux', 'darwin'] as const) assert.match(startAgentHint(p), /eval "\$\(ssh-agent\)"/);
  });

  test("Windows without SSH_AUTH_SOCK: the agent service's pipe, and when it is not there the way to start the service", async () => {
    await assert.rejects(AgentClient.connect({ env: {}, platform: 'win32', timeoutMs: 2_000 }), (e: unknown) => {
      assert.ok(e instanceof AgentError && e.code === 'AGENT_UNREACHABLE');
      assert.match(e.message, /openssh-ssh-agent/);
      assert.equal(e.hint, `${startAgentHint('win32')} and run the command again`);
      return true;
    });
  });

  test('Windows: SSH_AUTH_SOCK naming a dead agent gets the Windows hint', async () => {
    await assert.rejects(AgentClient.connect({ env: { SSH_AUTH_SOCK: join(tmp.dir, 'dead.sock') }, platform: 'win32', timeoutMs: 2_000 }), (e: unknown) => {
      assert.ok(e instanceof AgentError && e.code === 'AGENT_UNREACHABLE');
      assert.match(e.hint ?? '', /Start-Service ssh-agent/);
      assert.doesNotMatch(e.hint ?? '', /eval/);
      return true;
    });
  });

  test("login's note without an agent: %USERPROFILE%\\.ssh\\config or the agent service on Windows, ~/.ssh/config or ssh-agent elsewhere", () => {
    const err = new AgentError('AGENT_UNREACHABLE', 'cannot reach the SSH agent at \\\\.\\pipe\\openssh-ssh-agent (no such socket)');
    const win = new TshPaths(windows());
    assert.equal(
      agentMissingNote(err, 'file', win),
      'note: the certificate is not in an ssh-agent (cannot reach the SSH agent at \\\\.\\pipe\\openssh-ssh-agent (no such socket)); plain ssh uses the key file named in %USERPROFILE%\\.ssh\\config instead.',
    );
    assert.match(agentMissingNote(err, 'keychain', win), /plain ssh needs an agent: start the OpenSSH agent service .*Start-Service ssh-agent.* and log in again\.$/);
    const linux = new TshPaths({ platform: 'linux', homedir: '/home/al', env: {} });
    assert.match(agentMissingNote(err, 'file', linux), /named in ~\/\.ssh\/config instead\.$/);
    assert.match(agentMissingNote(err, 'keychain', linux), /eval "\$\(ssh-agent\)"/);
  });
});

describe('paths in messages', () => {
  const cases: Array<[PathEnv, string, string, boolean]> = [
    [windows(), 'C:\\Users\\al\\.tsh\\keys', '%USERPROFILE%\\.tsh\\keys', true],
    [windows(), 'C:/Users/al/.ssh/config', '%USERPROFILE%\\.ssh\\config', true],
    [windows(), 'C:\\Users\\alice\\.tsh', 'C:\\Users\\alice\\.tsh', false],
    [windows(), 'D:/tsh/keys', 'D:\\tsh\\keys', false],
    [{ platform: 'linux', homedir: '/home/al', env: { USERPROFILE: 'C:\\x' } }, '/home/al/.tsh/keys', '~/.tsh/keys', true],
    [{ platform: 'linux', homedir: '/home/al', env: {} }, '/home/alice/.tsh', '/home/alice/.tsh', false],
    [{ platform: 'darwin', homedir: '/Users/al/', env: {} }, '/Users/al/.ssh/config', '~/.ssh/config', true],
  ];
  for (const [penv, path, shown, inside] of cases) {
    test(`${penv.platform}: ${path} is shown as ${shown}`, () => {
      assert.equal(shownPath(penv, path), shown);
      assert.equal(isUnderUserHome(penv, path), inside);
    });
  }
});
