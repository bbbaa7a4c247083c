// Decodes the backend messages the gateway meets while setting up an upstream session
// (Authentication*, ParameterStatus, BackendKeyData, ReadyForQuery, ErrorResponse,
// NoticeResponse, NegotiateProtocolVersion), and the client's PasswordMessage. Input comes
// from MessageReader, which has already capped the length; every field inside is checked
// against the body's bounds and a failure is returned as `{kind: 'error', source: 'parser'}`.
import { isUtf8 } from 'node:buffer';
import {
  AuthCode,
  BackendCode,
  MAX_CANCEL_SECRET_BYTES,
  MIN_CANCEL_SECRET_BYTES,
  type BackendMessage,
  type ParseFailure,
  type PasswordParse,
  type ResponseFields,
} from './messages.js';

/** Caps on counts the peer chooses, independent of the byte cap. */
export const MAX_SASL_MECHANISMS = 16;
export const MAX_RESPONSE_FIELDS = 32;
export const MAX_UNRECOGNIZED_PROTOCOL_OPTIONS = 64;

function fail(message: string): ParseFailure {
  return { kind: 'error', source: 'parser', message };
}

/**
 * A NUL-terminated UTF-8 string at `at`, or null when the terminator (or, unless `lenient`,
 * valid UTF-8) is missing.
 */
function cstring(body: Buffer, at: number, lenient = false): { value: string; next: number } | null {
  if (at >= body.length) return null;
  const end = body.indexOf(0, at);
  if (end < 0) return null;
  const bytes = body.subarray(at, end);
  if (!lenient && !isUtf8(bytes)) return null;
  return { value: bytes.toString('utf8'), next: end + 1 };
}

function typeName(type: number): string {
  const ch = type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}'` : 'non-printable';
  return `0x${type.toString(16).padStart(2, '0')} (${ch})`;
}

/**
 * Decodes one backend message from MessageReader's (type, body).
 *
 * @example
 * const m = reader.next();
 * if (m.status === 'ok') {
 *   const msg = parseBackendMessage(m.type, m.body);
 *   if (msg.kind === 'auth' && msg.type === 'sasl') startScram(msg.mechanisms);
 * }
 */
export function parseBackendMessage(type: number, body: Buffer): BackendMessage {
  switch (type) {
    case BackendCode.Authentication:
      return parseAuthentication(body);
    case BackendCode.ParameterStatus: {
      const name = cstring(body, 0);
      const value = name && cstring(body, name.next);
      if (!name || !value) return fail('malformed ParameterStatus: missing terminator or invalid UTF-8');
      if (value.next !== body.length) return fail('malformed ParameterStatus: trailing bytes');
      return { kind: 'parameter-status', name: name.value, value: value.value };
    }
    case BackendCode.BackendKeyData: {
      const secretLen = body.length - 4;
      if (secretLen < MIN_CANCEL_SECRET_BYTES || secretLen > MAX_CANCEL_SECRET_BYTES) {
        return fail(`malformed BackendKeyData: secret key must be ${MIN_CANCEL_SECRET_BYTES}..${MAX_CANCEL_SECRET_BYTES} bytes, got ${Math.max(secretLen, 0)}`);
      }
      return { kind: 'backend-key', processId: body.readUInt32BE(0), secretKey: Buffer.from(body.subarray(4)) };
    }
    case BackendCode.ReadyForQuery: {
      if (body.length !== 1) return fail(`malformed ReadyForQuery: body of ${body.length} bytes, expected 1`);
      const s = String.fromCharCode(body[0]!);
      if (s !== 'I' && s !== 'T' && s !== 'E') return fail(`malformed ReadyForQuery: unknown transaction status 0x${body[0]!.toString(16)}`);
      return { kind: 'ready-for-query', status: s };
    }
    case BackendCode.ErrorResponse:
    case BackendCode.NoticeResponse: {
      const what = type === BackendCode.ErrorResponse ? 'ErrorResponse' : 'NoticeResponse';
      const fields = parseFields(body);
      if (typeof fields === 'string') return fail(`malformed ${what}: ${fields}`);
      if (type === BackendCode.NoticeResponse) return { kind: 'notice', fields };
      return { kind: 'error', source: 'server', fields, message: fields.get('M') ?? '' };
    }
    case BackendCode.NegotiateProtocolVersion: {
      if (body.length < 8) return fail('malformed NegotiateProtocolVersion: shorter than 8 bytes');
      const newest = body.readUInt32BE(0);
      const count = body.readUInt32BE(4);
      if (count > MAX_UNRECOGNIZED_PROTOCOL_OPTIONS) return fail(`malformed NegotiateProtocolVersion: ${count} options, the limit is ${MAX_UNRECOGNIZED_PROTOCOL_OPTIONS}`);
      const options: string[] = [];
      let at = 8;
      for (let i = 0; i < count; i++) {
        const o = cstring(body, at);
        if (!o) return fail('malformed NegotiateProtocolVersion: option without terminator or invalid UTF-8');
        options.push(o.value);
        at = o.next;
      }
      if (at !== body.length) return fail('malformed NegotiateProtocolVersion: trailing bytes');
      return { kind: 'negotiate-protocol', newestMinor: newest & 0xffff, unrecognizedOptions: options };
    }
    default:
      return fail(`unexpected backend message type ${typeName(type)} during setup`);
  }
}

