// The primary's recorder: takes batches of events from the workers, removes secrets, and
// appends them to hash-chained segment files, one chain per connection (segment-format.ts
// has the layout). Strict durability resolves an append only after fdatasync, and appends
// that arrive together share one (group commit). Checkpoints every N records or T ms and
// each segment's seal are signed; retention deletes whole segments and records that it did.
// Event frames are built in C++ (native frameEvents), a whole run of payloads per call.
import { mkdir, open, readdir, readFile, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { writeSync, writevSync } from 'node:fs';
import path from 'node:path';
import { VgError } from '../errors.js';
import { native } from '../native.js';
import type { PidLock } from '../pid-lock.js';
import { syncDirectory, syncSegmentData } from './durable-sync.js';
import type { RecordEvent } from './record-event.js';
import { encodeEvent, MAX_EVENT_BYTES } from './encode-event.js';
import { MAX_RECORD_BATCH_BYTES, parseRecordBatch, payloadOffsetsByConnection, type RecordBatchEntries } from './record-batch.js';
import {
  BODY_FIXED_BYTES,
  connectionDirName,
  connectionFromDirName,
  encodeFrame,
  FRAME_PREFIX_BYTES,
  frameEventsJs,
  FrameKind,
  packr,
  scanSegment,
  SEGMENT_MAGIC,
  segmentFileName,
  signedBytes,
  utcDayBounds,
  ZERO_HASH,
  type SegmentHeader,
  type SignedPayload,
} from './segment-format.js';
import { listSegments, readHead, writeHead, type SegmentFile } from './segment-store.js';
import { initSqlRedaction } from './redact-sql.js';
import { loadSigningKey, signBytes, type SigningKey } from './signing-key.js';
import { lockRecordingsDir } from './writer-lock.js';
export { WRITER_LOCK_FILE } from './writer-lock.js';


/** A signed checkpoint after this many event records... */
export const CHECKPOINT_EVERY_RECORDS = 10_000;
/** ...or after this long with unsigned records, whichever comes first. */
export const CHECKPOINT_INTERVAL_MS = 30_000;
/** A segment that reaches this size is sealed and a new one begun (segments also end at UTC midnight). */
export const SEGMENT_MAX_BYTES = 64 * 1024 * 1024;
/**
 * Event frames are built in one buffer the recorder keeps and reuses, up to this size (a batch
 * whose frames need more gets a buffer of its own): a fresh buffer per batch cost the primary
 * page faults on every write and garbage for the collector.
 */
export const FRAME_BUFFER_MAX_BYTES = 4 * 1024 * 1024;
/** The frame buffer's first size; it doubles when a batch needs more. */
export const FRAME_BUFFER_INITIAL_BYTES = 64 * 1024;
export { MAX_EVENT_BYTES } from './encode-event.js';

export interface RecorderOptions {
  dir: string;
  durability: 'strict' | 'async';
  retentionMs: number;
  /** PEM file of an Ed25519 private key (`recordings.signing_key`); default: generated into `dir`. */
  signingKeyPath?: string;
}

interface Chain {
  connection: string;
  connDir: string;
  /** Open segment; null until the first write of this process. */
  fh: FileHandle | null;
  segment: number;
  day: string;
  pos: number;
  /** Sequence number and hash of the last frame written. */
  seq: number;
  hash: Buffer;
  events: number;
  sinceCheckpoint: number;
  lastCheckpointAt: number;
  firstSegment: number;
  /** Highest segment number on disk (the next one opened is this + 1). */
  lastSegment: number;
}

/** Payloads of one connection, in order: `blob[offsets[2i], offsets[2i + 1])`. */
interface PayloadRun {
  blob: Uint8Array;
  offsets: Uint32Array;
}

interface Pending {
  byConnection: Map<string, PayloadRun>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Frames payloads `blob[offsets[2i], offsets[2i+1])` into `into[at, at + length)` (native frameEventsInto). */
type FrameEventsInto = (into: Uint8Array, at: number, blob: Uint8Array, offsets: Uint32Array, firstSeq: number, prevHash: Buffer) => { length: number; hash: Buffer };
interface EventFramer {
  into: FrameEventsInto;
  kind: 'native' | 'js';
}
let frameEventsImpl: EventFramer | undefined;

/**
 * The event framer recorders use: native frameEventsInto, or the JavaScript reference
 * (frameEventsJs, copied into place) where the addon is not built (the audit tools and tests can record without it; the gateway's workers
 * cannot run without the addon anyway).
 */
export function eventFramer(): EventFramer {
  if (frameEventsImpl === undefined) {
    let binding: ReturnType<typeof native> | undefined;
    try {
      binding = native();
    } catch {
      binding = undefined;
    }
    frameEventsImpl =
      binding !== undefined && typeof binding.frameEventsInto === 'function'
        ? { into: binding.frameEventsInto.bind(binding), kind: 'native' }
        : {
            into: (into, at, blob, offsets, firstSeq, prevHash) => {
              const f = frameEventsJs(blob, offsets, firstSeq, prevHash);
              if (f.frames.length > into.length - at) throw new RangeError(`frameEventsInto: ${f.frames.length} bytes of frames do not fit at ${at} in ${into.length} bytes`);
              into.set(f.frames, at);
              return { length: f.frames.length, hash: f.hash };
            },
            kind: 'js',
          };
  }
  return frameEventsImpl;
}

/** Bytes of the Event frames of these payloads (`offsets`: [start, end) pairs). */
function eventFramesBytes(offsets: Uint32Array): number {
  let payload = 0;
  for (let i = 0; i < offsets.length; i += 2) payload += offsets[i + 1]! - offsets[i]!;
  return (offsets.length / 2) * (FRAME_PREFIX_BYTES + BODY_FIXED_BYTES) + payload;
}

export interface EncodedEvents {
  connections: string[];
  payloads: Uint8Array[];
}

/** Encodes (checks and redacts) events for appendEncoded: one payload per event, with its connection. */
export function encodeEvents(events: readonly RecordEvent[]): EncodedEvents {
  const connections: string[] = [];
  const payloads: Uint8Array[] = [];
  for (const e of events) {
    payloads.push(encodeEvent(e));
    connections.push(e.connection);
  }
  return { connections, payloads };
}

export class Recorder {
  private readonly chains = new Map<string, Chain>();
  private queue: Pending[] = [];
  private drainScheduled = false;
  private closing = false;
  private tail: Promise<unknown> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  /** Where event frames are built (FRAME_BUFFER_MAX_BYTES), and how much of it this drain used. */
  private frameBuffer: Buffer | null = null;
  private frameBufferUsed = 0;
  /** The UTC day of the last `now` seen, with its bounds: utcDay() once a day, not per drain. */
  private today = { day: '', start: 0, end: 0 };

  private constructor(
    private readonly opts: RecorderOptions,
    private readonly key: SigningKey,
    private readonly lock: PidLock,
  ) {
    this.timer = setInterval(() => void this.exclusive(() => this.checkpointDue(Date.now())).catch(() => undefined), CHECKPOINT_INTERVAL_MS);
    this.timer.unref();
  }

  /** Fingerprint of the signing key, as segment headers name it. */
  get keyId(): string {
    return this.key.keyId;
  }

  static async open(opts: RecorderOptions): Promise<Recorder> {
    if (!(opts.retentionMs > 0)) throw new VgError('ERR_VG_RECORDING', `recordings retention must be positive (got ${opts.retentionMs} ms)`);
    try {
      await mkdir(opts.dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new VgError('ERR_VG_RECORDING', `cannot create the recordings directory ${opts.dir}: ${(e as Error).message}`, { cause: e });
    }
    // Events appended here (append) are redacted here: by the parse tree, once it is loaded.
    await initSqlRedaction();
    const lock = lockRecordingsDir(opts.dir, 'recorder');
    try {
      return new Recorder(opts, await loadSigningKey(opts.dir, opts.signingKeyPath), lock);
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /**
   * Appends events in order. Strict durability: resolves once they are on disk (fdatasync);
   * async: once the OS has them. Rejects if any could not be written; the caller decides
   * whether the session may go on without its recording.
   */
  append(events: RecordEvent[]): Promise<void> {
    let encoded: EncodedEvents;
    try {
      encoded = encodeEvents(events);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.appendEncoded(encoded.connections, encoded.payloads);
  }

  /**
   * Appends events a worker already encoded (encode-event.ts: checked and redacted there):
   * `payloads[i]` goes to the chain of `connections[i]`, in order. Same promise as `append`.
   */
  appendEncoded(connections: readonly string[], payloads: readonly Uint8Array[]): Promise<void> {
    if (this.closing) return Promise.reject(new VgError('ERR_VG_RECORDING', 'the recorder is closed; no more events can be recorded'));
    if (connections.length !== payloads.length) return Promise.reject(new VgError('ERR_VG_RECORDING', `a recording batch names ${connections.length} connections for ${payloads.length} events`));
    // Copied into one blob with offsets: the shape a record batch parses into.
    const names: string[] = [];
    const indexOf = new Map<string, number>();
    const connectionIndex = new Uint32Array(payloads.length);
    const offsets = new Uint32Array(2 * payloads.length);
    let total = 0;
    for (let i = 0; i < payloads.length; i++) {
      const connection = connections[i]!;
      const payload = payloads[i]!;
      if (typeof connection !== 'string' || connection === '') return Promise.reject(new VgError('ERR_VG_RECORDING', 'a recording event needs a connection name'));
      if (payload.length > MAX_EVENT_BYTES) return Promise.reject(new VgError('ERR_VG_RECORDING', `a recorded event is ${payload.length} bytes encoded, over the ${MAX_EVENT_BYTES}-byte limit`));
      let index = indexOf.get(connection);
      if (index === undefined) {
        index = names.length;
        names.push(connection);
        indexOf.set(connection, index);
      }
      connectionIndex[i] = index;
      offsets[2 * i] = total;
      total += payload.length;
      offsets[2 * i + 1] = total;
    }
    if (payloads.length === 0) return Promise.resolve();
    if (total > MAX_RECORD_BATCH_BYTES) return Promise.reject(new VgError('ERR_VG_RECORDING', `a recording batch of ${total} bytes is over the ${MAX_RECORD_BATCH_BYTES}-byte limit: send it in parts`));
    const blob = Buffer.allocUnsafe(total);
    for (let i = 0; i < payloads.length; i++) blob.set(payloads[i]!, offsets[2 * i]!);
    return this.enqueue(blob, { count: payloads.length, connections: names, connectionIndex, offsets });
  }

  /**
   * Appends a record batch (record-batch.ts) a worker built: each entry's payload goes to the
   * chain of its connection, in order. Same checks and promise as `appendEncoded`; a malformed
   * batch is refused whole (nothing of it is written). The recorder reads `blob` until the
   * promise settles: do not change it before.
   */
  appendBatch(blob: Uint8Array): Promise<void> {
    if (this.closing) return Promise.reject(new VgError('ERR_VG_RECORDING', 'the recorder is closed; no more events can be recorded'));
    let entries: RecordBatchEntries;
    try {
      entries = parseRecordBatch(blob);
    } catch (e) {
      return Promise.reject(e);
    }
    if (entries.count === 0) return Promise.resolve();
    return this.enqueue(blob, entries);
  }

  private enqueue(blob: Uint8Array, entries: RecordBatchEntries): Promise<void> {
    const byConnection = new Map<string, PayloadRun>();
    for (const [connection, offsets] of payloadOffsetsByConnection(entries)) byConnection.set(connection, { blob, offsets });
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ byConnection, resolve, reject });
      if (!this.drainScheduled) {
        this.drainScheduled = true;
        void this.exclusive(() => this.drain());
      }
    });
  }

  /** Seals every open segment (signed, synced) and stops. Appends made before it are written first. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.timer);
    try {
      await this.sealAll();
    } finally {
      this.lock.release();
    }
  }

  private sealAll(): Promise<void> {
    return this.exclusive(async () => {
      // Seal every chain even if one fails; report the first failure after.
      let failure: unknown;
      for (const chain of this.chains.values()) {
        if (chain.fh === null) continue;
        await this.seal(chain, Date.now()).catch((e: unknown) => (failure ??= e));
      }
      this.chains.clear();
      if (failure !== undefined) throw new VgError('ERR_VG_RECORDING', `could not seal every recording segment: ${(failure as Error).message}`, { cause: failure });
    });
  }

  /**
   * Deletes segments whose last record is older than the retention, oldest first, never the
   * one being written, and records a `retention` event in the connection's chain first.
   */
  enforceRetention(now: number = Date.now()): Promise<{ deleted: string[] }> {
    if (this.closing) return Promise.reject(new VgError('ERR_VG_RECORDING', 'the recorder is closed'));
    return this.exclusive(async () => {
      const deleted: string[] = [];
      let entries: string[];
      try {
        entries = (await readdir(this.opts.dir, { withFileTypes: true })).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
      } catch (e) {
        throw new VgError('ERR_VG_RECORDING', `cannot read the recordings directory ${this.opts.dir}: ${(e as Error).message}`, { cause: e });
      }
      for (const dirName of entries) {
        const connection = connectionFromDirName(dirName);
        if (connection === null) continue;
        const connDir = path.join(this.opts.dir, dirName);
        const open = this.chains.get(connection);
        const segments = (await listSegments(this.opts.dir, connDir)).filter((s) => open?.fh === null || open === undefined || s.segment < open.segment);
        const expired: SegmentFile[] = [];
        for (const s of segments) {
          if ((await segmentEndedAt(s)) + this.opts.retentionMs > now) break;
          expired.push(s);
        }
        if (expired.length === 0) continue;
        // `now` judges what expired; the write itself happens at the real time.
        const writeTime = Date.now();
        const chain = await this.writable(connection, writeTime);
        const event: RecordEvent = {
          type: 'retention',
          ts: writeTime,
          session: '',
          connection,
          retentionMs: this.opts.retentionMs,
          segments: expired.map((s) => s.segment),
          deleted: expired.map((s) => s.rel),
        };
        chain.firstSegment = Math.max(chain.firstSegment, expired[expired.length - 1]!.segment + 1);
        const frames = [this.eventFrame(chain, packr.pack(event)), this.signedFrame(chain, FrameKind.Checkpoint, writeTime)];
        await this.write(chain, frames);
        await syncSegmentData(chain.fh!);
        await this.writeHead(chain, writeTime);
        for (const s of expired) {
          await unlink(s.file);
          deleted.push(s.rel);
          // The day directory goes with its last segment.
          await rmdir(path.dirname(s.file)).catch(() => undefined);
        }
      }
      return { deleted };
    });
  }

  /** Runs `fn` after every earlier disk operation of this recorder: one writer at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** Writes everything queued so far as one group: one write and at most one fdatasync per connection. */
  private async drain(): Promise<void> {
    this.drainScheduled = false;
    // Frames of the last drain were written (synchronously) before it ended: their bytes may go.
    this.frameBufferUsed = 0;
    const group = this.queue;
    this.queue = [];
    const now = Date.now();
    const runs = new Map<string, PayloadRun[]>();
    for (const p of group) {
      for (const [c, run] of p.byConnection) {
        const all = runs.get(c);
        if (all === undefined) runs.set(c, [run]);
        else all.push(run);
      }
    }
    const failed = new Map<string, unknown>();
    const toSync: Chain[] = [];
    const toHead = new Set<Chain>();
    for (const [connection, list] of runs) {
      let chain: Chain | undefined;
      try {
        chain = await this.writable(connection, now);
        const frames: Buffer[] = [];
        let signed = false;
        for (const run of list) if (this.eventFrames(chain, run, now, frames)) signed = true;
        if (chain.sinceCheckpoint > 0 && now - chain.lastCheckpointAt >= CHECKPOINT_INTERVAL_MS) {
          frames.push(this.signedFrame(chain, FrameKind.Checkpoint, now));
          signed = true;
        }
        await this.write(chain, frames);
        if (this.opts.durability === 'strict' || signed) toSync.push(chain);
        if (signed) toHead.add(chain);
      } catch (e) {
        failed.set(connection, e);
        // The chain may have moved past what reached the file: resume from the disk next time.
        if (chain !== undefined && this.chains.get(connection) === chain) await this.forget(chain);
      }
    }
    await Promise.all(
      toSync.map(async (chain) => {
        try {
          await syncSegmentData(chain.fh!);
          if (toHead.has(chain)) await this.writeHead(chain, now);
        } catch (e) {
          failed.set(chain.connection, e);
          await this.forget(chain);
        }
      }),
    );
    for (const p of group) {
      let err: unknown;
      if (failed.size > 0) {
        for (const c of p.byConnection.keys()) {
          err = failed.get(c);
          if (err !== undefined) break;
        }
      }
      if (err === undefined) p.resolve();
      else p.reject(err instanceof VgError ? err : new VgError('ERR_VG_RECORDING', `recording write failed: ${(err as Error).message}`, { cause: err }));
    }
  }

  /**
   * Frames a run of payloads onto `chain` (pushing the bytes to `out`), natively, one call per
   * stretch between checkpoints: a signed checkpoint follows the event that brings
   * `sinceCheckpoint` to CHECKPOINT_EVERY_RECORDS. Returns whether it added a checkpoint.
   */
  private eventFrames(chain: Chain, run: PayloadRun, now: number, out: Buffer[]): boolean {
    const framer = eventFramer();
    const n = run.offsets.length / 2;
    let signed = false;
    for (let i = 0; i < n; ) {
      const take = Math.min(n - i, Math.max(1, CHECKPOINT_EVERY_RECORDS - chain.sinceCheckpoint));
      const offsets = take === n ? run.offsets : run.offsets.subarray(2 * i, 2 * (i + take));
      const { buf, at } = this.frameRoom(eventFramesBytes(offsets));
      const f = framer.into(buf, at, run.blob, offsets, chain.seq + 1, chain.hash);
      out.push(buf.subarray(at, at + f.length));
      chain.seq += take;
      chain.hash = f.hash;
      chain.events += take;
      chain.sinceCheckpoint += take;
      i += take;
      if (chain.sinceCheckpoint >= CHECKPOINT_EVERY_RECORDS) {
        out.push(this.signedFrame(chain, FrameKind.Checkpoint, now));
        signed = true;
      }
    }
    return signed;
  }

  /**
   * Room for `bytes` of frames: the next `bytes` of the frame buffer, or a buffer of their own
   * when they are more than FRAME_BUFFER_MAX_BYTES. A buffer too small is replaced (frames
   * already built in it this drain keep the old one alive until they are written).
   */
  private frameRoom(bytes: number): { buf: Buffer; at: number } {
    if (bytes > FRAME_BUFFER_MAX_BYTES) return { buf: Buffer.allocUnsafeSlow(bytes), at: 0 };
    if (this.frameBuffer === null || this.frameBuffer.length - this.frameBufferUsed < bytes) {
      let size = Math.max(FRAME_BUFFER_INITIAL_BYTES, this.frameBuffer?.length ?? 0);
      while (size < bytes) size *= 2;
      this.frameBuffer = Buffer.allocUnsafeSlow(Math.min(size, FRAME_BUFFER_MAX_BYTES));
      this.frameBufferUsed = 0;
    }
    const at = this.frameBufferUsed;
    this.frameBufferUsed += bytes;
    return { buf: this.frameBuffer, at };
  }

  private async checkpointDue(now: number): Promise<void> {
    for (const chain of this.chains.values()) {
      if (chain.fh === null || chain.sinceCheckpoint === 0) continue;
      try {
        await this.write(chain, [this.signedFrame(chain, FrameKind.Checkpoint, now)]);
        await syncSegmentData(chain.fh!);
        await this.writeHead(chain, now);
      } catch {
        await this.forget(chain);
      }
    }
  }

  /** The chain of `connection` with an open segment for `now`'s day (rolling over if needed). */
  private async writable(connection: string, now: number): Promise<Chain> {
    let chain = this.chains.get(connection);
    if (chain === undefined) {
      chain = await this.resume(connection);
      this.chains.set(connection, chain);
    }
    if (chain.fh !== null && (chain.day !== this.dayOf(now) || chain.pos >= SEGMENT_MAX_BYTES)) await this.seal(chain, now);
    if (chain.fh === null) await this.openSegment(chain, now);
    return chain;
  }

  /** utcDay(now), recomputed only when `now` leaves the day it computed last. */
  private dayOf(now: number): string {
    if (now < this.today.start || now >= this.today.end) this.today = utcDayBounds(now);
    return this.today.day;
  }

  /** Picks a connection's chain up where the last process left it: after the last intact frame on disk. */
  private async resume(connection: string): Promise<Chain> {
    const connDir = path.join(this.opts.dir, connectionDirName(connection));
    await mkdir(connDir, { recursive: true, mode: 0o700 });
    const segments = await listSegments(this.opts.dir, connDir);
    const chain: Chain = {
      connection,
      connDir,
      fh: null,
      segment: 0,
      day: '',
      pos: 0,
      seq: 0,
      hash: ZERO_HASH,
      events: 0,
      sinceCheckpoint: 0,
      lastCheckpointAt: Date.now(),
      firstSegment: segments[0]?.segment ?? 1,
      lastSegment: segments[segments.length - 1]?.segment ?? 0,
    };
    const head = await readHead(connDir, this.key.publicKey);
    if (head.kind === 'ok') {
      chain.firstSegment = head.head.firstSegment;
      chain.lastSegment = Math.max(chain.lastSegment, head.head.segment);
    }
    // A torn or damaged last segment is left as it is (for verify-recordings to report); the
    // new segment chains to the last frame that is intact.
    for (let i = segments.length - 1; i >= 0; i--) {
      const { frames } = scanSegment(await readFile(segments[i]!.file));
      const last = frames[frames.length - 1];
      if (last !== undefined) {
        chain.seq = last.seq;
        chain.hash = Buffer.from(last.hash);
        chain.segment = segments[i]!.segment;
        break;
      }
    }
    return chain;
  }

  private async openSegment(chain: Chain, now: number): Promise<void> {
    const prevSegment = chain.lastSegment;
    const segment = prevSegment + 1;
    const day = this.dayOf(now);
    const dayDir = path.join(chain.connDir, day);
    await mkdir(dayDir, { recursive: true, mode: 0o700 });
    const fh = await open(path.join(dayDir, segmentFileName(segment)), 'wx', 0o600);
    chain.fh = fh;
    chain.segment = segment;
    chain.lastSegment = segment;
    chain.day = day;
    chain.pos = 0;
    chain.events = 0;
    const header: SegmentHeader = { v: 1, connection: chain.connection, segment, day, createdAt: now, prevSegment, keyId: this.key.keyId };
    try {
      const frame = encodeFrame(FrameKind.Header, chain.seq + 1, chain.hash, packr.pack(header));
      await this.writeRaw(chain, Buffer.concat([SEGMENT_MAGIC, frame.bytes]));
      chain.seq += 1;
      chain.hash = frame.hash;
      await syncSegmentData(fh);
      await syncDirectory(dayDir);
      await syncDirectory(chain.connDir);
      // The head signs the new header's position: removing this segment later shows.
      await this.writeHead(chain, now);
    } catch (e) {
      await this.forget(chain);
      throw e;
    }
  }

  private async seal(chain: Chain, now: number): Promise<void> {
    try {
      await this.write(chain, [this.signedFrame(chain, FrameKind.Seal, now)]);
      await syncSegmentData(chain.fh!);
      await this.writeHead(chain, now);
    } finally {
      await chain.fh?.close().catch(() => undefined);
      chain.fh = null;
    }
  }

  /** Encodes an event frame and advances the chain (the bytes are written by `write`). */
  private eventFrame(chain: Chain, payload: Uint8Array): Buffer {
    const f = encodeFrame(FrameKind.Event, chain.seq + 1, chain.hash, payload);
    chain.seq += 1;
    chain.hash = f.hash;
    chain.events += 1;
    chain.sinceCheckpoint += 1;
    return f.bytes;
  }

  private signedFrame(chain: Chain, kind: FrameKind.Checkpoint | FrameKind.Seal, now: number): Buffer {
    const seq = chain.seq + 1;
    const payload: SignedPayload = { at: now, sig: signBytes(this.key.privateKey, signedBytes(kind, seq, chain.hash)) };
    if (kind === FrameKind.Seal) payload.events = chain.events;
    const f = encodeFrame(kind, seq, chain.hash, packr.pack(payload));
    chain.seq = seq;
    chain.hash = f.hash;
    chain.sinceCheckpoint = 0;
    chain.lastCheckpointAt = now;
    return f.bytes;
  }

  private async write(chain: Chain, frames: Buffer[]): Promise<void> {
    try {
      if (frames.length === 1) await this.writeRaw(chain, frames[0]!);
      else await this.writeRawv(chain, frames);
    } catch (e) {
      // How much reached the file is unknown: start over from what is on disk next time.
      await this.forget(chain);
      throw new VgError('ERR_VG_RECORDING', `cannot write recording segment of connection ${chain.connection}: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * A synchronous write: it only copies into the page cache (durability comes from the
   * fdatasync after it), and a promise round trip through the thread pool per batch cost
   * more CPU than the copy.
   */
  private async writeRaw(chain: Chain, bytes: Buffer): Promise<void> {
    let done = 0;
    while (done < bytes.length) done += writeSync(chain.fh!.fd, bytes, done, bytes.length - done, chain.pos + done);
    chain.pos += bytes.length;
  }

  /** writeRaw for several buffers: one pwritev (libuv splits at IOV_MAX and retries short writes). */
  private async writeRawv(chain: Chain, parts: Buffer[]): Promise<void> {
    let total = 0;
    for (const b of parts) total += b.length;
    if (total === 0) return;
    const done = writevSync(chain.fh!.fd, parts, chain.pos);
    if (done < total) {
      const rest = Buffer.concat(parts).subarray(done);
      let more = 0;
      while (more < rest.length) more += writeSync(chain.fh!.fd, rest, more, rest.length - more, chain.pos + done + more);
    }
    chain.pos += total;
  }

  private async writeHead(chain: Chain, now: number): Promise<void> {
    await writeHead(chain.connDir, { v: 1, connection: chain.connection, segment: chain.segment, seq: chain.seq, hash: chain.hash, firstSegment: chain.firstSegment, at: now }, this.key.privateKey);
  }

  private async forget(chain: Chain): Promise<void> {
    await chain.fh?.close().catch(() => undefined);
    chain.fh = null;
    this.chains.delete(chain.connection);
  }
}

/** When a segment's last record was written: its seal's time, else (a crash) the file's mtime. */
async function segmentEndedAt(s: SegmentFile): Promise<number> {
  const { frames } = scanSegment(await readFile(s.file));
  const last = frames[frames.length - 1];
  if (last !== undefined && last.kind === FrameKind.Seal) {
    const p = packr.unpack(last.payload) as SignedPayload;
    if (typeof p.at === 'number') return p.at;
  }
  return (await stat(s.file)).mtimeMs;
}

