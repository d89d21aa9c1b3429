/**
 * tctl on the state store, through the built program: `tctl audit ls` on a
 * dir cluster and on PostgreSQL, `tctl storage migrate --to=FILE` from a dir
 * cluster into a real PostgreSQL (the CA fingerprints and trust windows the
 * same afterwards, the audit log in its order), run twice, into a database
 * holding another CA, and `tctl storage rekey` after a change of the
 * encryption key.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runProgram, tempDir, type RunResult } from '../helpers/tools.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { writeKeyFile } from '../helpers/storage.js';
import { testRuntime } from '../helpers/runtime.js';
import { loadServerConfig } from '../../src/config/index.js';
import { startRecording } from '../../src/server/recording/recorder.js';

function yaml(dataDir: string, storage: string[] = []): string {
  return ['cluster_name: e2e.test', `data_dir: ${dataDir}`, 'roles:', '  user:', '    logins: [deploy]', ...storage, ''].join('\n');
}

describe('tctl audit ls, storage migrate and rekey', () => {
  const tmp = tempDir('tctl-storage');
  const dirConfig = join(tmp.dir, 'dir.yaml');
  let pg: TestPostgres;
  let pgConfig = '';
  let keyFile = '';

  const tctl = (cfg: string, args: string[]) => runProgram('tctl', ['--config', cfg, ...args]);
  const ok = (r: RunResult, what: string) => assert.equal(r.code, 0, `${what} failed:\n${r.stderr}`);
  const pgYaml = (conn: string, key: string, previous: string[] = []) =>
    yaml(join(tmp.dir, `pgdata-${Math.random().toString(36).slice(2, 8)}`), [
      'storage:',
      '  type: postgres',
      `  conn_string: ${conn}`,
      `  encryption_key_file: ${key}`,
      ...(previous.length ? ['  previous_encryption_key_files:', ...previous.map((p) => `    - ${p}`)] : []),
    ]);

  before(async () => {
    writeFileSync(dirConfig, yaml(join(tmp.dir, 'data')));
    pg = await startPostgres({ durable: false }); // never crashed here: without fsync
    keyFile = writeKeyFile(tmp.dir, 'storage.key');
    pgConfig = join(tmp.dir, 'pg.yaml');
    writeFileSync(pgConfig, pgYaml(pg.connString, keyFile));
  });
  after(async () => {
    await pg?.stop();
    tmp.cleanup();
  });

  test('audit ls reads the dir cluster: every event with its writer, filters, hostile text escaped', async () => {
    ok(await tctl(dirConfig, ['auth', 'sign', '--user=alice', '--roles=user', `--out=${join(tmp.dir, 'alice')}`]), 'sign alice');
    // A user name with an escape sequence: stored as given, printed escaped.
    ok(await tctl(dirConfig, ['auth', 'sign', '--user=evil\u001b[31mX', '--roles=user', `--out=${join(tmp.dir, 'evil')}`]), 'sign evil');
    ok(await tctl(dirConfig, ['auth', 'rotate', '--type=user', '--grace-period=1h']), 'rotate');
    const json = await tctl(dirConfig, ['audit', 'ls', '--format=json']);
    ok(json, 'audit ls');
    const events = JSON.parse(json.stdout) as { event: string; server_id: string; user?: string; seq: number }[];
    assert.deepEqual(
      events.filter((e) => e.event !== 'ca.created').map((e) => [e.event, e.user ?? '']),
      [
        ['cert.issued', 'alice'],
        ['cert.issued', 'evil\u001b[31mX'],
        ['ca.rotated', ''],
      ],
    );
    assert.ok(events.every((e) => e.server_id.startsWith('tctl@')), 'tctl writes as tctl@<host>');
    const text = await tctl(dirConfig, ['audit', 'ls', '--user=evil\u001b[31mX']);
    ok(text, 'audit ls --user');
    assert.equal(text.stdout.trim().split('\n').length, 1, `one line per event:\n${text.stdout}`);
    assert.doesNotMatch(text.stdout, /\u001b/, 'no raw ESC reaches the terminal');
    assert.match(text.stdout, /cert\.issued/);
    const typed = await tctl(dirConfig, ['audit', 'ls', '--type=ca.rotated', '--format=json']);
    assert.equal((JSON.parse(typed.stdout) as unknown[]).length, 1);
    const bad = await tctl(dirConfig, ['audit', 'ls', '--type=nope']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--type: "nope" is not an audit event type; use one of .*session\.start/);
  });

  test('storage migrate copies the dir cluster into PostgreSQL: same fingerprints and trust windows, the audit log in order; twice is safe', async () => {
    const before = await tctl(dirConfig, ['auth', 'export', '--type=user']);
    ok(before, 'export from dir');
    assert.equal(before.stdout.trim().split('\n').length, 2, 'the rotated-out key is still trusted');
    // A recording in the dir store (the real recorder): its item and its bytes move too.
    const rt = await testRuntime(loadServerConfig(dirConfig));
    const rec = await startRecording(rt, { sessionId: 'migrated-session', user: 'alice', login: 'alice', node: 'node1', clientAddr: '127.0.0.1', cols: 80, rows: 24, term: 'xterm', recordInput: false });
    rec.output(Buffer.from('moved to postgres\r\n'));
    await rec.close();
    await rt.audit.close();
    await rt.store.close();
    const m = await tctl(dirConfig, ['storage', 'migrate', `--to=${pgConfig}`]);
    ok(m, 'migrate');
    assert.match(m.stdout, /^user\tSHA256:\S+\tactive$/m);
    assert.match(m.stdout, /^user\tSHA256:\S+\ttrusted until \d{4}-/m);
    assert.match(m.stderr, /CA fingerprints verified the same/);
    assert.match(m.stderr, /recordings: 1 copied/);
    assert.doesNotMatch(m.stderr + m.stdout, new RegExp(pg.connString.split(':')[2]!.split('@')[0]!), 'the password never appears');
    for (const type of ['user', 'host']) {
      const a = await tctl(dirConfig, ['auth', 'export', `--type=${type}`]);
      const b = await tctl(pgConfig, ['auth', 'export', `--type=${type}`]);
      ok(b, `export ${type} from postgres`);
      assert.equal(b.stdout, a.stdout, `the ${type} CA is the same in both stores`);
    }
    const dirEvents = JSON.parse((await tctl(dirConfig, ['audit', 'ls', '--format=json'])).stdout) as Record<string, unknown>[];
    const pgEvents = JSON.parse((await tctl(pgConfig, ['audit', 'ls', '--format=json'])).stdout) as Record<string, unknown>[];
    const strip = (e: Record<string, unknown>) => ({ ...e, seq: 0, time: new Date(e['time'] as string).toISOString() });
    assert.deepEqual(pgEvents.slice(0, dirEvents.length).map(strip), dirEvents.map(strip), 'the audit log, in its order');

    const again = await tctl(dirConfig, ['storage', 'migrate', `--to=${pgConfig}`]);
    ok(again, 'second migrate');
    assert.match(again.stderr, /user CA: already there, the same keys/);
    assert.match(again.stderr, /already copied by an earlier run/);
    assert.match(again.stderr, /0 events copied in order/);
    assert.match(again.stderr, /recordings: 0 copied/);
    const after = JSON.parse((await tctl(pgConfig, ['audit', 'ls', '--format=json'])).stdout) as unknown[];
    assert.equal(after.length, pgEvents.length, 'nothing copied twice');
    // Last: the export is audited into postgres (a later migrate would no longer find a prefix of the dir log).
    const exported = await tctl(pgConfig, ['recordings', 'export', 'migrated-session']);
    ok(exported, 'export the recording from postgres');
    assert.equal(exported.stdout, readFileSync(join(tmp.dir, 'data', 'recordings', 'migrated-session.cast'), 'utf8'));
  });

  test('storage migrate never overwrites a different CA; migrating a store into itself is a usage error', async () => {
    const other = join(tmp.dir, 'other.yaml');
    writeFileSync(other, pgYaml(await pg.createDatabase('other_ca'), keyFile));
    ok(await tctl(other, ['auth', 'export', '--type=user']), 'create the other CA');
    const r = await tctl(dirConfig, ['storage', 'migrate', `--to=${other}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already holds a different user CA.*nothing was overwritten/);
    const self = await tctl(dirConfig, ['storage', 'migrate', `--to=${dirConfig}`]);
    assert.equal(self.code, 2);
    assert.match(self.stderr, /names the same store/);
  });

  test('storage rekey: after a change of the encryption key the old key can go', async () => {
    const newKey = writeKeyFile(tmp.dir, 'storage-2.key');
    const rotated = join(tmp.dir, 'pg-rotated.yaml');
    writeFileSync(rotated, pgYaml(pg.connString, newKey, [keyFile]));
    const r = await tctl(rotated, ['storage', 'rekey']);
    ok(r, 'rekey');
    assert.match(r.stderr, /re-encrypted [1-9]\d* CA key/);
    const onlyNew = join(tmp.dir, 'pg-new.yaml');
    writeFileSync(onlyNew, pgYaml(pg.connString, newKey));
    const a = await tctl(dirConfig, ['auth', 'export', '--type=user']);
    const b = await tctl(onlyNew, ['auth', 'export', '--type=user']);
    ok(b, 'export with only the new key');
    assert.equal(b.stdout, a.stdout);
    const old = await tctl(pgConfig, ['auth', 'export', '--type=user']);
    assert.equal(old.code, 1, 'the old key alone no longer opens the CA');
    assert.match(old.stderr, /encryption_key_file/);
    const dirRekey = await tctl(dirConfig, ['storage', 'rekey']);
    assert.equal(dirRekey.code, 1);
    assert.match(dirRekey.stderr, /data directory/);
  });
});
