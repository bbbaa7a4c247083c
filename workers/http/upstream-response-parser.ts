// Incremental HTTP/1.1 response parser for the gateway's own upstream connections
// (upstream-pool.ts): status line and header section, then the body as Content-Length,
// chunked or read-until-close, per RFC 9112 §6.3. Strict where a lenient reading could let
// two parties disagree on where a response ends (bare LF, obs-fold, conflicting
// Content-Length, bad chunk sizes): such a response is an error and the connection is
// never reused. Body bytes are handed on as views of the input buffers, not copied.
import { native } from '../../src/native.js';
import { HTTP_FIELD_VALUE, HTTP_TOKEN } from './request-framing.js';

const addon = native();

/** Largest response header section (status line + fields) accepted from an upstream. */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;
/** Most header fields in one upstream response. */
export const MAX_RESPONSE_HEADER_COUNT = 200;
/** Longest chunk-size line (size + extensions) and trailer section accepted. */
export const MAX_CHUNK_LINE_BYTES = 4 * 1024;
export const MAX_TRAILER_BYTES = 16 * 1024;
/** Interim (1xx) responses skipped before the final one; more is a broken upstream. */
export const MAX_INTERIM_RESPONSES = 8;

export interface ResponseHead {
  status: number;
  reason: string;
  /** Names as sent, values trimmed: [name, value, name, value, ...] (Node's rawHeaders shape). */
  rawHeaders: string[];
  /** Content-Length when the body is framed by it; null for chunked, until-close or no body. */
  contentLength: number | null;
  /** The connection may carry another request after this response (HTTP/1.1 without `close`, framed body). */
  keepAlive: boolean;
}

export interface ResponseSink {
  head(h: ResponseHead): void;
  /** A view of the input; valid as long as the caller keeps the input buffer. */
  body(chunk: Buffer): void;
  /** The response is complete; `rest` holds bytes that followed it (a broken or pipelining upstream). */
  end(rest: Buffer | null): void;
}

/** Thrown by `feed`/`finish` on a malformed or truncated response. */
export class UpstreamProtocolError extends Error {
  readonly code = 'ERR_VG_UPSTREAM_PROTOCOL';
}

type State = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-data-crlf' | 'trailers' | 'until-close' | 'done';

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,13})[\t ]*(?:;.*)?$/;
const CRLF = Buffer.from('\r\n\r\n');

/** Whether `buf[from..]` has an LF not preceded by CR (an LF at 0 counts: the head's first byte). */
function hasBareLf(buf: Buffer, from: number): boolean {
  for (let i = buf.indexOf(10, from); i >= 0; i = buf.indexOf(10, i + 1)) {
    if (i === 0 || buf[i - 1] !== 13) return true;
  }
  return false;
}

/** One parser per response. `method` decides whether a body can follow (HEAD never has one). */
export class ResponseParser {
  private state: State = 'head';
  private held: Buffer[] = [];
  private heldBytes = 0;
  private remaining = 0;
  private interim = 0;
  private trailerBytes = 0;
  /** The last (up to 3) bytes of a held partial head, where its blank line may have begun. */
  private headTail: Buffer = Buffer.alloc(0);

  constructor(
    private readonly method: string,
    private readonly sink: ResponseSink,
  ) {}

  /** Whether the whole response has been parsed. */
  get done(): boolean {
    return this.state === 'done';
  }

  /** Whether the body runs until the connection closes (then `finish()` ends it). */
  get untilClose(): boolean {
    return this.state === 'until-close';
  }

