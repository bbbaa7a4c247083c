// The only file that loads the vecgate native addon (build/Release/vecgate.node) and the
// TypeScript description of its surface. Every worker thread loads it; the addon keeps
// per-thread state, so nothing here is shared between threads.
//
// VECGATE_NATIVE_BUILD=asan loads build/Asan/vecgate.node instead (the ASan/UBSan build of
// scripts/build-native-asan.mjs; the process must preload clang's ASan runtime, see there).
//
// Guards every call has (#17): wrapped objects are type-tagged (a wrong object is a
// TypeError with code ERR_INVALID_ARG_TYPE), numbers are range-checked (RangeError,
// ERR_OUT_OF_RANGE), options with a fixed set of values say so (ERR_INVALID_ARG_VALUE), and
// calls in the wrong state throw ERR_VG_STATE.
//
// Contract, in short: JavaScript decides, native moves bytes. A Connection delivers its
// bytes to JavaScript (`onData`) only during the setup phase (protocol negotiation,
// authentication); once `pump()` joins two connections, bytes flow inside C++ and
// JavaScript hears only of the end of the session (and, later, statement events).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** What a completed TLS handshake tells JavaScript. */
export interface TlsInfo {
  version: string; // 'TLSv1.3'
  cipher: string; // 'TLS_AES_256_GCM_SHA384'
  alpn: string | null; // negotiated ALPN protocol, if any
  servername: string | null; // SNI the client sent (server side)
  /**
   * Client side only: the tls-server-end-point channel-binding value (RFC 5929): hash of the
   * server's leaf certificate with its signature hash (SHA-256 when that is MD5/SHA-1).
   */
  serverEndPoint: Buffer | null;
}

/** An opaque OpenSSL SSL_CTX. Live sessions keep the context they started with. */
export interface TlsContext {
  readonly kind: 'server' | 'client';
}

export interface ServerContextOptions {
  cert: Buffer | string; // PEM chain, leaf first
  key: Buffer | string; // PEM private key
  profile: 'modern' | 'intermediate';
  /** ALPN protocols this server accepts; a client offering only others is refused with no_application_protocol. */
  alpn?: string[];
}

export interface ClientContextOptions {
  /** PEM bundle of trusted CAs. Use tls.rootCertificates for the system store. */
  ca: Buffer | string;
  profile: 'modern' | 'intermediate';
}

export interface PumpStats {
  /** Plaintext bytes client -> upstream / upstream -> client. */
  bytesFromClient: number;
  bytesFromUpstream: number;
  messagesFromClient: number;
  messagesFromUpstream: number;
  /** Simple-protocol Query plus extended Parse messages seen from the client. */
  statements: number;
  /** Statements refused by `onStatement` (ERROR 42501 sent, session kept). */
  refusedStatements: number;
  /** `reuseUpstream` was set and the client left an idle session: the upstream is open, paused, and the caller's again. */
  upstreamKept: boolean;
  /** The kept upstream (with `upstreamKept`): under `transactionPooling` it may not be the one the session started with. */
  upstream?: Connection;
  /** `transactionPooling`: server links attached to and released from the session. */
  upstreamAttaches: number;
  upstreamReleases: number;
  /** `transactionPooling`: why a statement pinned the session to its server session (native/pg/session-pins.h); '' if none did. */
  pinReason: string;
  /** `preparedStatements`: Parses sent to a server (the client's, or the gateway's before a Bind or Describe on another link), and the client's Parses answered without one (the link had it prepared). */
  serverPrepares: number;
  preparesReused: number;
  /** `transactionPooling`: server links that ended under the session while it was not pinned; it went on (each was handed to `onUpstreamReleased`, closed). */
  upstreamLost: number;
  /** `refusePins`: statements refused because they would have pinned the session. */
  pinRefusals: number;
  /** Who ended the session (native/net/conn.h CloseReason): 'client-eof' | 'upstream-eof' | 'client-error' | 'upstream-error' | 'client-terminate' | 'protocol-error' | 'token-expired' | 'unreadable-setting' | 'closed', or an endPump reason. */
  reason: string;
  /** Human-readable detail for errors (errno name, TLS alert, parser complaint). */
  detail: string;
}

