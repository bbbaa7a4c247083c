// Parses the first packet a PostgreSQL client sends on a fresh connection (or right after
// TLS): SSLRequest, GSSENCRequest, CancelRequest, StartupMessage, or the first byte of a TLS
// ClientHello (PG 17 direct TLS). Untrusted input: the length is checked against the cap
// before anything is allocated, and every failure is returned, never thrown.
import { isUtf8 } from 'node:buffer';
import {
  DEFAULT_MAX_STARTUP_PACKET_BYTES,
  MAX_CANCEL_SECRET_BYTES,
  MIN_CANCEL_SECRET_BYTES,
  RequestCode,
  TLS_HANDSHAKE_RECORD_BYTE,
  type StartupPacket,
} from './messages.js';

export { DEFAULT_MAX_STARTUP_PACKET_BYTES };

export interface StartupLimits {
  /** Largest packet, length field included (PostgreSQL: MAX_STARTUP_PACKET_LENGTH = 10000). */
  maxStartupPacketBytes: number;
}

export type StartupParse =
  | { status: 'need-more' }
  /** `silent`: PostgreSQL closes such a connection without an answer (not a startup packet's length). */
  | { status: 'error'; message: string; silent?: boolean }
  /** `consumed`: bytes of `buf` this packet used (0 for direct-tls: the bytes belong to TLS). */
  | { status: 'ok'; consumed: number; packet: StartupPacket };

/** length + request code. */
const MIN_PACKET_BYTES = 8;
const PROTOCOL_MAJOR = 3;
/** The request codes use major 1234, which no real protocol version has. */
const REQUEST_CODE_MAJOR = 1234;

function error(message: string): StartupParse {
  return { status: 'error', message };
}

/** A length no startup packet has: PostgreSQL logs it and closes without a word. */
function lengthError(message: string): StartupParse {
  return { status: 'error', message, silent: true };
}

/**
 * Parses one first packet from the start of `buf` (the caller keeps unconsumed bytes).
 *
 * @example
 * const r = parseStartupPacket(pending, { maxStartupPacketBytes: DEFAULT_MAX_STARTUP_PACKET_BYTES });
 * if (r.status === 'ok' && r.packet.kind === 'ssl-request') conn.write(Buffer.from('S'));
 */
export function parseStartupPacket(buf: Buffer, limits: StartupLimits = { maxStartupPacketBytes: DEFAULT_MAX_STARTUP_PACKET_BYTES }): StartupParse {
  const max = limits.maxStartupPacketBytes;
  if (!Number.isSafeInteger(max) || max < MIN_PACKET_BYTES) throw new RangeError(`maxStartupPacketBytes must be an integer >= ${MIN_PACKET_BYTES}, got ${max}`);
  if (buf.length === 0) return { status: 'need-more' };
  // A valid length is far below 2^24, so its first byte is 0: 0x16 can only be a TLS record.
  if (buf[0] === TLS_HANDSHAKE_RECORD_BYTE) return { status: 'ok', consumed: 0, packet: { kind: 'direct-tls' } };
  if (buf[0]! >= 0x80) return lengthError('invalid length of startup packet (negative)');
  if (buf.length < 4) {
    // Fail as soon as the bytes we have already make the length too large.
    let least = 0;
    for (let i = 0; i < 4; i++) least = least * 256 + (i < buf.length ? buf[i]! : 0);
    if (least > max) return lengthError(`invalid length of startup packet (at least ${least} bytes; the limit is ${max})`);
    return { status: 'need-more' };
  }
  const len = buf.readInt32BE(0);
  if (len < MIN_PACKET_BYTES) return lengthError(`invalid length of startup packet (${len} bytes; the minimum is ${MIN_PACKET_BYTES})`);
  if (len > max) return lengthError(`invalid length of startup packet (${len} bytes; the limit is ${max})`);
  if (buf.length < len) return { status: 'need-more' };
  const packet = buf.subarray(0, len);
  const code = packet.readUInt32BE(4);

  switch (code) {
    case RequestCode.SSL:
    case RequestCode.GSSENC:
      if (len !== MIN_PACKET_BYTES) return error(`${code === RequestCode.SSL ? 'SSLRequest' : 'GSSENCRequest'} must be 8 bytes, got ${len}`);
      return { status: 'ok', consumed: len, packet: { kind: code === RequestCode.SSL ? 'ssl-request' : 'gssenc-request' } };
    case RequestCode.Cancel: {
      const secretLen = len - 12;
      if (secretLen < MIN_CANCEL_SECRET_BYTES || secretLen > MAX_CANCEL_SECRET_BYTES) {
        return error(`CancelRequest secret key must be ${MIN_CANCEL_SECRET_BYTES}..${MAX_CANCEL_SECRET_BYTES} bytes, got ${Math.max(secretLen, 0)}`);
      }
      // Copy: the caller may reuse its buffer, and the key outlives this call.
      const secretKey = Buffer.from(packet.subarray(12));
      return { status: 'ok', consumed: len, packet: { kind: 'cancel', processId: packet.readUInt32BE(8), secretKey } };
    }
  }

  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major === REQUEST_CODE_MAJOR) return error(`unsupported request code ${major}.${minor}`);
  if (major !== PROTOCOL_MAJOR) return error(`unsupported frontend protocol ${major}.${minor}: only protocol 3.x is supported`);

  const params = parseParams(packet, 8);
  if (typeof params === 'string') return error(params);
  if (!params.get('user')) return error('no PostgreSQL user name specified in startup packet');
  return { status: 'ok', consumed: len, packet: { kind: 'startup', protocolMajor: 3, protocolMinor: minor, params } };
}

/** name\0value\0 ... \0, the terminator being the packet's last byte. Returns a message on error. */
function parseParams(packet: Buffer, start: number): Map<string, string> | string {
  const params = new Map<string, string>();
  let at = start;
  for (;;) {
    if (at >= packet.length) return 'invalid startup packet layout: expected terminator as last byte';
    const nameEnd = packet.indexOf(0, at);
    if (nameEnd < 0) return 'invalid startup packet layout: parameter name without terminator';
    if (nameEnd === at) {
      if (at !== packet.length - 1) return 'invalid startup packet layout: expected terminator as last byte';
      return params;
    }
    const valueEnd = packet.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) return 'invalid startup packet layout: parameter value without terminator';
    const nameBytes = packet.subarray(at, nameEnd);
    const valueBytes = packet.subarray(nameEnd + 1, valueEnd);
    if (!isUtf8(nameBytes) || !isUtf8(valueBytes)) return 'invalid startup packet: parameter is not valid UTF-8';
    const name = nameBytes.toString('utf8');
    if (params.has(name)) return `invalid startup packet: parameter "${printable(name)}" given twice`;
    params.set(name, valueBytes.toString('utf8'));
    at = valueEnd + 1;
  }
}

/** Client-chosen names end up in error messages and logs: keep them short and visible. */
function printable(s: string): string {
  const t = s.replace(/[\x00-\x1f\x7f]/g, '?');
  return t.length > 64 ? `${t.slice(0, 64)}...` : t;
}
