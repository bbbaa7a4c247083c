// Turns what a recorded PostgreSQL session says into audit events: each statement (simple
// Query, extended Parse), its Bind parameters (rendered; binary ones and embeddings
// summarized), its result summary (command tag, rows, duration, error SQLSTATE) and, with
// `full`, its result rows up to a cap. The native pump hands over the captured messages;
// nothing here sees a byte the recording mode does not need.
import type { RecordEvent } from '../src/recording/record-event.js';
import { redactRecordedValue } from '../src/recording/redact-event.js';
import { packr } from '../src/recording/segment-format.js';
import { summarizeVector } from '../src/recording/summarize-vector.js';

/** Longest text value (parameter or column) kept as is; longer ones are cut and marked. */
export const MAX_RECORDED_VALUE_CHARS = 256;
/** A text value that parses as a list of at least this many numbers is an embedding: summarized. */
export const MIN_VECTOR_DIMENSIONS = 8;
/** `full` mode: rows kept per statement (the native capture also stops after MAX_CAPTURED_ROW_BYTES). */
export const MAX_RECORDED_ROWS = 100;
export const MAX_CAPTURED_ROW_BYTES = 1024 * 1024;
/** Largest captured message body (Bind, CommandComplete, ErrorResponse, DataRow). */
export const MAX_CAPTURED_MESSAGE_BYTES = 64 * 1024;
/** Largest statement text recorded when statements are captured (not inspected); longer ones are cut and marked. */
export const MAX_CAPTURED_STATEMENT_BYTES = 1024 * 1024;

export type RecordedValue = string | null | { vector: ReturnType<typeof summarizeVector> } | { binary: number } | { truncated: string; length: number };

const NUMBER_LIST = /^\s*[[{(]?\s*-?\d+(\.\d+)?([eE][-+]?\d+)?(\s*,\s*-?\d+(\.\d+)?([eE][-+]?\d+)?)+\s*[\]})]?\s*$/;

/** Renders one text value: embeddings summarized, long text cut. */
export function renderValue(text: string, keepVectors: boolean): RecordedValue {
  if (!keepVectors && text.length > MIN_VECTOR_DIMENSIONS * 2 && NUMBER_LIST.test(text)) {
    const values = text.replace(/[[\]{}()\s]/g, '').split(',').map(Number);
    if (values.length >= MIN_VECTOR_DIMENSIONS && values.every(Number.isFinite)) return { vector: summarizeVector(values) };
  }
  if (text.length > MAX_RECORDED_VALUE_CHARS) return { truncated: text.slice(0, MAX_RECORDED_VALUE_CHARS), length: text.length };
  return text;
}

function cstring(b: Buffer, at: number): [string, number] | null {
  const end = b.indexOf(0, at);
  return end < 0 ? null : [b.toString('utf8', at, end), end + 1];
}

/** Bind body -> rendered parameters; null when the (possibly truncated) body cannot be read. */
export function renderBindParameters(body: Buffer, keepVectors: boolean): { statement: string; params: RecordedValue[]; truncated: boolean } | null {
  const portal = cstring(body, 0);
  if (!portal) return null;
  const stmt = cstring(body, portal[1]);
  if (!stmt) return null;
  let at = stmt[1];
  if (at + 2 > body.length) return null;
  const nFormats = body.readUInt16BE(at);
  at += 2;
  const formats: number[] = [];
  for (let i = 0; i < nFormats; i++, at += 2) {
    if (at + 2 > body.length) return null;
    formats.push(body.readUInt16BE(at));
  }
  if (at + 2 > body.length) return null;
  const nParams = body.readUInt16BE(at);
  at += 2;
  const params: RecordedValue[] = [];
  for (let i = 0; i < nParams; i++) {
    if (at + 4 > body.length) return { statement: stmt[0], params, truncated: true };
    const len = body.readInt32BE(at);
    at += 4;
    if (len < 0) {
      params.push(null);
      continue;
    }
    const binary = (nFormats === 1 ? formats[0] : formats[i]) === 1;
    if (binary) params.push({ binary: len });
    else if (at + len > body.length) return { statement: stmt[0], params: [...params, { truncated: body.toString('utf8', at, Math.min(body.length, at + MAX_RECORDED_VALUE_CHARS)), length: len }], truncated: true };
    else params.push(renderValue(body.toString('utf8', at, at + len), keepVectors));
    at += len;
  }
  return { statement: stmt[0], params, truncated: false };
}