  /** Parses the next bytes of the connection. Throws UpstreamProtocolError. */
  feed(input: Buffer): void {
    let buf = input;
    while (buf.length > 0) {
      switch (this.state) {
        case 'head': {
          const used = this.takeHead(buf);
          if (used < 0) return; // held, waiting for more
          buf = buf.subarray(used);
          if ((this.state as State) === 'done') {
            // No body (HEAD, 204, 304, Content-Length: 0): the end must still be reported, as
            // the pool releases the connection on it.
            this.complete(buf);
            return;
          }
          break;
        }
        case 'length': {
          const n = Math.min(this.remaining, buf.length);
          this.remaining -= n;
          this.sink.body(buf.subarray(0, n));
          buf = buf.subarray(n);
          if (this.remaining === 0) this.complete(buf);
          return;
        }
        case 'until-close':
          this.sink.body(buf);
          return;
        case 'chunk-size':
        case 'chunk-data-crlf':
        case 'trailers': {
          const used = this.takeLine(buf);
          if (used < 0) return;
          buf = buf.subarray(used);
          if ((this.state as State) === 'done') {
            this.complete(buf);
            return;
          }
          break;
        }
        case 'chunk-data': {
          const n = Math.min(this.remaining, buf.length);
          this.remaining -= n;
          this.sink.body(buf.subarray(0, n));
          buf = buf.subarray(n);
          if (this.remaining === 0) this.state = 'chunk-data-crlf';
          break;
        }
        case 'done':
          return;
      }
    }
  }

  /** The connection closed: ends an until-close body, or throws when the response is incomplete. */
  finish(): void {
    if (this.state === 'done') return;
    if (this.state === 'until-close') {
      this.state = 'done';
      this.sink.end(null);
      return;
    }
    if (this.state === 'head' && this.heldBytes === 0 && this.interim === 0) throw new UpstreamProtocolError('the upstream closed the connection before answering');
    throw new UpstreamProtocolError(this.state === 'head' ? 'the upstream closed the connection in the middle of the response head' : 'the upstream closed the connection before the end of the response body');
  }

  private complete(rest: Buffer): void {
    this.state = 'done';
    this.sink.end(rest.length > 0 ? rest : null);
  }

  /** Holds bytes until the blank line; returns how much of `buf` the head used, or -1 when all was held. */
  private takeHead(buf: Buffer): number {
    if (this.heldBytes === 0) {
      const fast = readWholeHeadNatively(buf);
      if (fast !== null) {
        this.applyHead(fast.fields);
        return fast.used;
      }
    }
    // Search only where the terminator can be: the last 3 held bytes plus the new ones. Held
    // pieces are joined once, at the end, so a head arriving in many small reads costs linear
    // time instead of a copy of everything held per read.
    const tailLen = this.headTail.length;
    const probe = this.heldBytes === 0 ? buf : Buffer.concat([this.headTail, buf]);
    const at = probe.indexOf(CRLF);
    if (at < 0) {
      // A head with bare LFs may never hold a CRLF CRLF: refuse it now rather than wait for
      // bytes that will not come (the exchange would end in a response timeout, not a 502).
      if (hasBareLf(probe, this.heldBytes === 0 ? 0 : tailLen)) throw new UpstreamProtocolError('the upstream sent a bare LF in its response head');
      if (this.heldBytes + buf.length > MAX_RESPONSE_HEAD_BYTES) throw new UpstreamProtocolError(`the upstream's response head is over ${MAX_RESPONSE_HEAD_BYTES} bytes`);
      this.held.push(Buffer.from(buf)); // a copy: the caller's buffer is not kept
      this.heldBytes += buf.length;
      this.headTail = Buffer.from(probe.subarray(Math.max(0, probe.length - 3)));
      return -1;
    }
    const end = this.heldBytes - tailLen + at; // offset of the blank line in held + buf
    if (end + 4 > MAX_RESPONSE_HEAD_BYTES) throw new UpstreamProtocolError(`the upstream's response head is over ${MAX_RESPONSE_HEAD_BYTES} bytes`);
    const used = end + 4 - this.heldBytes;
    const joined = this.heldBytes === 0 ? buf : Buffer.concat([...this.held, buf.subarray(0, used)]);
    if (hasBareLf(joined.subarray(0, end), 0)) throw new UpstreamProtocolError('the upstream sent a bare LF in its response head');
    const headText = joined.toString('latin1', 0, end);
    this.held = [];
    this.heldBytes = 0;
    this.headTail = Buffer.alloc(0);
    this.applyHead(readHeadFields(headText));
    return used;
  }

