import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WireError, WireReader } from '../../src/sshwire/index.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof WireError, `expected WireError, got ${String(err)}`);
    return err.code;
  }
  return 'OK';
}

test('reads fixed-size integers big-endian', () => {
  const r = new WireReader(hex('01 00 ff 00000001 fffffffe 0000000000000001 ffffffffffffffff'));
  assert.equal(r.u8(), 1);
  assert.equal(r.bool(), false);
  assert.equal(r.bool(), true);
  assert.equal(r.u32(), 1);
  assert.equal(r.u32(), 0xfffffffe);
  assert.equal(r.u64(), 1n);
  assert.equal(r.u64(), 0xffffffffffffffffn);
  assert.equal(r.remaining, 0);
  r.end();
});

const truncations: Array<[string, string, (r: WireReader) => unknown]> = [
  ['u8 on empty input', '', (r) => r.u8()],
  ['u32 with 3 bytes', '000000', (r) => r.u32()],
  ['u64 with 7 bytes', '00000000000000', (r) => r.u64()],
  ['string whose length exceeds the input', '00000005 61626364', (r) => r.string()],
  ['string with a 2^32-1 length', 'ffffffff 00', (r) => r.string()],
  ['string with a partial length field', '0000', (r) => r.string()],
  ['mpint whose length exceeds the input', '00000002 01', (r) => r.mpint()],
];
for (const [name, input, read] of truncations) {
  test(`rejects a truncated ${name} with WIRE_TRUNCATED`, () => {
    assert.equal(code(() => read(new WireReader(hex(input)))), 'WIRE_TRUNCATED');
  });
}

test('returns strings as views into the input without copying', () => {
  const buf = hex('00000003 616263');
  const s = new WireReader(buf).string();
  assert.equal(s.toString(), 'abc');
  assert.equal(s.buffer, buf.buffer);
});

test('accepts an empty string', () => {
  const r = new WireReader(hex('00000000'));
  assert.equal(r.string().length, 0);
  r.end();
});

test('rejects a string longer than maxLen with WIRE_TOO_LONG and does not consume it', () => {
  const r = new WireReader(hex('00000004 61626364'));
  assert.equal(code(() => r.string(3)), 'WIRE_TOO_LONG');
  assert.equal(r.remaining, 8);
  assert.equal(r.string(4).toString(), 'abcd');
});

const utf8Cases: Array<[string, string, string]> = [
  ['ASCII', '00000003 616263', 'OK'],
  ['two-byte UTF-8', '00000002 c3a9', 'OK'],
  ['a lone continuation byte', '00000001 80', 'WIRE_BAD_VALUE'],
  ['an overlong encoding of "/"', '00000002 c0af', 'WIRE_BAD_VALUE'],
  ['a UTF-16 surrogate', '00000003 eda080', 'WIRE_BAD_VALUE'],
  ['a cut multi-byte sequence', '00000002 e282', 'WIRE_BAD_VALUE'],
];
for (const [name, input, want] of utf8Cases) {
  test(`utf8 ${want === 'OK' ? 'accepts' : 'rejects'} ${name}`, () => {
    assert.equal(code(() => new WireReader(hex(input)).utf8()), want);
  });
}

test('utf8 keeps a leading byte-order mark instead of silently dropping it', () => {
  assert.equal(new WireReader(hex('00000004 efbbbf61')).utf8(), '\ufeffa');
});

const mpints: Array<[string, string, string | null]> = [
  // [name, encoding, magnitude hex or null when rejected]
  ['zero as the empty string', '00000000', ''],
  ['a small positive value', '00000001 7f', '7f'],
  ['a value with the top bit set behind one zero byte', '00000002 0080', '80'],
  ['RFC 4251 example 0x9a378f9b2e332a7', '00000008 09a378f9b2e332a7', '09a378f9b2e332a7'],
  ['RFC 4251 example 0x80 (needs a leading zero)', '00000002 0080', '80'],
  ['zero written as a single 0x00 byte', '00000001 00', null],
  ['a redundant leading zero before a byte without the top bit', '00000002 007f', null],
  ['two leading zero bytes', '00000003 000080', null],
  ['a negative value', '00000001 80', null],
  ['RFC 4251 example -1234 (negative)', '00000002 edcc', null],
];
for (const [name, input, want] of mpints) {
  test(`mpint ${want === null ? 'rejects' : 'reads'} ${name}`, () => {
    if (want === null) {
      assert.equal(code(() => new WireReader(hex(input)).mpint()), 'WIRE_BAD_VALUE');
    } else {
      const r = new WireReader(hex(input));
      assert.equal(r.mpint().toString('hex'), want);
      r.end();
    }
  });
}

test('end() rejects trailing bytes with WIRE_TRAILING_BYTES', () => {
  const r = new WireReader(hex('00000001 ff'));
  r.u32();
  assert.equal(code(() => r.end()), 'WIRE_TRAILING_BYTES');
  r.u8();
  r.end();
});

test('a WireError is a UserError with a stable code', async () => {
  const { UserError } = await import('../../src/errors.js');
  try {
    new WireReader(Buffer.alloc(0)).u32();
    assert.fail('no throw');
  } catch (err) {
    assert.ok(err instanceof UserError);
    assert.equal((err as WireError).code, 'WIRE_TRUNCATED');
    assert.equal((err as Error).name, 'WireError');
  }
});
