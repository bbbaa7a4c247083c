// The zod schema of the YAML config: shape, defaults, and every per-key rule. It turns the
// raw document into the resolved `VecgateConfig` (paths absolute, secrets read, durations in
// ms). Cross-entry rules (unique listens, policy references) live in config-cross-checks.ts.
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import type {
  AccessLevel,
  ConnectionConfig,
  DbCredential,
  HostPort,
  HttpConnectionConfig,
  IssuerConfig,
  MysqlConnectionConfig,
  PgAuthMethod,
  PolicyConfig,
  PostgresConnectionConfig,
  RecordingsConfig,
  ServerConfig,
  UpstreamTlsConfig,
  VecgateConfig,
} from './types.js';
import { parseDuration } from './durations.js';
import { isLoopbackHost, parseListen } from './host-address.js';
import { resolveSecret, type SecretContext } from './secret-ref.js';

// ---- limits and defaults (each one a config key) ----
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_AUTH_TIMEOUT_MS = 30_000;
export const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;
/** upstream.pool defaults: parked idle upstream connections per key per worker, and how long one waits. */
export const DEFAULT_UPSTREAM_POOL_MAX_IDLE = 8;
export const MAX_UPSTREAM_POOL_MAX_IDLE = 1000;
export const DEFAULT_UPSTREAM_POOL_IDLE_TIMEOUT_MS = 30_000;
/**
 * upstream.pool.max_idle_total: parked connections of one connection across every key and worker
 * (split evenly between workers). Each holds an upstream backend: with a key per subject, many
 * users would otherwise park backends toward the server's max_connections (100 by default).
 */
export const DEFAULT_UPSTREAM_POOL_MAX_IDLE_TOTAL = 32;
export const MAX_UPSTREAM_POOL_MAX_IDLE_TOTAL = 100_000;
export const MAX_UPSTREAM_POOL_IDLE_TIMEOUT_MS = 3_600_000;
/** upstream.pool.size (transaction mode): upstream connections per gateway process, over every worker. */
export const DEFAULT_UPSTREAM_POOL_SIZE = 20;
export const MAX_UPSTREAM_POOL_SIZE = 10_000;
/** upstream.pool.wait_timeout (transaction mode): a session's wait for a free upstream connection. */
export const DEFAULT_UPSTREAM_POOL_WAIT_TIMEOUT_MS = 10_000;
export const MAX_UPSTREAM_POOL_WAIT_TIMEOUT_MS = 600_000;
/**
 * upstream.pool.prepared_statements (transaction mode): named prepared statements each upstream
 * connection keeps prepared for the sessions it serves (PgBouncer's max_prepared_statements);
 * 0 turns carrying them off (a named Parse pins its session). Same limit as the pump's
 * (native/session/pump.h kMaxPreparedStatementsPerLink).
 */
export const DEFAULT_UPSTREAM_POOL_PREPARED_STATEMENTS = 200;
export const MAX_UPSTREAM_POOL_PREPARED_STATEMENTS = 100_000;
export const DEFAULT_MAX_STARTUP_PACKET_BYTES = 10_000;
export const DEFAULT_PUMP_HIGH_WATER_BYTES = 262_144;
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** CancelRequests need no token: each forwarded one costs an upstream connection (workers/pg/cancel-limiter.ts). */
export const DEFAULT_CANCEL_RATE_PER_SEC = 20;
export const DEFAULT_CANCEL_BURST = 40;
export const DEFAULT_MAX_CONCURRENT_CANCELS = 8;
export const MAX_CANCEL_RATE_PER_SEC = 100_000;
export const MAX_CONCURRENT_CANCELS = 10_000;
/** How the gateway may authenticate to a PostgreSQL upstream (pg_hba names); SCRAM only unless a connection says otherwise. */
export const PG_AUTH_METHODS = ['scram-sha-256', 'md5', 'password', 'trust'] as const;
export const DEFAULT_PG_AUTH_METHODS: readonly PgAuthMethod[] = ['scram-sha-256'];
export const DEFAULT_CLOCK_SKEW_SEC = 60;
/** Larger skew would let expired tokens live on noticeably. */
export const MAX_CLOCK_SKEW_SEC = 300;
export const DEFAULT_RECORDINGS_DIR = 'recordings';
/** Settings whose values `ALTER SYSTEM SET` / `SET` statements carry secrets in: masked in recordings. */
export const DEFAULT_REDACT_SETTINGS = ['primary_conninfo', 'ssl_passphrase_command', 'archive_command', 'restore_command'] as const;
export const DEFAULT_RETENTION = '30d';
/** Upper bound for `server.workers`. */
export const MAX_WORKERS = 256;
/** Bounds for timeouts: below this a real handshake cannot finish, above it a stuck peer holds resources for too long. */
export const MIN_TIMEOUT_MS = 100;
export const MAX_TIMEOUT_MS = 3_600_000;
export const MAX_DRAIN_TIMEOUT_MS = 3_600_000;
export const MAX_RETENTION_MS = 3650 * 86_400_000;
/** PostgreSQL's own startup packet limit is 10,000; allow room for long options, but bounded. */
export const MIN_STARTUP_PACKET_BYTES = 1024;
export const MAX_STARTUP_PACKET_BYTES = 1_048_576;
export const MIN_PUMP_HIGH_WATER_BYTES = 16_384;
export const MAX_PUMP_HIGH_WATER_BYTES = 67_108_864;
export const DEFAULT_PORTS = { postgres: 5432, mysql: 3306 } as const;
/** Asymmetric JWS algorithms only: with a symmetric one, whoever can verify can also mint. */
export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
export const RECORDING_MODES = ['off', 'metadata', 'queries', 'full'] as const;
export const ACCESS_LEVELS = ['read', 'write', 'admin'] as const;
/**
 * Protocols this build serves. The schema also accepts `mysql` (its shape is settled), but no
 * worker listens for it yet (MySQL is planned, issue #21): such a connection is refused by
 * check-config and start rather than started with nothing on its port.
 */