  /** What the head's fields mean for this response: interim, no body, chunked, length or until close. */
  private applyHead(f: HeadFields): void {
    const { minor, status, reason, rawHeaders, contentLength, transferEncoding, chunked } = f;
    // `close` wins wherever it appears (in any order, in any Connection field); HTTP/1.0
    // closes unless the upstream asked to keep the connection.
    const close = f.closeToken || (minor === 0 && !f.keepAliveToken);
    if (status < 200) {
      if (status === 101) throw new UpstreamProtocolError('the upstream switched protocols (101), which the gateway does not relay');
      if (++this.interim > MAX_INTERIM_RESPONSES) throw new UpstreamProtocolError(`the upstream sent more than ${MAX_INTERIM_RESPONSES} interim responses`);
      return; // 100 Continue, 103 Early Hints: not relayed; the final response follows
    }
    const noBody = this.method === 'HEAD' || status === 204 || status === 304;
    if (noBody) {
      this.sink.head({ status, reason, rawHeaders, contentLength: this.method === 'HEAD' ? contentLength : null, keepAlive: !close });
      this.state = 'done';
      return;
    }
    if (transferEncoding) {
      // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); a response that sent both
      // is not trusted to frame the next one, so its connection is closed afterwards; so is one
      // from an HTTP/1.0 upstream, which cannot send Transfer-Encoding (RFC 9112 §6.1: faulty framing).
      const keepAlive = !close && chunked && contentLength === null && minor === 1;
      this.sink.head({ status, reason, rawHeaders, contentLength: null, keepAlive });
      this.state = chunked ? 'chunk-size' : 'until-close';
      return;
    }
    if (contentLength !== null) {
      this.sink.head({ status, reason, rawHeaders, contentLength, keepAlive: !close });
      this.remaining = contentLength;
      this.state = contentLength === 0 ? 'done' : 'length';
      return;
    }
    this.sink.head({ status, reason, rawHeaders, contentLength: null, keepAlive: false });
    this.state = 'until-close';
  }

  /** Chunk-size lines, the CRLF after chunk data, and trailer lines; returns bytes used or -1 (held). */
  private takeLine(buf: Buffer): number {
    const nl = buf.indexOf(10);
    const limit = this.state === 'trailers' ? MAX_TRAILER_BYTES : MAX_CHUNK_LINE_BYTES;
    if (nl < 0) {
      if (this.heldBytes + buf.length > limit) throw new UpstreamProtocolError('the upstream sent an over-long chunk line or trailer');
      this.held.push(Buffer.from(buf)); // a copy: the caller's buffer is not kept
      this.heldBytes += buf.length;
      return -1;
    }
    if (this.heldBytes + nl > limit) throw new UpstreamProtocolError('the upstream sent an over-long chunk line or trailer');
    const lineBuf = this.heldBytes === 0 ? buf.subarray(0, nl + 1) : Buffer.concat([...this.held, buf.subarray(0, nl + 1)]);
    this.held = [];
    const lineLen = lineBuf.length;
    if (lineLen < 2 || lineBuf[lineLen - 2] !== 13) throw new UpstreamProtocolError('the upstream sent a bare LF in its chunked body');
    const line = lineBuf.toString('latin1', 0, lineLen - 2);
    if (this.state === 'chunk-data-crlf') {
      if (line.length !== 0) throw new UpstreamProtocolError('the upstream sent chunk data longer than its chunk size');
      this.heldBytes = 0;
      this.state = 'chunk-size';
    } else if (this.state === 'chunk-size') {
      this.heldBytes = 0;
      const m = CHUNK_SIZE.exec(line);
      if (!m) throw new UpstreamProtocolError(`the upstream sent an invalid chunk size: ${JSON.stringify(line.slice(0, 40))}`);
      const size = parseInt(m[1]!, 16);
      if (size === 0) this.state = 'trailers';
      else {
        this.remaining = size;
        this.state = 'chunk-data';
      }
    } else {
      // Trailers are not relayed (uWS has no trailer API); the section ends at an empty line.
      this.heldBytes = 0;
      this.trailerBytes += lineLen;
      if (this.trailerBytes > MAX_TRAILER_BYTES) throw new UpstreamProtocolError('the upstream sent an over-long trailer section');
      if (line.length === 0) this.state = 'done';
    }
    return nl + 1;
  }
}

