// SCRAM-SHA-256 and SCRAM-SHA-256-PLUS client (RFC 5802, RFC 7677) as PostgreSQL uses it,
// for the gateway's leg to an upstream. PostgreSQL ignores the SCRAM user name (it uses the
// startup packet's), so client-first carries `n=`. Channel binding is tls-server-end-point
// (RFC 5929). Server input is untrusted: nonce, salt and iteration count are checked, the
// iteration count is capped (a hostile upstream could otherwise burn the worker's CPU: the
// key derivation runs synchronously), and the server signature is compared in constant time.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * SaltedPassword results kept per (password, salt, iterations): PBKDF2 is the costliest step
 * of an upstream login (about 1 ms at 4096 iterations, blocking the worker), and the gateway
 * logs in with the same few credentials over and over. Keyed by a hash, bounded, per thread.
 */
export const SALTED_PASSWORD_CACHE_ENTRIES = 64;
const saltedCache = new Map<string, Buffer>();

function saltedPasswordFor(password: string, salt: Buffer, iterations: number): Buffer {
  const key = createHash('sha256').update(password).update('\0').update(salt).update('\0').update(String(iterations)).digest('base64');
  const hit = saltedCache.get(key);
  if (hit) return hit;
  const value = pbkdf2Sync(password, salt, iterations, KEY_BYTES, 'sha256');
  if (saltedCache.size >= SALTED_PASSWORD_CACHE_ENTRIES) saltedCache.delete(saltedCache.keys().next().value!);
  saltedCache.set(key, value);
  return value;
}

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';

/** RFC 7677 asks for at least 4096; PostgreSQL's default scram_iterations is 4096. */
export const DEFAULT_MIN_SCRAM_ITERATIONS = 4096;
/** About 0.2 s of PBKDF2 on one core; above this an upstream is refused rather than obeyed. */
export const DEFAULT_MAX_SCRAM_ITERATIONS = 1_000_000;
/** Random bytes in our nonce (libpq uses 18: 24 base64 characters). */
const CLIENT_NONCE_BYTES = 18;
/** Largest server message we look at: PostgreSQL's are under 200 bytes. */
export const MAX_SCRAM_SERVER_MESSAGE_BYTES = 4096;
const KEY_BYTES = 32;

export interface ScramClientOptions {
  password: string;
  /** Mechanisms from AuthenticationSASL, in the server's order. */
  mechanisms: string[];
  /** tls-server-end-point hash of the upstream's certificate; null without TLS or if unknown. */
  channelBinding: Buffer | null;
  /** Defaults: DEFAULT_MIN_SCRAM_ITERATIONS / DEFAULT_MAX_SCRAM_ITERATIONS. */
  minIterations?: number;
  maxIterations?: number;
  /** SCRAM user name; PostgreSQL ignores it, so the default is ''. Tests use it for RFC vectors. */
  username?: string;
  /**
   * TESTS ONLY: a fixed client nonce instead of a random one. A predictable nonce lets a
   * server replay an old exchange; never set it outside tests.
   */
  insecureFixedNonceForTests?: string;
}

export type ScramStep<T> = ({ ok: true } & T) | { ok: false; message: string };

type State = 'initial' | 'client-first-sent' | 'client-final-sent' | 'done' | 'failed';

const NONCE_CHARS = /^[\x21-\x2b\x2d-\x7e]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DIGITS = /^[1-9][0-9]{0,9}$/;

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/**
 * SASLprep (RFC 4013), approximately: non-ASCII spaces become U+0020, "commonly mapped to
 * nothing" characters are removed, then NFKC. Not done: the prohibited-character and bidi
 * checks. PostgreSQL (pg_saslprep) falls back to the raw password when those checks fail,
 * so a password containing prohibited characters (controls, private use, unassigned code
 * points...) may derive a different key here than the server stored; ASCII passwords, the
 * usual generated credentials, are unaffected (SASLprep leaves them unchanged).
 */
export function saslPrep(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  const mapped = password
    .replace(/[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000]/g, ' ')
    .replace(/[\u00ad\u034f\u1806\u180b-\u180d\u200c\u200d\u2060\ufe00-\ufe0f\ufeff]/g, '');
  return mapped.normalize('NFKC');
}

/** RFC 5802 saslname: ',' and '=' escaped. */
function saslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

