// `vecgate token`: prints an access token on stdout (and nothing else there, so
// `PGPASSWORD=$(vecgate token --dev)` works): from the embedded dev issuer with --dev, else
// from the cached `vecgate login` session. Without either, says how to get one (exit 2).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { VgError } from '../errors.js';
import { DEV_DEFAULT_DIR, DevIssuer, MAX_DEV_TOKEN_TTL_SEC } from '../identity/dev-issuer.js';
import { loginCachePath, readLoginSession, secondsLeft, writeLoginSession } from '../identity/login-cache.js';

export { loginCachePath } from '../identity/login-cache.js';

export const DEFAULT_DEV_USER = 'dev@example.com';
export const DEFAULT_DEV_GROUPS = 'vectors-admin';
export const DEFAULT_DEV_TTL = '15m';
/** A cached login token with less life than this left is refreshed first (a psql session started with it must get through its startup). */
export const LOGIN_REFRESH_BEFORE_EXPIRY_SEC = 60;

/** Help text for the options of `vecgate token` (for the CLI's --help). */
export const TOKEN_HELP = {
  command: 'print an access token: from the embedded dev issuer (--dev), else from your `vecgate login` session',
  dev: 'mint a token from the embedded dev issuer in --dir (the one `vecgate dev` trusts)',
  user: `dev token subject (default ${DEFAULT_DEV_USER})`,
  groups: `dev token groups, comma-separated (default ${DEFAULT_DEV_GROUPS})`,
  ttl: `dev token lifetime: 30s, 15m, 2h, 1d (default ${DEFAULT_DEV_TTL}, at most 24h)`,
  dir: `dev state directory (default ${DEV_DEFAULT_DIR})`,
} as const;

export interface TokenCommandOptions {
  dev?: boolean;
  user?: string;
  groups?: string;
  ttl?: string;
  dir?: string;
}

const TTL_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** '30s', '15m', '2h', '1d' (or bare seconds) to seconds; refuses anything else and more than 24h. */
export function parseTtl(text: string): number {
  const m = /^\s*(\d{1,9})\s*([smhd]?)\s*$/.exec(text);
  if (m === null) throw new VgError('ERR_VG_USAGE', `--ttl ${JSON.stringify(text)} is not a duration; use a number with s, m, h or d, like 15m`);
  const sec = Number(m[1]) * TTL_UNITS[m[2] || 's']!;
  if (sec < 1 || sec > MAX_DEV_TOKEN_TTL_SEC) throw new VgError('ERR_VG_USAGE', `--ttl ${text} is out of range; a dev token lives from 1s to 24h`);
  return sec;
}

/** 'a,b c' to ['a','b','c']; an empty string means no groups. */
export function parseGroups(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter((g) => g !== ''))];
}

export async function runToken(opts: TokenCommandOptions): Promise<void> {
  const dir = path.resolve(opts.dir ?? DEV_DEFAULT_DIR);
  // Parse every option first, so a typo fails before anything is created on disk.
  const ttlSec = parseTtl(opts.ttl ?? DEFAULT_DEV_TTL);
  const groups = parseGroups(opts.groups ?? DEFAULT_DEV_GROUPS);
  const user = (opts.user ?? DEFAULT_DEV_USER).trim();
  if (user === '') throw new VgError('ERR_VG_USAGE', '--user must not be empty');

  if (!opts.dev) {
    const cache = loginCachePath();
    if (existsSync(cache)) {
      process.stdout.write((await loginToken(cache)) + '\n');
      return;
    }
    // No login session, but a dev issuer here (`vecgate dev` was run in this directory): use it.
    if (!existsSync(path.join(dir, 'dev-issuer', 'key.jwk.json'))) {
      throw new VgError('ERR_VG_USAGE', 'no login session: run `vecgate login`, or `vecgate token --dev` for a token from the embedded dev issuer');
    }
    process.stderr.write(`vecgate token: no \`vecgate login\` session; using the dev issuer in ${path.relative(process.cwd(), dir) || '.'}\n`);
  }
  const existed = existsSync(path.join(dir, 'dev-issuer', 'key.jwk.json'));
  const issuer = await DevIssuer.open(dir);
  if (!existed) {
    process.stderr.write(`vecgate token: created a new dev issuer in ${dir}; only \`vecgate dev --dir ${path.relative(process.cwd(), dir) || '.'}\` trusts its tokens\n`);
  }
  process.stdout.write((await issuer.mint({ user, groups, ttlSec })) + '\n');
}

/**
 * The access token of the `vecgate login` session in `cache`, refreshed (and the cache
 * rewritten) when it has less than LOGIN_REFRESH_BEFORE_EXPIRY_SEC left. Nothing here writes
 * to stdout: the caller prints the token alone.
 */
export async function loginToken(cache: string): Promise<string> {
  const read = readLoginSession(cache);
  if (read === null) throw new VgError('ERR_VG_USAGE', 'no login session: run `vecgate login`');
  if (read.tooOpen) process.stderr.write(`vecgate token: warning: ${cache} is readable by other users; run \`chmod 600 ${cache}\`\n`);
  const session = read.session;
  if (secondsLeft(session) >= LOGIN_REFRESH_BEFORE_EXPIRY_SEC) return session.access_token;
  // Loaded only when needed: openid-client is not on the path of a fresh token.
  const { refreshLoginSession } = await import('./login-command.js');
  try {
    const fresh = await refreshLoginSession(session);
    writeLoginSession(fresh, cache);
    return fresh.access_token;
  } catch (err) {
    // Another `vecgate token` may have refreshed first, and a rotating issuer then refuses our
    // (now used) refresh token: take the token it saved.
    const now = readLoginSession(cache)?.session;
    if (now !== undefined && now.access_token !== session.access_token && secondsLeft(now) >= LOGIN_REFRESH_BEFORE_EXPIRY_SEC) return now.access_token;
    throw err;
  }
}
