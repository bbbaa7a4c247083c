// Runs a real client program as a test's user would (Debian's python3 with its psycopg and
// asyncpg, PostgreSQL 15's pgbench) and collects what it printed; killed after `timeoutMs`.
import { spawn } from 'node:child_process';

export interface ToolRun {
  status: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr together, in arrival order. */
  out: string;
  timedOut: boolean;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ToolRun> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env: { ...env, PGCONNECT_TIMEOUT: '10' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const all: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => (out.push(d), all.push(d)));
    child.stderr.on('data', (d: Buffer) => (err.push(d), all.push(d)));
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (status) => {
      clearTimeout(t);
      resolve({ status, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), out: Buffer.concat(all).toString(), timedOut });
    });
  });
}

/** A Python script on Debian's python3 (python3-psycopg and python3-asyncpg: scripts/ensure-system-deps.sh), with only PATH and `env`. */
export function runPython(script: string, env: Record<string, string>, timeoutMs = 60_000): Promise<ToolRun> {
  return run('/usr/bin/python3', ['-c', script], { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, timeoutMs);
}

/** PostgreSQL 15's pgbench, with PGPASSWORD `password` when given. */
export function runPgbench(args: string[], password?: string, timeoutMs = 60_000): Promise<ToolRun> {
  return run('/usr/lib/postgresql/15/bin/pgbench', args, { ...process.env, ...(password ? { PGPASSWORD: password } : {}) }, timeoutMs);
}
