// The embedded dev token issuer behind `vecgate dev` and `vecgate token --dev`: one ES256
// key made on first use and kept in DIR/dev-issuer/, its public JWKS written beside it so
// the gateway trusts it as a pinned `jwks` file (no HTTP server), and a minter of access
// tokens. For development only: whoever can read the key file can mint any identity.
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync } from 'node:fs';
import { link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import type { IssuerConfig } from '../config/types.js';
import { VgError } from '../errors.js';

/** Issuer of every dev token. `.invalid` (RFC 2606) can never resolve, so no real IdP shares it. */
export const DEV_ISSUER = 'https://vecgate.dev.invalid';
export const DEV_AUDIENCE = 'vecgate';
export const DEV_CLIENT_ID = 'vecgate-dev';
/** Default dev state directory, relative to the current directory. */
export const DEV_DEFAULT_DIR = '.vecgate-dev';
/** Longest lifetime of a dev token. */
export const MAX_DEV_TOKEN_TTL_SEC = 24 * 3600;
const DEV_ALG = 'ES256';
const KEY_FILE = 'key.jwk.json';
const JWKS_FILE = 'jwks.json';

export interface MintOptions {
  /** Becomes `sub` (and `email`/`preferred_username`). */
  user: string;
  groups: string[];
  /** Lifetime in seconds, 1 .. MAX_DEV_TOKEN_TTL_SEC. */
  ttlSec: number;
  /** Defaults to 'vecgate'. */
  audience?: string;
  /** Tests only: mint as if at this time (seconds since the epoch), e.g. to get an expired token. */
  issuedAtSec?: number;
}

/**
 * @example
 * const dev = await DevIssuer.open('.vecgate-dev');
 * const token = await dev.mint({ user: 'dev@example.com', groups: ['vectors-admin'], ttlSec: 900 });
 * const verifier = new TokenVerifier([dev.issuerConfig()]);
 */
export class DevIssuer {
  readonly issuer = DEV_ISSUER;
  /** Absolute path of the public JWKS file (pin it as an issuer's `jwks`). */
  readonly jwksPath: string;
  readonly kid: string;
  private readonly privateKey: CryptoKey;

  private constructor(jwksPath: string, kid: string, privateKey: CryptoKey) {
    this.jwksPath = jwksPath;
    this.kid = kid;
    this.privateKey = privateKey;
  }

  /** Opens (creating on first use) the dev issuer kept in `dir/dev-issuer/`. */
  static async open(dir: string): Promise<DevIssuer> {
    const home = path.join(path.resolve(dir), 'dev-issuer');
    await mkdir(home, { recursive: true, mode: 0o700 });
    const keyPath = path.join(home, KEY_FILE);
    if (!existsSync(keyPath)) await createKeyFile(keyPath);
    const jwk = await readKeyFile(keyPath);
    const kid = jwk.kid as string;
    const privateKey = (await importJWK(jwk, DEV_ALG)) as CryptoKey;
    const { d: _d, ...pub } = jwk;
    const jwksPath = path.join(home, JWKS_FILE);
    const jwksText = JSON.stringify({ keys: [{ ...pub, use: 'sig', alg: DEV_ALG, kid }] }, null, 2) + '\n';
    const current = await readFile(jwksPath, 'utf8').catch(() => null);
    if (current !== jwksText) await writeAtomically(jwksPath, jwksText, 0o644);
    return new DevIssuer(jwksPath, kid, privateKey);
  }

  /** The issuer entry a gateway config needs to trust this issuer. */
  issuerConfig(): IssuerConfig {
    return {
      issuer: this.issuer,
      audience: DEV_AUDIENCE,
      groupsClaim: 'groups',
      usernameClaim: 'sub',
      jwks: this.jwksPath,
      algorithms: [DEV_ALG],
      clockSkewSec: 60,
      ca: null,
    };
  }

  /** Mints an access token (`typ: at+jwt`) for `user` with `groups`. */
  async mint(opts: MintOptions): Promise<string> {
    if (typeof opts.user !== 'string' || opts.user.trim() === '') throw new VgError('ERR_VG_USAGE', 'a dev token needs a user name (--user)');
    if (!Number.isInteger(opts.ttlSec) || opts.ttlSec < 1 || opts.ttlSec > MAX_DEV_TOKEN_TTL_SEC) {
      throw new VgError('ERR_VG_USAGE', `dev token lifetime must be between 1 s and ${MAX_DEV_TOKEN_TTL_SEC / 3600} h, got ${String(opts.ttlSec)} s`);
    }
    const user = opts.user.trim();
    const now = opts.issuedAtSec ?? Math.floor(Date.now() / 1000);
    return new SignJWT({
      groups: [...opts.groups],
      email: user.includes('@') ? user : `${user}@dev.invalid`,
      preferred_username: user,
      client_id: DEV_CLIENT_ID,
    })
      .setProtectedHeader({ alg: DEV_ALG, kid: this.kid, typ: 'at+jwt' })
      .setIssuer(this.issuer)
      .setSubject(user)
      .setAudience(opts.audience ?? DEV_AUDIENCE)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + opts.ttlSec)
      .setJti(randomUUID())
      .sign(this.privateKey);
  }
}

async function createKeyFile(keyPath: string): Promise<void> {
  const { privateKey } = await generateKeyPair(DEV_ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint({ kty: jwk.kty!, crv: jwk.crv!, x: jwk.x!, y: jwk.y! });
  jwk.alg = DEV_ALG;
  const tmp = `${keyPath}.${process.pid}.${randomUUID()}.tmp`;
  await writeFile(tmp, JSON.stringify(jwk) + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600); // the umask may have narrowed the mode; never widen beyond 0600
  try {
    // link() fails when the file exists: two processes starting at once keep the first key.
    await link(tmp, keyPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function readKeyFile(keyPath: string): Promise<JWK> {
  let jwk: JWK;
  try {
    jwk = JSON.parse(await readFile(keyPath, 'utf8')) as JWK;
  } catch (err) {
    throw new VgError('ERR_VG_CONFIG', `cannot read the dev issuer key ${keyPath}; delete it to make a new one`, { cause: err });
  }
  if (typeof jwk !== 'object' || jwk === null || jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string') {
    throw new VgError('ERR_VG_CONFIG', `the dev issuer key ${keyPath} is not an ES256 private key; delete it to make a new one`);
  }
  if (typeof jwk.kid !== 'string' || jwk.kid === '') jwk.kid = await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y });
  return jwk;
}

async function writeAtomically(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomUUID()}.tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, file);
}
