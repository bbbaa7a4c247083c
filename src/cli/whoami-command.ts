// `vecgate whoami`: shows who an access token says you are (subject, username claims, groups,
// issuer, audience, expiry) and, with --config, what each of your groups may reach there.
// The token is decoded WITHOUT verification, for display only: the gateway verifies it.
import { readFileSync } from 'node:fs';
import { decodeJwt, type JWTPayload } from 'jose';
import { loadConfig } from '../config/load.js';
import type { AccessLevel, VecgateConfig } from '../config/types.js';
import { VgError } from '../errors.js';
import { groupsFrom, readClaim } from '../identity/claim-path.js';
import { loginCachePath, readLoginSession } from '../identity/login-cache.js';
import { DEFAULT_MAX_GROUPS } from '../identity/verifier-limits.js';
import { compilePolicy } from '../policy/policy.js';

export const DEFAULT_GROUPS_CLAIM = 'groups';
/** Claims shown as "username" when present, in this order (client_id is shown as the client). */
export const USERNAME_CLAIMS = ['preferred_username', 'email', 'name', 'upn', 'username'] as const;

export interface WhoamiCommandOptions {
  /** An access token to show instead of the cached login one; '-' reads it from stdin. */
  token?: string;
  json?: boolean;
  /** Claim (dotted path allowed, like realm_access.roles) holding the groups. */
  groupsClaim?: string;
  /** A gateway config: shows what each connection grants these groups. */
  config?: string;
  /** Login cache file; defaults to loginCachePath(). */
  cacheFile?: string;
}

export interface ConnectionAccess {
  connection: string;
  protocol: string;
  /** null: no policy lets these groups reach it. */
  access: AccessLevel | null;
  /** Policies that grant it. */
  policies: string[];
}

export interface Identity {
  subject: string | null;
  usernames: Array<{ claim: string; value: string }>;
  groups: string[];
  groupsClaim: string;
  issuer: string | null;
  audience: string[];
  /** Client the token was issued to (azp or client_id). */
  client: string | null;
  /** Unix seconds; null when the token has none. */
  expiresAt: number | null;
  /** Seconds until expiry, negative once expired; null without exp. */
  expiresInSec: number | null;
  /** Present with --config. */
  gateway?: {
    config: string;
    /** Whether the config lists the token's issuer. */
    issuerTrusted: boolean;
    /** Whether the token's audience includes one the matching issuer config expects (null if not trusted). */
    audienceAccepted: boolean | null;
    /** Value of the configured username claim, as the gateway would log it. */
    username: string | null;
    connections: ConnectionAccess[];
  };
}

/** "12 min", "2 h 5 min", "3 d", "40 s". */
export function humanDuration(sec: number): string {
  const s = Math.round(Math.abs(sec));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) {
    const m = Math.floor((s % 3600) / 60);
    return `${Math.floor(s / 3600)} h${m ? ` ${m} min` : ''}`;
  }
  return `${Math.floor(s / 86400)} d`;
}

function decode(token: string): JWTPayload {
  try {
    return decodeJwt(token.trim());
  } catch {
    throw new VgError('ERR_VG_TOKEN_MALFORMED', 'the access token is not a JWT, so there is nothing to show; an opaque token can only be checked by its issuer');
  }
}

/** What a token says, and with a config what it would reach. Pure: no network, no verification. */
export function describeIdentity(token: string, opts: { groupsClaim?: string; config?: VecgateConfig; nowMs?: number } = {}): Identity {
  const claims = decode(token);
  const nowSec = (opts.nowMs ?? Date.now()) / 1000;
  const issuer = typeof claims.iss === 'string' ? claims.iss : null;
  const issuerConfig = opts.config?.identity.issuers.find((i) => i.issuer === issuer);
  // An explicit --groups-claim wins; else the gateway's own setting for this issuer; else "groups".
  const groupsClaim = opts.groupsClaim ?? issuerConfig?.groupsClaim ?? DEFAULT_GROUPS_CLAIM;
  const groups = groupsFrom(readClaim(claims, groupsClaim), DEFAULT_MAX_GROUPS);
  const audience = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud.filter((a) => typeof a === 'string') : [];
  const usernames = USERNAME_CLAIMS.flatMap((claim) => (typeof claims[claim] === 'string' && claims[claim] !== '' ? [{ claim, value: claims[claim] as string }] : []));
  const client = typeof claims['azp'] === 'string' ? claims['azp'] : typeof claims['client_id'] === 'string' ? claims['client_id'] : null;
  const expiresAt = typeof claims.exp === 'number' ? claims.exp : null;
  const identity: Identity = {
    subject: typeof claims.sub === 'string' ? claims.sub : null,
    usernames,
    groups,
    groupsClaim,
    issuer,
    audience,
    client,
    expiresAt,
    expiresInSec: expiresAt === null ? null : Math.round(expiresAt - nowSec),
  };
  if (opts.config) {
    const policy = compilePolicy(opts.config.policies);
    const expected = issuerConfig === undefined ? null : Array.isArray(issuerConfig.audience) ? issuerConfig.audience : [issuerConfig.audience];
    const username = issuerConfig === undefined ? null : readClaim(claims, issuerConfig.usernameClaim);
    identity.gateway = {
      config: opts.config.configPath,
      issuerTrusted: issuerConfig !== undefined,
      audienceAccepted: expected === null ? null : expected.some((a) => audience.includes(a)),
      username: typeof username === 'string' ? username : null,
      connections: Object.values(opts.config.connections)
        .map((c) => {
          const d = policy.decide(groups, c.name);
          return { connection: c.name, protocol: c.protocol, access: d?.access ?? null, policies: d?.rules ?? [] };
        })
        .sort((a, b) => a.connection.localeCompare(b.connection)),
    };
  }
  return identity;
}

