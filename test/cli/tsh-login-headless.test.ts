/**
 * The pure parts of `tsh login --headless` in the CLI: when `tsh login`
 * suggests it, and the flags it cannot go with (the flow itself is end to
 * end in test/e2e/headless-login.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { headlessTip, run } from '../../src/cli/commands/tsh/login.js';
import { UsageError } from '../../src/errors.js';
import { testDeps } from '../helpers/deps.js';

test('tsh login suggests --headless in an SSH session with no display, on Linux only', () => {
  const tip = (platform: NodeJS.Platform, env: Record<string, string>) => headlessTip({ platform, env });
  assert.match(tip('linux', { SSH_CONNECTION: '10.0.0.1 50000 10.0.0.2 22' })!, /tsh login --headless/);
  assert.match(tip('linux', { SSH_TTY: '/dev/pts/3' })!, /SSH session with no display/);
  assert.match(tip('freebsd', { SSH_CONNECTION: 'x' })!, /--headless/);
  assert.equal(tip('linux', { SSH_CONNECTION: 'x', DISPLAY: 'localhost:10.0' }), undefined, 'X11 forwarding: a browser can open');
  assert.equal(tip('linux', { SSH_CONNECTION: 'x', WAYLAND_DISPLAY: 'wayland-0' }), undefined);
  assert.equal(tip('linux', {}), undefined, 'a local terminal');
  assert.equal(tip('darwin', { SSH_CONNECTION: 'x' }), undefined, 'macOS opens browsers without DISPLAY');
  assert.equal(tip('win32', { SSH_CONNECTION: 'x' }), undefined);
});

test('--headless with --bind-addr is a usage error (a headless login opens no listener)', async () => {
  const deps = testDeps();
  await assert.rejects(
    run({ proxy: '127.0.0.1:9', headless: true, bindAddr: '127.0.0.1:8765', browser: 'default', keystore: 'file', sshConfig: false }, deps, { openBrowser: async () => {} }),
    (e: unknown) => e instanceof UsageError && e.code === 'USAGE_HEADLESS_BIND_ADDR',
  );
});
