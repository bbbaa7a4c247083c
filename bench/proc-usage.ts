// Reads what a process costs from /proc: CPU seconds (utime+stime of every thread of the
// process, or of a group of processes such as nginx's master and workers) and resident
// memory, so each proxy is charged for exactly its own work.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Clock ticks per second of utime/stime in /proc/<pid>/stat (USER_HZ, 100 on Linux). */
export const CLOCK_TICKS_PER_SEC = readClockTicks();

function readClockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** Fields after the `(comm)` of /proc/<pid>/stat; index 0 is field 3 (state). */
function statFields(text: string): string[] {
  return text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
}

/** utime+stime of one process (all its threads) in seconds; 0 when it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    const f = statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_SEC; // fields 14 and 15
  } catch {
    return 0;
  }
}

/** cutime+cstime from a saved /proc/<pid>/stat text: CPU of the children it waited for. */
export function childCpuSecondsFromStat(text: string): number {
  const f = statFields(text);
  return (Number(f[13]) + Number(f[14])) / CLOCK_TICKS_PER_SEC; // fields 16 and 17
}

/** Summed CPU seconds of a set of processes. */
export function cpuSecondsOfAll(pids: readonly number[]): number {
  return pids.reduce((s, p) => s + cpuSecondsOf(p), 0);
}

/** Direct children of `pid` (nginx workers under their master). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** VmRSS of a process in kB; 0 when it is gone. */
export function rssKbOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** 1-minute load average, to show how busy the machine was around a run. */
export function loadAverage1(): number {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    return -1;
  }
}