/** The human-readable form (what `vecgate whoami` prints). */
export function formatIdentity(id: Identity): string {
  const rows: Array<[string, string]> = [];
  rows.push(['subject', id.subject ?? '(none)']);
  if (id.usernames.length > 0) rows.push(['username', id.usernames.map((u) => `${u.value} (${u.claim})`).join(', ')]);
  rows.push(['groups', `${id.groups.length > 0 ? id.groups.join(', ') : '(none)'}  [claim ${id.groupsClaim}]`]);
  rows.push(['issuer', id.issuer ?? '(none)']);
  rows.push(['audience', id.audience.length > 0 ? id.audience.join(', ') : '(none)']);
  if (id.client !== null) rows.push(['client', id.client]);
  if (id.expiresAt === null || id.expiresInSec === null) rows.push(['expires', 'never (the token has no exp: the gateway refuses it)']);
  else {
    const at = new Date(id.expiresAt * 1000).toISOString().replace('.000Z', 'Z');
    rows.push(['expires', id.expiresInSec >= 0 ? `in ${humanDuration(id.expiresInSec)} (${at})` : `${humanDuration(id.expiresInSec)} ago (${at}); \`vecgate token\` refreshes it`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length)) + 1;
  const lines = rows.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`);
  lines.push('(decoded for display, not verified: the gateway checks the signature)');
  const g = id.gateway;
  if (g) {
    lines.push('', `access per ${g.config}:`);
    if (!g.issuerTrusted) lines.push(`  warning: this config does not trust the issuer ${id.issuer ?? '(none)'}: every connection refuses this token`);
    else if (g.audienceAccepted === false) lines.push('  warning: the token audience is not one this config expects for its issuer: every connection refuses this token');
    if (g.issuerTrusted && g.username !== null) lines.push(`  the gateway logs you as: ${g.username}`);
    if (g.connections.length === 0) lines.push('  (the config has no connections)');
    const cw = Math.max(0, ...g.connections.map((c) => c.connection.length));
    const pw = Math.max(0, ...g.connections.map((c) => c.protocol.length));
    for (const c of g.connections) {
      const what = c.access === null ? 'no access' : `${c.access}  (policy ${c.policies.join(', ')})`;
      lines.push(`  ${c.connection.padEnd(cw)}  ${c.protocol.padEnd(pw)}  ${what}`);
    }
  }
  return lines.join('\n') + '\n';
}

export async function runWhoami(opts: WhoamiCommandOptions): Promise<void> {
  let token = opts.token;
  // `--token -` reads it from stdin, so it stays out of the process list and shell history.
  if (token === '-') token = readFileSync(0, 'utf8').trim();
  if (token === undefined) {
    const cache = opts.cacheFile ?? loginCachePath();
    const read = readLoginSession(cache);
    if (read === null) throw new VgError('ERR_VG_USAGE', 'no login session: run `vecgate login`, or pass a token with --token');
    token = read.session.access_token;
  }
  if (opts.groupsClaim !== undefined && opts.groupsClaim.trim() === '') throw new VgError('ERR_VG_USAGE', '--groups-claim must not be empty; the default is "groups"');
  const config = opts.config === undefined ? undefined : await loadConfig(opts.config);
  const id = describeIdentity(token, { groupsClaim: opts.groupsClaim, config });
  process.stdout.write(opts.json ? JSON.stringify(id, null, 2) + '\n' : formatIdentity(id));
}
