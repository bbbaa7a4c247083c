// A markdown table with the direct baseline in its own column or row, as printed to the
// terminal and written to bench/RESULTS.md.

export interface ResultTable {
  title: string;
  columns: string[];
  rows: string[][];
  notes: string[];
}

/** Formats a number for a table cell; NaN/undefined print as "—". */
export function fmt(n: number | undefined | null, digits = 2): string {
  if (n === undefined || n === null || !Number.isFinite(n)) return '—';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(digits);
}

export function renderTable(t: ResultTable): string {
  const lines = [`### ${t.title}`, '', `| ${t.columns.join(' | ')} |`, `| ${t.columns.map(() => '---').join(' | ')} |`];
  for (const r of t.rows) lines.push(`| ${r.join(' | ')} |`);
  if (t.notes.length > 0) lines.push('', ...t.notes.map((n) => `- ${n}`));
  return lines.join('\n') + '\n';
}

/** A client that used at least this share of one core (per pgbench thread) may be what limits the run. */
export const GENERATOR_SATURATED_CORES = 0.9;
