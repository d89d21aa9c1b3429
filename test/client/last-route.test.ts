import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readLastRoute, recordRoute } from '../../src/client/last-route.js';
import { TshPaths } from '../../src/client/paths.js';
import type { Credentials } from '../../src/client/credentials.js';
import { tempDir } from '../helpers/tools.js';

const creds = { profile: { name: 'jump.example.org' } } as Credentials;

test('recordRoute leaves one record readLastRoute reads back, and no temp file', () => {
  const tmp = tempDir('last-route');
  try {
    const paths = new TshPaths({ env: { TSH_HOME: join(tmp.dir, 'tsh') }, homedir: tmp.dir, platform: process.platform });
    mkdirSync(dirname(paths.lastRoute('jump.example.org')), { recursive: true });
    recordRoute(paths, creds, 'ssh', 'node2', new Date('2026-01-01T00:00:00Z'));
    recordRoute(paths, creds, 'tls', 'node1', new Date('2026-01-02T00:00:00Z'));
    assert.deepEqual(readLastRoute(paths, 'jump.example.org'), { path: 'tls', node: 'node1', at: '2026-01-02T00:00:00.000Z' });
    assert.deepEqual(readdirSync(dirname(paths.lastRoute('jump.example.org'))).filter((f) => f.endsWith('.tmp')), []);
  } finally {
    tmp.cleanup();
  }
});

test('a torn or foreign +last-route reads as none; a read-only TSH_HOME is not the connection\'s problem', () => {
  const tmp = tempDir('last-route');
  try {
    const paths = new TshPaths({ env: { TSH_HOME: join(tmp.dir, 'tsh') }, homedir: tmp.dir, platform: process.platform });
    const home = dirname(paths.lastRoute('jump.example.org'));
    mkdirSync(home, { recursive: true });
    for (const text of ['', '{"path":"tls"', '{"path":"udp","node":"n","at":"x"}']) {
      writeFileSync(paths.lastRoute('jump.example.org'), text);
      assert.equal(readLastRoute(paths, 'jump.example.org'), undefined, JSON.stringify(text));
    }
    if (process.getuid?.() !== 0) {
      chmodSync(home, 0o500);
      assert.doesNotThrow(() => recordRoute(paths, creds, 'tls', 'node1', new Date()));
      chmodSync(home, 0o700);
    }
    assert.doesNotThrow(() => recordRoute(new TshPaths({ env: { TSH_HOME: join(tmp.dir, 'missing') }, homedir: tmp.dir, platform: process.platform }), creds, 'tls', 'node1', new Date()));
  } finally {
    tmp.cleanup();
  }
});
