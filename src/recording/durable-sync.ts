// The one place recordings are forced to disk. Counted, so a test can check that a group of
// concurrent strict appends shares one fdatasync (group commit) without mocking fs.
// In the recorder thread (recorder-thread-main.ts) the syncs block that thread instead of
// taking one of libuv's four pool threads for milliseconds each: the pool is process-wide,
// and the primary's token checks (WebCrypto) and file reads wait for a free one.
import { fdatasyncSync, fsyncSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

export const syncCounts = {
  /** fdatasync calls on segment files. */
  segmentData: 0,
  /** fsync calls on directories and head files (segment creation, checkpoints). */
  metadata: 0,
};

let blocking = false;

/** Syncs block the calling thread from now on: only for a thread that does nothing else (the recorder thread). */
export function useBlockingSyncs(): void {
  blocking = true;
}

export async function syncSegmentData(fh: FileHandle): Promise<void> {
  syncCounts.segmentData++;
  if (blocking) fdatasyncSync(fh.fd);
  else await fh.datasync();
}

export async function syncFile(fh: FileHandle): Promise<void> {
  syncCounts.metadata++;
  if (blocking) fsyncSync(fh.fd);
  else await fh.sync();
}

/** Makes a new directory entry (a new segment, a renamed head) survive a crash. */
export async function syncDirectory(dir: string): Promise<void> {
  syncCounts.metadata++;
  const fh = await open(dir, 'r');
  try {
    if (blocking) fsyncSync(fh.fd);
    else await fh.sync();
  } finally {
    await fh.close();
  }
}
