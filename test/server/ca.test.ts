import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openCaStore, type CaStore } from '../../src/server/auth/ca.js';
import { DirBackend } from '../../src/server/storage/dir/index.js';
import { fingerprintSha256 } from '../../src/sshcert/index.js';
import { UserError } from '../../src/errors.js';
import { run, REPO, tempDir } from '../helpers/tools.js';

const T0 = new Date('2026-11-21T08:00:00Z');
const fixed = (d: Date) => () => d;
const fp = (s: CaStore, t: 'user' | 'host') => fingerprintSha256(s.get(t).active.publicKey.blob);

/** The CAs of data directory `dataDir` through the dir backend, opened (created on first use) as the server does. */
async function open(dataDir: string, clock: () => Date, warn: (m: string) => void = () => {}): Promise<CaStore> {
  const store = new DirBackend(dataDir, { serverId: 'test', clock, warn });
  return openCaStore({ ca: store.ca, location: join(dataDir, 'ca') }, clock, warn);
}

async function expectCorrupt(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
    assert.equal(err.code, 'CA_CORRUPT');
    assert.match(err.message, re);
    assert.match(err.hint ?? '', /will not create a new CA/);
    return true;
  });
}

describe('CA store (dir backend: the CA files)', () => {
  test('creates both CAs on first use with 0700 directories and 0600 key files', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const warnings: string[] = [];
      const store = await open(join(dir, 'data'), fixed(T0), (m) => warnings.push(m));
      const user = store.get('user');
      const host = store.get('host');
      assert.notEqual(fingerprintSha256(user.active.publicKey.blob), fingerprintSha256(host.active.publicKey.blob));
      assert.equal(statSync(join(dir, 'data')).mode & 0o777, 0o700);
      assert.equal(statSync(join(dir, 'data', 'ca')).mode & 0o777, 0o700);
      for (const t of ['user', 'host']) {
        const files = readdirSync(join(dir, 'data', 'ca', t));
        const keys = files.filter((f) => f.endsWith('.key'));
        assert.equal(keys.length, 1);
        assert.equal(statSync(join(dir, 'data', 'ca', t, keys[0]!)).mode & 0o777, 0o600);
        assert.equal(statSync(join(dir, 'data', 'ca', t, 'ca.json')).mode & 0o777, 0o600);
        assert.ok(!files.some((f) => f.endsWith('.pending') || f === '.lock'), `leftovers in ${files.join(',')}`);
      }
      assert.equal(warnings.filter((w) => /created the (user|host) CA/.test(w)).length, 2);
    } finally {
      cleanup();
    }
  });

  test('a second store on the same directory loads the same CA instead of making one', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const a = await open(dir, fixed(T0));
      const b = await open(dir, fixed(T0));
      assert.equal(fp(a, 'user'), fp(b, 'user'));
    } finally {
      cleanup();
    }
  });

  test('refuses a corrupt ca.json instead of minting a new CA', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      await open(dir, fixed(T0));
      writeFileSync(join(dir, 'ca', 'user', 'ca.json'), '{"version": 1, "type": "us');
      await expectCorrupt(() => open(dir, fixed(T0)), /not valid JSON/);
    } finally {
      cleanup();
    }
  });

  test('refuses a CA whose key file is garbage or missing', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      await open(dir, fixed(T0));
      const hostDir = join(dir, 'ca', 'host');
      const key = readdirSync(hostDir).find((f) => f.endsWith('.key'))!;
      writeFileSync(join(hostDir, key), '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n');
      await expectCorrupt(() => open(dir, fixed(T0)), /not a valid OpenSSH private key/);
      unlinkSync(join(hostDir, key));
      await expectCorrupt(() => open(dir, fixed(T0)), /cannot read CA key/);
    } finally {
      cleanup();
    }
  });

  test('refuses key files without ca.json rather than guessing', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      await open(dir, fixed(T0));
      unlinkSync(join(dir, 'ca', 'user', 'ca.json'));
      await expectCorrupt(() => open(dir, fixed(T0)), /key files .* but no ca\.json/);
    } finally {
      cleanup();
    }
  });

  test('finishes a creation that crashed between ca.json and the key rename', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const before = fp(await open(dir, fixed(T0)), 'user');
      const userDir = join(dir, 'ca', 'user');
      const key = readdirSync(userDir).find((f) => f.endsWith('.key'))!;
      renameSync(join(userDir, key), join(userDir, `${key}.pending`));
      assert.equal(fp(await open(dir, fixed(T0)), 'user'), before);
    } finally {
      cleanup();
    }
  });

  test('tightens a CA key file readable by others and says so', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      await open(dir, fixed(T0));
      const userDir = join(dir, 'ca', 'user');
      const key = join(userDir, readdirSync(userDir).find((f) => f.endsWith('.key'))!);
      chmodSync(key, 0o644);
      const warnings: string[] = [];
      await open(dir, fixed(T0), (m) => warnings.push(m));
      assert.equal(statSync(key).mode & 0o777, 0o600);
      assert.match(warnings.join('\n'), /readable by others \(mode 644\)/);
    } finally {
      cleanup();
    }
  });

  test('rotation: the new key signs, the old one is trusted until the grace period ends', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      let now = T0;
      const store = await open(dir, () => now);
      const old = fp(store, 'user');
      const rotated = await store.rotate('user', 3600);
      assert.notEqual(fingerprintSha256(rotated.active.publicKey.blob), old);
      assert.deepEqual(
        rotated.trusted.map((k) => fingerprintSha256(k.publicKey.blob)),
        [fingerprintSha256(rotated.active.publicKey.blob), old],
      );
      now = new Date(T0.getTime() + 3599_000);
      assert.equal(store.get('user').trusted.length, 2);
      now = new Date(T0.getTime() + 3600_000);
      assert.equal(store.get('user').trusted.length, 1, 'trust ends exactly at the end of the grace period');
      assert.equal(fp(store, 'host'), fp(await open(dir, () => now), 'host'), 'the host CA is untouched');
    } finally {
      cleanup();
    }
  });

  test('a long-running store sees a rotation made by another process once it refreshes', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const server = await open(dir, fixed(T0));
      const before = fp(server, 'user');
      const tctl = await open(dir, fixed(T0));
      const after = fingerprintSha256((await tctl.rotate('user', 60)).active.publicKey.blob);
      assert.notEqual(after, before);
      await server.refresh();
      assert.equal(fp(server, 'user'), after);
    } finally {
      cleanup();
    }
  });

  test('processes racing to create the CA all end up with the same one', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const script = `
        import { openCaStore } from ${JSON.stringify(join(REPO, 'src/server/auth/ca.ts'))};
        import { DirBackend } from ${JSON.stringify(join(REPO, 'src/server/storage/dir/index.ts'))};
        import { fingerprintSha256 } from ${JSON.stringify(join(REPO, 'src/sshcert/index.ts'))};
        const clock = () => new Date();
        const s = await openCaStore(new DirBackend(process.argv[1], { serverId: 'test', clock, warn: () => {} }), clock);
        process.stdout.write(fingerprintSha256(s.get('user').active.publicKey.blob));
      `;
      const runs = await Promise.all(
        Array.from({ length: 4 }, () => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], { cwd: REPO })),
      );
      for (const r of runs) assert.equal(r.code, 0, r.stderr);
      assert.equal(new Set(runs.map((r) => r.stdout)).size, 1, runs.map((r) => r.stdout).join(' '));
      assert.equal(readdirSync(join(dir, 'ca', 'user')).filter((f) => f.endsWith('.key')).length, 1);
      assert.equal(JSON.parse(readFileSync(join(dir, 'ca', 'user', 'ca.json'), 'utf8')).keys.length, 1);
    } finally {
      cleanup();
    }
  });
});
