// `vecgate token`: prints an access token on stdout (and nothing else there, so
// `PGPASSWORD=$(vecgate token --dev)` works): from the embedded dev issuer with --dev, else
// from the cached `vecgate login` session. Without either, says how to get one (exit 2).
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VgError } from '../errors.js';
import { DEV_DEFAULT_DIR, DevIssuer, MAX_DEV_TOKEN_TTL_SEC } from '../identity/dev-issuer.js';

export const DEFAULT_DEV_USER = 'dev@example.com';
export const DEFAULT_DEV_GROUPS = 'vectors-admin';
export const DEFAULT_DEV_TTL = '15m';
/** A cached login token is printed only while it has at least this much life left. */
export const LOGIN_TOKEN_MIN_REMAINING_SEC = 30;

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

/** Where `vecgate login` keeps its session: $VECGATE_LOGIN_CACHE, else $XDG_CONFIG_HOME/vecgate/login.json. */
export function loginCachePath(): string {
  const explicit = process.env['VECGATE_LOGIN_CACHE'];
  if (explicit) return path.resolve(explicit);
  const base = process.env['XDG_CONFIG_HOME'] || path.join(os.homedir(), '.config');
  return path.join(base, 'vecgate', 'login.json');
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
      process.stdout.write(readLoginToken(cache) + '\n');
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

/** The access token of a `vecgate login` session, while it is still valid. */
function readLoginToken(cache: string): string {
  let session: { access_token?: unknown; expires_at?: unknown };
  try {
    session = JSON.parse(readFileSync(cache, 'utf8')) as typeof session;
  } catch {
    throw new VgError('ERR_VG_USAGE', `the login session in ${cache} is unreadable; run \`vecgate login\` again`);
  }
  const token = session.access_token;
  const expiresAt = session.expires_at;
  if (typeof token !== 'string' || token === '') throw new VgError('ERR_VG_USAGE', `the login session in ${cache} has no access token; run \`vecgate login\` again`);
  if (typeof expiresAt === 'number' && expiresAt - Date.now() / 1000 < LOGIN_TOKEN_MIN_REMAINING_SEC) {
    throw new VgError('ERR_VG_USAGE', 'your login session has expired; run `vecgate login` again');
  }
  return token;
}
