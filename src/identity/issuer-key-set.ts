// One trusted issuer's signing keys: where they come from (pinned file, pinned URL, or OIDC
// discovery), how long a fetched set is used, the refetch cooldown that bounds what a flood
// of unknown `kid`s can cost, and how long stale keys survive an issuer outage.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createLocalJWKSet, errors as joseErrors } from 'jose';
import type { CryptoKey, JSONWebKeySet, JWK, JWSHeaderParameters, FlattenedJWSInput } from 'jose';
import type { IssuerConfig } from '../config/types.js';
import { VgError } from '../errors.js';
import { fetchJson } from './https-json-fetch.js';
import type { VerifierLimits } from './verifier-limits.js';

type LocalKeySet = ReturnType<typeof createLocalJWKSet>;

/** Key types that can verify an asymmetric JWS; `oct` (shared secrets) never enters a key set. */
const ASYMMETRIC_KTY = new Set(['RSA', 'EC', 'OKP']);
/** Members that only private keys have. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** `issuer` + well-known path, per OpenID Connect Discovery 1.0 §4 (trailing slash removed first). */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

export class IssuerKeySet {
  private readonly config: IssuerConfig;
  private readonly limits: VerifierLimits;
  private readonly now: () => number;
  private keys: LocalKeySet | null = null;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private lastError: string | null = null;
  private inflight: Promise<void> | null = null;
  private jwksUri: string | null = null;
  private caPem: string | null | undefined;
  /** Completed fetch attempts (successful or not); for metrics and tests. */
  fetchCount = 0;

  constructor(config: IssuerConfig, limits: VerifierLimits, now: () => number) {
    this.config = config;
    this.limits = limits;
    this.now = now;
  }

