// Every Prometheus metric the gateway exports, declared once (the Envoy rule: one list).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** How often the primary's event-loop lag is sampled (vecgate_process_nodejs_eventloop_lag_*). */
export const EVENT_LOOP_LAG_RESOLUTION_MS = 100;

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly sessionsStarted = new Counter({ name: 'vecgate_sessions_started_total', help: 'Sessions authorized and connected upstream', labelNames: ['connection', 'access'], registers: [this.registry] });
  readonly sessionsEnded = new Counter({ name: 'vecgate_sessions_ended_total', help: 'Sessions ended, by reason', labelNames: ['connection', 'reason'], registers: [this.registry] });
  readonly refusals = new Counter({ name: 'vecgate_refusals_total', help: 'Connections refused, by error code', labelNames: ['connection', 'code'], registers: [this.registry] });
  readonly bytes = new Counter({ name: 'vecgate_bytes_total', help: 'Plaintext bytes forwarded, by direction', labelNames: ['connection', 'direction'], registers: [this.registry] });
  readonly statements = new Counter({ name: 'vecgate_statements_total', help: 'Statements (Query/Parse) forwarded', labelNames: ['connection'], registers: [this.registry] });
  readonly httpRequests = new Counter({ name: 'vecgate_http_requests_total', help: 'HTTP requests answered, by status class (aborted: the client left before an answer); body bytes count in vecgate_bytes_total', labelNames: ['connection', 'status'], registers: [this.registry] });
  readonly upstreamParked = new Gauge({ name: 'vecgate_upstream_parked_connections', help: 'Idle upstream PostgreSQL connections parked for reuse, all workers (upstream.pool)', labelNames: ['connection'], registers: [this.registry] });
  readonly upstreamParkedEvictions = new Counter({ name: 'vecgate_upstream_parked_evictions_total', help: 'Parked upstream connections closed to stay within upstream.pool.max_idle_total (least recently used first)', labelNames: ['connection'], registers: [this.registry] });
  // upstream.pool.mode transaction (workers/pg-transaction-pool.ts), all workers.
  readonly poolConnections = new Gauge({ name: 'vecgate_upstream_pool_connections', help: 'Upstream connections of transaction pooling, by state: busy (held by a session in a transaction, or opening) or idle', labelNames: ['connection', 'state'], registers: [this.registry] });
  readonly poolWaiting = new Gauge({ name: 'vecgate_upstream_pool_waiting_sessions', help: 'Sessions waiting for a free upstream connection now (transaction pooling)', labelNames: ['connection'], registers: [this.registry] });
  readonly poolWaits = new Counter({ name: 'vecgate_upstream_pool_waits_total', help: 'Times a session had to wait for an upstream connection (transaction pooling)', labelNames: ['connection'], registers: [this.registry] });
  readonly poolWaitSeconds = new Counter({ name: 'vecgate_upstream_pool_wait_seconds_total', help: 'Time sessions spent waiting for an upstream connection (transaction pooling)', labelNames: ['connection'], registers: [this.registry] });
  readonly poolWaitTimeouts = new Counter({ name: 'vecgate_upstream_pool_wait_timeouts_total', help: 'Sessions that got 53300 after upstream.pool.wait_timeout (transaction pooling)', labelNames: ['connection'], registers: [this.registry] });
  readonly poolPins = new Counter({ name: 'vecgate_upstream_pool_pins_total', help: 'Sessions pinned to their upstream connection by session state, by reason (transaction pooling)', labelNames: ['connection', 'reason'], registers: [this.registry] });
  readonly liveSessions = new Gauge({ name: 'vecgate_live_sessions', help: 'Sessions being pumped now', registers: [this.registry] });
  readonly certReloads = new Counter({ name: 'vecgate_certificate_reloads_total', help: 'Server certificate reloads, by result', labelNames: ['result'], registers: [this.registry] });

  constructor() {
    // Event-loop lag sampled every 100 ms, not prom-client's 10 ms: its timer was what woke an
    // idle gateway's primary thread 100 times a second.
    collectDefaultMetrics({ register: this.registry, prefix: 'vecgate_process_', eventLoopMonitoringPrecision: EVENT_LOOP_LAG_RESOLUTION_MS });
  }
}
