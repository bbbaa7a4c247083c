// Checks recordings end to end: every frame's CRC, sequence and chain link, every checkpoint
// and seal signature, segment numbering (a gap must be explained by retention), and each
// connection's signed head (a removed last segment or a cut tail shows). Reports the first
// bad record per connection with its file, offset and sequence number. A torn tail (a
// partial last record after a crash) is reported but is not fatal, and can be repaired; so can
// a head that is missing while every record verifies (the recorder could not write it).
// Connections are independent chains: with more than one, each is verified as a task on a
// bounded piscina pool (verify-worker.ts), so hashing and signature checks use every core
// and leave the calling thread free; the report is the same as on one thread.
import type { KeyObject } from 'node:crypto';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { VerifyConnectionTask } from './verify-worker.js';
import { VgError } from '../errors.js';
import type { RecordEvent } from './record-event.js';
import { FrameKind, packr, scanSegment, SEGMENT_MAGIC, signedBytes, ZERO_HASH, type SegmentHeader, type SignedPayload } from './segment-format.js';
import { HEAD_FILE, listConnectionDirs, listSegments, readHead, writeHead, type ConnectionDir, type HeadState } from './segment-store.js';
import { GENERATED_KEY_FILE, keyIdOf, loadPublicKey, verifyBytes } from './signing-key.js';
import { lockRecordingsDir } from './writer-lock.js';

/** Issues kept per connection after the first (the first is what matters; the rest are often its echoes). */
export const MAX_ISSUES_PER_CONNECTION = 100;
/**
 * Connections verified at once by default: one, on the calling thread. Measured on an idle
 * 2-core machine (bench/verify-recordings-bench.ts, bench/README.md), the piscina pool gave no
 * speed-up (jobs 2: 0.70x at 83 MB, 0.98x at 330 MB) for 1.7-2.5x the CPU (each pool thread
 * starts cold: module load, JIT and heap warm-up); `--jobs N` uses it.
 */
export const DEFAULT_VERIFY_JOBS = 1;
/** The most `jobs` (`--jobs`) accepts: each job is a worker thread with its own heap. */
export const MAX_VERIFY_JOBS = 64;

export type VerifyIssueKind =
  | 'torn-tail'
  | 'truncated'
  | 'bad-magic'
  | 'bad-length'
  | 'bad-crc'
  | 'bad-sequence'
  | 'bad-chain'
  | 'bad-header'
  | 'bad-payload'
  | 'bad-signature'
  | 'key-mismatch'
  | 'data-after-seal'
  | 'segment-missing'
  | 'head-missing'
  | 'head-bad'
  | 'head-mismatch';

export interface VerifyIssue {
  connection: string;
  kind: VerifyIssueKind;
  /** False only for a torn tail: a crash, not tampering. */
  fatal: boolean;
  /** Segment file relative to the recordings directory, when the issue is in one. */
  file: string | null;
  offset: number | null;
  /** Sequence number the record at that place should have. */
  seq: number | null;
  detail: string;
}

export interface ConnectionVerifyReport {
  connection: string;
  segments: number;
  events: number;
  lastSeq: number | null;
  /** First fatal issue in chain order; null when the chain is intact. */
  firstBad: VerifyIssue | null;
  tornTails: VerifyIssue[];
  issues: VerifyIssue[];
  /** The last intact record of the chain (what a rebuilt head names); null when there is none or the chain is damaged. */
  tip: { segment: number; seq: number; hash: Buffer; firstSegment: number } | null;
}

export interface VerifyReport {
  ok: boolean;
  connections: ConnectionVerifyReport[];
  segments: number;
  events: number;
  /** The first bad record of each bad connection. */
  firstBad: VerifyIssue[];
  tornTails: VerifyIssue[];
}

export interface VerifyOptions {
  /** Called after each segment file on one thread; after each connection's segments on the pool. */
  onProgress?(done: number, total: number): void;
  /** Called when a connection's chain is verified (in completion order on the pool), with how many are done. */
  onConnection?(report: ConnectionVerifyReport, done: number, total: number): void;
  /** Trust this public key instead of the one stored beside the recordings. */
  publicKeyPath?: string;
  /** Connections verified at once on a piscina pool; 1 verifies on the calling thread. Default: DEFAULT_VERIFY_JOBS. */
  jobs?: number;
}

