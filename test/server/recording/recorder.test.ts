/**
 * The session recorder and its asciicast v2 writer (src/server/recording/):
 * UTF-8 cut between chunks, the size cap and its marker + audit, the
 * periodic flush (a crash loses at most what the last flush did not store),
 * a torn last line, on the real dir backend.
 */
import { after, before, describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseServerConfig } from '../../../src/config/index.js';
import { CastEncoder, MARKER_RESERVE_BYTES } from '../../../src/server/recording/asciicast.js';
import { FLUSH_INTERVAL_MS, startRecording, type RecordingMeta } from '../../../src/server/recording/recorder.js';
import { findRecording, listRecordings } from '../../../src/server/recording/recordings.js';
import type { ServerRuntime } from '../../../src/server/runtime.js';
import { parseCast } from '../../../src/shared/asciicast.js';
import { testRuntime } from '../../helpers/runtime.js';
import { requireTool, run, tempDir } from '../../helpers/tools.js';

const meta = (sessionId: string, over: Partial<RecordingMeta> = {}): RecordingMeta => ({
  sessionId,
  user: 'alice',
  login: 'alice',
  node: 'node1',
  clientAddr: '127.0.0.1',
  cols: 100,
  rows: 30,
  term: 'xterm-256color',
  env: { SHELL: '/bin/bash', SECRET_TOKEN: 'x' },
  recordInput: false,
  ...over,
});

describe('asciicast encoder', () => {
  test('a multi-byte character cut between chunks at any byte is joined, never U+FFFD', () => {
    const text = 'é€😀 ok\r\n';
    const bytes = Buffer.from(text);
    for (let size = 1; size <= 4; size++) {
      const enc = new CastEncoder({ version: 2, width: 80, height: 24, timestamp: 0 }, 0, 1 << 20);
      for (let i = 0; i < bytes.length; i += size) enc.output(bytes.subarray(i, i + size), i);
      enc.end(100);
      const cast = parseCast(enc.take().toString('utf8'));
      const out = cast.events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
      assert.equal(out, text, `chunks of ${size} bytes`);
      assert.ok(!out.includes('\uFFFD'));
    }
  });

  test('event times are seconds since the start with microsecond precision', () => {
    const enc = new CastEncoder({ version: 2, width: 80, height: 24, timestamp: 0 }, 1_000, 1 << 20);
    enc.output(Buffer.from('a'), 1_250.5);
    enc.resize(120, 40, 3_000);
    const cast = parseCast(enc.take().toString('utf8'));
    assert.deepEqual(cast.events, [
      [0.2505, 'o', 'a'],
      [2, 'r', '120x40'],
    ]);
  });

  test('past the cap nothing more is recorded; a marker event says so and the file stays under the cap', () => {
    const max = 4096;
    const enc = new CastEncoder({ version: 2, width: 80, height: 24, timestamp: 0 }, 0, max);
    for (let i = 0; i < 100; i++) enc.output(Buffer.from(`line ${i} ${'x'.repeat(60)}\r\n`), i);
    enc.resize(10, 10, 200);
    const text = enc.take().toString('utf8');
    assert.ok(enc.truncated);
    assert.ok(Buffer.byteLength(text) <= max, `${Buffer.byteLength(text)} bytes`);
    assert.ok(Buffer.byteLength(text) > max - MARKER_RESERVE_BYTES - 200, 'filled up to the cap');
    const cast = parseCast(text);
    const last = cast.events.at(-1)!;
    assert.equal(last[1], 'm');
    assert.match(last[2], /recording truncated at 4096 bytes/);
    assert.equal(cast.events.filter((e) => e[1] === 'm').length, 1);
    assert.ok(!cast.events.some((e) => e[1] === 'r'), 'nothing after the marker');
  });

  test('a torn last line (the writer killed mid-write) is dropped and reported; a bad line before it is an error', () => {
    const good = '{"version":2,"width":80,"height":24}\n[0.1,"o","a"]\n[0.2,"o","b"]\n';
    const torn = parseCast(good + '[0.3,"o","unfini');
    assert.equal(torn.torn, true);
    assert.deepEqual(torn.events.map((e) => e[2]), ['a', 'b']);
    assert.equal(parseCast(good).torn, false);
    assert.throws(() => parseCast('{"version":2,"width":80,"height":24}\n[0.1,"o"\n[0.2,"o","b"]\n'), /line 2: not JSON/);
    assert.throws(() => parseCast('{"version":1}\n'), /line 1: not an asciicast v2 header/);
  });
});

