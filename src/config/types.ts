// The validated, resolved configuration the gateway runs on: what `loadConfig` returns.
// Paths are absolute (resolved against the config file's directory); `env:`/`file:`
// secret references are already resolved to their values.

export type TlsProfile = 'modern' | 'intermediate';

export interface HostPort {
  host: string;
  port: number;
}

export interface ServerTlsConfig {
  cert: string; // absolute path to PEM certificate chain
  key: string; // absolute path to PEM private key
  profile: TlsProfile; // modern = TLS 1.3 only; intermediate adds TLS 1.2 ECDHE-AEAD
}

export interface ServerLimits {
  /** Longest a client may take from TCP accept to a completed TLS handshake. */
  handshakeTimeoutMs: number; // server.limits.handshake_timeout, default 10s
  /** Longest from TLS to an authenticated session (startup + password). */
  authTimeoutMs: number; // server.limits.auth_timeout, default 30s
  /** Upstream TCP connect + TLS + auth budget. */
  upstreamConnectTimeoutMs: number; // server.limits.upstream_connect_timeout, default 10s
  /** Largest startup packet accepted (PostgreSQL's own limit is 10,000). */
  maxStartupPacketBytes: number; // server.limits.max_startup_packet, default 10000
  /** Bytes queued toward a slow peer before the other side stops being read. */
  pumpHighWaterBytes: number; // server.limits.pump_high_water, default 262144
  /** CancelRequests forwarded upstream per second per worker (token bucket refill). */
  cancelRatePerSec: number; // server.limits.cancel_rate, default 20
  /** CancelRequests a worker may forward in a burst. */
  cancelBurst: number; // server.limits.cancel_burst, default 40
  /** Upstream cancel connections in flight per worker. */
  maxConcurrentCancels: number; // server.limits.max_concurrent_cancels, default 8
}

export interface ServerConfig {
  tls: ServerTlsConfig;
  admin: HostPort | null; // server.admin.listen; null when absent
  workers: number; // 'auto' resolved to os.availableParallelism()
  /** 32-byte key that maps gateway cancel keys to upstream ones; shared by replicas. Random when unset. */
  cancelKey: Buffer | null; // server.cancel_key (secret ref, base64 or hex of 32 bytes)
  drainTimeoutMs: number; // server.drain_timeout, default 30s
  limits: ServerLimits;
}

export interface IssuerConfig {
  issuer: string;
  audience: string | string[];
  groupsClaim: string; // default 'groups'; dotted path allowed
  usernameClaim: string; // default 'sub'; dotted path allowed
  /** Pinned keys: absolute file path or https URL. When absent, OIDC discovery is used. */
  jwks: string | null;
  /** Allowlisted JWS algorithms; default asymmetric only: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA. */
  algorithms: string[];
  clockSkewSec: number; // default 60, max 300
  /** Extra CA (PEM path) for discovery and JWKS fetches. */
  ca: string | null;
}

export type AccessLevel = 'read' | 'write' | 'admin';

export interface PolicyConfig {
  name: string;
  groups: string[];
  connections: string[];
  access: AccessLevel;
}

export interface UpstreamTlsConfig {
  /** verify-full: chain + host name. insecure-plaintext: no TLS at all, loopback upstreams only (dev). */
  mode: 'verify-full' | 'insecure-plaintext';
  ca: string | null; // absolute PEM path; null = system trust store
  serverName: string; // defaults to upstream host
}

export interface DbCredential {
  user: string;
  password: string;
}

export type RecordingMode = 'off' | 'metadata' | 'queries' | 'full';

/**
 * Upstream connections kept for reuse (per worker, per upstream user and database, per
 * subject, per client startup parameters): a session the client ends while idle leaves its
 * upstream reset with DISCARD ALL and parked, so the next one skips TCP, TLS and SCRAM.
 */