export async function verifyRecordings(dir: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const jobs = opts.jobs ?? DEFAULT_VERIFY_JOBS;
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > MAX_VERIFY_JOBS) {
    throw new VgError('ERR_VG_USAGE', `jobs must be a whole number from 1 to ${MAX_VERIFY_JOBS}, not ${jobs}`);
  }
  const { listed, total } = await listRecordings(dir);
  if (listed.length === 0) return summarize([], total);
  const key = await loadPublicKey(dir, opts.publicKeyPath);
  // One connection gains nothing from a pool but its start-up (~50 ms a thread).
  if (jobs === 1 || listed.length === 1) return summarize(await verifyEachOnThisThread(listed, key, total, opts), total);
  return summarize(await verifyEachOnPool(listed, key, total, Math.min(jobs, listed.length), opts), total);
}

/** `verifyRecordings` with every chain verified in turn on the calling thread (what `jobs: 1` does). */
export async function verifyRecordingsOnThisThread(dir: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  return verifyRecordings(dir, { ...opts, jobs: 1 });
}

type Listed = { c: ConnectionDir; segments: Segments }[];

async function listRecordings(dir: string): Promise<{ listed: Listed; total: number }> {
  let conns: ConnectionDir[];
  try {
    conns = await listConnectionDirs(dir);
  } catch (e) {
    throw new VgError('ERR_VG_RECORDING', `cannot read the recordings directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  const listed = await Promise.all(conns.map(async (c) => ({ c, segments: await listSegments(dir, c.path) })));
  return { listed, total: listed.reduce((n, l) => n + l.segments.length, 0) };
}

/** The whole report from the per-connection ones, in connection order. */
function summarize(connections: ConnectionVerifyReport[], segments: number): VerifyReport {
  const report: VerifyReport = { ok: true, connections: [], segments, events: 0, firstBad: [], tornTails: [] };
  for (const r of connections) {
    report.connections.push(r);
    report.events += r.events;
    if (r.firstBad !== null) {
      report.ok = false;
      report.firstBad.push(r.firstBad);
    }
    report.tornTails.push(...r.tornTails);
  }
  return report;
}

async function verifyEachOnThisThread(listed: Listed, key: KeyObject, total: number, opts: VerifyOptions): Promise<ConnectionVerifyReport[]> {
  const out: ConnectionVerifyReport[] = [];
  let done = 0;
  for (const { c, segments } of listed) {
    const r = await verifyConnection(c, segments, key, () => opts.onProgress?.(++done, total));
    out.push(r);
    opts.onConnection?.(r, out.length, listed.length);
  }
  return out;
}

/** The compiled worker beside this file (dist/src/recording/verify-worker.js). */
const VERIFY_WORKER = new URL('./verify-worker.js', import.meta.url).href;

async function verifyEachOnPool(listed: Listed, key: KeyObject, total: number, threads: number, opts: VerifyOptions): Promise<ConnectionVerifyReport[]> {
  const { Piscina } = await import('piscina');
  const pool = new Piscina<VerifyConnectionTask, ConnectionVerifyReport>({ filename: VERIFY_WORKER, minThreads: threads, maxThreads: threads });
  const publicKeySpki = key.export({ type: 'spki', format: 'der' });
  let segmentsDone = 0;
  let connectionsDone = 0;
  try {
    return await Promise.all(
      listed.map(async ({ c, segments }) => {
        const r = revive(await pool.run({ connection: c, segments, publicKeySpki }));
        segmentsDone += segments.length;
        opts.onProgress?.(segmentsDone, total);
        opts.onConnection?.(r, ++connectionsDone, listed.length);
        return r;
      }),
    );
  } finally {
    await pool.destroy();
  }
}

/** Buffers come back from a worker as plain Uint8Arrays. */
function revive(r: ConnectionVerifyReport): ConnectionVerifyReport {
  if (r.tip === null) return r;
  const h = r.tip.hash as Uint8Array;
  return { ...r, tip: { ...r.tip, hash: Buffer.from(h.buffer, h.byteOffset, h.byteLength) } };
}

export type Segments = Awaited<ReturnType<typeof listSegments>>;

/** Verifies one connection's chain (on whichever thread calls it: verify-worker.ts runs it on the pool). */
export async function verifyConnection(c: ConnectionDir, segments: Segments, key: KeyObject, progress: () => void): Promise<ConnectionVerifyReport> {
  const found: { order: number; issue: VerifyIssue }[] = [];
  let order = 0;
  const add = (kind: VerifyIssueKind, file: string | null, offset: number | null, seq: number | null, detail: string, at = order++) => {
    const issue: VerifyIssue = { connection: c.connection, kind, fatal: kind !== 'torn-tail', file, offset, seq, detail };
    found.push({ order: at, issue });
    return issue;
  };
  const keyId = keyIdOf(key);
  let head: HeadState | null = null;
  const headRead = await readHead(c.path, key);
  if (headRead.kind === 'ok') head = headRead.head;
  else if (headRead.kind === 'bad') add('head-bad', null, null, null, `${path.join(c.dirName, 'head.vghead')}: ${headRead.reason}`);
  else if (segments.length > 0) add('head-missing', null, null, null, `${path.join(c.dirName, 'head.vghead')} is missing: the last segments may have been removed`);

  const retained = new Set<number>(); // segments a retention event says it deleted
  const gaps: { from: number; to: number; file: string; seq: number | null; order: number }[] = [];
  let events = 0;
  let lastSeq: number | null = null; // null: unknown (start, after a gap, after damage)
  let lastHash: Buffer = ZERO_HASH;
  let prevSegment: number | null = null;
  let tip: { segment: number; seq: number; hash: Buffer } | null = null;
  let headSeen: 'no' | 'match' | 'differs' = 'no';
  /** A torn tail stays harmless only if the next segment continues right after it. */
  let torn: { issue: VerifyIssue; seq: number | null } | null = null;

  for (const seg of segments) {
    const buf = await readFile(seg.file);
    const { frames, stop } = scanSegment(buf);
    const expectedFirst: number = prevSegment === null ? 1 : prevSegment + 1;
    if (seg.segment !== expectedFirst) {
      gaps.push({ from: expectedFirst, to: seg.segment - 1, file: seg.rel, seq: frames[0]?.seq ?? null, order: order++ });
      lastSeq = null;
      torn = null;
    }
    prevSegment = seg.segment;
    let sealed = false;
    let damaged = false;
    for (let i = 0; i < frames.length && !damaged; i++) {
      const f = frames[i]!;
      const where = (kind: VerifyIssueKind, detail: string) => {
        add(kind, seg.rel, f.offset, lastSeq === null ? f.seq : lastSeq + 1, detail);
        damaged = true;
      };
      if (i === 0) {
        let header: SegmentHeader | null = null;
        try {
          header = f.kind === FrameKind.Header ? (packr.unpack(f.payload) as SegmentHeader) : null;
        } catch {
          header = null;
        }
        if (header === null) {
          where('bad-header', `the first record is not a segment header (kind ${f.kind})`);
          break;
        }
        if (header.segment !== seg.segment || header.connection !== c.connection || header.prevSegment !== seg.segment - 1) {
          where('bad-header', `the header says segment ${header.segment} of connection "${header.connection}" after segment ${header.prevSegment}; the file is segment ${seg.segment} of "${c.connection}"`);
          break;
        }
        if (header.keyId !== keyId) {
          where('key-mismatch', `signed with key ${header.keyId}, but the trusted public key is ${keyId}`);
          break;
        }
        if (seg.segment === 1 && (f.seq !== 1 || !f.prevHash.equals(ZERO_HASH))) {
          where('bad-chain', 'the first segment does not start the chain (sequence 1, zero previous hash)');
          break;
        }
        if (lastSeq !== null && (f.seq !== lastSeq + 1 || !f.prevHash.equals(lastHash))) {
          if (torn !== null) {
            // The previous segment lost records the next one had already chained to.
            add('truncated', torn.issue.file, torn.issue.offset, torn.seq, `the file ends early: the next segment continues from sequence ${f.seq - 1}, this one's last whole record is ${lastSeq}`);
            found.splice(found.findIndex((x) => x.issue === torn!.issue), 1);
            damaged = true;
          } else if (f.seq !== lastSeq + 1) where('bad-sequence', `segment header has sequence ${f.seq}, expected ${lastSeq + 1}: records between the segments are missing`);
          else where('bad-chain', "the segment header does not chain to the previous segment's last record");
          break;
        }
        torn = null;
      } else {
        if (lastSeq !== null && f.seq !== lastSeq + 1) {
          where('bad-sequence', `found sequence ${f.seq}, expected ${lastSeq + 1}: a record was deleted, inserted or moved`);
          break;
        }
        if (!f.prevHash.equals(lastHash)) {
          where('bad-chain', 'the record does not chain to the one before it: a record was replaced or moved');
          break;
        }
        if (sealed) {
          where('data-after-seal', 'records follow the seal that ended this segment');
          break;
        }
        if (f.kind === FrameKind.Header) {
          where('bad-header', 'a segment header in the middle of a segment');
          break;
        }
      }
      if (f.kind === FrameKind.Checkpoint || f.kind === FrameKind.Seal) {
        let ok = false;
        try {
          const p = packr.unpack(f.payload) as SignedPayload;
          ok = Buffer.isBuffer(p.sig) && verifyBytes(key, signedBytes(f.kind, f.seq, f.prevHash), p.sig);
        } catch {
          ok = false;
        }
        if (!ok) {
          where('bad-signature', `the ${f.kind === FrameKind.Seal ? 'seal' : 'checkpoint'} signature does not verify: the records before it were altered and re-chained`);
          break;
        }
        if (f.kind === FrameKind.Seal) sealed = true;
      } else if (f.kind === FrameKind.Event) {
        let e: RecordEvent;
        try {
          e = packr.unpack(f.payload) as RecordEvent;
        } catch (err) {
          where('bad-payload', `the event does not decode: ${(err as Error).message}`);
          break;
        }
        events++;
        if (e.type === 'retention' && Array.isArray(e['segments'])) for (const n of e['segments'] as unknown[]) if (typeof n === 'number') retained.add(n);
      } else if (f.kind !== FrameKind.Header) {
        where('bad-payload', `unknown record kind ${f.kind}`);
        break;
      }
      lastSeq = f.seq;
      lastHash = f.hash;
      tip = { segment: seg.segment, seq: f.seq, hash: f.hash };
      if (head !== null && f.seq === head.seq) headSeen = seg.segment === head.segment && f.hash.equals(head.hash) ? 'match' : 'differs';
    }
    if (damaged) lastSeq = null;
    else if (stop.kind === 'torn') {
      const issue = add('torn-tail', seg.rel, stop.offset, lastSeq === null ? null : lastSeq + 1, `${buf.length - stop.offset} bytes of a partly written record at the end (a crash during a write); repairable`);
      torn = { issue, seq: lastSeq === null ? null : lastSeq + 1 };
    } else if (stop.kind !== 'end') {
      const what = stop.kind === 'bad-crc' ? 'the record fails its CRC: its bytes were changed' : stop.kind === 'bad-magic' ? 'the file does not start like a segment' : `the record length ${(stop as { length: number }).length} is impossible`;
      add(stop.kind, seg.rel, stop.offset, lastSeq === null ? null : lastSeq + 1, what);
      lastSeq = null;
    }
    progress();
  }

  for (const g of gaps) {
    const unexplained: number[] = [];
    for (let n = g.from; n <= g.to; n++) if (!(head !== null && n < head.firstSegment) && !retained.has(n)) unexplained.push(n);
    if (unexplained.length > 0) {
      const list = unexplained.length > 3 ? `${unexplained[0]}-${unexplained[unexplained.length - 1]}` : unexplained.join(', ');
      add('segment-missing', g.file, 0, g.seq, `segment${unexplained.length > 1 ? 's' : ''} ${list} before this one ${unexplained.length > 1 ? 'are' : 'is'} missing and no retention event explains it`, g.order);
    }
  }
  if (head !== null) {
    const maxSegment = segments[segments.length - 1]?.segment ?? 0;
    if (maxSegment < head.segment) {
      add('segment-missing', null, null, head.seq, `the signed head names segment ${head.segment} (sequence ${head.seq}), but the last segment on disk is ${maxSegment}: segments were removed from the end`);
    } else if (headSeen === 'differs') {
      add('head-mismatch', null, null, head.seq, `the record with sequence ${head.seq} is not the one the signed head names`);
    } else if (headSeen === 'no' && !found.some((x) => x.issue.fatal)) {
      const detail = `the signed head names sequence ${head.seq} in segment ${head.segment}, which is no longer there: records were cut from the end`;
      if (torn !== null) {
        // What looked like a crash's torn tail cut signed records: tampering, reported where it happened.
        add('truncated', torn.issue.file, torn.issue.offset, torn.seq, detail, found.find((x) => x.issue === torn!.issue)!.order);
        found.splice(found.findIndex((x) => x.issue === torn!.issue), 1);
      } else add('truncated', null, null, head.seq, detail);
    }
  }

  found.sort((a, b) => a.order - b.order);
  const issues = found.map((x) => x.issue).slice(0, MAX_ISSUES_PER_CONNECTION);
  return {
    connection: c.connection,
    segments: segments.length,
    events,
    lastSeq,
    firstBad: issues.find((i) => i.fatal) ?? null,
    tornTails: issues.filter((i) => i.kind === 'torn-tail'),
    issues,
    tip: tip !== null && !issues.some((i) => i.fatal && i.kind !== 'head-missing') ? { ...tip, firstSegment: segments[0]!.segment } : null,
  };
}

