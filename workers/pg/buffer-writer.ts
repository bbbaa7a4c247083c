// A growable big-endian writer for PostgreSQL messages: the serializer builds every frame
// with it, and tests build fixtures (valid and deliberately malformed) with the same calls.
// Not for hot paths: setup-phase messages are small and written once per session.

const INITIAL_CAPACITY = 256;

export class BufferWriter {
  private buf: Buffer;
  private size = 0;

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.buf = Buffer.allocUnsafe(Math.max(16, initialCapacity));
  }

  private ensure(n: number): void {
    if (this.size + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.size + n) cap *= 2;
    const next = Buffer.allocUnsafe(cap);
    this.buf.copy(next, 0, 0, this.size);
    this.buf = next;
  }

  byte(v: number): this {
    this.ensure(1);
    this.buf.writeUInt8(v & 0xff, this.size);
    this.size += 1;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf.writeUInt16BE(v & 0xffff, this.size);
    this.size += 2;
    return this;
  }

  /** Writes the low 32 bits; accepts signed or unsigned values (pids, codes, raw lengths). */
  int32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.size);
    this.size += 4;
    return this;
  }

  /** UTF-8 bytes without a terminator. */
  string(s: string): this {
    const n = Buffer.byteLength(s, 'utf8');
    this.ensure(n);
    this.buf.write(s, this.size, n, 'utf8');
    this.size += n;
    return this;
  }

  /** UTF-8 bytes plus NUL. Throws on an embedded NUL: the receiver would cut the string there. */
  cstring(s: string): this {
    if (s.includes('\0')) throw new RangeError('a protocol string cannot contain a NUL character');
    return this.string(s).byte(0);
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.size);
    this.size += b.length;
    return this;
  }

  get length(): number {
    return this.size;
  }

  /** The bytes written so far, as a new Buffer; the writer is reset. */
  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.size));
    this.size = 0;
    return out;
  }

  /**
   * Frames what was written as one message: `[type byte] int32 length (itself included) body`.
   * Without a type byte it frames an untyped startup-style packet. The writer is reset.
   */
  frame(type?: number): Buffer {
    const header = type === undefined ? 4 : 5;
    const out = Buffer.allocUnsafe(header + this.size);
    let at = 0;
    if (type !== undefined) out.writeUInt8(type, at++);
    out.writeUInt32BE(this.size + 4, at);
    this.buf.copy(out, header, 0, this.size);
    this.size = 0;
    return out;
  }
}
