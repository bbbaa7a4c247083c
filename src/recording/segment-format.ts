// The on-disk format of recording segments, shared by the recorder (writes) and the verifier
// (reads): a file magic, then frames. Knows no directories and no keys.
//
//   segment = MAGIC frame*
//   frame   = u32 body length | u32 CRC-32 of body | body          (big-endian)
//   body    = u8 kind | u64 sequence | 32-byte hash of the previous frame | msgpack payload
//
// A frame's hash is SHA-256 of its body; since the body holds the previous hash, the hashes
// form one chain per connection, across segments: a segment's first frame (its header)
// carries the last hash and sequence of the segment before it. Checkpoints and the seal
// that ends a segment carry an Ed25519 signature over (kind, sequence, previous hash).
import { hash as oneShotHash } from 'node:crypto';
import { Packr } from 'msgpackr';
import { crc32 } from './crc32.js';

export const SEGMENT_MAGIC = Buffer.from('VGREC01\n', 'latin1');
export const FRAME_PREFIX_BYTES = 8;
export const HASH_BYTES = 32;
/** kind + sequence + previous hash. */
export const BODY_FIXED_BYTES = 1 + 8 + HASH_BYTES;
/** A length prefix above this is corruption, not a record (events are capped well below). */
export const MAX_FRAME_BODY_BYTES = 64 * 1024 * 1024;
export const ZERO_HASH = Buffer.alloc(HASH_BYTES);

export const enum FrameKind {
  Header = 1,
  Event = 2,
  Checkpoint = 3,
  Seal = 4,
}

/** Every frame decodes on its own: no shared msgpackr structures between records. */
export const packr = new Packr({ useRecords: false, moreTypes: false });

export interface SegmentHeader {
  v: 1;
  connection: string;
  segment: number;
  /** UTC day (YYYY-MM-DD) the segment belongs to. */
  day: string;
  createdAt: number;
  /** Number of the segment this one continues (0 for the first). */
  prevSegment: number;
  /** Fingerprint of the public key that signs this segment's checkpoints and seal. */
  keyId: string;
}

export interface SignedPayload {
  at: number;
  sig: Buffer;
  /** Seal only: event records in the segment. */
  events?: number;
}

export interface Frame {
  kind: number;
  seq: number;
  prevHash: Buffer;
  /** Lent: a view into the file buffer; copy if you keep it past the buffer. */
  payload: Buffer;
  hash: Buffer;
  offset: number;
  /** Total bytes including the prefix. */
  size: number;
}

export function encodeFrame(kind: FrameKind, seq: number, prevHash: Buffer, payload: Uint8Array): { bytes: Buffer; hash: Buffer } {
  const bytes = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + BODY_FIXED_BYTES + payload.length);
  const body = bytes.subarray(FRAME_PREFIX_BYTES);
  body[0] = kind;
  body.writeBigUInt64BE(BigInt(seq), 1);
  prevHash.copy(body, 9);
  body.set(payload, BODY_FIXED_BYTES);
  bytes.writeUInt32BE(body.length, 0);
  bytes.writeUInt32BE(crc32(body), 4);
  return { bytes, hash: oneShotHash('sha256', body, 'buffer') };
}

/**
 * The JavaScript reference for native `frameEvents` (src/native.ts): payload i is
 * `blob[offsets[2i], offsets[2i+1])`, framed as Event with sequence `firstSeq + i`, chained
 * from `prevHash`. Used where the addon is not built, and by the tests that check the native one.
 */
export function frameEventsJs(blob: Uint8Array, offsets: Uint32Array, firstSeq: number, prevHash: Buffer): { frames: Buffer; hash: Buffer } {
  const parts: Buffer[] = [];
  let hash = prevHash;
  for (let i = 0; 2 * i < offsets.length; i++) {
    const f = encodeFrame(FrameKind.Event, firstSeq + i, hash, blob.subarray(offsets[2 * i], offsets[2 * i + 1]));
    parts.push(f.bytes);
    hash = f.hash;
  }
  return { frames: Buffer.concat(parts), hash };
}

