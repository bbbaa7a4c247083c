// Where segments live on disk: `<dir>/<connection>/<YYYY-MM-DD>/seg-<n>.vgrec`, plus one
// signed head per connection (`<dir>/<connection>/head.vghead`) naming the last signed
// position and the first segment retention kept, so a removed segment, a cut-off tail or
// an unexplained gap shows even when the chain that remains is intact.
import type { KeyObject } from 'node:crypto';
import { open, readdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { syncDirectory, syncFile } from './durable-sync.js';
import { connectionFromDirName, DAY_DIR, packr, parseSegmentFileName } from './segment-format.js';
import { signBytes, verifyBytes } from './signing-key.js';

export const HEAD_FILE = 'head.vghead';
const HEAD_DOMAIN = Buffer.from('vgrec-head-v1\0', 'latin1');

export interface SegmentFile {
  segment: number;
  day: string;
  /** Absolute path. */
  file: string;
  /** Path relative to the recordings directory, for reports. */
  rel: string;
}

export interface HeadState {
  v: 1;
  connection: string;
  /** Segment holding the signed position. */
  segment: number;
  /** Sequence number and hash of the last frame covered by a signature. */
  seq: number;
  hash: Buffer;
  /** Lowest segment retention has kept: segments below it may be gone. */
  firstSegment: number;
  at: number;
}

export interface ConnectionDir {
  connection: string;
  dirName: string;
  path: string;
}

export async function listConnectionDirs(dir: string): Promise<ConnectionDir[]> {
  const out: ConnectionDir[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    const connection = connectionFromDirName(e.name);
    if (connection !== null) out.push({ connection, dirName: e.name, path: path.join(dir, e.name) });
  }
  return out.sort((a, b) => (a.connection < b.connection ? -1 : a.connection > b.connection ? 1 : 0));
}

/** Segment files of one connection, in segment order (which is also time order). */
export async function listSegments(recordingsDir: string, connDir: string): Promise<SegmentFile[]> {
  const out: SegmentFile[] = [];
  let days: string[];
  try {
    days = (await readdir(connDir, { withFileTypes: true })).filter((e) => e.isDirectory() && DAY_DIR.test(e.name)).map((e) => e.name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  for (const day of days) {
    for (const name of await readdir(path.join(connDir, day))) {
      const segment = parseSegmentFileName(name);
      if (segment === null) continue;
      const file = path.join(connDir, day, name);
      out.push({ segment, day, file, rel: path.relative(recordingsDir, file) });
    }
  }
  return out.sort((a, b) => a.segment - b.segment);
}

export async function writeHead(connDir: string, head: HeadState, key: KeyObject): Promise<void> {
  const body = packr.pack(head);
  const sig = signBytes(key, Buffer.concat([HEAD_DOMAIN, body]));
  const tmp = path.join(connDir, HEAD_FILE + '.tmp');
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(packr.pack({ body, sig }));
    await syncFile(fh);
  } finally {
    await fh.close();
  }
  await rename(tmp, path.join(connDir, HEAD_FILE));
  await syncDirectory(connDir);
}

export type HeadRead = { kind: 'ok'; head: HeadState } | { kind: 'missing' } | { kind: 'bad'; reason: string };

export async function readHead(connDir: string, key: KeyObject | null): Promise<HeadRead> {
  let raw: Buffer;
  try {
    raw = await readFile(path.join(connDir, HEAD_FILE));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw e;
  }
  try {
    const outer = packr.unpack(raw) as { body?: unknown; sig?: unknown };
    if (!Buffer.isBuffer(outer.body) || !Buffer.isBuffer(outer.sig)) return { kind: 'bad', reason: 'head file is not in the expected format' };
    if (key !== null && !verifyBytes(key, Buffer.concat([HEAD_DOMAIN, outer.body]), outer.sig)) return { kind: 'bad', reason: 'head signature does not verify' };
    const head = packr.unpack(outer.body) as HeadState;
    if (typeof head.segment !== 'number' || typeof head.seq !== 'number' || !Buffer.isBuffer(head.hash) || typeof head.firstSegment !== 'number') {
      return { kind: 'bad', reason: 'head file fields are missing' };
    }
    return { kind: 'ok', head };
  } catch (e) {
    return { kind: 'bad', reason: `head file does not decode: ${(e as Error).message}` };
  }
}
