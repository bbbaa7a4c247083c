// Request framing checks and header re-serialization for the HTTP data path. uWebSockets.js
// already drops connections with CL+TE, a non-numeric Content-Length, obs-fold, bare LF, NUL
// in headers, no Host, or HTTP/1.0 (see test/http/framing.test.ts); what it lets through and
// we refuse here: duplicate Content-Length, any Transfer-Encoding (chunked request bodies need
// a stricter parser than uWS's: see CHUNKED_REFUSAL), duplicate Host, and oversized headers. Headers are rebuilt for the upstream, never
// passed raw: hop-by-hop headers (RFC 9110 §7.6.1) and the client's credentials are dropped.

/** Largest request header section accepted (names + values), config `max_request_headers`. */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;
/** Most request header fields accepted. */
export const DEFAULT_MAX_HEADER_COUNT = 100;
/** Largest upstream response header value passed back (guards against a broken upstream). */
export const MAX_RESPONSE_HEADER_VALUE_BYTES = 16 * 1024;

export type HeaderList = [name: string, value: string][];

export interface FramingLimits {
  maxHeaderBytes: number;
  maxHeaderCount: number;
}

export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: number };

export type FramingResult =
  | { ok: true; body: BodyFraming }
  | {
      ok: false;
      status: 400 | 411 | 431 | 501;
      code: 'ERR_VG_HTTP_BAD_REQUEST' | 'ERR_VG_HTTP_LENGTH_REQUIRED' | 'ERR_VG_HTTP_HEADERS_TOO_LARGE' | 'ERR_VG_HTTP_UNSUPPORTED';
      message: string;
    };

/**
 * Chunked request bodies are refused before any of the body is read. uWebSockets.js 20.30
 * decodes chunked framing loosely and tells JavaScript only the decoded bytes: it does not
 * check the CRLF after a chunk's data (a chunk longer than its size is cut there and the rest
 * read as framing), reads a size with leading whitespace as 0 (the end of the body), and takes
 * `;` in a chunk extension for a hex digit. A malformed body would reach the upstream cut
 * short (`{}`, empty) as a complete request, and the gateway cannot tell. The native HTTP
 * front (#19) parses chunked strictly; until then bodies need Content-Length.
 */
const CHUNKED_REFUSAL: FramingResult = Object.freeze({
  ok: false,
  status: 411,
  code: 'ERR_VG_HTTP_LENGTH_REQUIRED',
  message: 'chunked request bodies are not accepted by this gateway; send the body with Content-Length',
});

/** Hop-by-hop or gateway-owned: never forwarded in either direction. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length', // recomputed from the framing we forward
  'host',
  'expect', // the gateway answers 100-continue itself
]);

/** Set by the gateway only; whatever the client sent is dropped (it is the edge and would be trusted upstream). */
const GATEWAY_SET = new Set(['authorization', 'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip']);
/** Request headers never forwarded: both of the above (one lookup per header). */
const NOT_FORWARDED = new Set([...HOP_BY_HOP, ...GATEWAY_SET]);

/** RFC 9110 §5.6.2 token: methods and header names, in both directions. */
export const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5 field value as the upstream response parser decodes it (latin1: one char per byte). */
export const HTTP_FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/**
 * What a request header value (or the gateway's own, such as the upstream credential) may not
 * hold: control characters (CR/LF/NUL could split the head), and U+FFFD, which is what uWS
 * makes of bytes that are not UTF-8: the original bytes cannot be sent on, so the request is
 * refused rather than altered. Everything else goes upstream as the UTF-8 the client sent.
 */
export const UNSENDABLE_FIELD_VALUE = /[\x00-\x08\x0a-\x1f\x7f\ufffd]/;

