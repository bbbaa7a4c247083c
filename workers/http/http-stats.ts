// Per-worker tallies of answered HTTP requests (by connection and status class) and their
// body bytes, handed to the primary's metrics in one message a second rather than one per
// request: counting costs a map lookup on the request path.

/** How often a worker sends its HTTP tallies to the primary. */
export const HTTP_STATS_FLUSH_MS = 1_000;

/** [connection, status class, requests, request body bytes, response body bytes] */
export type HttpStatsRow = [connection: string, status: string, requests: number, bytesIn: number, bytesOut: number];

/** Status classes as counted: '1xx'..'5xx', then 'aborted' (the client left before an answer) and 'other'. */
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'aborted', 'other'] as const;

/** Index in STATUS_CLASSES of the status sent. */
function statusClassIndex(status: number, aborted: boolean): number {
  if (aborted && status === 0) return 5;
  if (status >= 100 && status < 600) return Math.floor(status / 100) - 1;
  return 6;
}

export class HttpStats {
  /** Rows of each connection by status class index (no key string built per request). */
  private rows = new Map<string, (HttpStatsRow | undefined)[]>();

  add(connection: string, status: number, aborted: boolean, bytesIn: number, bytesOut: number): void {
    const cls = statusClassIndex(status, aborted);
    let byClass = this.rows.get(connection);
    if (byClass === undefined) {
      byClass = [];
      this.rows.set(connection, byClass);
    }
    const row = byClass[cls];
    if (row === undefined) {
      byClass[cls] = [connection, STATUS_CLASSES[cls]!, 1, bytesIn, bytesOut];
      return;
    }
    row[2]++;
    row[3] += bytesIn;
    row[4] += bytesOut;
  }

  /** The tallies since the last call (empty: nothing to send). */
  take(): HttpStatsRow[] {
    if (this.rows.size === 0) return [];
    const out: HttpStatsRow[] = [];
    for (const byClass of this.rows.values()) for (const row of byClass) if (row !== undefined) out.push(row);
    this.rows = new Map();
    return out;
  }
}