export const SERVED_PROTOCOLS = ['postgres', 'http'] as const;
export const HTTP_FLAVORS = ['qdrant', 'chroma', 'weaviate', 'milvus', 'opensearch', 'generic'] as const;
export const UPSTREAM_TLS_MODES = ['verify-full', 'insecure-plaintext'] as const;
/** Connection names become database names and metric labels. */
export const CONNECTION_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$/;
export const CONNECTION_NAME_RULE = 'connection names use letters, digits, _ . - (at most 63, not starting with . or -)';
const MAX_ECHO_CHARS = 60;

export interface SchemaContext extends SecretContext {
  /** os.availableParallelism() in production; fixed in tests. */
  availableParallelism: number;
}

type Check<T> = { ok: true; value: T } | { ok: false; error: string };
const ok = <T>(value: T): Check<T> => ({ ok: true, value });
const fail = (error: string): Check<never> => ({ ok: false, error });

/** The offending value for a message, shortened; never used for secret keys. */
export function got(v: unknown): string {
  let text: string;
  if (v === null) text = 'null';
  else if (Array.isArray(v)) text = 'a list';
  else if (typeof v === 'object') text = 'a mapping';
  else text = JSON.stringify(v) ?? String(v);
  return text.length > MAX_ECHO_CHARS ? text.slice(0, MAX_ECHO_CHARS - 3) + '...' : text;
}

/** A leaf value checked by a plain function, so every message is ours and says what is allowed. */
function leaf<T>(check: (v: unknown) => Check<T>) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): T => {
      const r = check(v);
      if (!r.ok) {
        ctx.addIssue({ code: 'custom', message: r.error });
        return z.NEVER;
      }
      return r.value;
    });
}

/** A strict mapping: unknown keys are errors (a typo must not be silently ignored). */
function mapping<S extends z.core.$ZodLooseShape>(shape: S, what: string) {
  return z.strictObject(shape, {
    error: (iss) => (iss.input === undefined || iss.input === null ? `required: ${what}` : `must be a mapping (${what}), got ${got(iss.input)}`),
  });
}

/** An optional section whose keys all have defaults: absent or empty means all defaults. */
function section<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => v ?? {}, schema);
}

/** A list; `null`/absent handled by the caller's wrapping. */
function list<T extends z.ZodType>(item: T, what: string) {
  return z.array(item, {
    error: (iss) => (iss.input === undefined || iss.input === null ? `required: ${what}` : `must be a list (${what}), got ${got(iss.input)}`),
  });
}

function requiredText(what: string, v: unknown): Check<string> {
  if (v === undefined || v === null) return fail(`required: ${what}`);
  if (typeof v !== 'string' || v.trim() === '') return fail(`must be a non-empty string (${what}), got ${got(v)}`);
  return ok(v);
}

const text = (what: string, dflt?: string) => leaf((v) => (v === undefined && dflt !== undefined ? ok(dflt) : requiredText(what, v)));

function oneOf<T extends string>(values: readonly T[], dflt?: T) {
  return leaf((v): Check<T> => {
    if (v === undefined && dflt !== undefined) return ok(dflt);
    if (typeof v === 'string' && (values as readonly string[]).includes(v)) return ok(v as T);
    return fail(`must be one of ${values.join(', ')} (got ${v === undefined ? 'nothing' : got(v)})`);
  });
}