/** The bytes a checkpoint or seal signs; the previous hash commits to everything before it. */
export function signedBytes(kind: FrameKind, seq: number, prevHash: Buffer): Buffer {
  const b = Buffer.alloc(16 + 1 + 8 + HASH_BYTES);
  b.write('vgrec-signed-v1\0', 0, 'latin1');
  b[16] = kind;
  b.writeBigUInt64BE(BigInt(seq), 17);
  prevHash.copy(b, 25);
  return b;
}

export type ScanStop =
  | { kind: 'end' }
  /** The file ends inside a frame (or in zero fill): what a crash mid-write leaves. */
  | { kind: 'torn'; offset: number }
  | { kind: 'bad-magic'; offset: number }
  | { kind: 'bad-length'; offset: number; length: number }
  | { kind: 'bad-crc'; offset: number };

/**
 * Splits a segment file into frames, checking the magic, lengths and CRCs only (the chain,
 * sequence and signatures are the verifier's). Stops at the first frame it cannot trust.
 */
export function scanSegment(buf: Buffer): { frames: Frame[]; stop: ScanStop } {
  const frames: Frame[] = [];
  if (buf.length < SEGMENT_MAGIC.length) {
    return { frames, stop: SEGMENT_MAGIC.subarray(0, buf.length).equals(buf) ? { kind: 'torn', offset: 0 } : { kind: 'bad-magic', offset: 0 } };
  }
  if (!buf.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) return { frames, stop: { kind: 'bad-magic', offset: 0 } };
  let off = SEGMENT_MAGIC.length;
  while (off < buf.length) {
    const rest = buf.length - off;
    if (rest < FRAME_PREFIX_BYTES) return { frames, stop: { kind: 'torn', offset: off } };
    const length = buf.readUInt32BE(off);
    if (length < BODY_FIXED_BYTES || length > MAX_FRAME_BODY_BYTES) {
      // A crash can leave a zero-filled tail; anything else is a damaged length.
      const zeros = buf.subarray(off).every((b) => b === 0);
      return { frames, stop: zeros ? { kind: 'torn', offset: off } : { kind: 'bad-length', offset: off, length } };
    }
    if (rest < FRAME_PREFIX_BYTES + length) return { frames, stop: { kind: 'torn', offset: off } };
    const body = buf.subarray(off + FRAME_PREFIX_BYTES, off + FRAME_PREFIX_BYTES + length);
    if (crc32(body) !== buf.readUInt32BE(off + 4)) return { frames, stop: { kind: 'bad-crc', offset: off } };
    frames.push({
      kind: body[0]!,
      seq: Number(body.readBigUInt64BE(1)),
      prevHash: body.subarray(9, BODY_FIXED_BYTES),
      payload: body.subarray(BODY_FIXED_BYTES),
      hash: oneShotHash('sha256', body, 'buffer'),
      offset: off,
      size: FRAME_PREFIX_BYTES + length,
    });
    off += FRAME_PREFIX_BYTES + length;
  }
  return { frames, stop: { kind: 'end' } };
}

/** Segment file names: `seg-00000042.vgrec`, numbered per connection from 1. */
export const SEGMENT_NAME_DIGITS = 8;
const SEGMENT_NAME = /^seg-(\d+)\.vgrec$/;

export function segmentFileName(n: number): string {
  return `seg-${String(n).padStart(SEGMENT_NAME_DIGITS, '0')}.vgrec`;
}

export function parseSegmentFileName(name: string): number | null {
  const m = SEGMENT_NAME.exec(name);
  return m === null ? null : Number(m[1]);
}

export const DAY_DIR = /^\d{4}-\d{2}-\d{2}$/;

export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export const DAY_MS = 86_400_000;

/** The UTC day of `ms` and its bounds [start, end): lets a caller skip `utcDay` while `ms` stays inside. */
export function utcDayBounds(ms: number): { day: string; start: number; end: number } {
  // JavaScript time has no leap seconds: every UTC day is exactly DAY_MS long.
  const start = Math.floor(ms / DAY_MS) * DAY_MS;
  return { day: utcDay(start), start, end: start + DAY_MS };
}

/** Connection names become directory names: anything outside [A-Za-z0-9_-] is %-encoded. */
export function connectionDirName(connection: string): string {
  return Array.from(Buffer.from(connection, 'utf8'))
    .map((b) => (/[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0')))
    .join('');
}

export function connectionFromDirName(name: string): string | null {
  try {
    return decodeURIComponent(name);
  } catch {
    return null;
  }
}
