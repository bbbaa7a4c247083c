// The one place recordings are forced to disk. Counted, so a test can check that a group of
// concurrent strict appends shares one fdatasync (group commit) without mocking fs.
import { open, type FileHandle } from 'node:fs/promises';

export const syncCounts = {
  /** fdatasync calls on segment files. */
  segmentData: 0,
  /** fsync calls on directories and head files (segment creation, checkpoints). */
  metadata: 0,
};

export async function syncSegmentData(fh: FileHandle): Promise<void> {
  syncCounts.segmentData++;
  await fh.datasync();
}

export async function syncFile(fh: FileHandle): Promise<void> {
  syncCounts.metadata++;
  await fh.sync();
}

/** Makes a new directory entry (a new segment, a renamed head) survive a crash. */
export async function syncDirectory(dir: string): Promise<void> {
  syncCounts.metadata++;
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