function integer(min: number, max: number, dflt?: number) {
  return leaf((v): Check<number> => {
    if (v === undefined && dflt !== undefined) return ok(dflt);
    const n = typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v;
    if (typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max) return ok(n);
    return fail(`must be an integer ${min}-${max} (got ${v === undefined ? 'nothing' : got(v)})`);
  });
}

function duration(minMs: number, maxMs: number, dflt: number | string) {
  return leaf((v): Check<number> => {
    const r = parseDuration(v ?? dflt, { minMs, maxMs });
    return r.ok ? ok(r.ms) : fail(`${r.error} (got ${got(v)})`);
  });
}

/** A string that may be `env:NAME` or `file:PATH`; messages never echo the value. */
function secretText(ctx: SchemaContext, what: string, v: unknown): Check<string> {
  if (v === undefined || v === null) return fail(`required: ${what}`);
  if (typeof v !== 'string' || v === '') return fail(`must be a non-empty string (${what}), or env:NAME / file:PATH`);
  const r = resolveSecret(v, ctx);
  return r.ok ? ok(r.value) : fail(r.error);
}
const secret = (ctx: SchemaContext, what: string) => leaf((v) => secretText(ctx, what, v));

/** A file the gateway reads: resolved against the config's directory, and it must be readable now. */
function readableFile(ctx: SchemaContext, what: string, v: unknown): Check<string> {
  const t = requiredText(what, v);
  if (!t.ok) return t;
  const file = path.resolve(ctx.baseDir, t.value);
  try {
    if (!statSync(file).isFile()) return fail(`${file} is not a regular file`);
    accessSync(file, fsConstants.R_OK);
  } catch (err) {
    return fail(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return ok(file);
}
const fileRef = (ctx: SchemaContext, what: string) => leaf((v) => readableFile(ctx, what, v));
const optionalFileRef = (ctx: SchemaContext, what: string) =>
  leaf((v): Check<string | null> => (v === undefined || v === null ? ok(null) : readableFile(ctx, what, v)));

/** https, or http to a loopback host (a local test or dev identity provider). */
function httpsUrl(v: string): Check<string> {
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return fail(`must be an https URL (got ${got(v)})`);
  }
  if (url.protocol === 'https:') return ok(v);
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return ok(v);
  if (url.protocol === 'http:') return fail(`must be an https URL; plain http is allowed only to loopback hosts (got ${got(v)})`);
  return fail(`must be an https URL (got ${got(v)})`);
}

const listen = (what: string) =>
  leaf((v): Check<HostPort> => {
    const t = requiredText(what, v);
    if (!t.ok) return t;
    const r = parseListen(t.value.trim());
    return r.ok ? ok({ host: r.host, port: r.port }) : fail(`${r.error} (got ${got(v)})`);
  });

function upstreamHost(v: unknown): Check<string> {
  const t = requiredText('upstream host name or IP address', v);
  if (!t.ok) return t;
  let host = t.value.trim();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (/[\s/@]/.test(host) || host.includes('://')) return fail(`must be a host name or IP address, without scheme or port (got ${got(v)})`);
  return ok(host);
}

function stringList(what: string, v: unknown): Check<string[]> {
  if (v === undefined || v === null) return fail(`required: ${what}`);
  const items = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(items) || items.length === 0) return fail(`must be a non-empty list of ${what} (got ${got(v)})`);
  for (const item of items) {
    if (typeof item !== 'string' || item.trim() === '') return fail(`must be a non-empty list of ${what}; ${got(item)} is not a name`);
  }
  return ok([...new Set(items as string[])]);
}

// ---- server ----

function cancelKey(ctx: SchemaContext) {
  return leaf((v): Check<Buffer | null> => {
    if (v === undefined || v === null) return ok(null);
    const s = secretText(ctx, '32 random bytes as hex or base64', v);
    if (!s.ok) return s;
    const t = s.value.trim();
    if (/^[0-9a-fA-F]{64}$/.test(t)) return ok(Buffer.from(t, 'hex'));
    if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
      const b = Buffer.from(t, t.includes('-') || t.includes('_') ? 'base64url' : 'base64');
      if (b.length === 32) return ok(b);
      return fail(`must be 32 bytes as 64 hex digits or base64 (it decodes to ${b.length} bytes); make one with: openssl rand -hex 32`);
    }
    return fail('must be 32 bytes as 64 hex digits or base64; make one with: openssl rand -hex 32');
  });
}