function renderRow(body: Buffer, keepVectors: boolean): RecordedValue[] | null {
  if (body.length < 2) return null;
  const n = body.readUInt16BE(0);
  let at = 2;
  const out: RecordedValue[] = [];
  for (let i = 0; i < n; i++) {
    if (at + 4 > body.length) return out;
    const len = body.readInt32BE(at);
    at += 4;
    if (len < 0) {
      out.push(null);
      continue;
    }
    const text = body.toString('utf8', at, Math.min(body.length, at + len));
    out.push(at + len > body.length ? { truncated: text.slice(0, MAX_RECORDED_VALUE_CHARS), length: len } : renderValue(text, keepVectors));
    at += len;
  }
  return out;
}

function errorFields(body: Buffer): { sqlstate: string; message: string } {
  const f: Record<string, string> = {};
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const code = String.fromCharCode(body[at]!);
    const end = body.indexOf(0, at + 1);
    if (end < 0) break;
    f[code] = body.toString('utf8', at + 1, end);
    at = end + 1;
  }
  return { sqlstate: f.C ?? '', message: f.M ?? '' };
}

/** The SQL of a captured Query ("sql\0") or Parse ("name\0sql\0..."); FunctionCall has none. Cut bodies end without their NUL. */
function capturedStatementText(type: string, body: Buffer): string {
  let start = 0;
  if (type === 'P') {
    const nameEnd = body.indexOf(0);
    if (nameEnd < 0) return '';
    start = nameEnd + 1;
  } else if (type !== 'Q') {
    return '';
  }
  const end = body.indexOf(0, start);
  return body.toString('utf8', start, end < 0 ? body.length : end);
}

/**
 * What the pump captures for a recording mode. `statements`: the statements themselves come
 * as captures too (sessions whose statements need no verdict before they are forwarded: no
 * read-only check, no strict hold), else through the pump's onStatement.
 */
export function captureSpec(mode: 'queries' | 'full', statements: boolean): { fromClient: string; fromUpstream: string; maxBytes: number; maxRowBytes: number; fromClientMaxBytes: number } {
  return {
    fromClient: statements ? 'BQPF' : 'B',
    fromUpstream: mode === 'full' ? 'CED' : 'CE',
    maxBytes: MAX_CAPTURED_MESSAGE_BYTES,
    maxRowBytes: MAX_CAPTURED_ROW_BYTES,
    fromClientMaxBytes: statements ? MAX_CAPTURED_STATEMENT_BYTES : MAX_CAPTURED_MESSAGE_BYTES,
  };
}

/**
 * The C++ statement recorder's (native/statement-recorder.h) way to the one redaction
 * policy: for a string it cannot judge itself (non-ASCII, or text that may hold a secret),
 * the msgpack encoding of what this recorder would write: kind 0 a string, kind 1 a
 * text-format parameter (rendered by renderValue first).
 */
export function renderForNativeRecording(kind: number, text: Buffer): Uint8Array {
  const s = text.toString('utf8');
  return packr.pack(redactRecordedValue(kind === 1 ? renderValue(s, false) : s));
}

/** Where a recorder parks its statement while the result is due (WorkerContext sweeps them). */
export interface PendingStatementSweep {
  hold(r: PgStatementRecorder): void;
  release(r: PgStatementRecorder): void;
}

/**
 * One session's statement recorder. A statement (or a Bind of an already prepared one) is
 * held until its result comes and then recorded as ONE event with `params` and `result`
 * inside: half the records of separate events, and each record reads whole. Where that
 * cannot be, the parts are separate `statement`, `bind` and `result` events with the same
 * `seq`: a statement held for strict durability (its record must be on disk before it runs),
 * a refused one, one whose result takes longer than the sweep allows (so a long query is on
 * record while it runs), and a Bind or result that comes after its statement was written.
 */
export class PgStatementRecorder {
  private seq = 0;
  private startedAt = 0;
  private rows: RecordedValue[][] = [];
  private rowsSeen = 0;
  /** The statement or bind event waiting for its result (merging), or null. */
  private pending: RecordEvent | null = null;
  /** When `pending` was parked (ms epoch), for the sweep. */
  pendingSince = 0;