  /**
   * Key resolver for jose's jwtVerify. Throws VgError ERR_VG_JWKS_UNAVAILABLE when no usable
   * key set can be had, ERR_VG_TOKEN_KID_UNKNOWN when the set has no key for the token.
   * jose's JWKSMultipleMatchingKeys passes through (the caller tries each candidate).
   */
  async resolve(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> {
    await this.ensureUsable();
    try {
      return await this.keys!(header, token);
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
    }
    // The issuer may have rotated: refetch once, unless a fetch happened within the cooldown.
    if (this.inflight !== null || this.now() - this.lastAttemptAt >= this.limits.unknownKidCooldownMs) {
      await this.refresh();
      if (this.keys !== null && this.now() - this.fetchedAt <= this.limits.staleKeysMaxAgeMs) {
        try {
          return await this.keys(header, token);
        } catch (err) {
          if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
        }
      }
    }
    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    throw new VgError(
      'ERR_VG_TOKEN_KID_UNKNOWN',
      `token was signed with a key${kid !== undefined ? ` (kid ${printable(kid)})` : ''} that issuer ${this.config.issuer} does not publish; get a fresh token with \`vecgate token\``,
      { operatorDetail: `no key in the JWKS of ${this.config.issuer} matches alg=${String(header.alg)} kid=${kid === undefined ? '(none)' : printable(kid)}; last fetch ${this.describeFetch()}` },
    );
  }

  /** Fetches now unless the cached set is fresh (or a fetch was tried within the cooldown), and waits for it. */
  async warm(): Promise<void> {
    await this.ensureUsable(true);
  }

  private async ensureUsable(waitForRefresh = false): Promise<void> {
    const age = this.now() - this.fetchedAt;
    if (this.keys !== null && age < this.limits.jwksMaxAgeMs) return;
    const mayFetch = this.inflight !== null || this.now() - this.lastAttemptAt >= this.limits.unknownKidCooldownMs;
    if (this.keys !== null && age <= this.limits.staleKeysMaxAgeMs && !waitForRefresh) {
      // Due for refresh but still usable: refresh in the background, so the auth path does not
      // wait on the issuer every jwksMaxAge (refresh() never rejects).
      if (mayFetch) void this.refresh();
      return;
    }
    if (mayFetch) await this.refresh();
    if (this.keys === null || this.now() - this.fetchedAt > this.limits.staleKeysMaxAgeMs) {
      // Fail closed: no keys, or keys not confirmed by the issuer for longer than the stale limit.
      throw new VgError('ERR_VG_JWKS_UNAVAILABLE', `the gateway cannot get the signing keys of issuer ${this.config.issuer} right now; try again shortly`, {
        operatorDetail: `${this.keys === null ? 'no key set loaded' : `key set last fetched ${Math.round((this.now() - this.fetchedAt) / 1000)} s ago, over the stale limit of ${Math.round(this.limits.staleKeysMaxAgeMs / 1000)} s`}; last error: ${this.lastError ?? 'none'}`,
      });
    }
  }

  private describeFetch(): string {
    if (this.fetchedAt === Number.NEGATIVE_INFINITY) return `never succeeded (${this.lastError ?? 'not attempted'})`;
    return `${Math.round((this.now() - this.fetchedAt) / 1000)} s ago${this.lastError !== null ? `; latest attempt failed: ${this.lastError}` : ''}`;
  }

  /** Single-flight: concurrent callers share one fetch. Never throws; failures are recorded. */
  private refresh(): Promise<void> {
    if (this.inflight !== null) return this.inflight;
    this.lastAttemptAt = this.now();
    this.inflight = this.fetchAndInstall().finally(() => {
      this.fetchCount++;
      this.inflight = null;
    });
    return this.inflight;
  }

  private async fetchAndInstall(): Promise<void> {
    try {
      const keys = createLocalJWKSet(await this.load());
      this.keys = keys;
      this.fetchedAt = this.now();
      this.lastError = null;
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      this.jwksUri = null; // rediscover next time: the jwks_uri may have moved
    }
  }

  private async load(): Promise<JSONWebKeySet> {
    const pinned = this.config.jwks;
    if (pinned !== null && path.isAbsolute(pinned)) {
      const text = await readFile(pinned, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new Error(`cannot read pinned JWKS file ${pinned}: ${err.code ?? err.message}`);
      });
      if (Buffer.byteLength(text) > this.limits.maxJwksResponseBytes) throw new Error(`pinned JWKS file ${pinned} is larger than ${this.limits.maxJwksResponseBytes} bytes`);
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch {
        throw new Error(`pinned JWKS file ${pinned} is not JSON`);
      }
      return this.publicKeysOf(doc, pinned);
    }
    const fetchOpts = { caPem: await this.loadCa(), timeoutMs: this.limits.fetchTimeoutMs, maxBytes: this.limits.maxJwksResponseBytes };
    let jwksUri = pinned;
    if (jwksUri === null) {
      if (this.jwksUri === null) {
        const url = discoveryUrl(this.config.issuer);
        const doc = await fetchJson(url, fetchOpts);
        if (typeof doc !== 'object' || doc === null) throw new Error(`${url}: discovery document is not a JSON object`);
        const { issuer, jwks_uri: uri } = doc as { issuer?: unknown; jwks_uri?: unknown };
        // OpenID Connect Discovery §4.3: the document must name exactly the issuer we asked for.
        if (issuer !== this.config.issuer) throw new Error(`${url}: discovery document names issuer ${JSON.stringify(issuer)}, expected ${JSON.stringify(this.config.issuer)}`);
        if (typeof uri !== 'string' || uri === '') throw new Error(`${url}: discovery document has no jwks_uri`);
        this.jwksUri = uri;
      }
      jwksUri = this.jwksUri;
    }
    return this.publicKeysOf(await fetchJson(jwksUri, fetchOpts), jwksUri);
  }

  private async loadCa(): Promise<string | null> {
    if (this.caPem !== undefined) return this.caPem;
    if (this.config.ca === null) return (this.caPem = null);
    const ca = this.config.ca;
    this.caPem = await readFile(ca, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cannot read issuer CA file ${ca}: ${err.code ?? err.message}`);
    });
    return this.caPem;
  }

  /** Keeps only public asymmetric signing keys, at most maxJwksKeys of them. */
  private publicKeysOf(doc: unknown, source: string): JSONWebKeySet {
    const keys = (doc as { keys?: unknown } | null)?.keys;
    if (typeof doc !== 'object' || doc === null || !Array.isArray(keys)) throw new Error(`${source}: not a JWK set (no "keys" array)`);
    const usable: JWK[] = [];
    for (const k of keys as unknown[]) {
      if (usable.length >= this.limits.maxJwksKeys) break;
      if (typeof k !== 'object' || k === null) continue;
      const jwk = k as JWK & Record<string, unknown>;
      if (typeof jwk.kty !== 'string' || !ASYMMETRIC_KTY.has(jwk.kty)) continue;
      if (jwk.use !== undefined && jwk.use !== 'sig') continue;
      if (PRIVATE_MEMBERS.some((m) => m in jwk)) continue;
      usable.push(jwk);
    }
    if (usable.length === 0) throw new Error(`${source}: no public signing keys (RSA, EC or OKP) in the key set`);
    return { keys: usable };
  }
}

/** Untrusted text shown back to a person: printable ASCII only, bounded length. */
export function printable(s: string, max = 120): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}