function serverSchema(ctx: SchemaContext) {
  const limits = mapping(
    {
      handshake_timeout: duration(MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, DEFAULT_HANDSHAKE_TIMEOUT_MS / 1000),
      auth_timeout: duration(MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, DEFAULT_AUTH_TIMEOUT_MS / 1000),
      upstream_connect_timeout: duration(MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS / 1000),
      max_startup_packet: integer(MIN_STARTUP_PACKET_BYTES, MAX_STARTUP_PACKET_BYTES, DEFAULT_MAX_STARTUP_PACKET_BYTES),
      pump_high_water: integer(MIN_PUMP_HIGH_WATER_BYTES, MAX_PUMP_HIGH_WATER_BYTES, DEFAULT_PUMP_HIGH_WATER_BYTES),
      cancel_rate: integer(1, MAX_CANCEL_RATE_PER_SEC, DEFAULT_CANCEL_RATE_PER_SEC),
      cancel_burst: integer(1, MAX_CANCEL_RATE_PER_SEC, DEFAULT_CANCEL_BURST),
      max_concurrent_cancels: integer(1, MAX_CONCURRENT_CANCELS, DEFAULT_MAX_CONCURRENT_CANCELS),
    },
    'timeouts and sizes',
  ).transform((l) => ({
    handshakeTimeoutMs: l.handshake_timeout,
    authTimeoutMs: l.auth_timeout,
    upstreamConnectTimeoutMs: l.upstream_connect_timeout,
    maxStartupPacketBytes: l.max_startup_packet,
    pumpHighWaterBytes: l.pump_high_water,
    cancelRatePerSec: l.cancel_rate,
    cancelBurst: l.cancel_burst,
    maxConcurrentCancels: l.max_concurrent_cancels,
  }));
  const workers = leaf((v): Check<number> => {
    if (v === undefined || v === null || v === 'auto') return ok(Math.min(MAX_WORKERS, Math.max(1, ctx.availableParallelism)));
    if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_WORKERS) return ok(v);
    return fail(`must be auto (one per core) or an integer 1-${MAX_WORKERS} (got ${got(v)})`);
  });
  return mapping(
    {
      tls: mapping(
        {
          cert: fileRef(ctx, 'path to the PEM certificate chain'),
          key: fileRef(ctx, 'path to the PEM private key'),
          profile: oneOf(['modern', 'intermediate'] as const, 'modern'),
        },
        'cert, key and profile',
      ),
      admin: z.preprocess(
        (v) => v ?? undefined,
        mapping({ listen: listen('admin listen address, like 127.0.0.1:9090') }, 'listen').optional(),
      ),
      workers,
      cancel_key: cancelKey(ctx),
      drain_timeout: duration(0, MAX_DRAIN_TIMEOUT_MS, DEFAULT_DRAIN_TIMEOUT_MS / 1000),
      limits: section(limits),
    },
    'tls, admin, workers, cancel_key, drain_timeout, limits',
  ).transform(
    (s): ServerConfig => ({
      tls: s.tls,
      admin: s.admin?.listen ?? null,
      workers: s.workers,
      cancelKey: s.cancel_key,
      drainTimeoutMs: s.drain_timeout,
      limits: s.limits,
    }),
  );
}

// ---- identity ----

