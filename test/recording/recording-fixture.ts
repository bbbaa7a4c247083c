// Test fixtures for recordings: temporary directories, event builders, and frame-level
// editing of segment files (what an attacker with write access to the disk could do).
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { after } from 'node:test';
import path from 'node:path';
import type { RecordEvent } from '../../src/recording/record-event.js';
import { Recorder } from '../../src/recording/recorder.js';
import { DAY_MS, scanSegment, type Frame } from '../../src/recording/segment-format.js';

export function tempDir(prefix = 'vg-rec-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A retention long enough that nothing a test writes expires. */
export const DAY = DAY_MS;

/** A maker of temporary directories that are all removed after the calling test file's tests. */
export function tempDirsRemovedAfter(): () => string {
  const cleanups: (() => void)[] = [];
  after(() => cleanups.forEach((c) => c()));
  return () => {
    const t = tempDir();
    cleanups.push(t.cleanup);
    return t.dir;
  };
}

export function ev(type: string, session: string, ts: number, extra: Record<string, unknown> = {}, connection = 'pg'): RecordEvent {
  return { type, ts, session, connection, ...extra };
}

/** A session of `n` statements: open, statement/result pairs, close. */
export function sessionEvents(session: string, t0: number, n: number, connection = 'pg', subject = 'alice'): RecordEvent[] {
  const out: RecordEvent[] = [ev('session-open', session, t0, { subject, groups: ['analysts'] }, connection)];
  for (let i = 0; i < n; i++) {
    out.push(ev('statement', session, t0 + 1 + 2 * i, { sql: `SELECT ${i}` }, connection));
    out.push(ev('result', session, t0 + 2 + 2 * i, { rows: i }, connection));
  }
  out.push(ev('session-close', session, t0 + 2 * n + 1, {}, connection));
  return out;
}

/** Records `segments` segments (one Recorder process each) of one session each; returns the session ids. */
export async function recordSegments(dir: string, segments: number, connection = 'pg'): Promise<string[]> {
  const ids: string[] = [];
  for (let s = 0; s < segments; s++) {
    const r = await Recorder.open({ dir, durability: 'strict', retentionMs: 86_400_000 });
    const id = `${connection}-s${s + 1}`;
    await r.append(sessionEvents(id, 1_000_000 + s * 1000, 4, connection));
    await r.close();
    ids.push(id);
  }
  return ids;
}

/** Segment files of a connection, in segment order (absolute paths). */
export function segmentFiles(dir: string, connection = 'pg'): string[] {
  const connDir = path.join(dir, connection);
  const out: string[] = [];
  for (const day of readdirSync(connDir)) {
    if (!statSync(path.join(connDir, day)).isDirectory()) continue;
    for (const f of readdirSync(path.join(connDir, day))) if (f.endsWith('.vgrec')) out.push(path.join(connDir, day, f));
  }
  return out.sort((a, b) => path.basename(a).localeCompare(path.basename(b)));
}

export function framesOf(file: string): { buf: Buffer; frames: Frame[] } {
  const buf = readFileSync(file);
  return { buf, frames: scanSegment(buf).frames };
}

export function rel(dir: string, file: string): string {
  return path.relative(dir, file);
}

/** Every byte under `dir`, for grepping raw files. */
export function allBytes(dir: string): Buffer {
  const parts: Buffer[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else parts.push(readFileSync(p));
    }
  };
  walk(dir);
  return Buffer.concat(parts);
}

export function writeBytes(file: string, buf: Buffer): void {
  writeFileSync(file, buf);
}
