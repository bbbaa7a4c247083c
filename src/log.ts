// The operator log: pino JSON lines on stdout, level from VECGATE_LOG_LEVEL (default info),
// with secret-looking keys (password, token, authorization, secret) redacted wherever they
// appear in the first levels of a log object.
import { pino, type Logger } from 'pino';
import { VgError } from './errors.js';

export type { Logger } from 'pino';

export const DEFAULT_LOG_LEVEL = 'info';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** Keys whose values never reach the log. */
export const REDACTED_KEYS = ['password', 'token', 'authorization', 'secret'] as const;
/** How deep into a log object the redaction reaches (pino redaction takes explicit paths). */
export const REDACT_DEPTH = 4;
export const REDACTED = '[redacted]';

/** `password`, `*.password`, `*.*.password`, ... and the capitalised header form. */
export function redactPaths(): string[] {
  const out: string[] = [];
  for (const key of REDACTED_KEYS) {
    const forms = [key, key[0]!.toUpperCase() + key.slice(1)];
    for (const form of forms) {
      for (let depth = 0; depth < REDACT_DEPTH; depth++) out.push([...Array<string>(depth).fill('*'), form].join('.'));
    }
  }
  return out;
}

export function createLogger(opts: { level?: string } = {}): Logger {
  const level = (opts.level ?? process.env['VECGATE_LOG_LEVEL'] ?? DEFAULT_LOG_LEVEL).trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new VgError('ERR_VG_USAGE', `log level ${JSON.stringify(level)} (VECGATE_LOG_LEVEL) must be one of ${LOG_LEVELS.join(', ')}`);
  }
  return pino({
    level,
    redact: { paths: redactPaths(), censor: REDACTED },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
