// One `vecgate dev` per state directory: two would open the same PGlite data directory
// (PGlite does not lock it) and rewrite each other's config and vector API key.
import path from 'node:path';
import { VgError } from '../errors.js';
import { takePidLock } from '../pid-lock.js';

export const DEV_LOCK_FILE = 'dev.lock';

/** Takes `dir`'s dev lock or throws ERR_VG_USAGE naming the instance that holds it; returns the release function. */
export function lockDevDir(dir: string): () => void {
  const file = path.join(dir, DEV_LOCK_FILE);
  const lock = takePidLock(file, {
    held: (owner) =>
      new VgError('ERR_VG_USAGE', `another vecgate dev (pid ${owner.pid}) is using ${dir}: stop it first, or give this one its own --dir (and --port / --http-port); if pid ${owner.pid} is not vecgate, remove ${file}`),
  });
  return () => lock.release();
}