function parseAuthentication(body: Buffer): BackendMessage {
  if (body.length < 4) return fail('malformed Authentication message: shorter than 4 bytes');
  const code = body.readInt32BE(0);
  const rest = body.subarray(4);
  const exact = (name: string, n: number): ParseFailure | null =>
    rest.length === n ? null : fail(`malformed ${name}: ${rest.length} bytes after the code, expected ${n}`);
  switch (code) {
    case AuthCode.Ok:
      return exact('AuthenticationOk', 0) ?? { kind: 'auth', type: 'ok' };
    case AuthCode.CleartextPassword:
      return exact('AuthenticationCleartextPassword', 0) ?? { kind: 'auth', type: 'cleartext' };
    case AuthCode.MD5Password:
      return exact('AuthenticationMD5Password', 4) ?? { kind: 'auth', type: 'md5', salt: Buffer.from(rest) };
    case AuthCode.SASL: {
      const mechanisms: string[] = [];
      let at = 0;
      for (;;) {
        if (at >= rest.length) return fail('malformed AuthenticationSASL: mechanism list without terminator');
        if (rest[at] === 0) {
          if (at !== rest.length - 1) return fail('malformed AuthenticationSASL: trailing bytes');
          break;
        }
        if (mechanisms.length >= MAX_SASL_MECHANISMS) return fail(`malformed AuthenticationSASL: more than ${MAX_SASL_MECHANISMS} mechanisms`);
        const m = cstring(rest, at);
        if (!m) return fail('malformed AuthenticationSASL: mechanism without terminator or invalid UTF-8');
        mechanisms.push(m.value);
        at = m.next;
      }
      if (mechanisms.length === 0) return fail('malformed AuthenticationSASL: no mechanisms offered');
      return { kind: 'auth', type: 'sasl', mechanisms };
    }
    case AuthCode.SASLContinue:
      return { kind: 'auth', type: 'sasl-continue', data: Buffer.from(rest) };
    case AuthCode.SASLFinal:
      return { kind: 'auth', type: 'sasl-final', data: Buffer.from(rest) };
    case AuthCode.KerberosV5:
      return { kind: 'auth', type: 'kerberos-v5' };
    case AuthCode.SCMCredential:
      return { kind: 'auth', type: 'scm-credential' };
    case AuthCode.GSS:
      return { kind: 'auth', type: 'gss' };
    case AuthCode.GSSContinue:
      return { kind: 'auth', type: 'gss-continue' };
    case AuthCode.SSPI:
      return { kind: 'auth', type: 'sspi' };
    default:
      return fail(`unknown authentication request code ${code}`);
  }
}

/** code-byte, cstring, ..., terminated by a zero byte at the very end. Returns a message on error. */
function parseFields(body: Buffer): ResponseFields | string {
  const fields: ResponseFields = new Map();
  let at = 0;
  for (let count = 0; ; count++) {
    if (at >= body.length) return 'missing terminator';
    const code = body[at]!;
    if (code === 0) {
      if (at !== body.length - 1) return 'trailing bytes after the terminator';
      return fields;
    }
    if (count >= MAX_RESPONSE_FIELDS) return `more than ${MAX_RESPONSE_FIELDS} fields`;
    // Lenient UTF-8: a server may report startup errors in its own encoding before
    // client_encoding applies; the text is still worth showing (with replacement characters).
    const v = cstring(body, at + 1, true);
    if (!v) return `field ${String.fromCharCode(code)} without terminator`;
    // A repeated field replaces the earlier one, as libpq does.
    fields.set(String.fromCharCode(code), v.value);
    at = v.next;
  }
}

/**
 * Decodes a frontend PasswordMessage ('p') body: one NUL-terminated string filling the body.
 * (SASL responses share the type byte; read them as raw bytes instead.)
 */
export function parsePasswordMessage(body: Buffer): PasswordParse {
  const end = body.indexOf(0);
  if (end < 0) return fail('malformed password message: missing terminator');
  if (end !== body.length - 1) return fail('malformed password message: bytes after the terminator');
  const bytes = body.subarray(0, end);
  if (!isUtf8(bytes)) return fail('malformed password message: not valid UTF-8');
  return { kind: 'password', password: bytes.toString('utf8') };
}