/** Which mechanism we use for `mechanisms`, or a reason why none fits. */
export function chooseScramMechanism(mechanisms: string[], channelBinding: Buffer | null): ScramStep<{ mechanism: string }> {
  if (channelBinding && mechanisms.includes(SCRAM_SHA_256_PLUS)) return { ok: true, mechanism: SCRAM_SHA_256_PLUS };
  if (mechanisms.includes(SCRAM_SHA_256)) return { ok: true, mechanism: SCRAM_SHA_256 };
  const offered = mechanisms.map((m) => JSON.stringify(m.slice(0, 40))).join(', ');
  if (mechanisms.includes(SCRAM_SHA_256_PLUS)) {
    return { ok: false, message: `the server offers only ${SCRAM_SHA_256_PLUS}, but no tls-server-end-point binding is available (no TLS?)` };
  }
  return { ok: false, message: `none of the server's SASL mechanisms is supported (offered: ${offered || 'none'})` };
}

/**
 * One SCRAM exchange.
 *
 * @example
 * const scram = new ScramClient({ password, mechanisms: msg.mechanisms, channelBinding: tls.serverEndPoint });
 * if (scram.failure) return fail(scram.failure);
 * conn.write(ser.saslInitialResponse(scram.mechanism, scram.clientFirst()));
 * // on AuthenticationSASLContinue:
 * const r = scram.handleServerFirst(data); if (!r.ok) return fail(r.message); conn.write(ser.saslResponse(r.clientFinal));
 * // on AuthenticationSASLFinal:
 * const f = scram.handleServerFinal(data); if (!f.ok) return fail(f.message);
 * // on AuthenticationOk: require scram.done
 */
export class ScramClient {
  /** The chosen mechanism; '' when `failure` is set. */
  readonly mechanism: string;
  /**
   * Set when no offered mechanism can be used. The constructor does not throw for server
   * input; every later step then fails with this message.
   */
  readonly failure: string | null;
  private readonly gs2Header: string;
  private readonly cbindInput: Buffer;
  private readonly clientNonce: string;
  private readonly clientFirstBare: string;
  private readonly password: string;
  private readonly minIterations: number;
  private readonly maxIterations: number;
  private state: State = 'initial';
  private expectedServerSignature: Buffer | null = null;

  constructor(opts: ScramClientOptions) {
    this.minIterations = opts.minIterations ?? DEFAULT_MIN_SCRAM_ITERATIONS;
    this.maxIterations = opts.maxIterations ?? DEFAULT_MAX_SCRAM_ITERATIONS;
    if (!Number.isSafeInteger(this.minIterations) || !Number.isSafeInteger(this.maxIterations) || this.minIterations < 1 || this.minIterations > this.maxIterations) {
      throw new RangeError(`SCRAM iteration bounds must satisfy 1 <= min <= max, got ${this.minIterations}..${this.maxIterations}`);
    }
    if (opts.channelBinding !== null && opts.channelBinding.length === 0) throw new RangeError('an empty channel binding is not a binding: pass null');
    const nonce = opts.insecureFixedNonceForTests ?? randomBytes(CLIENT_NONCE_BYTES).toString('base64');
    if (!NONCE_CHARS.test(nonce)) throw new RangeError('a SCRAM nonce is printable ASCII without commas');
    this.clientNonce = nonce;
    this.password = saslPrep(opts.password);

    const choice = chooseScramMechanism(opts.mechanisms, opts.channelBinding);
    this.failure = choice.ok ? null : choice.message;
    this.mechanism = choice.ok ? choice.mechanism : '';
    if (choice.ok && choice.mechanism === SCRAM_SHA_256_PLUS) {
      this.gs2Header = 'p=tls-server-end-point,,';
      this.cbindInput = Buffer.concat([Buffer.from(this.gs2Header), opts.channelBinding!]);
    } else {
      // 'y': we could bind but the server did not offer PLUS. If a man in the middle stripped
      // PLUS from the list, a server that supports it sees 'y' and refuses (RFC 5802 6).
      this.gs2Header = opts.channelBinding ? 'y,,' : 'n,,';
      this.cbindInput = Buffer.from(this.gs2Header);
    }
    this.clientFirstBare = `n=${saslName(opts.username ?? '')},r=${nonce}`;
    if (this.failure) this.state = 'failed';
  }

  /** True once the server proved it knows the credential (server-final verified). */
  get done(): boolean {
    return this.state === 'done';
  }

