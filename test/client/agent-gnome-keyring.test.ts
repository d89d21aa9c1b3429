/**
 * What gnome-keyring's own SSH agent (the `ssh` component of
 * gnome-keyring-daemon, Debian 12: gnome-keyring 42.1) does with a Jumpgate
 * certificate, in a private D-Bus session (keyring-session.ts).
 *
 * Finding (seen here with 42.1): the component is a thin proxy in front of a
 * real OpenSSH ssh-agent it starts itself (`ssh-agent -D -a
 * $XDG_RUNTIME_DIR/keyring/.ssh`), so certificates and the lifetime
 * constraint work. The older built-in implementation (gnome-keyring before
 * the 3.28 rewrite, not tested here) is the one reported to lose
 * certificates; addCertificateAndVerify's warning covers that case, tested
 * with scripted agents in agent-protocol.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lastJsonLine, runInKeyringSession } from './keyring-session.js';

test("gnome-keyring 42's SSH agent keeps a certificate, lists it, honours its lifetime, and removes it for tsh logout", async () => {
  const r = await runInKeyringSession('test/client/fixtures/agent-probe.ts', { components: 'ssh' });
  const got = lastJsonLine<Record<string, unknown>>(r);
  assert.match(String(got['socket']), /\/keyring\/ssh$/, JSON.stringify(got));
  assert.equal(got['agentName'], "gnome-keyring's SSH agent");
  assert.equal(got['status'], 'listed', JSON.stringify(got));
  assert.equal(got['warning'], undefined);
  assert.equal(got['plainKey'], 'listed');
  assert.equal(got['shortListed'], true);
  assert.equal(got['shortExpired'], true, 'the 1 s lifetime constraint reached the agent');
  assert.deepEqual(got['listed'], ['ssh-ed25519-cert-v01@openssh.com probe', 'ssh-ed25519 probe-key']);
  // tsh logout's removal (removeProfileEntries) works through it: certificate and plain key both go.
  assert.equal(got['removed'], 2);
  assert.equal(got['removalLeft'], 0);
  assert.equal(got['afterRemoval'], 0);
});
