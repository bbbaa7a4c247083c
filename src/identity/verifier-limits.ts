// The bounded defaults of token verification (fetch timeout, key-cache ages, refetch
// cooldown, cache sizes), in one place so every limit has a name and can be overridden.

/** One discovery or JWKS request, connect to last byte. */
export const DEFAULT_FETCH_TIMEOUT_MS = 5_000;
/** A fetched key set is used without refetching for this long. */
export const DEFAULT_JWKS_MAX_AGE_MS = 10 * 60_000;
/**
 * Least time between two fetches of one issuer's keys. A token with an unknown `kid`
 * triggers a refetch only after this, so a flood of random kids costs one fetch per
 * cooldown, not one per token; a failed fetch is also not retried sooner.
 */
export const DEFAULT_UNKNOWN_KID_COOLDOWN_MS = 30_000;
/** While the issuer cannot be reached, keys fetched within this window keep working; older ones fail closed. */
export const DEFAULT_STALE_KEYS_MAX_AGE_MS = 60 * 60_000;
/** Entries in the verified-token cache (keyed by sha256 of the token). */
export const DEFAULT_VERIFIED_CACHE_MAX_ENTRIES = 10_000;
/**
 * A verified token is trusted from the cache for at most this long (and never past its
 * `exp`), so a key the issuer withdraws stops being honoured within this window.
 */
export const DEFAULT_VERIFIED_CACHE_MAX_AGE_MS = 5 * 60_000;
/** Longest token accepted; larger input is refused before any parsing. */
export const DEFAULT_MAX_TOKEN_BYTES = 64 * 1024;
/** Largest discovery document or JWKS response read. */
export const DEFAULT_MAX_JWKS_RESPONSE_BYTES = 512 * 1024;
/** Most keys taken from one key set (extra keys are ignored). */
export const DEFAULT_MAX_JWKS_KEYS = 100;
/** Most groups taken from one token. */
export const DEFAULT_MAX_GROUPS = 1_000;

export interface VerifierLimits {
  fetchTimeoutMs: number;
  jwksMaxAgeMs: number;
  unknownKidCooldownMs: number;
  staleKeysMaxAgeMs: number;
  verifiedCacheMaxEntries: number;
  verifiedCacheMaxAgeMs: number;
  maxTokenBytes: number;
  maxJwksResponseBytes: number;
  maxJwksKeys: number;
  maxGroups: number;
}

export const DEFAULT_VERIFIER_LIMITS: Readonly<VerifierLimits> = Object.freeze({
  fetchTimeoutMs: DEFAULT_FETCH_TIMEOUT_MS,
  jwksMaxAgeMs: DEFAULT_JWKS_MAX_AGE_MS,
  unknownKidCooldownMs: DEFAULT_UNKNOWN_KID_COOLDOWN_MS,
  staleKeysMaxAgeMs: DEFAULT_STALE_KEYS_MAX_AGE_MS,
  verifiedCacheMaxEntries: DEFAULT_VERIFIED_CACHE_MAX_ENTRIES,
  verifiedCacheMaxAgeMs: DEFAULT_VERIFIED_CACHE_MAX_AGE_MS,
  maxTokenBytes: DEFAULT_MAX_TOKEN_BYTES,
  maxJwksResponseBytes: DEFAULT_MAX_JWKS_RESPONSE_BYTES,
  maxJwksKeys: DEFAULT_MAX_JWKS_KEYS,
  maxGroups: DEFAULT_MAX_GROUPS,
});

/** Fills unset limits with the defaults; refuses non-positive or non-finite values (a programmer error). */
export function resolveVerifierLimits(partial: Partial<VerifierLimits> | undefined): VerifierLimits {
  const out: VerifierLimits = { ...DEFAULT_VERIFIER_LIMITS };
  for (const [k, v] of Object.entries(partial ?? {})) {
    if (v === undefined) continue;
    if (!(k in DEFAULT_VERIFIER_LIMITS)) throw new TypeError(`unknown verifier limit ${k}`);
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`verifier limit ${k} must be a finite number >= 0, got ${String(v)}`);
    (out as unknown as Record<string, number>)[k] = v;
  }
  return out;
}
