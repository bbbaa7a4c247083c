// Makes sure the peers the benchmark compares against are installed (Debian packages),
// installing what is missing when running as root.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

/** Binary that must exist -> Debian package that provides it. */
export const BENCH_PEER_PACKAGES: Record<string, string> = {
  '/usr/sbin/pgbouncer': 'pgbouncer',
  '/usr/sbin/haproxy': 'haproxy',
  '/usr/sbin/nginx': 'nginx',
  '/usr/lib/nginx/modules/ngx_stream_module.so': 'libnginx-mod-stream',
  '/usr/bin/wrk': 'wrk',
  '/usr/bin/h2load': 'nghttp2-client',
  '/usr/lib/postgresql/15/bin/pgbench': 'postgresql-15',
  '/usr/bin/psql': 'postgresql-client-15',
};

/** Time allowed for the package installation. */
export const APT_INSTALL_TIMEOUT_SEC = 600;

/** Installs the missing peers; returns the binaries still missing afterwards. */
export function ensureBenchPeers(log: (s: string) => void): string[] {
  const missing = () => Object.keys(BENCH_PEER_PACKAGES).filter((f) => !existsSync(f));
  const before = missing();
  if (before.length === 0) return [];
  const script = 'scripts/ensure-system-deps.sh';
  if (existsSync(script)) {
    log(`installing bench peers with ${script} bench`);
    spawnSync('sh', [script, 'bench'], { stdio: 'inherit', timeout: APT_INSTALL_TIMEOUT_SEC * 1000 });
  } else if (process.getuid?.() === 0) {
    const pkgs = [...new Set(before.map((f) => BENCH_PEER_PACKAGES[f]!))];
    log(`installing ${pkgs.join(' ')} (apt-get)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env, timeout: APT_INSTALL_TIMEOUT_SEC * 1000 });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: 'inherit', env, timeout: APT_INSTALL_TIMEOUT_SEC * 1000 });
      r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env, timeout: APT_INSTALL_TIMEOUT_SEC * 1000 });
    }
  } else {
    log(`missing ${before.join(', ')} and not root: those rows will be marked as not run`);
  }
  return missing();
}
