// A lock file naming the process that holds it (host and pid), created exclusively. The
// holder's own restart takes it over (same host, its process gone, or the same pid: a
// container's pid 1 after a restart); with `staleMs`, a lock whose holder stopped refreshing
// it (another host that died) is taken over too. Used for one `vecgate dev` per state
// directory and one recorder per recordings directory.
import { closeSync, openSync, readFileSync, rmSync, statSync, utimesSync, writeSync } from 'node:fs';
import os from 'node:os';

/** How long a lock file without a readable owner is left alone (its creator may still be writing it). */
const UNREADABLE_LOCK_GRACE_MS = 5_000;

export interface LockOwner {
  host: string;
  pid: number;
}

export interface PidLockOptions {
  /** Refresh the lock's mtime this often (ms) while held; 0/undefined: never. */
  heartbeatMs?: number;
  /** A lock not refreshed for this long (ms) is stale whoever holds it; undefined: only same-host checks. */
  staleMs?: number;
  /** The error to throw when a live holder has the lock. */
  held(owner: LockOwner, ageMs: number): Error;
}

export interface PidLock {
  /** Removes the lock if it is still this process's. Idempotent. */
  release(): void;
}

/** Whether a process with this pid exists on this host. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

function readOwner(file: string): LockOwner | null {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockOwner>;
    return typeof v.host === 'string' && Number.isInteger(v.pid) ? { host: v.host, pid: v.pid! } : null;
  } catch {
    return null; // unreadable or half-written: treated as stale
  }
}

export function takePidLock(file: string, opts: PidLockOptions): PidLock {
  const me: LockOwner = { host: os.hostname(), pid: process.pid };
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = readOwner(file);
      let ageMs = 0;
      try {
        ageMs = Date.now() - statSync(file).mtimeMs;
      } catch {
        continue; // removed meanwhile: try again
      }
      // A lock without a readable owner may be one another process created a moment ago and
      // is about to fill in: only an old one is taken over.
      if (owner === null && ageMs <= UNREADABLE_LOCK_GRACE_MS) throw opts.held({ host: 'unknown (starting)', pid: 0 }, ageMs);
      const stale =
        owner === null ||
        (owner.host === me.host && (owner.pid === me.pid || !processAlive(owner.pid))) ||
        (opts.staleMs !== undefined && ageMs > opts.staleMs);
      if (!stale) throw opts.held(owner, ageMs);
      rmSync(file, { force: true });
      continue;
    }
    writeSync(fd, JSON.stringify(me));
    closeSync(fd);
    const timer = opts.heartbeatMs ? setInterval(() => {
      try {
        const now = new Date();
        utimesSync(file, now, now);
      } catch {
        // the directory is gone or read-only: nothing to refresh
      }
    }, opts.heartbeatMs) : null;
    timer?.unref();
    let released = false;
    return {
      release() {
        if (released) return;
        released = true;
        if (timer) clearInterval(timer);
        const owner = readOwner(file);
        if (owner !== null && owner.host === me.host && owner.pid === me.pid) rmSync(file, { force: true });
      },
    };
  }
  throw opts.held(readOwner(file) ?? { host: '?', pid: 0 }, 0);
}
