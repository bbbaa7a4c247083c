// Reads recordings back for people: the list of sessions (`vecgate sessions`) and one
// session's events in time order (`vecgate replay`). Reading does not verify the chain
// (`verify-recordings` does); it stops at a damaged record of a segment and goes on with the next.
import { readFile } from 'node:fs/promises';
import { VgError } from '../errors.js';
import type { RecordEvent } from './record-event.js';
import { connectionDirName, FrameKind, packr, scanSegment } from './segment-format.js';
import { listConnectionDirs, listSegments, type ConnectionDir } from './segment-store.js';

export interface SessionRow {
  id: string;
  /** Who: the token subject from session-open (`subject`, else `user`). */
  subject: string | null;
  connection: string;
  started_at: number;
  /** Null while the session is open (or the gateway stopped before it closed). */
  ended_at: number | null;
  statements: number;
  refusals: number;
  groups?: string[];
}

export interface SessionFilter {
  /** Sessions that started at or after this time (ms since epoch). */
  since?: number;
  /** Token subject. */
  user?: string;
  connection?: string;
}

async function connectionDirs(dir: string, connection?: string): Promise<ConnectionDir[]> {
  let all: ConnectionDir[];
  try {
    all = await listConnectionDirs(dir);
  } catch (e) {
    throw new VgError('ERR_VG_RECORDING', `cannot read the recordings directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  return connection === undefined ? all : all.filter((c) => c.dirName === connectionDirName(connection));
}

/** Every event of one connection, in the order it was recorded, with its sequence number. */
export async function* readConnectionEvents(dir: string, c: ConnectionDir): AsyncGenerator<{ seq: number; event: RecordEvent }> {
  for (const seg of await listSegments(dir, c.path)) {
    const { frames } = scanSegment(await readFile(seg.file));
    for (const f of frames) {
      if (f.kind !== FrameKind.Event) continue;
      let event: RecordEvent;
      try {
        event = packr.unpack(f.payload) as RecordEvent;
      } catch {
        continue;
      }
      yield { seq: f.seq, event };
    }
  }
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

export async function listSessions(dir: string, filter: SessionFilter = {}): Promise<SessionRow[]> {
  const rows = new Map<string, SessionRow>();
  for (const c of await connectionDirs(dir, filter.connection)) {
    for await (const { event: e } of readConnectionEvents(dir, c)) {
      if (typeof e.session !== 'string' || e.session === '' || e.type === 'retention') continue;
      let row = rows.get(e.session);
      if (row === undefined) {
        row = { id: e.session, subject: null, connection: e.connection, started_at: e.ts, ended_at: null, statements: 0, refusals: 0 };
        rows.set(e.session, row);
      }
      switch (e.type) {
        case 'request': // an HTTP request is a session of one statement
        case 'session-open':
          if (e.type === 'request') {
            row.statements++;
            if ((e['guard'] as { allowed?: boolean } | undefined)?.allowed === false) row.refusals++;
          }
          row.started_at = e.ts;
          row.subject = str(e['subject']) ?? str(e['user']) ?? row.subject;
          if (Array.isArray(e['groups'])) row.groups = (e['groups'] as unknown[]).filter((g): g is string => typeof g === 'string');
          break;
        case 'session-close':
          row.ended_at = e.ts;
          break;
        case 'result': // HTTP results (with a status) end their request's session; PostgreSQL's do not
          if (typeof e['status'] === 'number') row.ended_at = e.ts;
          break;
        case 'statement':
          row.statements++;
          break;
        case 'refusal':
          row.refusals++;
          break;
      }
      if (row.subject === null) row.subject = str(e['subject']) ?? str(e['user']);
      if (e.type !== 'session-open' && e.ts < row.started_at) row.started_at = e.ts;
    }
  }
  return [...rows.values()]
    .filter((r) => (filter.since === undefined || r.started_at >= filter.since) && (filter.user === undefined || r.subject === filter.user))
    .sort((a, b) => a.started_at - b.started_at || (a.id < b.id ? -1 : 1));
}

/** One session's events in time order (ties keep recording order). Throws ERR_VG_RECORDING if there are none. */
export async function* replaySession(dir: string, id: string): AsyncGenerator<RecordEvent> {
  const found: { seq: number; event: RecordEvent }[] = [];
  for (const c of await connectionDirs(dir)) {
    for await (const x of readConnectionEvents(dir, c)) if (x.event.session === id) found.push(x);
    // A session belongs to one connection.
    if (found.length > 0) break;
  }
  if (found.length === 0) throw new VgError('ERR_VG_RECORDING', `no recorded session "${id}" in ${dir}: list them with \`vecgate sessions\``);
  found.sort((a, b) => a.event.ts - b.event.ts || a.seq - b.seq);
  for (const x of found) yield x.event;
}
