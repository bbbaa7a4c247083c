// Config durations: '500ms', '10s', '15m', '2h', '30d', or a plain number of seconds, to
// milliseconds. Returns a result instead of throwing so the caller can name the key path.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** What the error messages show as accepted forms. */
export const DURATION_FORMS = "a number of seconds or a number with ms, s, m, h or d (like '500ms', '10s', '15m', '2h', '30d')";

export type DurationResult = { ok: true; ms: number } | { ok: false; error: string };

/** Parses a duration; `min`/`max` (ms) bound it, and the error says the allowed range. */
export function parseDuration(value: unknown, bounds: { minMs: number; maxMs: number }): DurationResult {
  let ms: number | null = null;
  if (typeof value === 'number' && Number.isFinite(value)) {
    ms = value * 1000;
  } else if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
    if (m !== null) ms = Number(m[1]) * UNIT_MS[m[2] ?? 's']!;
  }
  const range = `${formatDuration(bounds.minMs)} to ${formatDuration(bounds.maxMs)}`;
  if (ms === null) return { ok: false, error: `must be a duration from ${range}: ${DURATION_FORMS}` };
  ms = Math.round(ms);
  if (ms < bounds.minMs || ms > bounds.maxMs) return { ok: false, error: `must be a duration from ${range}` };
  return { ok: true, ms };
}

/** The shortest exact form of a duration in ms, for messages ('30s', '5m', '1500ms'). */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNIT_MS[unit]!;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return ms === 0 ? '0s' : `${ms}ms`;
}
