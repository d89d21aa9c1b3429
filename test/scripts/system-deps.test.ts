/**
 * The fresh-machine story of README's two commands: scripts/system-deps.sh (the
 * one list of system packages, used by .ci/run, npm test's pretest, the test
 * runner and the quickstart) against this machine with programs really hidden:
 * a private mount namespace binds /dev/null (not executable) over them, so the
 * script sees a machine without them. Needs root (as CI runs) for the mount
 * namespace and to play a user who is not root (runuser). apt-get is replaced by a recorder on PATH in the
 * one test that would install: tests never reach the network.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, requireTool, run, tempDir } from '../helpers/tools.js';

const SCRIPT = join(REPO, 'scripts', 'system-deps.sh');
const isRoot = process.getuid?.() === 0;

/** Runs `command` (sh) in a mount namespace where each of `hide` is not executable. */
function withHidden(hide: string[], command: string, env: NodeJS.ProcessEnv = process.env) {
  assert.ok(isRoot, 'these tests hide programs in a mount namespace: run them as root (CI does)');
  const unshare = requireTool('unshare', 'apt-get install -y util-linux');
  const mounts = hide.map((p) => `mount --bind /dev/null ${p}`).join(' && ');
  return run(unshare, ['-m', 'sh', '-c', `${mounts} && ${command}`], { env, cwd: REPO, timeoutMs: 60_000 });
}

describe('scripts/system-deps.sh: what a fresh machine lacks is named with its install command', () => {
  test('a machine with every program passes silently', async () => {
    const r = await run('sh', [SCRIPT, 'tests'], { cwd: REPO });
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
  });

  test('without sshd, rsync and gnome-keyring the tests stop with the one apt-get line that installs all three', async () => {
    const sshd = requireTool('sshd', 'apt-get install -y openssh-server');
    const rsync = requireTool('rsync', 'apt-get install -y rsync');
    const keyring = requireTool('gnome-keyring-daemon', 'apt-get install -y gnome-keyring');
    const r = await withHidden([sshd, rsync, keyring], `sh ${SCRIPT} tests`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the tests need programs that are not installed: sshd gnome-keyring-daemon rsync/);
    // In the namespace we are root, so the command is given without sudo.
    assert.match(r.stderr, /install them with: {2}apt-get update && apt-get install -y --no-install-recommends openssh-server gnome-keyring rsync\n/);
  });

  test('the quickstart needs only OpenSSH: a missing squid does not stop it, a missing sshd does', async () => {
    const squid = requireTool('squid', 'apt-get install -y squid');
    const sshd = requireTool('sshd', 'apt-get install -y openssh-server');
    const ok = await withHidden([squid], `sh ${SCRIPT} quickstart`);
    assert.equal(ok.code, 0, ok.stderr);
    const r = await withHidden([sshd], `sh ${SCRIPT} quickstart`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the quickstart needs programs that are not installed: sshd\n.*openssh-server/);
  });

  test('the test runner checks up front and fails with the install command instead of running tests', async () => {
    const tmux = requireTool('tmux', 'apt-get install -y tmux');
    const r = await withHidden([tmux], `${process.execPath} scripts/run-tests.mjs unit`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not installed: tmux\ninstall them with: .*apt-get install -y --no-install-recommends tmux/);
    assert.doesNotMatch(r.stdout, /^# (pass|tests)/m, 'no test ran');
  });

  test('--install as root runs apt-get for exactly the missing packages, then checks again', async () => {
    const tmp = tempDir('sysdeps');
    try {
      const log = join(tmp.dir, 'apt.log');
      const fake = join(tmp.dir, 'apt-get');
      // A recorder, not apt: it installs nothing, so the second check must still fail.
      writeFileSync(fake, `#!/bin/sh\necho "$*" >> ${log}\n`);
      chmodSync(fake, 0o755);
      const tmux = requireTool('tmux', 'apt-get install -y tmux');
      const r = await withHidden([tmux], `sh ${SCRIPT} --install tests`, { ...process.env, PATH: `${tmp.dir}:${process.env['PATH']}` });
      assert.deepEqual(readFileSync(log, 'utf8').trim().split('\n'), ['update -q', 'install -y -q --no-install-recommends tmux']);
      assert.equal(r.code, 1, 'still missing after an install that did nothing');
      assert.match(r.stderr, /installing tmux \(for tmux\)[\s\S]*not installed: tmux/);
    } finally {
      tmp.cleanup();
    }
  });

  test('--install as a user who is not root changes nothing and names the sudo command', async () => {
    const tmp = tempDir('sysdeps');
    try {
      const log = join(tmp.dir, 'apt.log');
      const fake = join(tmp.dir, 'apt-get');
      writeFileSync(fake, `#!/bin/sh\necho "$*" >> ${log}\n`);
      chmodSync(fake, 0o755);
      chmodSync(tmp.dir, 0o755);
      const sshd = requireTool('sshd', 'apt-get install -y openssh-server');
      const runuser = requireTool('runuser', 'apt-get install -y util-linux');
      const r = await withHidden([sshd], `PATH=${tmp.dir}:$PATH ${runuser} -u nobody -- sh ${SCRIPT} --install quickstart`);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /install them with: {2}sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends openssh-server'/);
      assert.equal(existsSync(log), false, 'apt-get was not run');
    } finally {
      tmp.cleanup();
    }
  });
});

test('.ci/run installs every package scripts/system-deps.sh lists for the tests (the two lists cannot drift)', () => {
  const list = /LIST='\n([\s\S]*?)\n'/.exec(readFileSync(SCRIPT, 'utf8'))?.[1];
  assert.ok(list, 'the LIST block of system-deps.sh');
  const wanted = new Set(
    list
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((w) => w.length >= 3 && w.slice(2).includes('tests'))
      .map((w) => w[1]!),
  );
  const ci = /PACKAGES=\(([\s\S]*?)\)/.exec(readFileSync(join(REPO, '.ci', 'run'), 'utf8'))?.[1];
  assert.ok(ci, 'the PACKAGES list of .ci/run');
  const installed = new Set(ci.split(/\s+/).filter(Boolean));
  assert.ok(wanted.size >= 15, [...wanted].join(' '));
  for (const p of wanted) assert.ok(installed.has(p), `.ci/run does not install ${p}, which the tests need (scripts/system-deps.sh)`);
});
