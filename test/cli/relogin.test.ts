/**
 * The decisions around an automatic relogin, with the login and the
 * credentials injected (the real ones run end to end in
 * test/e2e/relogin.test.ts): which refusals a login fixes, that --relogin=never
 * and a machine with no browser only print the `tsh login` line, that a
 * login already failed is not started again, that waiters use the winner's
 * result; when tsh may open a browser (canOpenBrowser); the lock a killed
 * holder left; hints naming a TSH_HOME that is not the default.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuthError, UserError } from '../../src/errors.js';
import type { Credentials } from '../../src/client/credentials.js';
import { profileLoginCommand } from '../../src/client/credentials.js';
import { nonDefaultTshHome, TshPaths } from '../../src/client/paths.js';
import { credentialsWithRelogin, FIXED_BY_LOGIN, readReloginResult, RELOGIN_LOCK_WAIT_MS, type ReloginOptions } from '../../src/cli/commands/tsh/relogin.js';
import { LOGIN_WAIT_MS } from '../../src/client/login.js';
import { canOpenBrowser } from '../../src/cli/ui.js';
import { withLockFileAsync } from '../../src/util/lockfile.js';
import { runProgram, tempDir } from '../helpers/tools.js';
import { freePort } from '../helpers/sshd.js';

const CREDS = { relogin: 'tsh login --proxy=jump.example.org:3080' } as unknown as Credentials;
const expired = () => new AuthError('CERT_EXPIRED', 'your certificate for jump.example.org expired at 2026-01-01T00:00:00.000Z', { hint: 'run `tsh login --proxy=jump.example.org:3080 --insecure` to get a new one' });

/** A TSH_HOME in a temp dir, a credentials source that fails until `fixed`, and a counted login. */
function world(over: Partial<ReloginOptions> = {}) {
  const tmp = tempDir('relogin-unit');
  const paths = new TshPaths({ env: { TSH_HOME: tmp.dir }, homedir: tmp.dir, platform: 'linux' });
  const state = { fixed: false, logins: 0, said: [] as string[] };
  const opts: ReloginOptions = {
    mode: 'auto',
    canOpenBrowser: true,
    paths,
    load: async () => {
      if (!state.fixed) throw expired();
      return CREDS;
    },
    login: async () => {
      state.logins++;
      await new Promise((r) => setTimeout(r, 100));
      state.fixed = true;
    },
    now: () => Date.now(),
    say: (l) => state.said.push(l),
    ...over,
  };
  return { tmp, paths, state, opts };
}