describe('session recorder (dir backend)', () => {
  let tmp: { dir: string; cleanup: () => void };
  let rt: ServerRuntime;
  let logs: string[];
  before(async () => {
    tmp = tempDir('recorder-');
    logs = [];
    const config = parseServerConfig(`cluster_name: example.test\ndata_dir: ${tmp.dir}/data\nrecordings:\n  max_bytes_per_session: 8192\n`, join(tmp.dir, 'jumpgate.yaml'));
    rt = await testRuntime(config, logs);
  });
  after(async () => {
    await rt.audit.close();
    await rt.store.close();
    tmp.cleanup();
  });

  test('writes the header (size, TERM and SHELL only, title user@node), output and resizes; input only when asked; metadata at start and end', async () => {
    const rec = await startRecording(rt, meta('s-basic'));
    assert.equal(rec.name, 's-basic.cast');
    const running = await findRecording(rt.store, 's-basic', undefined);
    assert.equal(running?.end, undefined, 'listed while it runs');
    rec.output(Buffer.from('hello\r\n'));
    rec.input(Buffer.from('secret typed'));
    rec.resize(120, 40);
    await rec.close();
    await rec.close(); // idempotent
    const file = join(tmp.dir, 'data', 'recordings', 's-basic.cast');
    const cast = parseCast(readFileSync(file, 'utf8'));
    assert.deepEqual({ ...cast.header, timestamp: 0 }, { version: 2, width: 100, height: 30, timestamp: 0, env: { TERM: 'xterm-256color', SHELL: '/bin/bash' }, title: 'alice@node1' });
    assert.deepEqual(cast.events.map((e) => [e[1], e[2]]), [
      ['o', 'hello\r\n'],
      ['r', '120x40'],
    ]);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(tmp.dir, 'data', 'recordings')).mode & 0o777, 0o700);
    const info = await findRecording(rt.store, 's-basic', undefined);
    assert.equal(info?.size, statSync(file).size);
    assert.equal(info?.truncated, false);
    assert.ok(info?.end && info.duration_ms !== undefined);

    const withInput = await startRecording(rt, meta('s-input', { recordInput: true }));
    withInput.input(Buffer.from('ls\r'));
    await withInput.close();
    const ev = parseCast(readFileSync(join(tmp.dir, 'data', 'recordings', 's-input.cast'), 'utf8')).events;
    assert.deepEqual(ev.map((e) => [e[1], e[2]]), [['i', 'ls\r']]);
  });

  test('output is stored by the periodic flush, before close: a crash loses only what came after the last flush', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const rec = await startRecording(rt, meta('s-flush'));
    const file = join(tmp.dir, 'data', 'recordings', 's-flush.cast');
    const headerOnly = statSync(file).size;
    rec.output(Buffer.from('before the crash\r\n'));
    assert.equal(statSync(file).size, headerOnly, 'not written synchronously');
    t.mock.timers.tick(FLUSH_INTERVAL_MS);
    for (let i = 0; i < 200 && statSync(file).size === headerOnly; i++) await new Promise((r) => setImmediate(r));
    const cast = parseCast(readFileSync(file, 'utf8'));
    assert.deepEqual(cast.events.map((e) => e[2]), ['before the crash\r\n']);
    t.mock.timers.reset();
    await rec.close();
  });

  test('the cap ends recording, not the session: truncated in the metadata and a recording.truncated audit event', async () => {
    const rec = await startRecording(rt, meta('s-cap'));
    for (let i = 0; i < 400; i++) rec.output(Buffer.from(`${i} ${'y'.repeat(70)}\r\n`));
    rec.output(Buffer.from('after the cap'));
    await rec.close();
    const info = await findRecording(rt.store, 's-cap', undefined);
    assert.equal(info?.truncated, true);
    assert.ok(info!.size <= 8192);
    await rt.audit.close();
    const events = await rt.store.audit.query({ type: 'recording.truncated' });
    assert.equal(events.length, 1);
    assert.equal(events[0]!['session_id'], 's-cap');
    assert.equal(events[0]!['max_bytes'], 8192);
    // The real asciinema (2.2) reads a file that ends with the marker event.
    requireTool('asciinema', 'apt-get install asciinema');
    const cat = await run('script', ['-qec', `asciinema cat '${join(tmp.dir, 'data', 'recordings', 's-cap.cast')}'`, '/dev/null'], { timeoutMs: 20_000 });
    assert.equal(cat.code, 0, cat.stdout + cat.stderr);
    assert.match(cat.stdout, /^0 y{70}/m);
  });

  test('a session id that cannot name a recording is refused before anything is stored', async () => {
    await assert.rejects(startRecording(rt, meta('../etc/passwd')), { code: 'BAD_RECORDING_NAME' });
    await assert.rejects(startRecording(rt, meta('')), { code: 'BAD_RECORDING_NAME' });
  });

  test('listing: own recordings only, every one for a reviewer, newest first', async () => {
    const bob = await startRecording(rt, meta('s-bob', { user: 'bob' }));
    await bob.close();
    const mine = await listRecordings(rt.store, { user: 'bob', all: false });
    assert.deepEqual(mine.map((r) => r.session_id), ['s-bob']);
    const all = await listRecordings(rt.store, { user: 'bob', all: true });
    assert.ok(all.length >= 4);
    assert.equal(all[0]!.session_id, 's-bob');
    assert.equal(await findRecording(rt.store, 's-basic', { user: 'bob', all: false }), undefined, "another user's session reads as absent");
  });
});
