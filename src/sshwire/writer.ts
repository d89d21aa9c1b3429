/**
 * Writes RFC 4251 §5 data types into one growing buffer.
 *
 * This sits on the certificate-signing hot path, so it writes in place into a
 * buffer that doubles when full (amortised O(1), no per-field allocations) and
 * `finish()` returns a view of the written bytes without copying. The buffer
 * is zero-filled (`Buffer.alloc`) so a view's backing store never exposes
 * stale memory from Node's allocation pool.
 */
export class WireWriter {
  private buf: Buffer;
  private len = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.alloc(Math.max(16, initialSize));
  }

  /** Bytes written so far. */
  get length(): number {
    return this.len;
  }

  private ensure(n: number): void {
    const need = this.len + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** RFC 4251 §5 byte. */
  u8(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 0xff) throw new RangeError(`byte out of range: ${n}`);
    this.ensure(1);
    this.buf[this.len++] = n;
    return this;
  }

  /** RFC 4251 §5 boolean, written as 0 or 1. */
  bool(b: boolean): this {
    return this.u8(b ? 1 : 0);
  }

  /** RFC 4251 §5 uint32. */
  u32(n: number): this {
    this.ensure(4);
    // writeUInt32BE throws a RangeError for anything outside 0..2^32-1.
    this.buf.writeUInt32BE(n, this.len);
    this.len += 4;
    return this;
  }

  /** RFC 4251 §5 uint64. */
  u64(n: bigint): this {
    this.ensure(8);
    this.buf.writeBigUInt64BE(n, this.len);
    this.len += 8;
    return this;
  }

  /** RFC 4251 §5 string; a JS string is written as UTF-8. */
  string(b: Buffer | string): this {
    if (typeof b === 'string') {
      const n = Buffer.byteLength(b, 'utf8');
      this.ensure(4 + n);
      this.buf.writeUInt32BE(n, this.len);
      this.buf.write(b, this.len + 4, n, 'utf8');
      this.len += 4 + n;
      return this;
    }
    this.ensure(4 + b.length);
    this.buf.writeUInt32BE(b.length, this.len);
    b.copy(this.buf, this.len + 4);
    this.len += 4 + b.length;
    return this;
  }

  /**
   * RFC 4251 §5 mpint from an unsigned big-endian magnitude: leading zeros are
   * dropped and a 0x00 is prepended when the top bit is set, giving the one
   * minimal encoding (zero is the empty string).
   */
  mpint(b: Buffer): this {
    let i = 0;
    while (i < b.length && b[i] === 0) i++;
    const mag = b.subarray(i);
    const pad = mag.length > 0 && (mag[0]! & 0x80) !== 0 ? 1 : 0;
    this.ensure(4 + pad + mag.length);
    this.buf.writeUInt32BE(pad + mag.length, this.len);
    this.len += 4;
    if (pad) this.buf[this.len++] = 0;
    mag.copy(this.buf, this.len);
    this.len += mag.length;
    return this;
  }

  /**
   * Starts an RFC 4251 §5 string whose contents are written next (nested
   * structures: certificate sections, agent messages) without building them
   * in a separate buffer. Returns a mark for `closeString`.
   */
  openString(): number {
    const mark = this.len;
    this.u32(0);
    return mark;
  }

  /** Ends the string started at `mark`, writing its length. */
  closeString(mark: number): this {
    this.buf.writeUInt32BE(this.len - mark - 4, mark);
    return this;
  }

  /** Bytes as they are, without a length prefix. */
  raw(b: Buffer): this {
    this.ensure(b.length);
    b.copy(this.buf, this.len);
    this.len += b.length;
    return this;
  }

  /** The bytes written so far, as a view (no copy). Later writes may reallocate. */
  finish(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}
