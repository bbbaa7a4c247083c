// `vecgate pools [--config FILE | --admin URL] [--json]`: the upstream pools of a running
// gateway, read from its admin endpoint's /pools, as a table like PgBouncer's SHOW POOLS
// (one row per connection, upstream database and user, then the connection's totals), or
// the endpoint's JSON for scripts.
import { readConfigDocument } from '../config/load.js';
import { isWildcardHost, parseListen } from '../config/host-address.js';
import { VgError } from '../errors.js';
import type { ConnectionPoolsView, PoolGroupView, PoolsView } from '../admin/pools-view.js';

/** How long the admin endpoint may take to answer /pools (the gateway itself waits at most 1 s for its workers). */
export const ADMIN_REQUEST_TIMEOUT_MS = 5_000;

export interface PoolsOptions {
  /** Gateway config: the admin endpoint is its server.admin.listen. */
  config?: string;
  /** The admin endpoint's base URL (http://host:port). */
  admin?: string;
  json?: boolean;
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/**
 * The admin endpoint's base URL from a config file. Only `server.admin.listen` is read: the
 * secrets and files the config names need not be readable where this runs.
 */
export async function adminUrlFromConfig(file: string): Promise<string> {
  const { file: abs, raw } = await readConfigDocument(file);
  const server = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)['server'] : undefined;
  const admin = typeof server === 'object' && server !== null ? (server as Record<string, unknown>)['admin'] : undefined;
  const listen = typeof admin === 'object' && admin !== null ? (admin as Record<string, unknown>)['listen'] : undefined;
  if (listen === undefined || listen === null) {
    throw new VgError('ERR_VG_USAGE', `${abs} has no server.admin.listen, so the gateway serves no admin endpoint to ask; add one (like server: { admin: { listen: 127.0.0.1:9090 } }) and restart, or give --admin URL`);
  }
  const r = typeof listen === 'string' ? parseListen(listen.trim()) : ({ ok: false, error: 'must be host:port' } as const);
  if (!r.ok) throw new VgError('ERR_VG_CONFIG', `${abs}: server.admin.listen ${r.error}`);
  if (r.port === 0) throw new VgError('ERR_VG_USAGE', `${abs}: server.admin.listen has port 0 (a free port at each start); give the port the gateway logged with --admin URL`);
  // A wildcard listener is reached on this host's loopback.
  const host = isWildcardHost(r.host) ? (r.host.includes(':') ? '::1' : '127.0.0.1') : r.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${r.port}`;
}

/** `--admin` as a base URL: http(s)://host:port, or host:port meaning http. */
export function adminBaseUrl(text: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new VgError('ERR_VG_USAGE', `--admin ${JSON.stringify(text)} is not a URL; give the admin endpoint like http://127.0.0.1:9090`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new VgError('ERR_VG_USAGE', `--admin ${JSON.stringify(text)}: the admin endpoint is reached over http (or https through a proxy), not ${u.protocol.slice(0, -1)}`);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

/** GET base/pools; every way it can fail is one error naming the URL and what to check. */
export async function fetchPools(base: string, timeoutMs = ADMIN_REQUEST_TIMEOUT_MS): Promise<PoolsView> {
  const url = `${base}/pools`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : (e.cause?.code ?? e.cause?.message ?? e.message);
    throw new VgError('ERR_VG_ADMIN_UNREACHABLE', `cannot reach the vecgate admin endpoint at ${url} (${why}); is the gateway running, and is this its server.admin.listen?`, { cause: err });
  }
  const text = await res.text().catch(() => '');
  if (res.status === 404) throw new VgError('ERR_VG_ADMIN_ANSWER', `${url} answered 404: is this a vecgate admin endpoint, and a vecgate version with /pools?`);
  if (!res.ok) throw new VgError('ERR_VG_ADMIN_ANSWER', `${url} answered ${res.status}: ${text.slice(0, 200)}`);
  let view: PoolsView;
  try {
    view = JSON.parse(text) as PoolsView;
  } catch {
    throw new VgError('ERR_VG_ADMIN_ANSWER', `${url} answered something that is not JSON; is this a vecgate admin endpoint?`);
  }
  if (!Array.isArray(view?.connections) || !Array.isArray(view?.pools)) throw new VgError('ERR_VG_ADMIN_ANSWER', `${url} answered JSON without connections and pools; is this a vecgate admin endpoint?`);
  return view;
}