export interface PumpOptions {
  /** 'pg': both directions are PostgreSQL typed-message streams, parsed for boundaries and counters. 'raw': bytes only. */
  protocol: 'pg' | 'raw';
  /** Bytes queued toward one side before the other side stops being read: an integer from 16 KiB to 64 MiB (RangeError otherwise). */
  highWaterBytes: number;
  /**
   * PostgreSQL: when the client ends the session (Terminate or EOF) at a message boundary with
   * the upstream idle outside a transaction (last ReadyForQuery 'I', nothing in flight), keep
   * the upstream open instead of closing it, without forwarding the Terminate; the end stats
   * say `upstreamKept`. Whatever the setting, nothing after a Terminate is read, and the
   * client is closed once everything before it was answered.
   */
  reuseUpstream?: boolean;
  /**
   * Statement inspection (PostgreSQL, read-only sessions). Called synchronously for every
   * Query ('Q'), Parse ('P') and FunctionCall ('F', text empty) before it is forwarded.
   * Return null to forward it, or a refusal (a message: SQLSTATE 42501; or an object with
   * its SQLSTATE and, for syntax errors, the 1-based position): the upstream gets a stand-in
   * it must fail at once, so the session's state after the refusal is PostgreSQL's after an
   * error (transaction aborted, the rest of an extended batch skipped to Sync), and the
   * client gets ERROR with the refusal in place of the stand-in's error, at once (Flush or
   * not). Only statement text crosses into JS, never row data.
   * Return a number to hold the statement (strict recording durability): nothing from this
   * client is forwarded until `releaseStatement(client, thatNumber)`.
   */
  onStatement?: (type: 'Q' | 'P' | 'F', text: string) => string | number | { sqlstate: string; message: string; position?: number } | null;
  /**
   * Client bytes read during setup (pipelined after the password message): the pump reads
   * them before anything else, like any later bytes (inspection and strict holds included).
   */
  earlyClientBytes?: Buffer;
  /**
   * The session is bound to its token: the first statement after this many milliseconds
   * gets ErrorResponse FATAL 28P01 `expiryMessage` and the session ends.
   */
  expiresInMs?: number;
  expiryMessage?: string;
  /**
   * Recording: messages of these types (e.g. client 'B' Bind, or 'Q'/'P'/'F' statements when
   * there is no `onStatement`; upstream 'C' CommandComplete, 'E' ErrorResponse, 'D' DataRow)
   * are handed to `onCapture` whole, up to `maxBytes` of body (`fromClientMaxBytes` for the
   * client's, default `maxBytes`), after the chunk they came in was forwarded; DataRows stop
   * after `maxRowBytes` per ReadyForQuery.
   */
  capture?: { fromClient: string; fromUpstream: string; maxBytes: number; maxRowBytes: number; fromClientMaxBytes?: number };
  /** `body` is a copy, truncated to `maxBytes`; `length` is the message's full body length. */
  onCapture?: (fromClient: boolean, type: string, body: Buffer, length: number) => void;
  /**
   * `queries` recording done in C++ (instead of `onCapture`): the captured messages become
   * statement events (native/pg/statement-recorder.h) in this thread's record sink, taken with
   * `takeRecords()`. Needs `capture` (client 'BQPF', upstream 'CE').
   */
  nativeRecord?: { session: string; connection: string };
  /**
   * Transaction pooling (PostgreSQL; implies `reuseUpstream`): the session holds a server link
   * only from the first message of a transaction to its ReadyForQuery 'I' (every request
   * answered, nothing half-sent): then `onUpstreamReleased(link)` hands it back, paused and
   * the caller's again (set its callbacks there). Client bytes for the server with no link
   * wait in the pump (up to `highWaterBytes`, then the client is not read) and
   * `onUpstreamWanted()` asks for one, once per wait: answer with `attachUpstream`, now or
   * later, or end the session. The client's Terminate never reaches a pooled server. The
   * session's first link may be released at once (a session starts between transactions).
   * A link that ends under an unpinned session (its server closed or the connection broke,
   * both streams between messages) fails what was in flight (08006, ReadyForQuery 'I') and
   * is handed to `onUpstreamReleased` closed; the session goes on.
   */
  transactionPooling?: boolean;
  onUpstreamWanted?: () => void;
  onUpstreamReleased?: (upstream: Connection) => void;
  /**
   * `transactionPooling`: the client's named prepared statements work on every server link
   * (native/pg/prepared-statements.h): the gateway keeps each session's names, prepares a
   * statement on the link that serves a transaction when it is not there yet, and keeps at most
   * this many prepared per link (least recently used closed first). 0 (default): a named Parse
   * pins the session to its link.
   */
  preparedStatements?: number;
  /** `transactionPooling`: a statement that would pin the session is refused (0A000, naming why) instead; the session keeps sharing links. */
  refusePins?: boolean;
}

