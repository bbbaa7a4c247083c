// What the results were measured on: machine, kernel, Node and OpenSSL versions, the
// peers' versions, the commit and the date, recorded next to every result.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface MachineInfo {
  date: string;
  commit: string;
  dirty: boolean;
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  openssl: string;
  peers: Record<string, string>;
}

/** stdout, else stderr (nginx -v prints its version there). */
function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  return (r.stdout?.trim() || r.stderr?.trim() || '').trim();
}

export function machineInfo(repoRoot: string): MachineInfo {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown';
  const firstLine = (s: string) => s.split('\n')[0] ?? '';
  return {
    date: new Date().toISOString(),
    commit: run('git', ['-C', repoRoot, 'rev-parse', '--short=10', 'HEAD']) || 'unknown',
    dirty: run('git', ['-C', repoRoot, 'status', '--porcelain', '--untracked-files=no']) !== '',
    nproc: os.availableParallelism(),
    cpuModel: model,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.versions.node,
    openssl: process.versions.openssl,
    peers: {
      postgres: firstLine(run('/usr/lib/postgresql/15/bin/postgres', ['--version'])),
      pgbouncer: firstLine(run('/usr/sbin/pgbouncer', ['--version'])),
      nginx: firstLine(run('/usr/sbin/nginx', ['-v'])),
      haproxy: firstLine(run('/usr/sbin/haproxy', ['-v'])),
      systemOpenssl: firstLine(run('openssl', ['version'])),
    },
  };
}