export interface UpstreamPoolConfig {
  /** upstream.pool.max_idle: parked connections per key per worker; 0 turns reuse off. Default 8. */
  maxIdle: number;
  /**
   * upstream.pool.max_idle_total: parked connections of this connection over every key, split
   * between the workers; parking one more closes the least recently parked. 0 turns reuse off. Default 32.
   */
  maxIdleTotal: number;
  /** upstream.pool.idle_timeout: a parked connection is closed after this long. Default 30s. */
  idleTimeoutMs: number;
  /**
   * upstream.pool.mode: `session` (a client session holds its upstream for its life; the
   * default) or `transaction` (PostgreSQL: only from a transaction's first message to its end;
   * workers/pg-transaction-pool.ts).
   */
  mode: 'session' | 'transaction';
  /** upstream.pool.size: transaction mode's most upstream connections per gateway process, over every worker (each gets its share, at least one). Default 20. */
  size: number;
  /** upstream.pool.wait_timeout: how long a transaction-mode session waits for a free upstream connection before 53300. Default 10s. */
  waitTimeoutMs: number;
  /**
   * upstream.pool.prepared_statements: transaction mode carries named prepared statements between
   * upstream connections, each keeping at most this many prepared (least recently used closed
   * first); 0: a named prepared statement pins its session instead. Default 200.
   */
  preparedStatements: number;
  /**
   * upstream.pool.on_pin: what transaction mode does with a statement that leaves state in the
   * server session (SET, PREPARE, LISTEN, temporary tables, ...): `pin` the session to its
   * upstream connection for the rest of its life (default), or `refuse` the statement (0A000,
   * naming why), so every session keeps sharing connections.
   */
  onPin: 'pin' | 'refuse';
}

/**
 * How the gateway may prove the injected credential to a PostgreSQL upstream, named as in
 * pg_hba.conf. Only SCRAM-SHA-256 (-PLUS when offered) by default: with `password` the upstream
 * (or whoever holds its certificate) receives the password itself, `md5` is a replayable
 * hash, and `trust` means the upstream never checked the credential.
 */
export type PgAuthMethod = 'scram-sha-256' | 'md5' | 'password' | 'trust';

export interface PostgresConnectionConfig {
  name: string;
  protocol: 'postgres';
  listen: HostPort;
  /** upstream.auth_methods: default [scram-sha-256]. */
  /**
   * `databases`: other databases on the same server a client may name with `dbname` (same
   * credentials and policy); `dbname=<connection name>` or `database` gives `database`.
   */
  upstream: { host: string; port: number; database: string; databases?: string[]; tls: UpstreamTlsConfig; pool: UpstreamPoolConfig; authMethods: PgAuthMethod[] };
  /** Credential per access level; a single {user,password} in YAML fills all three. */
  credentials: Partial<Record<AccessLevel, DbCredential>>;
  recording: RecordingMode;
}

export interface MysqlConnectionConfig {
  name: string;
  protocol: 'mysql';
  listen: HostPort;
  upstream: { host: string; port: number; database: string; tls: UpstreamTlsConfig; pool: UpstreamPoolConfig };
  credentials: Partial<Record<AccessLevel, DbCredential>>;
  recording: RecordingMode;
}

export interface HttpConnectionConfig {
  name: string;
  protocol: 'http';
  flavor: 'qdrant' | 'chroma' | 'weaviate' | 'milvus' | 'opensearch' | 'generic';
  listen: HostPort;
  upstream: { url: string; tls: UpstreamTlsConfig };
  credentials: { header: string; value: string } | { bearer: string } | { basic: { user: string; password: string } } | null;
  guard: { returnVectors: string[] | null; maxLimit: number | null };
  recording: RecordingMode;
}

export type ConnectionConfig = PostgresConnectionConfig | MysqlConnectionConfig | HttpConnectionConfig;

export interface RecordingsConfig {
  dir: string; // absolute
  retentionMs: number; // recordings.retention like '30d'
  durability: 'strict' | 'async';
  /** recordings.redact_settings: values of these settings in ALTER SYSTEM SET / SET are masked. */
  redactSettings: string[];
}

export interface VecgateConfig {
  /** Absolute path of the file this was loaded from. */
  configPath: string;
  server: ServerConfig;
  identity: { issuers: IssuerConfig[] };
  policies: PolicyConfig[];
  connections: Record<string, ConnectionConfig>;
  recordings: RecordingsConfig;
}

/** Whether any connection is `protocol: http`: the primary sizes the workers' heaps by it, the workers start their HTTP tallies by it. */
export function servesHttp(config: VecgateConfig): boolean {
  return Object.values(config.connections).some((c) => c.protocol === 'http');
}
