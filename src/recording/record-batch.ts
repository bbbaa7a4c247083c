// Record batches: many encoded recording events in one byte buffer, so a worker posts one
// buffer per flush (built in JS by RecordBatchWriter or in C++ by the statement recorder) and
// the primary frames them without a Buffer or a string per event.
//
//   batch = entry*
//   entry = u32 entryLength (bytes after this field) | u16 connectionLength
//           | connection name (UTF-8) | msgpack payload (the rest of the entry)      (big-endian)
//
// Payloads are what encode-event.ts produces: checked and redacted before they get here.
import { VgError } from '../errors.js';
import { MAX_EVENT_BYTES } from './encode-event.js';

/** u32 entry length + u16 connection-name length. */
export const RECORD_BATCH_ENTRY_OVERHEAD = 6;
/** A connection name is at most this many UTF-8 bytes (its length field is a u16). */
export const MAX_CONNECTION_NAME_BYTES = 0xffff;
/** Payload offsets are u32, so a batch is below 4 GiB. */
export const MAX_RECORD_BATCH_BYTES = 0xffffffff;
/** A RecordBatchWriter's first buffer; it doubles when an entry does not fit. */
export const RECORD_BATCH_INITIAL_BYTES = 16 * 1024;
/** After take(), the next buffer starts at the size the last batch needed, but no larger than this. */
export const RECORD_BATCH_REUSE_MAX_BYTES = 1024 * 1024;

/** Entries of a parsed batch, as offsets into it: nothing is copied. */
export interface RecordBatchEntries {
  count: number;
  /** Distinct connection names, in order of first appearance. */
  connections: string[];
  /** `connectionIndex[i]`: entry i's connection, an index into `connections`. */
  connectionIndex: Uint32Array;
  /** Entry i's payload is `blob[offsets[2i], offsets[2i + 1])` (what native frameEvents takes). */
  offsets: Uint32Array;
}

function malformed(message: string): VgError {
  return new VgError('ERR_VG_RECORDING', `malformed record batch: ${message}; the batch is refused whole (a worker bug: report it)`);
}

// fatal: a name that is not UTF-8 is refused instead of silently becoming U+FFFD (two bad
// names would merge); ignoreBOM: a leading U+FEFF stays part of the name.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Splits a record batch into its entries. Throws VgError ERR_VG_RECORDING naming the entry and
 * byte offset when an entry runs past the end, has an empty connection name (or one that is
 * not UTF-8), or a payload that is empty or over MAX_EVENT_BYTES. The returned offsets point
 * into `blob`, which the caller must keep unchanged while it uses them.
 */
