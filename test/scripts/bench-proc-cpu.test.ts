import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { trackCpu } from '../../bench/proc-cpu.js';

/** Runs `node -e <busy loop for ms> ...extra` to completion. */
function burn(ms: number, extra: string[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', `const t = Date.now(); while (Date.now() - t < ${ms});`, ...extra], { stdio: 'ignore' });
    c.on('error', reject);
    c.on('close', () => resolve());
  });
}

describe('bench/proc-cpu trackCpu (Linux /proc)', () => {
  test('counts the CPU of child processes by role, tsh and jumpgate told apart from plain node by their command line', async () => {
    const cpu = trackCpu();
    await Promise.all([burn(600, ['/x/bin/tsh', 'proxy', 'ssh']), burn(600, ['/x/bin/jumpgate', 'start']), burn(600)]);
    const got = cpu.stop();
    // A busy loop of 600 ms is about 0.6 s of CPU; on a loaded machine it gets less, never more.
    for (const role of ['tsh', 'jumpgate', 'node']) {
      assert.ok((got[role] ?? 0) >= 0.1, `${role}: ${JSON.stringify(got)}`);
      assert.ok((got[role] ?? 0) <= 1.5, `${role}: ${JSON.stringify(got)}`);
    }
  });

  test('a process that idles costs next to nothing; time before start is not counted', async () => {
    await burn(300);
    const cpu = trackCpu();
    await new Promise<void>((resolve) => spawn('sleep', ['0.4'], { stdio: 'ignore' }).on('close', () => resolve()));
    const got = cpu.stop();
    assert.ok((got.sleep ?? 0) < 0.1, JSON.stringify(got));
    assert.equal(got.node, undefined, JSON.stringify(got));
  });
});
