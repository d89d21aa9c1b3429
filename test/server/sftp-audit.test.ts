/**
 * The recording proxy's SFTP reader (server/proxy/sftp-audit.ts,
 * draft-ietf-secsh-filexfer-02): packets built here byte by byte, fed in
 * awkward splits; the real OpenSSH sftp/scp against it are in
 * test/e2e/session-recording.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WireWriter } from '../../src/sshwire/index.js';
import { MAX_SFTP_HANDLES, MAX_SFTP_PACKET, SftpAuditError, SftpAuditor, type SftpOperation } from '../../src/server/proxy/sftp-audit.js';

/** One SFTP packet: uint32 length, then the body. */
function packet(build: (w: WireWriter) => void): Buffer {
  const w = new WireWriter();
  build(w);
  const body = w.finish();
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}
const open = (id: number, path: string, pflags: number) => packet((w) => w.u8(3).u32(id).string(path).u32(pflags).u32(0));
const handle = (id: number, h: string) => packet((w) => w.u8(102).u32(id).string(h));
const write = (id: number, h: string, data: Buffer) => packet((w) => w.u8(6).u32(id).string(h).u64(0n).string(data));
const read = (id: number, h: string, len: number) => packet((w) => w.u8(5).u32(id).string(h).u64(0n).u32(len));
const data = (id: number, bytes: Buffer) => packet((w) => w.u8(103).u32(id).string(bytes));
const close = (id: number, h: string) => packet((w) => w.u8(4).u32(id).string(h));
const status = (id: number) => packet((w) => w.u8(101).u32(id).u32(0).string('').string(''));

/** Feeds a stream one byte at a time (the worst split). */
function drip(f: (b: Buffer) => void, b: Buffer): void {
  for (let i = 0; i < b.length; i++) f(b.subarray(i, i + 1));
}

test('an upload and a download are one event each, with path, flags and the bytes that went through the handle', () => {
  const ops: SftpOperation[] = [];
  const a = new SftpAuditor((op) => ops.push(op));
  a.fromClient(packet((w) => w.u8(1).u32(3))); // INIT
  a.fromNode(packet((w) => w.u8(2).u32(3))); // VERSION
  drip((b) => a.fromClient(b), open(1, '/srv/up.bin', 0x02 | 0x08 | 0x10));
  a.fromNode(handle(1, 'H1'));
  a.fromClient(Buffer.concat([write(2, 'H1', Buffer.alloc(40_000, 7)), write(3, 'H1', Buffer.alloc(10, 7))]));
  a.fromNode(Buffer.concat([status(2), status(3)]));
  a.fromClient(close(4, 'H1'));
  a.fromClient(open(5, '/srv/down.bin', 0x01));
  a.fromNode(handle(5, 'H2'));
  a.fromClient(read(6, 'H2', 32_768));
  drip((b) => a.fromNode(b), data(6, Buffer.alloc(1_000, 1)));
  a.fromClient(close(7, 'H2'));
  assert.deepEqual(ops, [
    { action: 'open', path: '/srv/up.bin', flags: ['write', 'creat', 'trunc'], bytes_read: 0, bytes_written: 40_010 },
    { action: 'open', path: '/srv/down.bin', flags: ['read'], bytes_read: 1_000, bytes_written: 0 },
  ]);
});

test('remove, rename (and posix-rename@openssh.com), mkdir, rmdir, setstat and symlink are reported as requested', () => {
  const ops: SftpOperation[] = [];
  const a = new SftpAuditor((op) => ops.push(op));
  a.fromClient(packet((w) => w.u8(13).u32(1).string('/a')));
  a.fromClient(packet((w) => w.u8(18).u32(2).string('/b').string('/c')));
  a.fromClient(packet((w) => w.u8(200).u32(3).string('posix-rename@openssh.com').string('/d').string('/e')));
  a.fromClient(packet((w) => w.u8(14).u32(4).string('/dir').u32(0)));
  a.fromClient(packet((w) => w.u8(15).u32(5).string('/dir')));
  a.fromClient(packet((w) => w.u8(9).u32(6).string('/f').u32(0)));
  a.fromClient(packet((w) => w.u8(20).u32(7).string('/target').string('/link')));
  a.fromClient(packet((w) => w.u8(17).u32(8).string('/stat-is-not-an-operation')));
  assert.deepEqual(
    ops.map((o) => [o.action, o.path, o.target]),
    [
      ['remove', '/a', undefined],
      ['rename', '/b', '/c'],
      ['rename', '/d', '/e'],
      ['mkdir', '/dir', undefined],
      ['rmdir', '/dir', undefined],
      ['setstat', '/f', undefined],
      ['symlink', '/target', '/link'],
    ],
  );
});

test('a failed OPEN gets no handle and no event; files still open at the end are reported then', () => {
  const ops: SftpOperation[] = [];
  const a = new SftpAuditor((op) => ops.push(op));
  a.fromClient(open(1, '/denied', 0x01));
  a.fromNode(status(1));
  a.fromClient(open(2, '/left-open', 0x02));
  a.fromNode(handle(2, 'H'));
  a.fromClient(write(3, 'H', Buffer.alloc(5)));
  assert.deepEqual(ops, []);
  a.end();
  assert.deepEqual(ops, [{ action: 'open', path: '/left-open', flags: ['write'], bytes_read: 0, bytes_written: 5 }]);
});

test('bounds: an oversized or empty packet, a truncated request and too many open handles are SftpAuditError', () => {
  const a = new SftpAuditor(() => {});
  const big = Buffer.alloc(4);
  big.writeUInt32BE(MAX_SFTP_PACKET + 1);
  assert.throws(() => a.fromClient(big), (e: unknown) => e instanceof SftpAuditError && /SFTP packet of 262145 bytes/.test(e.message));
  assert.throws(() => new SftpAuditor(() => {}).fromNode(Buffer.alloc(4)), SftpAuditError);
  assert.throws(() => new SftpAuditor(() => {}).fromClient(packet((w) => w.u8(3).u32(1).u32(999))), (e: unknown) => e instanceof SftpAuditError && /malformed SFTP packet \(type 3\)/.test(e.message));
  const many = new SftpAuditor(() => {});
  assert.throws(() => {
    for (let i = 0; i <= MAX_SFTP_HANDLES; i++) {
      many.fromClient(open(i, `/f${i}`, 1));
      many.fromNode(handle(i, `h${i}`));
    }
  }, (e: unknown) => e instanceof SftpAuditError && /more than 1024 files open/.test(e.message));
});
