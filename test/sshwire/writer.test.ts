import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WireReader, WireWriter } from '../../src/sshwire/index.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('writes each RFC 4251 type in its wire form', () => {
  const out = new WireWriter()
    .u8(7)
    .bool(true)
    .bool(false)
    .u32(0xdeadbeef)
    .u64(0x0102030405060708n)
    .string('hé')
    .string(hex('00ff'))
    .raw(hex('abcd'))
    .finish();
  assert.equal(
    out.toString('hex'),
    '07' + '01' + '00' + 'deadbeef' + '0102030405060708' + '00000003' + '68c3a9' + '00000002' + '00ff' + 'abcd',
  );
});

const mpints: Array<[string, string, string]> = [
  ['zero from an empty buffer', '', '00000000'],
  ['zero from zero bytes', '0000', '00000000'],
  ['a value without the top bit', '7f', '000000017f'],
  ['a value with the top bit (adds a 0x00)', '80', '000000020080'],
  ['leading zeros stripped', '000001', '0000000101'],
  ['leading zeros stripped before a top-bit byte', '0000ff01', '0000000300ff01'],
];
for (const [name, magnitude, want] of mpints) {
  test(`mpint writes ${name} minimally`, () => {
    const out = new WireWriter().mpint(hex(magnitude)).finish();
    assert.equal(out.toString('hex'), want);
    const back = new WireReader(out).mpint();
    assert.equal(BigInt('0x0' + back.toString('hex')), BigInt('0x0' + magnitude));
  });
}

const rangeErrors: Array<[string, (w: WireWriter) => unknown]> = [
  ['a byte above 255', (w) => w.u8(256)],
  ['a negative uint32', (w) => w.u32(-1)],
  ['a uint32 above 2^32-1', (w) => w.u32(2 ** 32)],
  ['a negative uint64', (w) => w.u64(-1n)],
  ['a uint64 above 2^64-1', (w) => w.u64(1n << 64n)],
];
for (const [name, write] of rangeErrors) {
  test(`refuses to write ${name}`, () => {
    assert.throws(() => write(new WireWriter()), RangeError);
  });
}

test('grows past its initial size and keeps earlier bytes', () => {
  const w = new WireWriter(16);
  const big = Buffer.alloc(1000, 0xaa);
  w.u32(1).string(big).u8(9);
  const out = w.finish();
  assert.equal(out.length, 4 + 4 + 1000 + 1);
  const r = new WireReader(out);
  assert.equal(r.u32(), 1);
  assert.deepEqual(r.string(), big);
  assert.equal(r.u8(), 9);
  r.end();
});

test('a view returned by finish() stays valid after further writes', () => {
  const w = new WireWriter(16);
  w.string('abc');
  const first = Buffer.from(w.finish());
  const view = w.finish();
  w.raw(Buffer.alloc(100, 1));
  assert.deepEqual(view, first);
  assert.deepEqual(w.finish().subarray(0, first.length), first);
});

test('round-trips u64 extremes', () => {
  for (const v of [0n, 1n, 0x7fffffffffffffffn, 0xffffffffffffffffn]) {
    assert.equal(new WireReader(new WireWriter().u64(v).finish()).u64(), v);
  }
});

test('openString/closeString write a nested string in place with its length', () => {
  const w = new WireWriter(16);
  const outer = w.openString();
  w.string('ab');
  const inner = w.openString();
  w.raw(Buffer.alloc(40, 1)); // forces the buffer to grow between open and close
  w.closeString(inner);
  w.closeString(outer);
  const r = new WireReader(w.finish());
  const section = new WireReader(r.string());
  r.end();
  assert.equal(section.string().toString(), 'ab');
  assert.deepEqual(section.string(), Buffer.alloc(40, 1));
  section.end();
});

test('an empty nested string is written as a zero length', () => {
  const w = new WireWriter();
  w.closeString(w.openString());
  assert.equal(w.finish().toString('hex'), '00000000');
});