  /** The SASLInitialResponse data. Call once. */
  clientFirst(): Buffer {
    if (this.state !== 'initial' && this.state !== 'failed') throw new Error('ScramClient.clientFirst() called twice');
    if (this.state === 'initial') this.state = 'client-first-sent';
    return Buffer.from(this.gs2Header + this.clientFirstBare);
  }

  /** Takes AuthenticationSASLContinue data; returns the SASLResponse data (client-final). */
  handleServerFirst(data: Buffer): ScramStep<{ clientFinal: Buffer }> {
    if (this.failure) return { ok: false, message: this.failure };
    if (this.state !== 'client-first-sent') return this.fail('server-first-message out of sequence');
    if (data.length > MAX_SCRAM_SERVER_MESSAGE_BYTES) return this.fail(`server-first-message of ${data.length} bytes is over the limit of ${MAX_SCRAM_SERVER_MESSAGE_BYTES}`);
    const serverFirst = data.toString('latin1');
    if (!/^[\x20-\x7e]*$/.test(serverFirst)) return this.fail('server-first-message is not printable ASCII');
    const parts = serverFirst.split(',');
    if (parts[0]?.startsWith('m=')) return this.fail('server-first-message requires an unsupported extension');
    if (parts.length !== 3) return this.fail('malformed server-first-message (expected r=,s=,i=)');
    const [r, s, i] = parts as [string, string, string];
    if (!r.startsWith('r=') || !s.startsWith('s=') || !i.startsWith('i=')) return this.fail('malformed server-first-message (expected r=,s=,i=)');
    const nonce = r.slice(2);
    const saltB64 = s.slice(2);
    const iterText = i.slice(2);
    if (!NONCE_CHARS.test(nonce)) return this.fail('invalid server nonce characters');
    if (!nonce.startsWith(this.clientNonce) || nonce.length <= this.clientNonce.length) return this.fail('server nonce does not extend the client nonce');
    if (saltB64 === '' || !BASE64.test(saltB64)) return this.fail('salt is not valid base64');
    if (!DIGITS.test(iterText)) return this.fail('iteration count is not a positive integer');
    const iterations = Number(iterText);
    if (iterations < this.minIterations) return this.fail(`iteration count ${iterations} is below the minimum of ${this.minIterations}`);
    if (iterations > this.maxIterations) return this.fail(`iteration count ${iterations} is above the maximum of ${this.maxIterations}`);
    const salt = Buffer.from(saltB64, 'base64');

    const saltedPassword = saltedPasswordFor(this.password, salt, iterations);
    const clientKey = hmac(saltedPassword, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const withoutProof = `c=${this.cbindInput.toString('base64')},r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.allocUnsafe(KEY_BYTES);
    for (let k = 0; k < KEY_BYTES; k++) proof[k] = clientKey[k]! ^ clientSignature[k]!;
    this.expectedServerSignature = hmac(hmac(saltedPassword, 'Server Key'), authMessage);
    this.state = 'client-final-sent';
    return { ok: true, clientFinal: Buffer.from(`${withoutProof},p=${proof.toString('base64')}`) };
  }

  /** Takes AuthenticationSASLFinal data; ok only when the server signature matches. */
  handleServerFinal(data: Buffer): ScramStep<object> {
    if (this.failure) return { ok: false, message: this.failure };
    if (this.state !== 'client-final-sent' || !this.expectedServerSignature) return this.fail('server-final-message out of sequence');
    if (data.length > MAX_SCRAM_SERVER_MESSAGE_BYTES) return this.fail(`server-final-message of ${data.length} bytes is over the limit of ${MAX_SCRAM_SERVER_MESSAGE_BYTES}`);
    const text = data.toString('latin1');
    if (!/^[\x20-\x7e]*$/.test(text)) return this.fail('server-final-message is not printable ASCII');
    if (text.startsWith('e=')) return this.fail(`server reported an error: ${text.slice(2, 200)}`);
    if (!text.startsWith('v=') || text.includes(',')) return this.fail('malformed server-final-message (expected v=)');
    const b64 = text.slice(2);
    if (!BASE64.test(b64)) return this.fail('server signature is not valid base64');
    const got = Buffer.from(b64, 'base64');
    if (got.length !== KEY_BYTES || !timingSafeEqual(got, this.expectedServerSignature)) {
      return this.fail('server signature does not match: the server does not know the credential');
    }
    this.state = 'done';
    return { ok: true };
  }

  private fail(message: string): { ok: false; message: string } {
    this.state = 'failed';
    return { ok: false, message };
  }
}