export function parseRecordBatch(blob: Uint8Array): RecordBatchEntries {
  const size = blob.length;
  if (size > MAX_RECORD_BATCH_BYTES) throw malformed(`${size} bytes, over the ${MAX_RECORD_BATCH_BYTES}-byte limit`);
  // Pass 1: check the lengths and count, so the arrays are allocated once at their size.
  let count = 0;
  for (let off = 0; off < size; count++) {
    if (size - off < RECORD_BATCH_ENTRY_OVERHEAD) throw malformed(`entry ${count} at byte ${off} is cut off inside its ${RECORD_BATCH_ENTRY_OVERHEAD}-byte header (the batch is ${size} bytes)`);
    const entryLength = ((blob[off]! << 24) | (blob[off + 1]! << 16) | (blob[off + 2]! << 8) | blob[off + 3]!) >>> 0;
    if (entryLength > size - off - 4) throw malformed(`entry ${count} at byte ${off} is ${entryLength} bytes long, past the end of the ${size}-byte batch`);
    const nameLength = (blob[off + 4]! << 8) | blob[off + 5]!;
    if (nameLength === 0) throw malformed(`entry ${count} at byte ${off} has an empty connection name`);
    const payloadLength = entryLength - 2 - nameLength;
    if (payloadLength < 0) throw malformed(`entry ${count} at byte ${off} has a ${nameLength}-byte connection name in a ${entryLength}-byte entry`);
    if (payloadLength === 0) throw malformed(`entry ${count} at byte ${off} has an empty payload`);
    if (payloadLength > MAX_EVENT_BYTES) throw malformed(`entry ${count} at byte ${off} has a ${payloadLength}-byte payload, over the ${MAX_EVENT_BYTES}-byte event limit`);
    off += 4 + entryLength;
  }
  // Pass 2: offsets, and connection names decoded once per run of equal names.
  const connections: string[] = [];
  const indexOf = new Map<string, number>();
  const connectionIndex = new Uint32Array(count);
  const offsets = new Uint32Array(2 * count);
  let prevNameStart = -1;
  let prevNameLength = 0;
  let prevIndex = 0;
  for (let i = 0, off = 0; i < count; i++) {
    const entryLength = ((blob[off]! << 24) | (blob[off + 1]! << 16) | (blob[off + 2]! << 8) | blob[off + 3]!) >>> 0;
    const nameLength = (blob[off + 4]! << 8) | blob[off + 5]!;
    const nameStart = off + RECORD_BATCH_ENTRY_OVERHEAD;
    let same = nameLength === prevNameLength;
    for (let k = 0; same && k < nameLength; k++) same = blob[nameStart + k] === blob[prevNameStart + k];
    if (!same) {
      let name: string;
      try {
        name = utf8.decode(blob.subarray(nameStart, nameStart + nameLength));
      } catch {
        throw malformed(`entry ${i} at byte ${off} has a connection name that is not UTF-8`);
      }
      let index = indexOf.get(name);
      if (index === undefined) {
        index = connections.length;
        connections.push(name);
        indexOf.set(name, index);
      }
      prevNameStart = nameStart;
      prevNameLength = nameLength;
      prevIndex = index;
    }
    connectionIndex[i] = prevIndex;
    offsets[2 * i] = nameStart + nameLength;
    offsets[2 * i + 1] = off + 4 + entryLength;
    off += 4 + entryLength;
  }
  return { count, connections, connectionIndex, offsets };
}

/**
 * Each connection's payload offsets (pairs, in batch order), ready for native frameEvents.
 * A batch of one connection (the usual case) hands back `entries.offsets` itself.
 */
export function payloadOffsetsByConnection(entries: RecordBatchEntries): Map<string, Uint32Array> {
  const out = new Map<string, Uint32Array>();
  const { connections, connectionIndex, offsets, count } = entries;
  if (connections.length === 1) {
    out.set(connections[0]!, offsets);
    return out;
  }
  const counts = new Uint32Array(connections.length);
  for (let i = 0; i < count; i++) counts[connectionIndex[i]!]! += 1;
  const lists = connections.map((_, c) => new Uint32Array(2 * counts[c]!));
  const filled = new Uint32Array(connections.length);
  for (let i = 0; i < count; i++) {
    const c = connectionIndex[i]!;
    const at = 2 * filled[c]!;
    lists[c]![at] = offsets[2 * i]!;
    lists[c]![at + 1] = offsets[2 * i + 1]!;
    filled[c]! += 1;
  }
  connections.forEach((name, c) => out.set(name, lists[c]!));
  return out;
}

/**
 * Builds a record batch in one growing buffer: no allocation per entry beyond the amortized
 * doubling. `take()` hands the batch over and starts a new buffer.
 */
export class RecordBatchWriter {
  private buf: Buffer | null = null;
  private used = 0;
  private entries = 0;
  private nextCapacity = RECORD_BATCH_INITIAL_BYTES;
  // The last connection name and its UTF-8 length: entries of one connection usually repeat.
  private lastName = '';
  private lastNameBytes = 0;

  /** Entries in the batch so far. */
  get length(): number {
    return this.entries;
  }

  get byteLength(): number {
    return this.used;
  }

