// The operator log: pino JSON lines on stdout, level from VECGATE_LOG_LEVEL (default info),
// with secret-looking keys (password, token, authorization, secret, any case) redacted wherever
// they appear in the first levels of a log object.
import { pino, type Logger } from 'pino';
import { VgError } from './errors.js';

export type { Logger } from 'pino';

export const DEFAULT_LOG_LEVEL = 'info';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** Keys whose values never reach the log. */
export const REDACTED_KEYS = ['password', 'token', 'authorization', 'secret'] as const;
/** How deep into a log object the redaction reaches. */
export const REDACT_DEPTH = 4;
export const REDACTED = '[redacted]';

const SECRET_KEYS: ReadonlySet<string> = new Set(REDACTED_KEYS);

/**
 * `obj` with the values of secret keys (any case) replaced, down to REDACT_DEPTH levels; the
 * same object when there is nothing to mask (no copy). One walk of a small object per line:
 * pino's path-based redaction with wildcards cost more than writing the line.
 */
export function maskSecretKeys(obj: Record<string, unknown>, depth = 0): Record<string, unknown> {
  let out: Record<string, unknown> | null = null;
  for (const k in obj) {
    const v = obj[k];
    let masked: unknown = v;
    if (SECRET_KEYS.has(k.toLowerCase())) masked = REDACTED;
    else if (depth + 1 < REDACT_DEPTH && v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Error) && !ArrayBuffer.isView(v)) {
      masked = maskSecretKeys(v as Record<string, unknown>, depth + 1);
    }
    if (masked !== v) {
      out ??= { ...obj };
      out[k] = masked;
    }
  }
  return out ?? obj;
}

export function createLogger(opts: { level?: string } = {}): Logger {
  const level = (opts.level ?? process.env['VECGATE_LOG_LEVEL'] ?? DEFAULT_LOG_LEVEL).trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new VgError('ERR_VG_USAGE', `log level ${JSON.stringify(level)} (VECGATE_LOG_LEVEL) must be one of ${LOG_LEVELS.join(', ')}`);
  }
  return pino({
    level,
    formatters: { log: (o) => maskSecretKeys(o) },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