function issuerSchema(ctx: SchemaContext) {
  return mapping(
    {
      issuer: leaf((v) => {
        const t = requiredText('issuer URL, exactly as in the tokens\' iss claim', v);
        return t.ok ? httpsUrl(t.value) : t;
      }),
      audience: leaf((v): Check<string | string[]> => {
        const r = stringList('audiences', v);
        if (!r.ok) return r;
        return ok(typeof v === 'string' ? r.value[0]! : r.value);
      }),
      groups_claim: text('claim (dotted path) holding the groups', 'groups'),
      username_claim: text('claim (dotted path) holding the user name', 'sub'),
      jwks: leaf((v): Check<string | null> => {
        if (v === undefined || v === null) return ok(null);
        const t = requiredText('pinned JWKS: https URL or file path', v);
        if (!t.ok) return t;
        if (/^[a-z][a-z0-9+.-]*:\/\//i.test(t.value)) return httpsUrl(t.value);
        return readableFile(ctx, 'JWKS file', t.value);
      }),
      algorithms: leaf((v): Check<string[]> => {
        if (v === undefined || v === null) return ok([...ALLOWED_ALGORITHMS]);
        const r = stringList('JWS algorithms', v);
        if (!r.ok) return r;
        for (const alg of r.value) {
          if (!(ALLOWED_ALGORITHMS as readonly string[]).includes(alg)) {
            const why = /^HS/i.test(alg) ? ' (symmetric: whoever can verify could also mint tokens)' : alg.toLowerCase() === 'none' ? ' (unsigned)' : '';
            return fail(`${JSON.stringify(alg)} is not allowed${why}; use any of ${ALLOWED_ALGORITHMS.join(', ')}`);
          }
        }
        return ok(r.value);
      }),
      clock_skew: duration(0, MAX_CLOCK_SKEW_SEC * 1000, DEFAULT_CLOCK_SKEW_SEC),
      ca: optionalFileRef(ctx, 'PEM CA file for discovery and JWKS fetches'),
    },
    'issuer, audience, groups_claim, username_claim, jwks, algorithms, clock_skew, ca',
  ).transform(
    (i): IssuerConfig => ({
      issuer: i.issuer,
      audience: i.audience,
      groupsClaim: i.groups_claim,
      usernameClaim: i.username_claim,
      jwks: i.jwks,
      algorithms: i.algorithms,
      clockSkewSec: i.clock_skew / 1000,
      ca: i.ca,
    }),
  );
}

function identitySchema(ctx: SchemaContext) {
  return mapping(
    {
      issuers: list(issuerSchema(ctx), 'trusted token issuers').min(1, { error: 'at least one issuer is required' }),
    },
    'issuers',
  ).transform((i) => ({ issuers: i.issuers }));
}

// ---- policies ----

const policySchema = mapping(
  {
    name: text('policy name'),
    groups: leaf((v) => stringList('group names', v)),
    connections: leaf((v) => stringList('connection names', v)),
    access: oneOf(ACCESS_LEVELS),
  },
  'name, groups, connections, access',
).transform((p): PolicyConfig => ({ name: p.name, groups: p.groups, connections: p.connections, access: p.access }));

// ---- connections ----

/** `tls` of an upstream; the loopback rule for insecure-plaintext is checked by the caller, which knows the host. */
function upstreamTlsSchema(ctx: SchemaContext) {
  return section(
    mapping(
      {
        mode: oneOf(UPSTREAM_TLS_MODES, 'verify-full'),
        ca: optionalFileRef(ctx, 'PEM CA file that signed the upstream certificate'),
        server_name: leaf((v): Check<string | null> => (v === undefined || v === null ? ok(null) : requiredText('name to verify the upstream certificate against', v))),
      },
      'mode, ca, server_name',
    ),
  );
}

/** Why `insecure-plaintext` is refused for this upstream host, or null when it is loopback. */
export function plaintextUpstreamProblem(host: string): string | null {
  if (isLoopbackHost(host)) return null;
  return `insecure-plaintext is allowed only for a loopback upstream (127.0.0.0/8, ::1, localhost), and ${host} is not one: anything on the network could read the credentials and data; use verify-full with the upstream's CA`;
}

type RawUpstreamTls = { mode: UpstreamTlsConfig['mode']; ca: string | null; server_name: string | null };

/** Fills server_name and enforces "insecure-plaintext only on loopback"; issues go to `tls.*`. */
function resolveUpstreamTls(tls: RawUpstreamTls, host: string, ctx: z.RefinementCtx): UpstreamTlsConfig {
  if (tls.mode === 'insecure-plaintext') {
    const problem = plaintextUpstreamProblem(host);
    if (problem !== null) ctx.addIssue({ code: 'custom', path: ['tls', 'mode'], message: problem });
    if (tls.ca !== null) ctx.addIssue({ code: 'custom', path: ['tls', 'ca'], message: 'has no effect with mode insecure-plaintext (no TLS at all); remove it or use verify-full' });
    if (tls.server_name !== null) ctx.addIssue({ code: 'custom', path: ['tls', 'server_name'], message: 'has no effect with mode insecure-plaintext (no TLS at all); remove it or use verify-full' });
  }
  return { mode: tls.mode, ca: tls.ca, serverName: tls.server_name ?? host };
}

function dbCredential(ctx: SchemaContext) {
  return mapping({ user: secret(ctx, 'upstream user name'), password: secret(ctx, 'upstream password (or env:NAME / file:PATH)') }, 'user and password');
}

/** One `{user, password}` for every access level, or one per level under read/write/admin. */
function dbCredentials(ctx: SchemaContext) {
  const cred = dbCredential(ctx);
  const shape = 'either {user, password} for every access level, or one {user, password} per level under read, write, admin';
  return mapping(
    { user: secret(ctx, 'upstream user name').optional(), password: secret(ctx, 'upstream password').optional(), read: cred.optional(), write: cred.optional(), admin: cred.optional() },
    shape,
  )
    .superRefine((c, rctx) => {
      const single = c.user !== undefined || c.password !== undefined;
      const perLevel = ACCESS_LEVELS.filter((l) => c[l] !== undefined);
      if (single && perLevel.length > 0) rctx.addIssue({ code: 'custom', message: `use ${shape}, not both (found user/password and ${perLevel.join(', ')})` });
      else if (single && c.user === undefined) rctx.addIssue({ code: 'custom', path: ['user'], message: 'required: upstream user name' });
      else if (single && c.password === undefined) rctx.addIssue({ code: 'custom', path: ['password'], message: 'required: upstream password (or env:NAME / file:PATH)' });
      else if (!single && perLevel.length === 0) rctx.addIssue({ code: 'custom', message: `empty; give ${shape}` });
    })
    .transform((c): Partial<Record<AccessLevel, DbCredential>> => {
      if (c.user !== undefined && c.password !== undefined) {
        const one = { user: c.user, password: c.password };
        return { read: one, write: one, admin: one };
      }
      const out: Partial<Record<AccessLevel, DbCredential>> = {};
      for (const l of ACCESS_LEVELS) if (c[l] !== undefined) out[l] = c[l];
      return out;
    });
}

/** upstream.auth_methods of a postgres connection: a list of pg_hba method names. */
const pgAuthMethods = leaf((v): Check<PgAuthMethod[]> => {
  if (v === undefined || v === null) return ok([...DEFAULT_PG_AUTH_METHODS]);
  const r = stringList(`authentication methods (${PG_AUTH_METHODS.join(', ')})`, v);
  if (!r.ok) return r;
  for (const m of r.value) {
    if (!(PG_AUTH_METHODS as readonly string[]).includes(m)) return fail(`${got(m)} is not an authentication method the gateway speaks; use any of ${PG_AUTH_METHODS.join(', ')}`);
  }
  return ok(r.value as PgAuthMethod[]);
});

function dbConnectionSchema<P extends 'postgres' | 'mysql'>(ctx: SchemaContext, protocol: P) {
  return mapping(
    {
      protocol: z.literal(protocol),
      listen: listen('address clients connect to, like 0.0.0.0:15432'),
      upstream: mapping(
        {
          host: leaf(upstreamHost),
          port: integer(1, 65535, DEFAULT_PORTS[protocol]),
          database: protocol === 'postgres' ? text('upstream database name') : text('upstream database name', ''),
          tls: upstreamTlsSchema(ctx),
          pool: section(
            mapping(
              {
                max_idle: integer(0, MAX_UPSTREAM_POOL_MAX_IDLE, DEFAULT_UPSTREAM_POOL_MAX_IDLE),
                max_idle_total: integer(0, MAX_UPSTREAM_POOL_MAX_IDLE_TOTAL, DEFAULT_UPSTREAM_POOL_MAX_IDLE_TOTAL),
                idle_timeout: duration(1000, MAX_UPSTREAM_POOL_IDLE_TIMEOUT_MS, DEFAULT_UPSTREAM_POOL_IDLE_TIMEOUT_MS / 1000),
                mode: protocol === 'postgres' ? oneOf(['session', 'transaction'] as const, 'session') : oneOf(['session'] as const, 'session'),
                size: integer(1, MAX_UPSTREAM_POOL_SIZE, DEFAULT_UPSTREAM_POOL_SIZE),
                wait_timeout: duration(100, MAX_UPSTREAM_POOL_WAIT_TIMEOUT_MS, DEFAULT_UPSTREAM_POOL_WAIT_TIMEOUT_MS / 1000),
                prepared_statements: integer(0, MAX_UPSTREAM_POOL_PREPARED_STATEMENTS, DEFAULT_UPSTREAM_POOL_PREPARED_STATEMENTS),
                on_pin: oneOf(['pin', 'refuse'] as const, 'pin'),
              },
              'max_idle, max_idle_total, idle_timeout, mode, size, wait_timeout, prepared_statements, on_pin',
            ).transform((p) => ({
              maxIdle: p.max_idle,
              maxIdleTotal: p.max_idle_total,
              idleTimeoutMs: p.idle_timeout,
              mode: p.mode,
              size: p.size,
              waitTimeoutMs: p.wait_timeout,
              preparedStatements: p.prepared_statements,
              onPin: p.on_pin,
            })),
          ),
          auth_methods: protocol === 'postgres' ? pgAuthMethods : leaf((v): Check<undefined> => (v === undefined ? ok(undefined) : fail('is for postgres connections only'))),
          databases: leaf((v): Check<string[] | undefined> =>
            v === undefined || v === null ? ok(undefined) : protocol !== 'postgres' ? fail('is for postgres connections only') : stringList('upstream database names', v),
          ),
        },
        protocol === 'postgres' ? 'host, port, database, databases, tls, pool, auth_methods' : 'host, port, database, tls, pool',
      ).transform((u, rctx) => ({
        host: u.host,
        port: u.port,
        database: u.database,
        tls: resolveUpstreamTls(u.tls, u.host, rctx),
        pool: u.pool,
        ...(u.auth_methods !== undefined ? { authMethods: u.auth_methods } : {}),
        ...(u.databases !== undefined ? { databases: u.databases.filter((d) => d !== u.database) } : {}),
      })),
      credentials: dbCredentials(ctx),
      recording: oneOf(RECORDING_MODES, 'metadata'),
    },
    'protocol, listen, upstream, credentials, recording',
  );
}

function httpCredentials(ctx: SchemaContext) {
  const forms = '{header, value}, {bearer} or {basic: {user, password}}';
  return mapping(
    {
      header: leaf((v): Check<string | undefined> => {
        if (v === undefined) return ok(undefined);
        const t = requiredText('header name', v);
        if (!t.ok) return t;
        return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(t.value) ? ok(t.value) : fail(`must be an HTTP header name (got ${got(v)})`);
      }),
      value: secret(ctx, 'header value (or env:NAME / file:PATH)').optional(),
      bearer: secret(ctx, 'bearer token (or env:NAME / file:PATH)').optional(),
      basic: mapping({ user: secret(ctx, 'user name'), password: secret(ctx, 'password (or env:NAME / file:PATH)') }, 'user and password').optional(),
    },
    forms,
  )
    .superRefine((c, rctx) => {
      const forms_used = [c.header !== undefined || c.value !== undefined ? 'header' : null, c.bearer !== undefined ? 'bearer' : null, c.basic !== undefined ? 'basic' : null].filter((x) => x !== null);
      if (forms_used.length !== 1) rctx.addIssue({ code: 'custom', message: `give exactly one of ${forms}${forms_used.length ? ` (found ${forms_used.join(' and ')})` : ''}` });
      else if (c.header !== undefined && c.value === undefined) rctx.addIssue({ code: 'custom', path: ['value'], message: 'required: header value (or env:NAME / file:PATH)' });
      else if (c.header === undefined && c.value !== undefined) rctx.addIssue({ code: 'custom', path: ['header'], message: 'required: header name, like api-key' });
    })
    .transform((c): HttpConnectionConfig['credentials'] => {
      if (c.header !== undefined && c.value !== undefined) return { header: c.header, value: c.value };
      if (c.bearer !== undefined) return { bearer: c.bearer };
      return { basic: c.basic! };
    });
}

function httpConnectionSchema(ctx: SchemaContext) {
  return mapping(
    {
      protocol: z.literal('http'),
      flavor: oneOf(HTTP_FLAVORS, 'generic'),
      listen: listen('address clients connect to, like 0.0.0.0:6443'),
      upstream: mapping(
        {
          url: leaf((v): Check<{ text: string; parsed: URL }> => {
            const t = requiredText('upstream base URL, like https://qdrant.internal:6333', v);
            if (!t.ok) return t;
            try {
              const u = new URL(t.value.trim());
              if (u.protocol === 'https:' || u.protocol === 'http:') return ok({ text: t.value.trim(), parsed: u });
            } catch {
              // fall through to the message below
            }
            return fail(`must be an https URL, like https://qdrant.internal:6333 (got ${got(v)})`);
          }),
          tls: upstreamTlsSchema(ctx),
        },
        'url, tls',
      ).transform((u, rctx) => {
        const url = u.url.parsed;
        const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
        const tls = resolveUpstreamTls(u.tls, host, rctx);
        if (tls.mode === 'verify-full' && url.protocol !== 'https:') {
          rctx.addIssue({ code: 'custom', path: ['url'], message: `must be https with tls mode verify-full (got ${got(u.url.text)})` });
        }
        if (tls.mode === 'insecure-plaintext' && url.protocol !== 'http:') {
          rctx.addIssue({ code: 'custom', path: ['url'], message: `must be http:// with tls mode insecure-plaintext (got ${got(u.url.text)})` });
        }
        return { url: u.url.text, tls };
      }),
      credentials: z.preprocess((v) => v ?? undefined, httpCredentials(ctx).optional()).transform((c) => c ?? null),
      guard: section(
        mapping(
          {
            return_vectors: leaf((v): Check<string[] | null> => (v === undefined || v === null ? ok(null) : stringList('groups allowed to receive vectors in results', v))),
            max_limit: leaf((v): Check<number | null> => {
              if (v === undefined || v === null) return ok(null);
              return typeof v === 'number' && Number.isInteger(v) && v >= 1 ? ok(v) : fail(`must be a positive integer (got ${got(v)})`);
            }),
          },
          'return_vectors, max_limit',
        ),
      ).transform((g) => ({ returnVectors: g.return_vectors, maxLimit: g.max_limit })),
      recording: oneOf(RECORDING_MODES, 'metadata'),
    },
    'protocol, flavor, listen, upstream, credentials, guard, recording',
  );
}

function connectionSchema(ctx: SchemaContext) {
  return z.discriminatedUnion('protocol', [dbConnectionSchema(ctx, 'postgres'), dbConnectionSchema(ctx, 'mysql'), httpConnectionSchema(ctx)], {
    error: (iss) => {
      if (iss.input === undefined) return 'required: a connection (protocol, listen, upstream, credentials)';
      if (typeof iss.input !== 'object' || iss.input === null || Array.isArray(iss.input)) return `must be a mapping (protocol, listen, upstream, credentials), got ${got(iss.input)}`;
      const p = (iss.input as { protocol?: unknown }).protocol;
      return `must be one of postgres, mysql, http (got ${p === undefined ? 'nothing' : got(p)})`;
    },
  });
}

function connectionsSchema(ctx: SchemaContext) {
  return z
    .record(z.string(), connectionSchema(ctx), {
      error: (iss) => (iss.input === undefined || iss.input === null ? 'required: at least one connection, keyed by name' : `must be a mapping of connection name to connection, got ${got(iss.input)}`),
    })
    .transform((conns, rctx): Record<string, ConnectionConfig> => {
      const out: Record<string, ConnectionConfig> = {};
      for (const [name, c] of Object.entries(conns)) {
        if (!CONNECTION_NAME.test(name)) {
          rctx.addIssue({ code: 'custom', path: [name], message: CONNECTION_NAME_RULE });
          continue;
        }
        if (c.protocol === 'http') {
          const h: HttpConnectionConfig = { name, protocol: 'http', flavor: c.flavor, listen: c.listen, upstream: c.upstream, credentials: c.credentials, guard: c.guard, recording: c.recording };
          out[name] = h;
        } else {
          const db: PostgresConnectionConfig | MysqlConnectionConfig = { name, protocol: c.protocol, listen: c.listen, upstream: c.upstream, credentials: c.credentials, recording: c.recording } as PostgresConnectionConfig | MysqlConnectionConfig;
          out[name] = db;
        }
      }
      if (Object.keys(conns).length === 0) rctx.addIssue({ code: 'custom', message: 'at least one connection is required' });
      return out;
    });
}

// ---- recordings and root ----

function recordingsSchema(ctx: SchemaContext) {
  return section(
    mapping(
      {
        dir: leaf((v): Check<string> => {
          const t = v === undefined || v === null ? ok(DEFAULT_RECORDINGS_DIR) : requiredText('directory for session recordings', v);
          return t.ok ? ok(path.resolve(ctx.baseDir, t.value)) : t;
        }),
        retention: duration(60_000, MAX_RETENTION_MS, DEFAULT_RETENTION),
        durability: oneOf(['strict', 'async'] as const, 'strict'),
        redact_settings: leaf((v) => (v === undefined || v === null ? ok([...DEFAULT_REDACT_SETTINGS]) : stringList('setting names', v))),
      },
      'dir, retention, durability, redact_settings',
    ),
  ).transform((r): RecordingsConfig => ({ dir: r.dir, retentionMs: r.retention, durability: r.durability, redactSettings: r.redact_settings.map((n) => n.toLowerCase()) }));
}

/** The whole document; `configPath` is added by the loader. */
export function buildConfigSchema(ctx: SchemaContext) {
  return mapping(
    {
      server: serverSchema(ctx),
      identity: identitySchema(ctx),
      policies: list(policySchema, 'access rules: name, groups, connections, access').min(1, {
        error: 'at least one policy is required; without one every client is refused',
      }),
      connections: connectionsSchema(ctx),
      recordings: recordingsSchema(ctx),
    },
    'server, identity, policies, connections, recordings',
  ).transform((c): Omit<VecgateConfig, 'configPath'> => c);
}

export function defaultSchemaContext(baseDir: string): SchemaContext {
  return { baseDir, env: process.env, availableParallelism: os.availableParallelism() };
}