const num = (n: number | null) => (n === null ? '-' : String(n));
/** ms as people read them: 850ms, 2.4s, 3m05s. */
export function formatMs(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** Columns like SHOW POOLS: a row per pool group, then the connection's totals (database and user `*`). */
export function formatPoolsTable(view: PoolsView): string[] {
  const header = ['CONNECTION', 'DATABASE', 'USER', 'MODE', 'SIZE', 'SESSIONS', 'OPEN', 'BUSY', 'IDLE', 'OPENING', 'WAITING', 'MAXWAIT', 'WAITS', 'WAIT_TIME', 'TIMEOUTS', 'PINS'];
  const rightFrom = 4; // numbers are right-aligned, up to PINS
  // Size, sessions and pins are known per connection only: its total row has them.
  const group = (g: PoolGroupView) => [g.connection, g.database, g.user, g.mode, '-', '-', num(g.open), num(g.busy), num(g.idle), num(g.opening), num(g.waiting), formatMs(g.maxwait_ms), num(g.waits), formatMs(g.wait_ms), num(g.wait_timeouts), ''];
  const total = (c: ConnectionPoolsView) => {
    const size = c.size === null ? '-' : c.max_open !== null && c.max_open !== c.size ? `${c.size} (max ${c.max_open})` : String(c.size);
    const pins = c.pins === null ? '-' : Object.entries(c.pins).map(([reason, n]) => `${reason} ${n}`).join(', ') || '0';
    return [c.connection, '*', '*', c.mode, size, String(c.sessions), num(c.open), num(c.busy), num(c.idle), num(c.opening), num(c.waiting), formatMs(c.maxwait_ms), num(c.waits), formatMs(c.wait_ms), num(c.wait_timeouts), pins];
  };
  const cells: string[][] = [];
  for (const c of view.connections) {
    for (const g of view.pools) if (g.connection === c.connection) cells.push(group(g));
    cells.push(total(c));
  }
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((v, i) => (i >= rightFrom && i < header.length - 1 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...cells.map(line)];
}

export async function runPools(opts: PoolsOptions): Promise<number> {
  const out = opts.out ?? ((line: string) => process.stdout.write(line + '\n'));
  const err = opts.err ?? ((line: string) => process.stderr.write(line + '\n'));
  if (opts.config !== undefined && opts.admin !== undefined) throw new VgError('ERR_VG_USAGE', 'give --config or --admin, not both');
  if (opts.config === undefined && opts.admin === undefined) throw new VgError('ERR_VG_USAGE', 'which gateway? give --config FILE (its server.admin.listen is asked) or --admin URL (like http://127.0.0.1:9090)');
  const base = opts.admin !== undefined ? adminBaseUrl(opts.admin) : await adminUrlFromConfig(opts.config!);
  const view = await fetchPools(base);
  if (opts.json === true) out(JSON.stringify(view, null, 2));
  else if (view.connections.length === 0) out('no PostgreSQL connections: nothing is pooled');
  else for (const l of formatPoolsTable(view)) out(l);
  if (view.missing_workers.length > 0) {
    // Partial numbers must not pass for whole ones in a script: printed, but not a success.
    err(`vecgate: worker${view.missing_workers.length === 1 ? '' : 's'} ${view.missing_workers.join(', ')} of ${view.workers} did not answer in time: ${view.missing_workers.length === 1 ? 'its' : 'their'} pools are not in these numbers`);
    return 1;
  }
  return 0;
}
