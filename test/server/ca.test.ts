import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CaStore } from '../../src/server/auth/ca.js';
import { fingerprintSha256 } from '../../src/sshcert/index.js';
import { UserError } from '../../src/errors.js';
import { run, REPO, tempDir } from '../helpers/tools.js';

const T0 = new Date('2026-11-21T08:00:00Z');
const fixed = (d: Date) => () => d;
const fp = (s: CaStore, t: 'user' | 'host') => fingerprintSha256(s.get(t).active.publicKey.blob);

function expectCorrupt(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
    assert.equal(err.code, 'CA_CORRUPT');
    assert.match(err.message, re);
    assert.match(err.hint ?? '', /will not create a new CA/);
    return true;
  });
}

describe('CA store', () => {
  test('creates both CAs on first use with 0700 directories and 0600 key files', () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const warnings: string[] = [];
      const store = new CaStore(join(dir, 'data'), fixed(T0), (m) => warnings.push(m));
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

  test('a second store on the same directory loads the same CA instead of making one', () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const a = new CaStore(dir, fixed(T0));
      const b = new CaStore(dir, fixed(T0));
      assert.equal(fp(a, 'user'), fp(b, 'user'));
    } finally {
      cleanup();
    }
  });

  test('refuses a corrupt ca.json instead of minting a new CA', () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      new CaStore(dir, fixed(T0)).get('user');
      writeFileSync(join(dir, 'ca', 'user', 'ca.json'), '{"version": 1, "type": "us');
      expectCorrupt(() => new CaStore(dir, fixed(T0)).get('user'), /not valid JSON/);
    } finally {
      cleanup();
    }
  });

  test('refuses a CA whose key file is garbage or missing', () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      new CaStore(dir, fixed(T0)).get('host');
      const hostDir = join(dir, 'ca', 'host');
      const key = readdirSync(hostDir).find((f) => f.endsWith('.key'))!;
      writeFileSync(join(hostDir, key), '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n');
      expectCorrupt(() => new CaStore(dir, fixed(T0)).get('host'), /not a valid OpenSSH private key/);
      unlinkSync(join(hostDir, key));
      expectCorrupt(() => new CaStore(dir, fixed(T0)).get('host'), /cannot read CA key/);
    } finally {
      cleanup();
    }
  });

  test('refuses key files without ca.json rather than guessing', () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      new CaStore(dir, fixed(T0)).get('user');
      unlinkSync(join(dir, 'ca', 'user', 'ca.json'));
      expectCorrupt(() => new CaStore(dir, fixed(T0)).get('user'), /key files .* but no ca\.json/);
    } finally {
      cleanup();
    }
  });

  test('finishes a creation that crashed between ca.json and the key rename', () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const before = fp(new CaStore(dir, fixed(T0)), 'user');
      const userDir = join(dir, 'ca', 'user');
      const key = readdirSync(userDir).find((f) => f.endsWith('.key'))!;
      renameSync(join(userDir, key), join(userDir, `${key}.pending`));
      assert.equal(fp(new CaStore(dir, fixed(T0)), 'user'), before);
    } finally {
      cleanup();
    }
  });

  test('tightens a CA key file readable by others and says so', () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      new CaStore(dir, fixed(T0)).get('user');
      const userDir = join(dir, 'ca', 'user');
      const key = join(userDir, readdirSync(userDir).find((f) => f.endsWith('.key'))!);
      chmodSync(key, 0o644);
      const warnings: string[] = [];
      new CaStore(dir, fixed(T0), (m) => warnings.push(m)).get('user');
      assert.equal(statSync(key).mode & 0o777, 0o600);
      assert.match(warnings.join('\n'), /readable by others \(mode 644\)/);
    } finally {
      cleanup();
    }
  });

  test('rotation: the new key signs, the old one is trusted until the grace period ends', () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      let now = T0;
      const store = new CaStore(dir, () => now);
      const old = fp(store, 'user');
      const rotated = store.rotate('user', 3600);
      assert.notEqual(fingerprintSha256(rotated.active.publicKey.blob), old);
      assert.deepEqual(
        rotated.trusted.map((k) => fingerprintSha256(k.publicKey.blob)),
        [fingerprintSha256(rotated.active.publicKey.blob), old],
      );
      now = new Date(T0.getTime() + 3599_000);
      assert.equal(store.get('user').trusted.length, 2);
      now = new Date(T0.getTime() + 3600_000);
      assert.equal(store.get('user').trusted.length, 1, 'trust ends exactly at the end of the grace period');
      assert.equal(fp(store, 'host'), fp(new CaStore(dir, () => now), 'host'), 'the host CA is untouched');
    } finally {
      cleanup();
    }
  });

  test('a long-running store sees a rotation made by another process', () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const server = new CaStore(dir, fixed(T0));
      const before = fp(server, 'user');
      const tctl = new CaStore(dir, fixed(T0));
      const after = fingerprintSha256(tctl.rotate('user', 60).active.publicKey.blob);
      assert.notEqual(after, before);
      assert.equal(fp(server, 'user'), after);
    } finally {
      cleanup();
    }
  });

  test('processes racing to create the CA all end up with the same one', async () => {
    const { dir, cleanup } = tempDir('ca');
    try {
      const script = `
        import { CaStore } from ${JSON.stringify(join(REPO, 'src/server/auth/ca.ts'))};
        import { fingerprintSha256 } from ${JSON.stringify(join(REPO, 'src/sshcert/index.ts'))};
        const s = new CaStore(process.argv[1], () => new Date());
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
