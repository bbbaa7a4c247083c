// One `vecgate dev` per state directory: two would open the same PGlite data directory
// (PGlite does not lock it) and rewrite each other's config and vector API key. The lock is a
// file holding the owner's pid, created exclusively; a lock whose process is gone is taken over.
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { VgError } from '../errors.js';

export const DEV_LOCK_FILE = 'dev.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/** Takes `dir`'s dev lock or throws ERR_VG_USAGE naming the instance that holds it; returns the release function. */
export function lockDevDir(dir: string): () => void {
  const file = path.join(dir, DEV_LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new VgError('ERR_VG_USAGE', `another vecgate dev (pid ${pid}) is using ${dir}: stop it first, or give this one its own --dir (and --port / --http-port); if pid ${pid} is not vecgate, remove ${file}`);
      }
      rmSync(file, { force: true }); // left by a process that is gone
    }
  }
  throw new VgError('ERR_VG_USAGE', `cannot take the lock ${file}: another vecgate dev is starting in ${dir}`);
}
