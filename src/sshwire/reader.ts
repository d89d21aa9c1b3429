import { isUtf8 } from 'node:buffer';
import { WireError } from './errors.js';

/**
 * Reads RFC 4251 §5 data types from a buffer, front to back.
 *
 * Every length field is checked against the bytes that remain before it is
 * used, and `string()` returns a view into the input rather than a copy, so a
 * hostile length can never make us allocate or read past the end.
 */
export class WireReader {
  private readonly buf: Buffer;
  private pos = 0;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  /** Bytes not read yet. */
  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** Offset of the next byte to read, from the start of the buffer. */
  get offset(): number {
    return this.pos;
  }

  private need(n: number, what: string): void {
    if (this.buf.length - this.pos < n) {
      throw new WireError(
        'WIRE_TRUNCATED',
        `truncated SSH data: ${what} needs ${n} bytes at offset ${this.pos}, only ${this.buf.length - this.pos} left`,
      );
    }
  }

  /** RFC 4251 §5 byte. */
  u8(): number {
    this.need(1, 'byte');
    return this.buf[this.pos++]!;
  }

  /** RFC 4251 §5 boolean: any non-zero byte is true, as the RFC says. */
  bool(): boolean {
    return this.u8() !== 0;
  }

  /** RFC 4251 §5 uint32. */
  u32(): number {
    this.need(4, 'uint32');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** RFC 4251 §5 uint64, as a bigint so no precision is lost. */
  u64(): bigint {
    this.need(8, 'uint64');
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /**
   * RFC 4251 §5 string: uint32 length then that many bytes. Returns a view
   * into the input (no copy). `maxLen` rejects longer strings with WIRE_TOO_LONG.
   */
  string(maxLen?: number): Buffer {
    const start = this.pos;
    const len = this.u32();
    if (maxLen !== undefined && len > maxLen) {
      this.pos = start;
      throw new WireError('WIRE_TOO_LONG', `SSH string at offset ${start} is ${len} bytes, more than the ${maxLen} allowed`);
    }
    if (len > this.buf.length - this.pos) {
      this.pos = start;
      throw new WireError(
        'WIRE_TRUNCATED',
        `truncated SSH data: string at offset ${start} claims ${len} bytes, only ${this.buf.length - start - 4} left`,
      );
    }
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  /** RFC 4251 §5 string holding UTF-8 text; invalid UTF-8 is WIRE_BAD_VALUE. */
  utf8(maxLen?: number): string {
    const start = this.pos;
    const b = this.string(maxLen);
    if (!isUtf8(b)) {
      throw new WireError('WIRE_BAD_VALUE', `SSH string at offset ${start} is not valid UTF-8`);
    }
    return b.toString('utf8');
  }

  /**
   * RFC 4251 §5 mpint, returned as its unsigned big-endian magnitude without
   * leading zeros (zero is an empty buffer). Negative values and non-minimal
   * encodings (a redundant leading 0x00 or 0xff) are WIRE_BAD_VALUE: SSH only
   * uses non-negative mpints, and accepting two encodings of one number would
   * let the same key or signature have several byte forms.
   */
  mpint(): Buffer {
    const start = this.pos;
    const b = this.string();
    if (b.length === 0) return b;
    const first = b[0]!;
    if (first & 0x80) {
      throw new WireError('WIRE_BAD_VALUE', `mpint at offset ${start} is negative`);
    }
    if (first === 0) {
      if (b.length === 1 || (b[1]! & 0x80) === 0) {
        throw new WireError('WIRE_BAD_VALUE', `mpint at offset ${start} has a redundant leading zero byte`);
      }
      return b.subarray(1);
    }
    return b;
  }

  /** Asserts the whole buffer was consumed: trailing bytes are WIRE_TRAILING_BYTES. */
  end(): void {
    if (this.pos !== this.buf.length) {
      throw new WireError(
        'WIRE_TRAILING_BYTES',
        `${this.buf.length - this.pos} unexpected trailing bytes after offset ${this.pos}`,
      );
    }
  }
}
