// `vecgate replay ID --dir DIR [--speed N|max] [--json]`: prints one recorded session's
// events in time order, as readable lines or JSON lines, at N times the recorded pace.
import { setTimeout as sleep } from 'node:timers/promises';
import { VgError } from '../errors.js';
import type { RecordEvent } from '../recording/record-event.js';
import { replaySession } from '../recording/session-index.js';

/** A pause between two events is never longer than this, whatever the speed (idle sessions). */
export const MAX_REPLAY_PAUSE_MS = 5_000;
/** Fastest and slowest accepted `--speed` factors. */
export const MIN_REPLAY_SPEED = 0.01;
export const MAX_REPLAY_SPEED = 10_000;

export interface ReplayOptions {
  dir: string;
  id: string;
  /** 'max' (default): no pauses; N: N times the recorded pace. */
  speed?: string;
  json?: boolean;
  out?: (line: string) => void;
}

export function parseSpeed(value: string | undefined): number | 'max' {
  if (value === undefined || value === 'max') return 'max';
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(n >= MIN_REPLAY_SPEED && n <= MAX_REPLAY_SPEED)) {
    throw new VgError('ERR_VG_USAGE', `--speed "${value}" must be 'max' or a number from ${MIN_REPLAY_SPEED} to ${MAX_REPLAY_SPEED} (1 = recorded pace)`);
  }
  return n;
}

/**
 * JSON for people and scripts: bytes become their size instead of a wall of numbers.
 * (Recordings hold binary as bytes — msgpack keeps no typed-array type — so a vector that
 * should be readable is recorded as a summarizeVector() result.) Reads `this[key]`
 * because Buffer's toJSON has already run on `value`.
 */
function jsonSafe(this: unknown, key: string, value: unknown): unknown {
  const raw = (this as Record<string, unknown>)[key];
  if (ArrayBuffer.isView(raw)) return { bytes: raw.byteLength };
  if (raw instanceof Map) return Object.fromEntries(raw);
  return value;
}

const BASE_FIELDS = new Set(['type', 'ts', 'session', 'connection']);

export function formatEventLine(e: RecordEvent, startTs: number): string {
  const offset = `+${((e.ts - startTs) / 1000).toFixed(3)}s`;
  const sql = ['sql', 'text', 'query'].map((k) => e[k]).find((v) => typeof v === 'string') as string | undefined;
  const rest = Object.fromEntries(Object.entries(e).filter(([k]) => !BASE_FIELDS.has(k) && !(sql !== undefined && e[k] === sql)));
  const detail = [sql?.replace(/\s+/g, ' '), Object.keys(rest).length > 0 ? JSON.stringify(rest, jsonSafe) : undefined].filter((x) => x !== undefined).join('  ');
  return `${new Date(e.ts).toISOString()} ${offset.padStart(10)}  ${e.type.padEnd(13)} ${detail}`.trimEnd();
}

export async function runReplay(opts: ReplayOptions): Promise<number> {
  const out = opts.out ?? ((line: string) => process.stdout.write(line + '\n'));
  const speed = parseSpeed(opts.speed);
  let startTs: number | null = null;
  let prevTs = 0;
  for await (const e of replaySession(opts.dir, opts.id)) {
    startTs ??= e.ts;
    if (speed !== 'max' && e.ts > prevTs && prevTs !== 0) await sleep(Math.min((e.ts - prevTs) / speed, MAX_REPLAY_PAUSE_MS));
    prevTs = e.ts;
    out(opts.json === true ? JSON.stringify(e, jsonSafe) : formatEventLine(e, startTs));
  }
  return 0;
}