describe('credentialsWithRelogin', () => {
  test('valid credentials: no login, no lock', async () => {
    const w = world();
    w.state.fixed = true;
    assert.equal(await credentialsWithRelogin(w.opts), CREDS);
    assert.equal(w.state.logins, 0);
    assert.equal(existsSync(w.paths.reloginLock()), false);
    w.tmp.cleanup();
  });

  test('an expired certificate with auto: one login, then the new credentials', async () => {
    const w = world();
    assert.equal(await credentialsWithRelogin(w.opts), CREDS);
    assert.equal(w.state.logins, 1);
    assert.match(w.state.said.join('\n'), /expired .*; logging in again through the browser \(--relogin=auto\)/);
    assert.equal(readReloginResult(w.paths)?.outcome, 'ok');
    assert.equal(existsSync(w.paths.reloginLock()), false, 'the lock is released');
    w.tmp.cleanup();
  });

  test('--relogin=never, or no browser: the refusal itself (its hint is the tsh login line), no login', async () => {
    for (const over of [{ mode: 'never' as const }, { canOpenBrowser: false }]) {
      const w = world(over);
      await assert.rejects(credentialsWithRelogin(w.opts), (e: unknown) => e instanceof AuthError && e.code === 'CERT_EXPIRED' && /tsh login/.test(e.hint ?? ''));
      assert.equal(w.state.logins, 0);
      w.tmp.cleanup();
    }
  });

  test('refusals a login does not fix pass through without a login (clock behind, roles, unreadable files)', async () => {
    for (const code of ['CERT_NOT_YET_VALID', 'LOGIN_NOT_ALLOWED', 'PROFILE_UNREADABLE', 'KEYCHAIN_UNAVAILABLE']) {
      assert.equal(FIXED_BY_LOGIN.has(code), false, code);
      const w = world({ load: async () => Promise.reject(new AuthError(code, code)) });
      await assert.rejects(credentialsWithRelogin(w.opts), (e: unknown) => (e as UserError).code === code);
      assert.equal(w.state.logins, 0);
      w.tmp.cleanup();
    }
    for (const code of ['NOT_LOGGED_IN', 'CERT_MISSING', 'CERT_EXPIRED', 'KEY_MISSING', 'CERT_KEY_MISMATCH', 'PROFILE_CORRUPT']) assert.ok(FIXED_BY_LOGIN.has(code), code);
  });

  test('three at once: one login; the other two wait and use its result', async () => {
    const w = world();
    const all = await Promise.all([1, 2, 3].map(() => credentialsWithRelogin(w.opts)));
    assert.deepEqual(all, [CREDS, CREDS, CREDS]);
    assert.equal(w.state.logins, 1);
    w.tmp.cleanup();
  });

  test('the login fails: it and every waiter fail with the tsh login line (exit 4), and nobody starts a second login', async () => {
    const w = world();
    w.opts.login = async () => {
      w.state.logins++;
      await new Promise((r) => setTimeout(r, 100));
      throw new AuthError('LOGIN_TIMEOUT', 'no browser login completed within 3 minutes');
    };
    const rs = await Promise.allSettled([1, 2, 3].map(() => credentialsWithRelogin(w.opts)));
    for (const r of rs) {
      assert.equal(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason as AuthError;
      assert.ok(e instanceof AuthError, String(e));
      assert.equal(e.code, 'RELOGIN_FAILED');
      assert.match(e.message, /logging in again failed \(no browser login completed within 3 minutes\)/);
      assert.match(e.hint ?? '', /^run `tsh login --proxy=jump\.example\.org:3080 --insecure`/);
    }
    assert.equal(w.state.logins, 1);
    // The ProxyCommand right after its Match exec's failed login does not open the browser again.
    await assert.rejects(credentialsWithRelogin(w.opts), /logging in again failed/);
    assert.equal(w.state.logins, 1);
    w.tmp.cleanup();
  });

  test('a damaged relogin-result file counts as none', async () => {
    const w = world();
    for (const text of ['{', '[]', '{"outcome":"failed","at":"soon"}', '{"outcome":"maybe","at":1}']) {
      writeFileSync(w.paths.reloginResult(), text);
      assert.equal(readReloginResult(w.paths), undefined, text);
    }
    writeFileSync(w.paths.reloginResult(), JSON.stringify({ outcome: 'failed', at: 1, reason: 'bad\u001b[31m' }));
    assert.equal(readReloginResult(w.paths)?.reason?.includes('\u001b'), false, 'the reason is escaped');
    w.tmp.cleanup();
  });

  test('waiters wait at least as long as a browser login may take', () => {
    assert.ok(RELOGIN_LOCK_WAIT_MS >= LOGIN_WAIT_MS + 30_000);
  });
});

describe('the relogin lock', () => {
  test('a lock whose process is gone (kill -9) is taken over at once, not after the stale time', async () => {
    const tmp = tempDir('relogin-lock');
    try {
      const lock = join(tmp.dir, '.relogin.lock');
      // A process id that ran and is gone.
      const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
      writeFileSync(lock, `${dead}\n`);
      const got = await withLockFileAsync(lock, { what: 'test', waitMs: 2_000, staleMs: 10 * 60_000, sameMachine: true }, async () => 'taken');
      assert.equal(got, 'taken');
      // A live holder is waited for, then LOCKED.
      writeFileSync(lock, `${process.ppid}\n`);
      await assert.rejects(withLockFileAsync(lock, { what: 'test', waitMs: 300, staleMs: 10 * 60_000, sameMachine: true }, async () => 'taken'), (e: unknown) => (e as UserError).code === 'LOCKED');
    } finally {
      tmp.cleanup();
    }
  });
});

describe('canOpenBrowser: the one rule for tsh login and --relogin=auto', () => {
  const cases: Array<[string, NodeJS.Platform, Record<string, string>, boolean, string?]> = [
    ['Linux with BROWSER', 'linux', { BROWSER: 'firefox' }, true],
    ['Linux with DISPLAY', 'linux', { DISPLAY: ':0' }, true],
    ['Linux with WAYLAND_DISPLAY', 'linux', { WAYLAND_DISPLAY: 'wayland-0' }, true],
    ['Linux over SSH with X forwarding', 'linux', { DISPLAY: 'localhost:10.0', SSH_CONNECTION: '10.0.0.1 5000 10.0.0.2 22' }, true],
    ['Linux over SSH, no display', 'linux', { SSH_CONNECTION: '10.0.0.1 5000 10.0.0.2 22' }, false],
    ['Linux console, no display', 'linux', {}, false],
    ['WSL', 'linux', { WSL_DISTRO_NAME: 'Debian' }, true],
    ['WSL by kernel name', 'linux', {}, true, '5.15.167.4-microsoft-standard-WSL2'],
    ['macOS', 'darwin', {}, true],
    ['macOS over SSH', 'darwin', { SSH_CONNECTION: '10.0.0.1 5000 10.0.0.2 22' }, false],
    ['macOS over SSH with BROWSER', 'darwin', { SSH_CONNECTION: '1 2 3 4', BROWSER: 'w3m' }, true],
    ['Windows', 'win32', {}, true],
  ];
  for (const [name, platform, env, want, osRelease] of cases) {
    test(`${name}: ${want ? 'yes' : 'no'}`, () => {
      assert.equal(canOpenBrowser({ platform, env, osRelease: () => osRelease }), want);
    });
  }
});

describe('the tsh login line names a TSH_HOME that is not the default', () => {
  test('default TSH_HOME: no --tsh-home; elsewhere: --tsh-home, quoted for the shell', () => {
    const profile = { webProxyAddr: 'localhost:3080', insecure: true, user: 'al' };
    const def = new TshPaths({ env: {}, homedir: '/home/al', platform: 'linux' });
    assert.equal(nonDefaultTshHome(def.penv), undefined);
    assert.equal(profileLoginCommand(profile, def), 'tsh login --proxy=localhost:3080 --user=al --insecure');
    const same = new TshPaths({ env: { TSH_HOME: '/home/al/.tsh' }, homedir: '/home/al', platform: 'linux' });
    assert.equal(profileLoginCommand(profile, same), 'tsh login --proxy=localhost:3080 --user=al --insecure');
    const odd = new TshPaths({ env: { TSH_HOME: "/srv/al's tsh" }, homedir: '/home/al', platform: 'linux' });
    assert.equal(profileLoginCommand(profile, odd), `tsh login --proxy=localhost:3080 --user=al --insecure --tsh-home='/srv/al'\\''s tsh'`);
  });
});

describe('tsh proxy ssh --relogin=auto with no TSH_HOME yet (bin/tsh)', () => {
  test('creates TSH_HOME for its lock, tries the login, and fails in one line naming the command; nothing on stdout; exit 4', async () => {
    const tmp = tempDir('relogin-fresh');
    try {
      const home = join(tmp.dir, 'not-yet');
      const port = await freePort(); // nothing listens there
      const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: tmp.dir, BROWSER: 'true' };
      const r = await runProgram('tsh', ['proxy', 'ssh', '--relogin=auto', `--tsh-home=${home}`, `--proxy=127.0.0.1:${port}`, 'al@node1'], { env });
      assert.equal(r.code, 4, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^tsh: not logged in for 127\.0\.0\.1; logging in again through the browser \(--relogin=auto\)$/m);
      const errors = r.stderr.split('\n').filter((l) => l.startsWith('error: '));
      assert.equal(errors.length, 1, r.stderr);
      assert.match(errors[0]!, new RegExp(`logging in again failed \\(.*connection refused.*\\); run \`\\S*tsh login --proxy=127\\.0\\.0\\.1:${port} --tsh-home=\\S+not-yet\` first$`));
      assert.equal(readReloginResult(new TshPaths({ env: { TSH_HOME: home }, homedir: tmp.dir, platform: 'linux' }))?.outcome, 'failed');
    } finally {
      tmp.cleanup();
    }
  });
});
