// Splits a byte stream into typed PostgreSQL messages (1-byte type + int32 length that
// counts itself) during the setup phase, in either direction. Chunks are kept as pushed and
// joined only once a whole message is there, so a peer dribbling one byte at a time costs
// linear work. A length below 4 or above the cap is an error, and the reader stays failed:
// the session must end (fail closed).

/** Bytes of the type byte + length field. */
const HEADER_BYTES = 5;
/** The length field counts itself. */
const MIN_LENGTH = 4;

export type ReadResult =
  | { status: 'ok'; type: number; body: Buffer }
  | { status: 'need-more' }
  | { status: 'error'; message: string };

export class MessageReader {
  private chunks: Buffer[] = [];
  /** Bytes of chunks[0] already returned. */
  private head = 0;
  private buffered = 0;
  private failure: string | null = null;

  /** @param maxMessageBytes the largest accepted length field (the body plus 4). */
  constructor(private readonly maxMessageBytes: number) {
    if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < MIN_LENGTH) {
      throw new RangeError(`maxMessageBytes must be an integer >= ${MIN_LENGTH}, got ${maxMessageBytes}`);
    }
  }

  /** The reader keeps a reference to `chunk`: do not modify it afterwards. */
  push(chunk: Buffer): void {
    if (this.failure !== null || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Buffered bytes not yet returned by `next()`. */
  pending(): number {
    return this.buffered;
  }

  /** Returns the buffered bytes not yet returned (e.g. to hand them to the pump) and empties the reader. */
  takeRest(): Buffer {
    const rest = this.read(this.buffered);
    return rest;
  }

  /**
   * The next whole message. `body` excludes the type and length; it may share memory with
   * pushed chunks.
   */
  next(): ReadResult {
    if (this.failure !== null) return { status: 'error', message: this.failure };
    if (this.buffered < HEADER_BYTES) return { status: 'need-more' };
    const type = this.byteAt(0);
    const len = ((this.byteAt(1) << 24) | (this.byteAt(2) << 16) | (this.byteAt(3) << 8) | this.byteAt(4)) | 0;
    if (len < MIN_LENGTH || len > this.maxMessageBytes) {
      this.failure =
        len < MIN_LENGTH
          ? `invalid message length ${len} for message type 0x${type.toString(16).padStart(2, '0')} (the minimum is ${MIN_LENGTH})`
          : `message type 0x${type.toString(16).padStart(2, '0')} of ${len} bytes is over the limit of ${this.maxMessageBytes} bytes`;
      this.chunks = [];
      this.head = 0;
      this.buffered = 0;
      return { status: 'error', message: this.failure };
    }
    if (this.buffered < 1 + len) return { status: 'need-more' };
    const whole = this.read(1 + len);
    return { status: 'ok', type, body: whole.subarray(HEADER_BYTES) };
  }

  private byteAt(i: number): number {
    let at = this.head + i;
    for (const c of this.chunks) {
      if (at < c.length) return c[at]!;
      at -= c.length;
    }
    throw new Error('MessageReader: byteAt past the buffered bytes'); // unreachable: callers check `buffered`
  }

  /** Removes and returns the first n buffered bytes (n <= buffered). */
  private read(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    let out: Buffer;
    if (first.length - this.head >= n) {
      out = first.subarray(this.head, this.head + n);
      this.head += n;
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      let i = 0;
      // Index, then one splice: shifting per chunk would be quadratic for a dribbling peer.
      while (filled < n) {
        const c = this.chunks[i]!;
        const take = Math.min(c.length - this.head, n - filled);
        c.copy(out, filled, this.head, this.head + take);
        filled += take;
        this.head += take;
        if (this.head === c.length) {
          i++;
          this.head = 0;
        }
      }
      this.chunks.splice(0, i);
    }
    if (this.chunks.length && this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
    this.buffered -= n;
    return out;
  }
}