export interface Connection {
  /**
   * Setup-phase callbacks (and every phase of a connection that is never pumped, such as an
   * HTTP upstream). `chunk` is a fresh Buffer owned by JavaScript; data already read keeps
   * arriving for the rest of that read after `pause()`. `onDrain`: the write queue fell from
   * above to at most 64 KB (`writeQueueSize`).
   */
  setCallbacks(onData: (chunk: Buffer) => void, onClose: (reason: string, detail: string) => void, onDrain?: () => void): void;
  /**
   * setCallbacks without a copy per read: `onData` gets this thread's read buffer and how
   * many bytes at its start are the connection's, valid only during the call (the next read
   * overwrites them): whatever is kept must be copied. The Buffer is a fresh view over
   * exactly `length` bytes, detached when `onData` returns: a reference kept past the call
   * has length 0 (it never shows a later read's bytes).
   */
  setLentCallbacks(onData: (bytes: Buffer, length: number) => void, onClose: (reason: string, detail: string) => void, onDrain?: () => void): void;
  /**
   * Writes bytes (encrypted first when TLS is up). The bytes are copied; reuse the buffer
   * freely. An array is written part after part with one flush (one syscall when it fits).
   * Throws ERR_VG_STATE on a pumped connection, and between startTls() and its callback
   * (bytes written before the handshake completed would be lost): write from the callback on.
   */
  write(data: Buffer | Buffer[]): void;
  /**
   * Starts TLS on this connection. Must be called synchronously from the onData callback that
   * ended the plaintext phase (or before any data for direct TLS / client side), so that no
   * plaintext is ever mixed into the TLS stream. Server: `servername` unused. Client:
   * `servername` is required (a host name, or an IP address, the certificate is verified
   * against; null or '' throws ERR_INVALID_ARG_VALUE: there is no unverified client mode).
   */
  startTls(
    ctx: TlsContext,
    servername: string | null,
    alpn: string[] | null,
    cb: (err: Error | null, info: TlsInfo | null) => void,
    /** Server side: bytes already received that open the TLS stream (PG 17 direct TLS). */
    initial?: Buffer,
  ): void;
  /** Stops / resumes reading from the socket. */
  pause(): void;
  resume(): void;
  /** Flushes queued writes, sends TLS close_notify, then closes. Idempotent. */
  close(): void;
  /** Closes now, dropping queued writes. Idempotent. */
  destroy(): void;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly closed: boolean;
  /** Bytes waiting in the kernel-refused write queue. */
  readonly writeQueueSize: number;
}

export interface Listener {
  readonly port: number;
  close(): void;
}

export interface NativeStats {
  liveConnections: number;
  liveSessions: number; // pumps running
  bytesPumped: number;
}

