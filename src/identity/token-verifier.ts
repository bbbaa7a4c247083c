// Verifies OIDC JWT access tokens (RFC 9068 style) against the configured issuers and turns
// them into a Principal: issuer chosen by the token's `iss`, asymmetric allowlisted
// algorithms only, signature, audience, expiry, not-before, and a refusal of ID tokens.
// Messages speak to the person holding the token; operator detail goes to `operatorDetail`.
import { createHash } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { CryptoKey, JWTPayload, JWTVerifyOptions, JWTVerifyResult, ProtectedHeaderParameters } from 'jose';
import type { IssuerConfig } from '../config/types.js';
import { VgError } from '../errors.js';
import { groupsFrom, readClaim } from './claim-path.js';
import { IssuerKeySet, printable } from './issuer-key-set.js';
import { VerifiedTokenCache } from './verified-token-cache.js';
import { resolveVerifierLimits } from './verifier-limits.js';
import type { VerifierLimits } from './verifier-limits.js';

export interface Principal {
  issuer: string;
  subject: string;
  username: string;
  groups: string[];
  /** ms epoch: the token's `exp`. */
  expiresAt: number;
  /** sha256 hex of the token, for caches keyed by token. */
  tokenHash: string;
}

export interface TokenVerifierOptions extends Partial<VerifierLimits> {
  /** Clock in ms epoch; defaults to Date.now. Tests pass their own. */
  now?: () => number;
}

/** `typ` header values of an access token (compared case-insensitively, RFC 7515 §4.1.9). */
const ACCESS_TOKEN_TYPES = new Set(['at+jwt', 'application/at+jwt', 'jwt']);
const GET_TOKEN = 'get a fresh one with `vecgate token`';
const SEND_ACCESS_TOKEN = 'send an access token (for example from `vecgate token`)';

