// Typed messages between the primary thread and the worker threads. Encoded with msgpackr
// (one pack per message, the buffer transferred, never cloned) so both sides agree on one
// schema and binary fields (certificates, keys) cross without base64.
import { Packr } from 'msgpackr';
import type { MessagePort } from 'node:worker_threads';
import type { AccessLevel, DbCredential, PolicyConfig, VecgateConfig } from '../src/config/types.js';
import type { RecordEvent } from '../src/recording/record-event.js';
import type { CredentialHeader } from './http/credential-header.js';
import type { HttpStatsRow } from './http/http-stats.js';
import type { ParkedGroupRow, PoolStatsRow } from './pg-upstream-pool.js';
import type { TransactionPoolSnapshot, TransactionPoolStatsRow } from './pg-transaction-pool.js';

const packr = new Packr({ useRecords: false, moreTypes: true });

export interface AuthClientInfo {
  address: string;
  port: number;
  /** `user` from the client's StartupMessage (informational: identity comes from the token). */
  user: string;
  applicationName: string;
}

export interface AuthGranted {
  ok: true;
  subject: string;
  username: string;
  issuer: string;
  groups: string[];
  access: AccessLevel;
  rules: string[];
  /**
   * The upstream credential, resolved by the primary from its current config (a reload reaches
   * workers with the next decision; their own config copy carries no secrets). PostgreSQL:
   * the user and password for this access level. HTTP: `upstreamHeader`, the header injected
   * (null: the connection has none); `credential` is empty.
   */
  credential: DbCredential;
  upstreamHeader: CredentialHeader | null;
  /** ms epoch; the worker caches the decision no longer than this. */
  expiresAt: number;
}

export interface AuthRefused {
  ok: false;
  code: string; // ERR_VG_*
  /** SQLSTATE for PostgreSQL clients: 28P01 bad token, 28000 no access. */
  sqlstate: string;
  message: string;
}

export type AuthResult = AuthGranted | AuthRefused;

export interface SessionSummary {
  connection: string;
  subject: string;
  access: AccessLevel;
  client: string;
  upstreamUser: string;
  clientTls: string;
  upstreamTls: string;
  durationMs: number;
  bytesFromClient: number;
  bytesFromUpstream: number;
  statements: number;
  refusedStatements: number;
  reason: string;
  detail: string;
}

/** A worker's pools as they are when asked (`pools?`), for /pools: transaction pools by group, session mode's parked connections. */
export interface WorkerPoolsSnapshot {
  transaction: TransactionPoolSnapshot;
  parked: ParkedGroupRow[];
}

export type ToPrimary =
  | { t: 'ready'; worker: number; listeners: { connection: string; port: number }[] }
  | { t: 'listen-error'; worker: number; connection: string; code: string; message: string }
  | { t: 'auth'; id: number; token: string; connection: string; client: AuthClientInfo }
  | { t: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string; fields: Record<string, unknown> }
  | { t: 'session-start'; connection: string; access: AccessLevel }
  | { t: 'session-end'; summary: SessionSummary }
  | { t: 'refusal'; connection: string; code: string }
  /** Recording events, encoded and redacted by the worker (src/recording/encode-event.ts, native/statement-recorder.h), as one record batch (src/recording/record-batch.ts). */
  | { t: 'record'; batch: Uint8Array; ack: number | null }
  | { t: 'drained'; worker: number; sessionsLeft: number }
  | { t: 'stats'; worker: number; liveSessions: number; liveConnections: number; bytesPumped: number }
  /** HTTP requests answered since the last such message (workers/http/http-stats.ts). */
  | { t: 'http-stats'; rows: HttpStatsRow[] }
  /** A worker's parked upstream PostgreSQL connections now, per connection, and evictions since its last such message. */
  | { t: 'pg-pool-stats'; worker: number; rows: PoolStatsRow[] }
  | { t: 'pg-txpool-stats'; worker: number; rows: TransactionPoolStatsRow[] }
  /** The answer to `pools?` `id`. */
  | { t: 'pools'; worker: number; id: number; pools: WorkerPoolsSnapshot }
  /** A CancelRequest for a pooled session of worker `to` arrived at worker `from`: relayed to `to`, which answers cancel-done. */
  | { t: 'cancel-route'; from: number; to: number; id: number; slot: number; secret: number }
  | { t: 'cancel-done'; to: number; id: number };

export type ToWorker =
  | { t: 'auth-result'; id: number; result: AuthResult }
  | { t: 'tls'; cert: Buffer; key: Buffer }
  | { t: 'drain'; deadlineMs: number }
  | { t: 'policy'; policies: PolicyConfig[] }
  | { t: 'record-ack'; batch: number; ok: boolean; message: string }
  | { t: 'stats?' }
  /** /pools asks every worker for its pools now; each answers `pools` with the same id. */
  | { t: 'pools?'; id: number }
  | { t: 'cancel-route'; from: number; id: number; slot: number; secret: number }
  | { t: 'cancel-done'; id: number };

export interface WorkerInit {
  index: number;
  /** The primary logger's level: lower-level lines are not even sent. */
  logLevel: string;
  /** Without credentials (every connection's are emptied): they come with each AuthGranted. */
  config: VecgateConfig;
  tlsCert: Buffer;
  tlsKey: Buffer;
  cancelKey: Buffer;
}

export function send(port: Pick<MessagePort, 'postMessage'>, msg: ToPrimary | ToWorker): void {
  const packed = packr.pack(msg);
  // A fresh ArrayBuffer slice we own, so it can be transferred instead of copied.
  const ab = packed.buffer.slice(packed.byteOffset, packed.byteOffset + packed.byteLength);
  port.postMessage(ab, [ab as ArrayBuffer]);
}

export function receive<T extends ToPrimary | ToWorker>(data: unknown): T {
  return packr.unpack(new Uint8Array(data as ArrayBuffer)) as T;
}

export function packInit(init: WorkerInit): Uint8Array {
  return packr.pack(init);
}

export function unpackInit(data: Uint8Array): WorkerInit {
  const init = packr.unpack(data) as WorkerInit;
  return init;
}
