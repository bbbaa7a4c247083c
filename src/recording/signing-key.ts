// The Ed25519 key that signs segment checkpoints, seals and heads: the configured PEM file
// (`recordings.signing_key`), or one generated once into the recordings directory. The
// public key is always written beside the recordings, where `verify-recordings` reads it.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { VgError } from '../errors.js';

export const GENERATED_KEY_FILE = 'signing-key.pem';
export const PUBLIC_KEY_FILE = 'signing-key.pub.pem';
/** Hex digits of the SPKI SHA-256 that name a key in segment headers. */
export const KEY_ID_HEX_DIGITS = 16;

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
}

export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, KEY_ID_HEX_DIGITS);
}

async function readIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

async function writeNew(file: string, text: string, mode: number): Promise<void> {
  const fh = await open(file, 'wx', mode);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function parsePrivate(pem: string, file: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new VgError('ERR_VG_RECORDING', `recordings signing key ${file} is not a readable PEM private key: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new VgError('ERR_VG_RECORDING', `recordings signing key ${file} is ${key.asymmetricKeyType ?? 'not an asymmetric key'}; it must be an Ed25519 key (openssl genpkey -algorithm ed25519)`);
  }
  return key;
}

/** Loads or creates the signing key for `dir`, and makes sure the public key beside it matches. */
export async function loadSigningKey(dir: string, signingKeyPath?: string): Promise<SigningKey> {
  let privateKey: KeyObject;
  if (signingKeyPath !== undefined) {
    const pem = await readIfExists(signingKeyPath);
    if (pem === null) throw new VgError('ERR_VG_RECORDING', `recordings signing key ${signingKeyPath} does not exist; create one with: openssl genpkey -algorithm ed25519 -out ${signingKeyPath}`);
    privateKey = parsePrivate(pem, signingKeyPath);
  } else {
    const file = path.join(dir, GENERATED_KEY_FILE);
    const pem = await readIfExists(file);
    if (pem !== null) privateKey = parsePrivate(pem, file);
    else {
      privateKey = generateKeyPairSync('ed25519').privateKey;
      // 0600: only the gateway's user may sign recordings.
      await writeNew(file, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
    }
  }
  const publicKey = createPublicKey(privateKey);
  const pubPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const pubFile = path.join(dir, PUBLIC_KEY_FILE);
  const existing = await readIfExists(pubFile);
  if (existing === null) await writeNew(pubFile, pubPem, 0o644);
  else if (keyIdOf(createPublicKey(existing)) !== keyIdOf(publicKey)) {
    throw new VgError(
      'ERR_VG_RECORDING',
      `the recordings in ${dir} are signed with another key (${keyIdOf(createPublicKey(existing))}, in ${pubFile}) than the configured one (${keyIdOf(publicKey)}): configure the original key, or move the old recordings to another directory`,
    );
  }
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

/** The public key a verifier trusts: an auditor's own copy if given, else the one beside the recordings. */
export async function loadPublicKey(dir: string, publicKeyPath?: string): Promise<KeyObject> {
  const file = publicKeyPath ?? path.join(dir, PUBLIC_KEY_FILE);
  const pem = await readIfExists(file);
  if (pem === null) throw new VgError('ERR_VG_RECORDING', `no public key at ${file}: the recordings cannot be checked without it (pass --public-key FILE)`);
  try {
    const key = createPublicKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`it is ${key.asymmetricKeyType}, not Ed25519`);
    return key;
  } catch (e) {
    throw new VgError('ERR_VG_RECORDING', `public key ${file} is not usable: ${(e as Error).message}`);
  }
}

export function signBytes(key: KeyObject, data: Buffer): Buffer {
  return sign(null, data, key);
}

export function verifyBytes(key: KeyObject, data: Buffer, sig: Buffer): boolean {
  try {
    return verify(null, data, key, sig);
  } catch {
    return false;
  }
}