export interface RepairedTail {
  file: string;
  truncatedTo: number;
  removedBytes: number;
}

export interface RebuiltHead {
  connection: string;
  /** The head file, relative to the recordings directory. */
  file: string;
  segment: number;
  seq: number;
}

export interface RepairOptions extends VerifyOptions {
  /** The recordings' signing key (`recordings.signing_key`); default: the one generated beside them. */
  signingKeyPath?: string;
}

export interface RepairResult {
  repaired: RepairedTail[];
  /** Heads written anew because they were missing while every record of the chain verified. */
  heads: RebuiltHead[];
  /** Missing heads that were not rebuilt, and why (no signing key, another key). */
  notRebuilt: { connection: string; reason: string }[];
  report: VerifyReport;
}

/**
 * Restores a verifiable state where that is safe: cuts the partial record off every torn tail
 * that `verifyRecordings` finds harmless, and writes a new signed head for a connection whose
 * head is missing while every one of its records verifies (the recorder could not write the
 * head: a full disk, a directory it could not write to, requests served while it failed).
 * A rebuilt head vouches for the records on disk now: records cut from the end before the
 * repair can no longer be detected, so the output names each head it wrote.
 */
export async function repairRecordings(dir: string, opts: RepairOptions = {}): Promise<RepairResult> {
  const lock = lockRecordingsDir(dir, 'repair');
  try {
    const { repaired, report } = await repairUnlocked(dir, opts);
    const missing = report.connections.filter((c) => c.firstBad?.kind === 'head-missing' && c.tip !== null);
    if (missing.length === 0) return { repaired, heads: [], notRebuilt: [], report };
    const heads: RebuiltHead[] = [];
    const notRebuilt: { connection: string; reason: string }[] = [];
    const key = await signingKeyFor(dir, opts);
    for (const c of missing) {
      if (typeof key === 'string') {
        notRebuilt.push({ connection: c.connection, reason: key });
        continue;
      }
      const conn = (await listConnectionDirs(dir)).find((d) => d.connection === c.connection)!;
      const tip = c.tip!;
      await writeHead(conn.path, { v: 1, connection: c.connection, segment: tip.segment, seq: tip.seq, hash: tip.hash, firstSegment: tip.firstSegment, at: Date.now() }, key);
      heads.push({ connection: c.connection, file: path.join(conn.dirName, HEAD_FILE), segment: tip.segment, seq: tip.seq });
    }
    return { repaired, heads, notRebuilt, report: heads.length > 0 ? await verifyRecordings(dir, opts) : report };
  } finally {
    lock.release();
  }
}