/** A response head's fields as read, before their meaning for the body is decided. */
export interface HeadFields {
  minor: number;
  status: number;
  reason: string;
  rawHeaders: string[];
  contentLength: number | null;
  transferEncoding: boolean;
  /** The last transfer coding is `chunked`. */
  chunked: boolean;
  /** A Connection field lists `close` / `keep-alive`. */
  closeToken: boolean;
  keepAliveToken: boolean;
}

/**
 * A head whole at the start of `buf`, read in C++ (native/http-response-head.cc) when it
 * vouches for it: its fields and the bytes it used; null leaves the head to readHeadFields.
 */
export function readWholeHeadNatively(buf: Buffer): { used: number; fields: HeadFields } | null {
  const r = addon.readResponseHead(buf, MAX_RESPONSE_HEAD_BYTES);
  if (r === null) return null;
  const flags = r[5] as number;
  const cl = r[4] as number;
  return {
    used: r[0] as number,
    fields: {
      minor: r[1] as number,
      status: r[2] as number,
      reason: r[3] as string,
      rawHeaders: r.slice(6) as string[],
      contentLength: cl < 0 ? null : cl,
      transferEncoding: (flags & 1) !== 0,
      chunked: (flags & 2) !== 0,
      closeToken: (flags & 4) !== 0,
      keepAliveToken: (flags & 8) !== 0,
    },
  };
}

/**
 * Reads a response head (the text before its blank line, one char per byte) the JavaScript
 * way: the reference the C++ reader is held to, and the reader of every head that one leaves
 * here. Throws UpstreamProtocolError on a malformed head.
 */
export function readHeadFields(text: string): HeadFields {
  const lines = text.split('\r\n');
  const m = STATUS_LINE.exec(lines[0]!);
  if (!m) throw new UpstreamProtocolError(`the upstream sent a malformed status line: ${JSON.stringify(lines[0]!.slice(0, 80))}`);
  if (lines.length - 1 > MAX_RESPONSE_HEADER_COUNT) throw new UpstreamProtocolError(`the upstream sent more than ${MAX_RESPONSE_HEADER_COUNT} header fields`);
  const f: HeadFields = {
    minor: Number(m[1]),
    status: Number(m[2]),
    reason: m[3] ?? '',
    rawHeaders: [],
    contentLength: null,
    transferEncoding: false,
    chunked: false,
    closeToken: false,
    keepAliveToken: false,
  };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length === 0) continue;
    if (line[0] === ' ' || line[0] === '\t') throw new UpstreamProtocolError('the upstream used obs-fold (a folded header line)');
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!HTTP_TOKEN.test(name)) throw new UpstreamProtocolError(`the upstream sent a malformed header line: ${JSON.stringify(line.slice(0, 40))}`);
    const value = line.slice(colon + 1).trim();
    if (!HTTP_FIELD_VALUE.test(value)) throw new UpstreamProtocolError(`the upstream's ${name} header has a control character`);
    f.rawHeaders.push(name, value);
    const lower = name.toLowerCase();
    if (lower === 'content-length') {
      // `1, 1` (a list of identical values) is allowed by RFC 9110 §8.6; anything else is not.
      const parts = value.split(',').map((p) => p.trim());
      if (!parts.every((p) => /^\d{1,15}$/.test(p)) || !parts.every((p) => p === parts[0])) throw new UpstreamProtocolError(`the upstream sent an invalid Content-Length: ${JSON.stringify(value.slice(0, 40))}`);
      const n = Number(parts[0]);
      if (f.contentLength !== null && f.contentLength !== n) throw new UpstreamProtocolError('the upstream sent conflicting Content-Length headers');
      f.contentLength = n;
    } else if (lower === 'transfer-encoding') {
      f.transferEncoding = true;
      const codings = value.toLowerCase().split(',').map((p) => p.trim());
      f.chunked = codings[codings.length - 1] === 'chunked';
    } else if (lower === 'connection') {
      for (const t of value.toLowerCase().split(',')) {
        const token = t.trim();
        if (token === 'close') f.closeToken = true;
        else if (token === 'keep-alive') f.keepAliveToken = true;
      }
    }
  }
  return f;
}