/** Checks the framing of a request from its header list (names lower-case, as uWS gives them). */
export function checkRequestFraming(method: string, headers: HeaderList, limits: FramingLimits): FramingResult {
  if (headers.length > limits.maxHeaderCount) {
    return { ok: false, status: 431, code: 'ERR_VG_HTTP_HEADERS_TOO_LARGE', message: `the request has ${headers.length} header fields; at most ${limits.maxHeaderCount} are accepted` };
  }
  let bytes = 0;
  // The first Content-Length / Transfer-Encoding value and how many there were.
  let contentLength = '';
  let contentLengths = 0;
  let transferEncoding = '';
  let transferEncodings = 0;
  let hosts = 0;
  for (const [name, value] of headers) {
    bytes += name.length + value.length + 4;
    if (!HTTP_TOKEN.test(name)) return bad(`header name ${JSON.stringify(name.slice(0, 40))} is not a valid token`);
    // Authorization is never forwarded (the gateway reads it as a bearer token, whose pattern
    // admits no control character): its often long value is not scanned twice.
    if (name !== 'authorization' && UNSENDABLE_FIELD_VALUE.test(value)) return bad(`header ${name} has a control character or bytes that are not UTF-8 in its value`);
    if (name === 'content-length') {
      if (contentLengths++ === 0) contentLength = value;
    } else if (name === 'transfer-encoding') {
      if (transferEncodings++ === 0) transferEncoding = value;
    } else if (name === 'host') hosts++;
  }
  if (bytes > limits.maxHeaderBytes) {
    return { ok: false, status: 431, code: 'ERR_VG_HTTP_HEADERS_TOO_LARGE', message: `the request headers are ${bytes} bytes; at most ${limits.maxHeaderBytes} are accepted` };
  }
  if (hosts > 1) return bad('more than one Host header');
  if (contentLengths > 0 && transferEncodings > 0) return bad('Content-Length together with Transfer-Encoding is ambiguous framing (RFC 9112 §6.1)');
  if (contentLengths > 1) return bad('more than one Content-Length header is ambiguous framing');
  if (transferEncodings > 1) return bad('more than one Transfer-Encoding header');
  if (transferEncodings === 1) {
    if (transferEncoding.trim().toLowerCase() !== 'chunked') {
      return { ok: false, status: 501, code: 'ERR_VG_HTTP_UNSUPPORTED', message: `Transfer-Encoding "${transferEncoding.slice(0, 40)}" is not supported; send the body with Content-Length` };
    }
    return CHUNKED_REFUSAL;
  }
  if (contentLengths === 1) {
    if (!/^\d{1,15}$/.test(contentLength)) return bad('Content-Length is not a plain decimal number');
    const length = Number(contentLength);
    return length === 0 && (method === 'GET' || method === 'HEAD') ? NO_BODY : { ok: true, body: { kind: 'length', length } };
  }
  return NO_BODY;
}

/** Shared answers for the common cases (frozen: callers only read them). */
const NO_BODY: FramingResult = Object.freeze({ ok: true, body: Object.freeze({ kind: 'none' }) });

function bad(message: string): FramingResult {
  return { ok: false, status: 400, code: 'ERR_VG_HTTP_BAD_REQUEST', message };
}

/** Names listed in a Connection header are hop-by-hop too (RFC 9110 §7.6.1); null without one. */
function connectionListed(headers: HeaderList): Set<string> | null {
  let out: Set<string> | null = null;
  for (const [name, value] of headers) {
    if (name !== 'connection') continue;
    out ??= new Set<string>();
    for (const part of value.split(',')) {
      const t = part.trim().toLowerCase();
      if (t) out.add(t);
    }
  }
  return out;
}

export interface ForwardInfo {
  clientAddress: string;
  /** Host header the client used (for X-Forwarded-Host / Forwarded host=). */
  clientHost: string;
  /** Host header for the upstream (its own authority). */
  upstreamHost: string;
  /** Upstream credential header, already lower-case name; null for none. */
  credential: { name: string; value: string } | null;
}

/** The header object sent upstream: end-to-end client headers, minus anything the gateway owns, plus forwarding and credential headers. */
export function upstreamRequestHeaders(headers: HeaderList, info: ForwardInfo): Record<string, string | string[]> {
  const drop = connectionListed(headers);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of headers) {
    if (NOT_FORWARDED.has(name) || (drop !== null && drop.has(name))) continue;
    if (info.credential && name === info.credential.name) continue; // a client never supplies the upstream credential
    const cur = out[name];
    if (cur === undefined) out[name] = value;
    else if (Array.isArray(cur)) cur.push(value);
    else out[name] = [cur, value];
  }
  out['host'] = info.upstreamHost;
  out['x-forwarded-for'] = info.clientAddress;
  out['x-forwarded-proto'] = 'https';
  if (info.clientHost) out['x-forwarded-host'] = info.clientHost;
  const forAddr = info.clientAddress.includes(':') ? `"[${info.clientAddress}]"` : info.clientAddress;
  out['forwarded'] = `for=${forAddr};proto=https${info.clientHost && TOKEN_OR_HOST.test(info.clientHost) ? `;host="${info.clientHost}"` : ''}`;
  if (info.credential) out[info.credential.name] = info.credential.value;
  return out;
}

const TOKEN_OR_HOST = /^[A-Za-z0-9.\-:[\]]+$/;

/** Response headers passed back to the client: end-to-end only; framing is uWS's job. `raw`: name, value, ... */
export function clientResponseHeaders(raw: readonly string[]): HeaderList {
  const pairs: HeaderList = [];
  let listed: Set<string> | null = null;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      listed ??= new Set<string>();
      for (const p of raw[i + 1]!.split(',')) listed.add(p.trim().toLowerCase());
    }
  }
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (HOP_BY_HOP.has(name) || name === 'date' || (listed !== null && listed.has(name))) continue; // uWS writes its own Date
    // The readers refuse such names and values already; checked again here because a CR or
    // LF reaching uWS would split the client's response.
    if (!HTTP_TOKEN.test(name) || !HTTP_FIELD_VALUE.test(value) || value.length > MAX_RESPONSE_HEADER_VALUE_BYTES) continue;
    pairs.push([name, value]);
  }
  return pairs;
}
