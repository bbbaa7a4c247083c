// Bounded cache of verified tokens, keyed by the sha256 of the token: entries never outlive
// the token's `exp` (nor a maximum age), and the least recently used entry goes first.
import type { Principal } from './token-verifier.js';

interface Entry {
  principal: Principal;
  /** ms epoch after which the entry must not be used. */
  validUntil: number;
}

export class VerifiedTokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;

  constructor(maxEntries: number, maxAgeMs: number) {
    this.maxEntries = maxEntries;
    this.maxAgeMs = maxAgeMs;
  }

  get size(): number {
    return this.entries.size;
  }

  get(tokenHash: string, now: number): Principal | undefined {
    const e = this.entries.get(tokenHash);
    if (e === undefined) return undefined;
    if (now >= e.validUntil) {
      this.entries.delete(tokenHash);
      return undefined;
    }
    // Move to the back: Map iteration order is insertion order, so the front is least recently used.
    this.entries.delete(tokenHash);
    this.entries.set(tokenHash, e);
    return e.principal;
  }

  set(principal: Principal, now: number): void {
    if (this.maxEntries === 0) return;
    const validUntil = Math.min(principal.expiresAt, now + this.maxAgeMs);
    if (validUntil <= now) return;
    this.entries.delete(principal.tokenHash);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    this.entries.set(principal.tokenHash, { principal, validUntil });
  }

  clear(): void {
    this.entries.clear();
  }
}