  constructor(
    private readonly record: (e: RecordEvent, onDurable?: (ok: boolean, message: string) => void) => void,
    private readonly base: { session: string; connection: string },
    private readonly mode: 'queries' | 'full',
    private readonly sweep: PendingStatementSweep | null = null,
  ) {}

  /** The capture spec the pump needs for this mode (captureSpec). */
  capture(statements = false): ReturnType<typeof captureSpec> {
    return captureSpec(this.mode, statements);
  }

  /** `messageBytes`: the statement's message was longer than what was captured (its text is cut). */
  statement(protocol: string, sql: string, refused: string | null, onDurable?: (ok: boolean, message: string) => void, messageBytes?: number): void {
    this.flushPending();
    this.seq++;
    this.startedAt = Date.now();
    this.rows = [];
    this.rowsSeen = 0;
    const event: RecordEvent = { type: 'statement', ts: this.startedAt, ...this.base, seq: this.seq, protocol, sql, refused };
    if (messageBytes !== undefined) event['sqlCut'] = { messageBytes };
    if (onDurable !== undefined || refused !== null || this.sweep === null) {
      this.record(event, onDurable);
      return;
    }
    this.park(event);
  }

  /** Records the parked statement on its own (a new statement came, the session ended, or the sweep found it old). */
  flushPending(): void {
    const p = this.pending;
    if (p === null) return;
    this.pending = null;
    this.sweep?.release(this);
    this.record(p);
  }

  private park(event: RecordEvent): void {
    this.pending = event;
    this.pendingSince = event.ts;
    this.sweep?.hold(this);
  }

  /** The parked event gets `result` and is recorded; without one, `result` is its own event. */
  private finish(result: Record<string, unknown>): void {
    const p = this.pending;
    if (p !== null) {
      this.pending = null;
      this.sweep?.release(this);
      p['result'] = result;
      this.record(p);
      return;
    }
    this.record({ type: 'result', ts: Date.now(), ...this.base, seq: this.seq, ...result });
  }

  onCapture(fromClient: boolean, type: string, body: Buffer, length: number): void {
    const keepVectors = this.mode === 'full';
    if (fromClient) {
      if (type === 'Q' || type === 'P' || type === 'F') {
        const text = capturedStatementText(type, body);
        // A statement longer than the capture limit is recorded cut, with its full size.
        this.statement(type === 'Q' ? 'simple' : type === 'P' ? 'extended' : 'function-call', text, null, undefined, length > body.length ? length : undefined);
        return;
      }
      if (type !== 'B') return;
      const bind = renderBindParameters(body, keepVectors);
      const fields = { statementName: bind?.statement ?? '', params: bind?.params ?? [], truncated: bind ? bind.truncated || length > body.length : true };
      const p = this.pending;
      if (p !== null && p.type === 'statement' && p['params'] === undefined) {
        Object.assign(p, fields);
        return;
      }
      // A Bind of a statement prepared earlier: it starts the next execution's record.
      this.flushPending();
      this.startedAt = Date.now();
      this.rows = [];
      this.rowsSeen = 0;
      const event: RecordEvent = { type: 'bind', ts: this.startedAt, ...this.base, seq: this.seq, ...fields };
      if (this.sweep === null) this.record(event);
      else this.park(event);
      return;
    }
    switch (type) {
      case 'D': {
        this.rowsSeen++;
        if (this.rows.length < MAX_RECORDED_ROWS) {
          const row = renderRow(body, keepVectors);
          if (row) this.rows.push(row);
        }
        break;
      }
      case 'C': {
        const end = body.indexOf(0);
        const tag = body.toString('utf8', 0, end < 0 ? body.length : end);
        const m = /(\d+)$/.exec(tag);
        this.finish({
          tag,
          rows: m ? Number(m[1]) : null,
          durationMs: Date.now() - this.startedAt,
          ...(this.mode === 'full' ? { data: this.rows, dataRowsOmitted: Math.max(0, this.rowsSeen - this.rows.length) } : {}),
        });
        this.rows = [];
        this.rowsSeen = 0;
        break;
      }
      case 'E': {
        this.finish({ error: errorFields(body), durationMs: Date.now() - this.startedAt });
        break;
      }
      default:
        break;
    }
  }
}
