// `vecgate sessions --dir DIR [--since 2h|ISO] [--user SUB] [--connection NAME] [--json]`:
// lists recorded sessions as a table, or as a JSON array for scripts.
import { parseDuration } from '../config/durations.js';
import { VgError } from '../errors.js';
import { listSessions, type SessionFilter, type SessionRow } from '../recording/session-index.js';

/** `--since` as a duration reaches back at most this far (ten years). */
export const MAX_SINCE_MS = 10 * 366 * 86_400_000;

export interface SessionsOptions {
  dir: string;
  /** A duration back from now ('2h', '7d') or an ISO date/time. */
  since?: string;
  user?: string;
  connection?: string;
  json?: boolean;
  out?: (line: string) => void;
  /** Clock for `--since 2h`; replaceable in tests. */
  now?: number;
}

/** Parses `--since`: '2h' means two hours ago; '2024-05-01' or a full ISO time is absolute. */
export function parseSince(value: string, now: number): number {
  if (/^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$/.test(value)) {
    const d = parseDuration(value, { minMs: 0, maxMs: MAX_SINCE_MS });
    if (d.ok) return now - d.ms;
  }
  const t = Date.parse(value);
  if (/^\d{4}-\d{2}-\d{2}/.test(value) && Number.isFinite(t)) return t;
  throw new VgError('ERR_VG_USAGE', `--since "${value}" is neither a duration back from now (like 30m, 2h, 7d) nor a date (like 2024-05-01 or 2024-05-01T10:00:00Z)`);
}

const iso = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));

export function formatSessionTable(rows: SessionRow[]): string[] {
  const header = ['ID', 'SUBJECT', 'CONNECTION', 'STARTED', 'ENDED', 'STATEMENTS', 'REFUSALS'];
  const cells = rows.map((r) => [r.id, r.subject ?? '-', r.connection, iso(r.started_at), r.ended_at === null ? 'open' : iso(r.ended_at), String(r.statements), String(r.refusals)]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => (i >= 5 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...cells.map(line)];
}

export async function runSessions(opts: SessionsOptions): Promise<number> {
  const out = opts.out ?? ((line: string) => process.stdout.write(line + '\n'));
  const filter: SessionFilter = {};
  if (opts.since !== undefined) filter.since = parseSince(opts.since, opts.now ?? Date.now());
  if (opts.user !== undefined) filter.user = opts.user;
  if (opts.connection !== undefined) filter.connection = opts.connection;
  const rows = await listSessions(opts.dir, filter);
  if (opts.json === true) out(JSON.stringify(rows, null, 2));
  else if (rows.length === 0) out('no recorded sessions match');
  else for (const l of formatSessionTable(rows)) out(l);
  return 0;
}