export interface NativeBinding {
  createServerContext(opts: ServerContextOptions): TlsContext;
  createClientContext(opts: ClientContextOptions): TlsContext;
  /**
   * Listens with SO_REUSEPORT (every worker binds the same address). Throws an Error with
   * `code` ('EADDRINUSE', 'EACCES', ...) when the address cannot be bound.
   */
  listen(host: string, port: number, backlog: number, onConnection: (conn: Connection) => void): Listener;
  /** Connects to an IP address (resolve names first). The callback fires once. */
  connect(ip: string, port: number, cb: (err: Error | null, conn: Connection | null) => void): Connection;
  /** Joins two set-up connections; from now on bytes move in C++. onEnd fires once, after both are closed. */
  pump(client: Connection, upstream: Connection, opts: PumpOptions, onEnd: (stats: PumpStats) => void): void;
  stats(): NativeStats;
  /**
   * Ends a pumped session from the gateway's side (policy revoked, drain deadline):
   * `finalBytes` reach the client after what is already queued, then both legs close.
   * Returns false when the connection is not pumped (any more).
   */
  endPump(client: Connection, reason: 'policy-revoked' | 'shutdown' | 'recording-failed' | 'closed', finalBytes?: Buffer): boolean;
  /** Forwards a statement held by `onStatement` (and what queued behind it). */
  releaseStatement(client: Connection, holdId: number): boolean;
  /**
   * Gives a `transactionPooling` session the server link it asked for: what the client sent
   * while it had none is written to it. False (the link untouched, still the caller's) when
   * the session does not take one now: it ended, has one, or its client left with nothing
   * waiting. Throws when `upstream` is pumped already or its TLS handshake is not done.
   */
  attachUpstream(client: Connection, upstream: Connection): boolean;
  /**
   * A `transactionPooling` session keeps its current link while `on` (a cancel is on its way
   * to that link's backend); `false` releases it at once if the session is between
   * transactions. False when the connection is not such a session.
   */
  holdUpstream(client: Connection, on: boolean): boolean;
  /**
   * Recording (primary): frames payload i = `blob[offsets[2i], offsets[2i+1])` as Event frames
   * with sequence numbers `firstSeq`, `firstSeq + 1`, ..., each chained to the previous frame's
   * hash (the first to `prevHash`). `frames` is every frame back to back, byte-identical to
   * segment-format.ts `encodeFrame(FrameKind.Event, ...)` in a loop; `hash` is the last frame's
   * hash (`prevHash` when there are no payloads). Throws TypeError on offsets out of range or
   * of odd length, a `prevHash` that is not 32 bytes, or a `firstSeq` that is not a safe
   * non-negative integer. The inputs are only read during the call.
   */
  frameEvents(blob: Uint8Array, offsets: Uint32Array, firstSeq: number, prevHash: Uint8Array): { frames: Buffer; hash: Buffer };
  /**
   * frameEvents writing the frames to `into[at, at + length)` (a buffer the caller reuses)
   * instead of a new Buffer. Same checks, and RangeError when they do not fit. `into` must
   * not share memory with `blob`.
   */
  frameEventsInto(into: Uint8Array, at: number, blob: Uint8Array, offsets: Uint32Array, firstSeq: number, prevHash: Uint8Array): { length: number; hash: Buffer };
  /**
   * Redaction for the strings C++ recording does not handle itself (non-ASCII text, text
   * that may hold a secret): `kind` 0 = a string, 1 = a text-format Bind parameter; returns
   * the msgpack encoding of what is recorded in its place.
   */
  setRecordRenderer(render: (kind: number, text: Buffer) => Uint8Array): void;
  /**
   * Statement events recorded in C++ since the last call, as one record batch
   * (src/recording/record-batch.ts), or null. Statements still waiting for their result
   * since at or before `sweepBefore` (ms epoch) are recorded on their own first.
   */
  takeRecords(sweepBefore?: number): Buffer | null;
  /**
   * HTTP body guard: from `i` at a comma after a number in a JSON array, skips `,number`
   * repeats; returns the index after them (and trailing whitespace), `i` when no number
   * follows the comma, or -1 for a malformed number (workers/http/json-key-scan.ts).
   */
  skipJsonNumberList(bytes: Uint8Array, i: number): number;
  /**
   * HTTP upstream responses: the head at the start of `bytes` when it is complete there and
   * the C++ reader vouches for it, as [used, minor, status, reason, contentLength (-1: none),
   * flags (1 Transfer-Encoding, 2 chunked, 4 `close`, 8 `keep-alive`), name, value, ...];
   * null leaves the head to the JavaScript reader (workers/http/upstream-response-parser.ts).
   */
  readResponseHead(bytes: Uint8Array, maxHeadBytes: number): (string | number)[] | null;
  /** How skipJsonNumberList runs on this CPU: 64 bytes at a time ('avx512-bmi2', 'avx2-bmi2') or byte by byte ('scalar'). */
  readonly jsonNumberListPath: 'avx512-bmi2' | 'avx2-bmi2' | 'scalar';
  /** Tests: a C++ statement recorder fed these captures; returns its record batch (or null). */
  recordCapturesForTest(session: string, connection: string, captures: [boolean, string, Buffer, number][], end?: boolean): Buffer | null;
}

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/src/native.js -> repository root
const root = path.resolve(here, '..', '..');

let binding: NativeBinding | null = null;

/** Loads the addon once per thread. Throws a clear error when it has not been built. */
export function native(): NativeBinding {
  if (binding) return binding;
  const require = createRequire(import.meta.url);
  const variant = process.env.VECGATE_NATIVE_BUILD;
  if (variant !== undefined && variant !== '' && variant !== 'release' && variant !== 'asan') {
    const e = new Error(`VECGATE_NATIVE_BUILD must be 'release' or 'asan', got '${variant}'`);
    (e as NodeJS.ErrnoException).code = 'ERR_VG_NATIVE_MISSING';
    throw e;
  }
  const file = path.join(root, 'build', variant === 'asan' ? 'Asan' : 'Release', 'vecgate.node');
  try {
    binding = require(file) as NativeBinding;
  } catch (err) {
    const e = new Error(`vecgate native addon not loadable at ${file} (${(err as Error).message}); run \`npm ci\` or \`npm run build\``);
    (e as NodeJS.ErrnoException).code = 'ERR_VG_NATIVE_MISSING';
    throw e;
  }
  return binding;
}
