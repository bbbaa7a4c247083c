// Starts and stops everything the benchmark runs: long-lived servers (each watched so it
// dies with the benchmark or after a hard lifetime, whichever comes first) and measured
// one-shot commands whose own CPU time is read back from their parent shell's
// /proc/<pid>/stat (cutime+cstime), so psql, pgbench and the node clients are charged too.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { childCpuSecondsFromStat } from './proc-usage.js';

/** A server outlives the benchmark by at most this long if the benchmark is killed. */
export const SERVER_MAX_LIFETIME_SEC = 3600;
/** Open-file limit asked for in every process the benchmark starts (idle-session runs). */
export const BENCH_NOFILE = 65536;
/** Shell prefix: BENCH_NOFILE, else as high as the hard limit allows (containers cap it). */
export const RAISE_NOFILE_SH = `ulimit -n ${BENCH_NOFILE} 2>/dev/null || ulimit -n $(ulimit -Hn) 2>/dev/null;`;

const started = new Set<ChildProcess>();

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface Server {
  name: string;
  pid: number;
  child: ChildProcess;
  output(): string;
  /** Resolves when `pattern` appears on stdout/stderr; rejects on exit or after timeoutMs. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a long-lived server. `exec` replaces the shell, so `pid` is the server's own pid
 * (what /proc is read for). A detached watchdog kills it when this process is gone.
 */
export function startServer(name: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Server {
  const line = `${RAISE_NOFILE_SH} exec ${[cmd, ...args].map(shQuote).join(' ')}`;
  const child = spawn('sh', ['-c', line], { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (b: Buffer) => {
    out += b.toString();
    if (out.length > 1_000_000) out = out.slice(-500_000);
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exited = false;
  child.on('exit', () => {
    exited = true;
    started.delete(child);
    for (const l of listeners) l();
  });
  const pid = child.pid!;
  const watchdog = spawn('sh', ['-c', `i=0; while kill -0 ${process.pid} 2>/dev/null && kill -0 ${pid} 2>/dev/null && [ $i -lt ${SERVER_MAX_LIFETIME_SEC} ]; do sleep 1; i=$((i+1)); done; kill -TERM ${pid} 2>/dev/null; sleep 3; kill -KILL ${pid} 2>/dev/null`], {
    detached: true,
    stdio: 'ignore',
  });
  watchdog.unref();
  return {
    name,
    pid,
    child,
    output: () => out,
    waitFor(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(out)) return done(null);
          if (exited) return done(new Error(`${name} exited before it was ready: ${out.slice(-2000)}`));
        };
        const timer = setTimeout(() => done(new Error(`${name} not ready after ${timeoutMs} ms: ${out.slice(-2000)}`)), timeoutMs);
        const done = (err: Error | null) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (err) reject(err);
          else resolve();
        };
        listeners.add(check);
        check();
      });
    },
    async stop() {
      if (exited) return;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    },
  };
}

/**
 * Stops every server still running (on exit of the benchmark, also after an error). SIGTERM,
 * not SIGKILL: nginx's master stops its workers only when it is asked (a killed master
 * leaves them running); each server's watchdog sends SIGKILL 3 s later if it is still there.
 */
export function killAllServers(): void {
  for (const c of started) {
    try {
      c.kill('SIGTERM');
    } catch {
      // already gone
    }
  }
  started.clear();
}
process.once('exit', killAllServers);

export interface MeasuredResult {
  code: number | null;
  stdout: string;
  stderr: string;
  wallSec: number;
  /** CPU seconds of the command and its children (user+system). */
  cpuSec: number;
  timedOut: boolean;
}

/**
 * Runs a command to completion and measures its CPU. `discardStdout` sends stdout to
 * /dev/null (a 1 GB COPY). The command is killed after `timeoutSec`.
 */
export async function runMeasured(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutSec: number; discardStdout?: boolean; cpuList?: string },
): Promise<MeasuredResult> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'vg-bench-run-'));
  const statFile = path.join(tmp, 'stat');
  const pin = opts.cpuList ? `taskset -c ${opts.cpuList} ` : '';
  const line = `${RAISE_NOFILE_SH} ${pin}timeout -k 5 ${opts.timeoutSec} ${[cmd, ...args].map(shQuote).join(' ')}; rc=$?; cat /proc/$$/stat > ${shQuote(statFile)}; exit $rc`;
  const devnull = opts.discardStdout ? openSync('/dev/null', 'w') : null;
  const t0 = process.hrtime.bigint();
  const child = spawn('sh', ['-c', line], { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', devnull ?? 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const wallSec = Number(process.hrtime.bigint() - t0) / 1e9;
  if (devnull !== null) closeSync(devnull);
  let cpuSec = NaN;
  try {
    cpuSec = childCpuSecondsFromStat(readFileSync(statFile, 'utf8'));
  } catch {
    // the shell was killed before it could write its stat
  }
  rmSync(tmp, { recursive: true, force: true });
  return { code, stdout, stderr, wallSec, cpuSec, timedOut: code === 124 || code === 137 };
}

/** Resolves once `port` accepts a TCP connection; rejects when the server exits or after timeoutMs. */
export async function waitForListen(port: number, server: Server, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (server.child.exitCode !== null || Date.now() > deadline) throw new Error(`${server.name} did not listen on ${port}: ${server.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