/** The private key that signs these recordings, or why there is none to use (never a new one). */
async function signingKeyFor(dir: string, opts: RepairOptions): Promise<KeyObject | string> {
  const file = opts.signingKeyPath ?? path.join(dir, GENERATED_KEY_FILE);
  let key: KeyObject;
  try {
    key = createPrivateKey(await readFile(file, 'utf8'));
  } catch (e) {
    return `the signing key ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): pass --signing-key FILE`;
  }
  const trusted = await loadPublicKey(dir, opts.publicKeyPath);
  if (key.asymmetricKeyType !== 'ed25519' || keyIdOf(trusted) !== keyIdOf(createPublicKey(key))) {
    return `the signing key ${file} is not the key the recordings are checked with (${keyIdOf(trusted)})`;
  }
  return key;
}

/** Cuts the partial record off every torn tail that `verifyRecordings` finds harmless (repairRecordings does more). */
export async function repairTornTails(dir: string, opts: VerifyOptions = {}): Promise<{ repaired: RepairedTail[]; report: VerifyReport }> {
  const lock = lockRecordingsDir(dir, 'repair');
  try {
    return await repairUnlocked(dir, opts);
  } finally {
    lock.release();
  }
}

async function repairUnlocked(dir: string, opts: VerifyOptions): Promise<{ repaired: RepairedTail[]; report: VerifyReport }> {
  const report = await verifyRecordings(dir, opts);
  const repaired: RepairedTail[] = [];
  for (const t of report.tornTails) {
    if (t.file === null || t.offset === null) continue;
    const file = path.join(dir, t.file);
    const fh = await open(file, 'r+');
    try {
      const { size } = await fh.stat();
      // A file torn inside its magic gets a whole magic and no records.
      const to = Math.max(t.offset, SEGMENT_MAGIC.length);
      await fh.truncate(Math.min(to, size));
      if (t.offset < SEGMENT_MAGIC.length) await fh.write(SEGMENT_MAGIC, 0, SEGMENT_MAGIC.length, 0);
      await fh.datasync();
      repaired.push({ file: t.file, truncatedTo: to, removedBytes: Math.max(0, size - to) });
    } finally {
      await fh.close();
    }
  }
  // The tails are gone: what the chain looks like now (a rebuilt head must name what is on disk).
  return { repaired, report: repaired.length > 0 ? await verifyRecordings(dir, opts) : report };
}
