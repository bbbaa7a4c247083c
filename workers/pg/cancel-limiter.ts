// Bounds what unauthenticated CancelRequests can make a worker do: a CancelRequest needs no
// token, and each one that is forwarded costs an upstream TCP (+TLS) connection. Keys that do
// not decode never get here; those that do pass a per-worker token bucket and a cap on
// upstream cancel connections in flight. Refused requests are closed without a word (as
// PostgreSQL does) and counted; the counts reach the log at most once per report interval,
// so a flood of cancels cannot flood the log either.

/** Dropped cancel requests are summed and logged at most this often. */
export const CANCEL_DROP_REPORT_MS = 10_000;

export type CancelDropReason = 'undecodable' | 'rate-limited' | 'too-many-in-flight' | 'malformed';

/** server.limits.cancel_rate, cancel_burst and max_concurrent_cancels (defaults in src/config/schema.ts). */
export interface CancelLimits {
  ratePerSec: number;
  burst: number;
  maxConcurrent: number;
}

export class CancelLimiter {
  private tokens: number;
  private refilledAt: number;
  private inFlight = 0;
  /** Drops since the last report, by reason. */
  private dropped = new Map<CancelDropReason, number>();
  /** Every drop since the worker started, by reason (for tests and stats). */
  readonly droppedTotal = new Map<CancelDropReason, number>();
  forwardedTotal = 0;
  private reportTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly limits: CancelLimits,
    /** Where the periodic summary of drops goes (the worker's log). */
    private readonly report: (counts: Record<string, number>) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = limits.burst;
    this.refilledAt = this.now();
  }

  /**
   * Takes a slot for one upstream cancel connection, or says why not. The caller must call
   * `release()` once that connection is done when this returned null.
   */
  acquire(): CancelDropReason | null {
    if (this.inFlight >= this.limits.maxConcurrent) return this.drop('too-many-in-flight');
    const t = this.now();
    this.tokens = Math.min(this.limits.burst, this.tokens + ((t - this.refilledAt) / 1000) * this.limits.ratePerSec);
    this.refilledAt = t;
    if (this.tokens < 1) return this.drop('rate-limited');
    this.tokens -= 1;
    this.inFlight++;
    this.forwardedTotal++;
    return null;
  }

  release(): void {
    if (this.inFlight > 0) this.inFlight--;
  }

  /** Counts a request dropped before any slot was asked for (a key that does not decode). */
  drop(reason: CancelDropReason): CancelDropReason {
    this.dropped.set(reason, (this.dropped.get(reason) ?? 0) + 1);
    this.droppedTotal.set(reason, (this.droppedTotal.get(reason) ?? 0) + 1);
    if (this.reportTimer === null) {
      this.reportTimer = setTimeout(() => this.flushReport(), CANCEL_DROP_REPORT_MS);
      this.reportTimer.unref();
    }
    return reason;
  }

  /** Reports the drops counted since the last report (also on drain). */
  flushReport(): void {
    if (this.reportTimer !== null) clearTimeout(this.reportTimer);
    this.reportTimer = null;
    if (this.dropped.size === 0) return;
    const counts = Object.fromEntries(this.dropped);
    this.dropped = new Map();
    this.report(counts);
  }
}
