// Per-worker tallies of answered HTTP requests (by connection and status class) and their
// body bytes, handed to the primary's metrics in one message a second rather than one per
// request: counting costs a map lookup on the request path.

/** How often a worker sends its HTTP tallies to the primary. */
export const HTTP_STATS_FLUSH_MS = 1_000;

/** [connection, status class, requests, request body bytes, response body bytes] */
export type HttpStatsRow = [connection: string, status: string, requests: number, bytesIn: number, bytesOut: number];

/** '2xx'..'5xx' from the status sent; 'aborted' when the client left before an answer. */
export function statusClass(status: number, aborted: boolean): string {
  if (aborted && status === 0) return 'aborted';
  if (status >= 100 && status < 600) return `${Math.floor(status / 100)}xx`;
  return 'other';
}

export class HttpStats {
  private rows = new Map<string, HttpStatsRow>();

  add(connection: string, status: number, aborted: boolean, bytesIn: number, bytesOut: number): void {
    const cls = statusClass(status, aborted);
    const key = `${connection}\0${cls}`;
    const row = this.rows.get(key);
    if (row === undefined) {
      this.rows.set(key, [connection, cls, 1, bytesIn, bytesOut]);
      return;
    }
    row[2]++;
    row[3] += bytesIn;
    row[4] += bytesOut;
  }

  /** The tallies since the last call (empty: nothing to send). */
  take(): HttpStatsRow[] {
    if (this.rows.size === 0) return [];
    const out = [...this.rows.values()];
    this.rows = new Map();
    return out;
  }
}
