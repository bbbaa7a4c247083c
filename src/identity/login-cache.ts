// The on-disk session of `vecgate login`: where it lives, how it is read and validated, and
// how it is written (owner-only: file 0600 in a 0700 directory, replaced atomically so a
// concurrent `vecgate token` never reads half a file).
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { VgError } from '../errors.js';

/** The cache holds bearer and refresh tokens: only its owner may read it. */
export const LOGIN_CACHE_FILE_MODE = 0o600;
/** Directories the cache creates are owner-only too. */
export const LOGIN_CACHE_DIR_MODE = 0o700;
/** A login cache larger than this is not a login cache. */
export const MAX_LOGIN_CACHE_BYTES = 256 * 1024;
/** Format version written to the file; a newer one is refused with "log in again". */
export const LOGIN_CACHE_VERSION = 1;

/** One login session, as stored (snake_case, like the OAuth fields it holds). */
export interface LoginSession {
  version: number;
  issuer: string;
  client_id: string;
  access_token: string;
  /** Absent when the issuer gave none (no `offline_access`): the session then ends with the access token. */
  refresh_token: string | null;
  /** Unix seconds; null when the issuer said nothing about the lifetime. */
  expires_at: number | null;
  scope: string | null;
  /** RFC 8707 resource indicator asked for at login (and on refresh). */
  resource: string | null;
  /** `audience` parameter asked for at login (Auth0-style issuers). */
  audience: string | null;
  /** Absolute path of the extra CA PEM given with `--ca`, reused on refresh. */
  ca: string | null;
  /** True only for a plain-http issuer on loopback (tests, local dev issuers). */
  insecure_http_loopback: boolean;
}

/** Where `vecgate login` keeps its session: $VECGATE_LOGIN_CACHE, else $XDG_CONFIG_HOME/vecgate/login.json (~/.config by default). */
export function loginCachePath(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env['VECGATE_LOGIN_CACHE'];
  if (explicit) return path.resolve(explicit);
  const base = env['XDG_CONFIG_HOME'] || path.join(os.homedir(), '.config');
  return path.join(base, 'vecgate', 'login.json');
}

function relogin(file: string, why: string): VgError {
  return new VgError('ERR_VG_USAGE', `the login session in ${file} ${why}; run \`vecgate login\` again`);
}

function optionalString(v: unknown): string | null | undefined {
  if (v === undefined || v === null) return null;
  return typeof v === 'string' ? v : undefined;
}

/** Checks a parsed cache document; every field is typed before anything uses it. */
export function parseLoginSession(doc: unknown, file: string): LoginSession {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw relogin(file, 'is not a JSON object');
  const d = doc as Record<string, unknown>;
  const version = d['version'] ?? LOGIN_CACHE_VERSION;
  if (version !== LOGIN_CACHE_VERSION) throw relogin(file, `has format version ${String(version)}, this vecgate reads ${LOGIN_CACHE_VERSION}`);
  const str = (k: string): string => {
    const v = d[k];
    if (typeof v !== 'string' || v === '') throw relogin(file, `has no ${k}`);
    return v;
  };
  const opt = (k: string): string | null => {
    const v = optionalString(d[k]);
    if (v === undefined) throw relogin(file, `has a ${k} that is not a string`);
    return v;
  };
  const expiresAt = d['expires_at'];
  if (expiresAt !== undefined && expiresAt !== null && (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt))) throw relogin(file, 'has an expires_at that is not a number');
  const ca = opt('ca');
  return {
    version: LOGIN_CACHE_VERSION,
    // Older placeholder caches held only the token: issuer and client are then unknown, and a refresh is impossible.
    issuer: opt('issuer') ?? '',
    client_id: opt('client_id') ?? '',
    access_token: str('access_token'),
    refresh_token: opt('refresh_token'),
    expires_at: typeof expiresAt === 'number' ? expiresAt : null,
    scope: opt('scope'),
    resource: opt('resource'),
    audience: opt('audience'),
    ca: ca === null ? null : path.resolve(path.dirname(file), ca),
    insecure_http_loopback: d['insecure_http_loopback'] === true,
  };
}

export interface ReadLoginSessionResult {
  session: LoginSession;
  /** Set when the file is readable by group or others: the caller may warn (stderr). */
  tooOpen: boolean;
}

/** The stored session, or null when there is none. Throws ERR_VG_USAGE ("log in again") for a damaged file. */
export function readLoginSession(file: string = loginCachePath()): ReadLoginSessionResult | null {
  if (!existsSync(file)) return null;
  let text: string;
  let mode: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw relogin(file, 'is not a regular file');
    if (st.size > MAX_LOGIN_CACHE_BYTES) throw relogin(file, `is larger than ${MAX_LOGIN_CACHE_BYTES} bytes`);
    mode = st.mode;
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof VgError) throw err;
    throw relogin(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw relogin(file, 'is not valid JSON');
  }
  return { session: parseLoginSession(doc, file), tooOpen: process.platform !== 'win32' && (mode & 0o077) !== 0 };
}

/** Writes the session owner-only, replacing any previous one atomically (temp file + rename). */
export function writeLoginSession(session: LoginSession, file: string = loginCachePath()): void {
  const dir = path.dirname(file);
  // `mode` applies to every directory this creates; existing ones are left as they are.
  mkdirSync(dir, { recursive: true, mode: LOGIN_CACHE_DIR_MODE });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  // 'wx': never follow or reuse a file someone else placed there.
  const fd = openSync(tmp, 'wx', LOGIN_CACHE_FILE_MODE);
  try {
    writeSync(fd, JSON.stringify({ ...session, version: LOGIN_CACHE_VERSION }, null, 2) + '\n');
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    // The umask can only narrow the mode given to open; set it exactly anyway.
    chmodSync(tmp, LOGIN_CACHE_FILE_MODE);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Seconds of life the access token has left (Infinity when the issuer gave no lifetime). */
export function secondsLeft(session: LoginSession, nowMs: number = Date.now()): number {
  return session.expires_at === null ? Infinity : session.expires_at - nowMs / 1000;
}
