// One writer per recordings directory: the gateway's recorder, or `verify-recordings
// --repair`. `.writer.lock` names the host and pid writing there and is refreshed every
// WRITER_LOCK_HEARTBEAT_MS; two writers would interleave segments and break each other's hash
// chains (and a repair would cut a record the gateway is still writing). A lock whose process
// is gone (same host) or that was not refreshed for WRITER_LOCK_STALE_MS (another host: a
// replica that died without releasing it) is taken over.
import path from 'node:path';
import { VgError } from '../errors.js';
import { takePidLock, type PidLock } from '../pid-lock.js';

export const WRITER_LOCK_FILE = '.writer.lock';
const WRITER_LOCK_HEARTBEAT_MS = 10_000;
const WRITER_LOCK_STALE_MS = 60_000;

/** Takes the directory's writer lock, or throws ERR_VG_RECORDING naming the writer; `what` says who wants it (for the message). */
export function lockRecordingsDir(dir: string, what: 'recorder' | 'repair'): PidLock {
  try {
    return takeLock(dir, what);
  } catch (e) {
    if (e instanceof VgError) throw e;
    throw new VgError('ERR_VG_RECORDING', `cannot take the writer lock ${path.join(dir, WRITER_LOCK_FILE)}: ${(e as Error).message}`, { cause: e });
  }
}

function takeLock(dir: string, what: 'recorder' | 'repair'): PidLock {
  return takePidLock(path.join(dir, WRITER_LOCK_FILE), {
    heartbeatMs: WRITER_LOCK_HEARTBEAT_MS,
    staleMs: WRITER_LOCK_STALE_MS,
    held: (owner, ageMs) => {
      const who = `another vecgate (host ${owner.host}, pid ${owner.pid}, seen ${Math.round(ageMs / 1000)} s ago)`;
      return new VgError(
        'ERR_VG_RECORDING',
        what === 'recorder'
          ? `recordings.dir ${dir} is being written by ${who}: two writers would break each other's hash chains. Give each instance its own recordings.dir (on Kubernetes, a volume per replica); a lock not refreshed for ${WRITER_LOCK_STALE_MS / 1000} s is taken over`
          : `${dir} is being written by ${who}: stop it before --repair, which would otherwise cut records it is still writing (a check without --repair is safe)`,
      );
    },
  });
}