  /**
   * Appends one entry; `payload` is copied. Throws VgError ERR_VG_RECORDING (and adds nothing)
   * for an empty connection name or one over MAX_CONNECTION_NAME_BYTES, or a payload that is
   * empty or over MAX_EVENT_BYTES: what parseRecordBatch would refuse.
   */
  add(connection: string, payload: Uint8Array): void {
    if (typeof connection !== 'string' || connection === '') throw new VgError('ERR_VG_RECORDING', 'a recording event needs a connection name');
    if (payload.length === 0) throw new VgError('ERR_VG_RECORDING', `a recorded event of connection ${connection} has an empty payload`);
    if (payload.length > MAX_EVENT_BYTES) throw new VgError('ERR_VG_RECORDING', `a recorded event is ${payload.length} bytes encoded, over the ${MAX_EVENT_BYTES}-byte limit`);
    if (connection !== this.lastName) {
      const bytes = Buffer.byteLength(connection, 'utf8');
      if (bytes > MAX_CONNECTION_NAME_BYTES) throw new VgError('ERR_VG_RECORDING', `a connection name of ${bytes} bytes is over the ${MAX_CONNECTION_NAME_BYTES}-byte limit`);
      this.lastName = connection;
      this.lastNameBytes = bytes;
    }
    const nameBytes = this.lastNameBytes;
    const entryLength = 2 + nameBytes + payload.length;
    const b = this.reserve(4 + entryLength);
    const off = this.used;
    b[off] = entryLength >>> 24;
    b[off + 1] = (entryLength >>> 16) & 0xff;
    b[off + 2] = (entryLength >>> 8) & 0xff;
    b[off + 3] = entryLength & 0xff;
    b[off + 4] = nameBytes >>> 8;
    b[off + 5] = nameBytes & 0xff;
    b.write(connection, off + RECORD_BATCH_ENTRY_OVERHEAD, nameBytes, 'utf8');
    b.set(payload, off + RECORD_BATCH_ENTRY_OVERHEAD + nameBytes);
    this.used = off + 4 + entryLength;
    this.entries += 1;
  }

  /**
   * Appends an already-encoded batch verbatim (e.g. from native takeRecords). Only its entry
   * lengths are walked, to count entries and refuse one that runs past the end; the primary's
   * parseRecordBatch checks the rest.
   */
  appendBatch(blob: Uint8Array): void {
    let n = 0;
    for (let off = 0; off < blob.length; n++) {
      if (blob.length - off < RECORD_BATCH_ENTRY_OVERHEAD) throw malformed(`entry ${n} at byte ${off} is cut off inside its header`);
      const entryLength = ((blob[off]! << 24) | (blob[off + 1]! << 16) | (blob[off + 2]! << 8) | blob[off + 3]!) >>> 0;
      if (entryLength > blob.length - off - 4) throw malformed(`entry ${n} at byte ${off} is ${entryLength} bytes long, past the end of the ${blob.length}-byte batch`);
      off += 4 + entryLength;
    }
    if (n === 0) return;
    const b = this.reserve(blob.length);
    b.set(blob, this.used);
    this.used += blob.length;
    this.entries += n;
  }

  /**
   * The batch so far (empty when there is none), and the writer starts over. The Buffer owns
   * its whole ArrayBuffer (not Node's shared pool), so it can be transferred to another thread.
   */
  take(): Buffer {
    const b = this.buf === null ? Buffer.alloc(0) : this.buf.subarray(0, this.used);
    if (this.used > 0) this.nextCapacity = Math.min(RECORD_BATCH_REUSE_MAX_BYTES, Math.max(RECORD_BATCH_INITIAL_BYTES, nextPowerOfTwo(this.used)));
    this.buf = null;
    this.used = 0;
    this.entries = 0;
    return b;
  }

  /** A buffer with room for `bytes` more; grows by doubling, copying what is there. */
  private reserve(bytes: number): Buffer {
    const need = this.used + bytes;
    if (need > MAX_RECORD_BATCH_BYTES) throw new VgError('ERR_VG_RECORDING', `a record batch would reach ${need} bytes, over the ${MAX_RECORD_BATCH_BYTES}-byte limit: take() it sooner`);
    if (this.buf !== null && need <= this.buf.length) return this.buf;
    let capacity = this.buf === null ? this.nextCapacity : this.buf.length * 2;
    while (capacity < need) capacity *= 2;
    capacity = Math.min(capacity, MAX_RECORD_BATCH_BYTES);
    // allocUnsafeSlow: an ArrayBuffer of its own, never a slice of the shared pool.
    const grown = Buffer.allocUnsafeSlow(capacity);
    if (this.buf !== null) this.buf.copy(grown, 0, 0, this.used);
    this.buf = grown;
    return grown;
  }
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
