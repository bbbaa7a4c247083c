// `vecgate verify-recordings --dir DIR [--public-key FILE] [--repair]`: checks every chain,
// CRC, sequence and signature; prints one line per connection (the first bad record of a
// bad one) and exits 1 on tampering or damage. Torn tails from crashes are warnings;
// --repair cuts them off, and writes a new signed head where the head is missing but every
// record verifies (the recorder could not write it), saying so. Connections are verified in
// parallel on up to --jobs threads; --progress (the default when stderr is a terminal) prints
// a line on stderr as each connection is done.
import { VgError } from '../errors.js';
import { MAX_VERIFY_JOBS, repairRecordings, verifyRecordings, type ConnectionVerifyReport, type VerifyIssue, type VerifyReport } from '../recording/verify-recordings.js';

/** Progress appears on stderr only for runs longer than this... */
export const PROGRESS_AFTER_MS = 1_000;
/** ...and at most this often. */
export const PROGRESS_EVERY_MS = 1_000;

export interface VerifyRecordingsOptions {
  dir: string;
  publicKey?: string;
  /** The recordings' signing key, for --repair to re-sign a missing head (default: the one beside them). */
  signingKey?: string;
  repair?: boolean;
  /** Connections verified at once (default DEFAULT_VERIFY_JOBS; 1: on this thread). */
  jobs?: number;
  /** A line on stderr per connection verified; default: when stderr is a terminal. */
  progress?: boolean;
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/** `--jobs N`: a whole number from 1 to MAX_VERIFY_JOBS. */
export function parseJobs(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_VERIFY_JOBS) throw new VgError('ERR_VG_USAGE', `--jobs must be a whole number from 1 to ${MAX_VERIFY_JOBS}, not "${value}"`);
  return n;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function issueText(i: VerifyIssue): string {
  const where = [i.file, i.offset !== null && i.file !== null ? `offset ${i.offset}` : null, i.seq !== null ? `seq ${i.seq}` : null].filter((x) => x !== null).join(' ');
  return `${where === '' ? '' : where + ': '}${i.kind}: ${i.detail}`;
}

/** Returns the exit code (1 on problems) and sets process.exitCode to it. */
export async function runVerifyRecordings(opts: VerifyRecordingsOptions): Promise<number> {
  const out = opts.out ?? ((line: string) => process.stdout.write(line + '\n'));
  const err = opts.err ?? ((line: string) => process.stderr.write(line + '\n'));
  const started = Date.now();
  let lastProgress = 0;
  const perConnection = opts.progress ?? (opts.err === undefined && process.stderr.isTTY === true);
  // Without per-connection lines, a long run still says how far it got, now and then.
  const onProgress = (done: number, total: number) => {
    const now = Date.now();
    if (perConnection || now - started < PROGRESS_AFTER_MS || now - lastProgress < PROGRESS_EVERY_MS) return;
    lastProgress = now;
    err(`verify-recordings: ${done}/${total} segments checked`);
  };
  const onConnection = (c: ConnectionVerifyReport, done: number, total: number) => {
    if (!perConnection) return;
    const state = c.firstBad !== null ? `BAD (${c.firstBad.kind})` : `OK, ${plural(c.segments, 'segment')}`;
    err(`verify-recordings: ${done}/${total} connections checked: ${c.connection} ${state}, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  };
  const vopts = {
    onProgress,
    onConnection,
    ...(opts.publicKey !== undefined ? { publicKeyPath: opts.publicKey } : {}),
    ...(opts.jobs !== undefined ? { jobs: opts.jobs } : {}),
  };
  let report: VerifyReport;
  if (opts.repair === true) {
    const r = await repairRecordings(opts.dir, { ...vopts, ...(opts.signingKey !== undefined ? { signingKeyPath: opts.signingKey } : {}) });
    report = r.report;
    for (const t of r.repaired) out(`repaired ${t.file}: removed ${t.removedBytes} bytes of a partly written record`);
    for (const h of r.heads) {
      out(`repaired ${h.file}: the signed head was missing (the recorder could not write it); wrote a new one naming seq ${h.seq} in segment ${h.segment}, the last record on disk. Records cut from the end before this repair can no longer be detected`);
    }
    for (const n of r.notRebuilt) out(`NOT REPAIRED ${n.connection}: the head is missing and cannot be rebuilt: ${n.reason}`);
  } else report = await verifyRecordings(opts.dir, vopts);

  for (const c of report.connections) {
    if (c.firstBad !== null) out(`BAD  ${c.connection}: ${issueText(c.firstBad)}${c.issues.filter((i) => i.fatal).length > 1 ? ` (and ${c.issues.filter((i) => i.fatal).length - 1} more)` : ''}`);
    else out(`OK   ${c.connection}: ${plural(c.segments, 'segment')}, ${plural(c.events, 'event')}, chain to seq ${c.lastSeq ?? 0}`);
    if (opts.repair !== true) for (const t of c.tornTails) out(`TORN ${c.connection}: ${issueText(t)}; run with --repair to cut it off`);
  }
  const bad = report.firstBad.length;
  out(
    report.connections.length === 0
      ? `no recordings in ${opts.dir}`
      : `${bad === 0 ? 'recordings OK' : `recordings DAMAGED in ${bad} of ${report.connections.length} connection${report.connections.length === 1 ? '' : 's'}`}: ${plural(report.segments, 'segment')}, ${plural(report.events, 'event')}`,
  );
  const code = report.ok ? 0 : 1;
  if (code !== 0) process.exitCode = code;
  return code;
}