/** Never accepted, whatever the configuration says: no signature, or a shared secret. */
function isForbiddenAlg(alg: string): boolean {
  return alg.toLowerCase() === 'none' || /^HS\d+$/i.test(alg);
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Rough, readable span: "42 s", "3 min", "5 h", "2 d". */
function span(ms: number): string {
  const s = Math.max(0, Math.round(Math.abs(ms) / 1000));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function malformed(message: string, operatorDetail?: string): VgError {
  return new VgError('ERR_VG_TOKEN_MALFORMED', message, { operatorDetail });
}

/**
 * Verifies access tokens for a fixed list of issuers. One instance per configuration; keys
 * and verified tokens are cached inside it.
 *
 * @example
 * const verifier = new TokenVerifier(config.identity.issuers);
 * const principal = await verifier.verify(token); // throws VgError (ERR_VG_TOKEN_*) when refused
 */
export class TokenVerifier {
  private readonly issuers = new Map<string, { config: IssuerConfig; keys: IssuerKeySet }>();
  private readonly limits: VerifierLimits;
  private readonly now: () => number;
  private readonly cache: VerifiedTokenCache;

  constructor(issuers: IssuerConfig[], opts: TokenVerifierOptions = {}) {
    const { now, ...limits } = opts;
    this.limits = resolveVerifierLimits(limits);
    this.now = now ?? Date.now;
    this.cache = new VerifiedTokenCache(this.limits.verifiedCacheMaxEntries, this.limits.verifiedCacheMaxAgeMs);
    for (const config of issuers) {
      // The first entry for an issuer wins; the config loader refuses duplicates.
      if (!this.issuers.has(config.issuer)) this.issuers.set(config.issuer, { config, keys: new IssuerKeySet(config, this.limits, this.now) });
    }
  }

  /** Loads (or refreshes, when due) every issuer's keys and waits, so an unreachable issuer shows up at start-up. Never throws. */
  async warm(): Promise<Array<{ issuer: string; error: VgError | null }>> {
    return Promise.all(
      [...this.issuers.values()].map(async ({ config, keys }) => {
        try {
          await keys.warm();
          return { issuer: config.issuer, error: null };
        } catch (err) {
          return { issuer: config.issuer, error: err as VgError };
        }
      }),
    );
  }

  /** Key fetches attempted for an issuer so far (for metrics). */
  keyFetchCount(issuer: string): number {
    return this.issuers.get(issuer)?.keys.fetchCount ?? 0;
  }

  /** Verifies `token`; resolves to the caller's identity or rejects with a VgError (ERR_VG_TOKEN_*, ERR_VG_JWKS_UNAVAILABLE). */
  async verify(token: string): Promise<Principal> {
    if (typeof token !== 'string' || token.trim() === '') {
      throw new VgError('ERR_VG_TOKEN_MISSING', 'no access token was sent; send one as the password (or `Authorization: Bearer`), for example from `vecgate token`');
    }
    token = token.trim();
    if (token.length > this.limits.maxTokenBytes) throw malformed(`token is longer than ${this.limits.maxTokenBytes} bytes; ${SEND_ACCESS_TOKEN}`);
    const tokenHash = createHash('sha256').update(token).digest('hex');
    const cached = this.cache.get(tokenHash, this.now());
    if (cached !== undefined) return cached;

    // Unverified look at the token, only to pick the issuer and refuse early.
    let header: ProtectedHeaderParameters;
    let claims: JWTPayload;
    try {
      if (token.split('.').length !== 3) throw new Error('not three dot-separated parts');
      header = decodeProtectedHeader(token);
      claims = decodeJwt(token);
    } catch (err) {
      throw malformed(`token is not a valid JWT; ${SEND_ACCESS_TOKEN}`, err instanceof Error ? err.message : undefined);
    }
    const alg = header.alg;
    if (typeof alg !== 'string' || alg === '') throw malformed(`token names no signing algorithm; ${SEND_ACCESS_TOKEN}`);
    if (isForbiddenAlg(alg)) {
      throw new VgError('ERR_VG_TOKEN_ALG_NOT_ALLOWED', `token signing algorithm ${printable(alg, 20)} is not accepted (unsigned and shared-secret tokens never are); ${SEND_ACCESS_TOKEN}`);
    }
    const iss = claims.iss;
    if (typeof iss !== 'string' || iss === '') {
      throw new VgError('ERR_VG_TOKEN_ISSUER_UNTRUSTED', 'token names no issuer (iss claim), so this gateway cannot trust it; ' + SEND_ACCESS_TOKEN);
    }
    const entry = this.issuers.get(iss);
    if (entry === undefined) {
      throw new VgError('ERR_VG_TOKEN_ISSUER_UNTRUSTED', `token issuer ${printable(iss)} is not trusted by this gateway`, {
        operatorDetail: `trusted issuers: ${[...this.issuers.keys()].join(', ') || '(none configured)'}`,
      });
    }
    const { config, keys } = entry;
    if (!config.algorithms.includes(alg)) {
      throw new VgError('ERR_VG_TOKEN_ALG_NOT_ALLOWED', `token signing algorithm ${printable(alg, 20)} is not allowed for issuer ${config.issuer}`, {
        operatorDetail: `identity.issuers[${config.issuer}].algorithms allows ${config.algorithms.join(', ')}`,
      });
    }
    if (header.typ !== undefined) {
      if (typeof header.typ !== 'string' || !ACCESS_TOKEN_TYPES.has(header.typ.toLowerCase())) {
        throw new VgError('ERR_VG_TOKEN_NOT_ACCESS_TOKEN', `token has type "${printable(String(header.typ), 40)}", which is not an access token; ${SEND_ACCESS_TOKEN}`);
      }
    }

    const audience = config.audience;
    const options: JWTVerifyOptions = {
      issuer: config.issuer,
      audience,
      algorithms: config.algorithms.filter((a) => !isForbiddenAlg(a)),
      clockTolerance: config.clockSkewSec,
      currentDate: new Date(this.now()),
      requiredClaims: ['exp'],
    };
    let result: JWTVerifyResult;
    try {
      result = await verifyTryingCandidates(token, (h, t) => keys.resolve(h, t), options);
    } catch (err) {
      throw this.translate(err, config);
    }

    const payload = result.payload;
    if (Object.hasOwn(payload, 'nonce')) {
      throw new VgError('ERR_VG_TOKEN_NOT_ACCESS_TOKEN', `this is an ID token (it carries a nonce), not an access token; ${SEND_ACCESS_TOKEN}`);
    }
    if (typeof payload.sub !== 'string' || payload.sub === '') throw malformed(`token names no subject (sub claim); ${SEND_ACCESS_TOKEN}`);
    const usernameValue = readClaim(payload, config.usernameClaim);
    const principal: Principal = Object.freeze({
      issuer: config.issuer,
      subject: payload.sub,
      // A token without the configured username claim is still a valid identity: fall back to sub.
      username: typeof usernameValue === 'string' && usernameValue !== '' ? usernameValue : payload.sub,
      groups: Object.freeze(groupsFrom(readClaim(payload, config.groupsClaim), this.limits.maxGroups)) as string[],
      expiresAt: (payload.exp as number) * 1000,
      tokenHash,
    });
    this.cache.set(principal, this.now());
    return principal;
  }

  /** jose's errors (and our own) to a VgError a token holder can act on. */
  private translate(err: unknown, config: IssuerConfig): VgError {
    if (err instanceof VgError) return err;
    const detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    if (err instanceof joseErrors.JWTExpired) {
      const exp = typeof err.payload.exp === 'number' ? err.payload.exp * 1000 : this.now();
      return new VgError('ERR_VG_TOKEN_EXPIRED', `token expired at ${isoSeconds(exp)} (${span(this.now() - exp)} ago); ${GET_TOKEN}`);
    }
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      if (err.claim === 'exp' && err.reason === 'missing') {
        return new VgError('ERR_VG_TOKEN_MISSING_EXP', `token has no expiry (exp claim); this gateway accepts only access tokens that expire; ${SEND_ACCESS_TOKEN}`);
      }
      if (err.claim === 'nbf' && err.reason === 'check_failed' && typeof err.payload.nbf === 'number') {
        const nbf = err.payload.nbf * 1000;
        return new VgError('ERR_VG_TOKEN_NOT_YET_VALID', `token is not valid before ${isoSeconds(nbf)} (in ${span(nbf - this.now())}); check the clock of the machine that issued it`, {
          operatorDetail: `allowed clock skew ${config.clockSkewSec} s`,
        });
      }
      if (err.claim === 'aud') {
        const want = Array.isArray(config.audience) ? config.audience : [config.audience];
        const text = want.length === 1 ? `"${want[0]}"` : `one of ${want.map((a) => `"${a}"`).join(', ')}`;
        return new VgError('ERR_VG_TOKEN_AUDIENCE', `token audience must include ${text}`, { operatorDetail: detail });
      }
      if (err.claim === 'iss') return new VgError('ERR_VG_TOKEN_ISSUER_UNTRUSTED', `token issuer is not trusted by this gateway`, { operatorDetail: detail });
      return malformed(`token claim "${printable(err.claim, 40)}" is invalid (${printable(err.reason, 40)}); ${SEND_ACCESS_TOKEN}`, detail);
    }
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
      return new VgError('ERR_VG_TOKEN_SIGNATURE', `token signature is invalid (the token was changed or not signed by ${config.issuer}); ${GET_TOKEN}`, { operatorDetail: detail });
    }
    if (err instanceof joseErrors.JOSEAlgNotAllowed) {
      return new VgError('ERR_VG_TOKEN_ALG_NOT_ALLOWED', `token signing algorithm is not allowed for issuer ${config.issuer}`, { operatorDetail: detail });
    }
    return malformed(`token could not be verified as a signed JWT; ${SEND_ACCESS_TOKEN}`, detail);
  }
}

type KeyResolver = (header: Parameters<IssuerKeySet['resolve']>[0], token: Parameters<IssuerKeySet['resolve']>[1]) => Promise<CryptoKey>;

/** jwtVerify, and when a kid-less token matches several keys, each candidate in turn. */
async function verifyTryingCandidates(token: string, resolve: KeyResolver, options: JWTVerifyOptions): Promise<JWTVerifyResult> {
  try {
    return await jwtVerify(token, resolve, options);
  } catch (err) {
    if (!(err instanceof joseErrors.JWKSMultipleMatchingKeys)) throw err;
    let last: unknown = err;
    for await (const key of err) {
      try {
        return await jwtVerify(token, key, options);
      } catch (e) {
        if (!(e instanceof joseErrors.JWSSignatureVerificationFailed)) throw e;
        last = e;
      }
    }
    throw last instanceof joseErrors.JWKSMultipleMatchingKeys ? new joseErrors.JWSSignatureVerificationFailed() : last;
  }
}
