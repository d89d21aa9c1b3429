import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withLockFileAsync } from '../../src/util/lockfile.js';
import { tempDir } from '../helpers/tools.js';

test('sameMachine: a lock whose holder still runs is not taken over, however old (a stopped or suspended holder)', async () => {
  const tmp = tempDir('lock');
  const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const path = join(tmp.dir, '.lock');
    writeFileSync(path, `${holder.pid}\n`);
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(path, old, old);
    await assert.rejects(withLockFileAsync(path, { what: 'test', waitMs: 300, staleMs: 1_000, sameMachine: true }, async () => 'took it'), /locked by another process/);
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    assert.equal(await withLockFileAsync(path, { what: 'test', waitMs: 2_000, staleMs: 1_000, sameMachine: true }, async () => 'took it'), 'took it', 'once its process is gone it is taken over at once');
  } finally {
    holder.kill('SIGKILL');
    tmp.cleanup();
  }
});

test('a holder whose lock was taken over does not remove the new holder\'s lock when it finishes', async () => {
  const tmp = tempDir('lock');
  try {
    const path = join(tmp.dir, '.lock');
    await withLockFileAsync(path, { what: 'test' }, async () => {
      // Another process took it over meanwhile (it looked stale to them).
      writeFileSync(path, '999999\n');
    });
    assert.equal(existsSync(path), true, "the other process's lock stays");
  } finally {
    tmp.cleanup();
  }
});
