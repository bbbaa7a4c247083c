// Builders for the PostgreSQL messages the gateway writes during setup, toward clients
// (authentication requests, ParameterStatus, BackendKeyData, errors) and toward upstreams
// (StartupMessage, SSLRequest, CancelRequest, password and SASL responses).
// Arguments come from the gateway itself, so a bad one (a NUL inside a string, a secret
// of the wrong size) is a programmer error and throws.
import { BufferWriter } from './buffer-writer.js';
import {
  AuthCode,
  BackendCode,
  FrontendCode,
  MAX_CANCEL_SECRET_BYTES,
  MIN_CANCEL_SECRET_BYTES,
  PROTOCOL_3_0,
  RequestCode,
  type TransactionStatus,
} from './messages.js';

export function startupMessage(params: Map<string, string> | Record<string, string>): Buffer {
  const w = new BufferWriter().int32(PROTOCOL_3_0);
  const entries = params instanceof Map ? [...params] : Object.entries(params);
  for (const [k, v] of entries) {
    if (k === '') throw new RangeError('startup parameter names cannot be empty');
    w.cstring(k).cstring(v);
  }
  return w.byte(0).frame();
}

export function sslRequest(): Buffer {
  return new BufferWriter(8).int32(RequestCode.SSL).frame();
}

export function gssencRequest(): Buffer {
  return new BufferWriter(8).int32(RequestCode.GSSENC).frame();
}

function secretBytes(secret: Buffer | number): Buffer {
  if (typeof secret === 'number') {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(secret >>> 0);
    return b;
  }
  if (secret.length < MIN_CANCEL_SECRET_BYTES || secret.length > MAX_CANCEL_SECRET_BYTES) {
    throw new RangeError(`a cancel secret has ${MIN_CANCEL_SECRET_BYTES}..${MAX_CANCEL_SECRET_BYTES} bytes, got ${secret.length}`);
  }
  return secret;
}

/** `secret` as a number is the classic 4-byte key (protocol 3.0). */
export function cancelRequest(processId: number, secret: Buffer | number): Buffer {
  return new BufferWriter(16).int32(RequestCode.Cancel).int32(processId).bytes(secretBytes(secret)).frame();
}

export function passwordMessage(password: string): Buffer {
  return new BufferWriter().cstring(password).frame(FrontendCode.Password);
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return new BufferWriter().cstring(mechanism).int32(data.length).bytes(data).frame(FrontendCode.Password);
}

export function saslResponse(data: Buffer): Buffer {
  return new BufferWriter(data.length).bytes(data).frame(FrontendCode.Password);
}

/** A simple-protocol Query (the gateway's own statements: the reset before an upstream is reused). */
export function query(sql: string): Buffer {
  return new BufferWriter().cstring(sql).frame(FrontendCode.Query);
}

export function terminate(): Buffer {
  return new BufferWriter(0).frame(FrontendCode.Terminate);
}

export function authenticationOk(): Buffer {
  return new BufferWriter(4).int32(AuthCode.Ok).frame(BackendCode.Authentication);
}

export function authenticationCleartextPassword(): Buffer {
  return new BufferWriter(4).int32(AuthCode.CleartextPassword).frame(BackendCode.Authentication);
}

export function authenticationMD5Password(salt: Buffer): Buffer {
  if (salt.length !== 4) throw new RangeError('an MD5 salt has 4 bytes');
  return new BufferWriter(8).int32(AuthCode.MD5Password).bytes(salt).frame(BackendCode.Authentication);
}

export function authenticationSASL(mechanisms: string[]): Buffer {
  const w = new BufferWriter().int32(AuthCode.SASL);
  for (const m of mechanisms) {
    if (m === '') throw new RangeError('a SASL mechanism name cannot be empty');
    w.cstring(m);
  }
  return w.byte(0).frame(BackendCode.Authentication);
}

export function authenticationSASLContinue(data: Buffer): Buffer {
  return new BufferWriter().int32(AuthCode.SASLContinue).bytes(data).frame(BackendCode.Authentication);
}

export function authenticationSASLFinal(data: Buffer): Buffer {
  return new BufferWriter().int32(AuthCode.SASLFinal).bytes(data).frame(BackendCode.Authentication);
}

export function parameterStatus(name: string, value: string): Buffer {
  return new BufferWriter().cstring(name).cstring(value).frame(BackendCode.ParameterStatus);
}

/** `secret` as a number is the classic 4-byte key (protocol 3.0). */
export function backendKeyData(processId: number, secret: Buffer | number): Buffer {
  return new BufferWriter(12).int32(processId).bytes(secretBytes(secret)).frame(BackendCode.BackendKeyData);
}

export function readyForQuery(status: TransactionStatus | string = 'I'): Buffer {
  if (status !== 'I' && status !== 'T' && status !== 'E') throw new RangeError(`transaction status is I, T or E, got ${JSON.stringify(status)}`);
  return new BufferWriter(1).string(status).frame(BackendCode.ReadyForQuery);
}

export function negotiateProtocolVersion(newestMinor: number, unrecognizedOptions: string[] = []): Buffer {
  const w = new BufferWriter().int32(newestMinor).int32(unrecognizedOptions.length);
  for (const o of unrecognizedOptions) w.cstring(o);
  return w.frame(BackendCode.NegotiateProtocolVersion);
}

export interface ErrorFields {
  severity: 'FATAL' | 'ERROR' | 'PANIC';
  /** SQLSTATE, five characters, e.g. '28000'. */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

export interface NoticeFields {
  severity: 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

const SQLSTATE = /^[0-9A-Z]{5}$/;

function responseBody(f: ErrorFields | NoticeFields): BufferWriter {
  if (!SQLSTATE.test(f.code)) throw new RangeError(`SQLSTATE is five digits or capitals, got ${JSON.stringify(f.code)}`);
  // S is localized in real servers, V never is: clients (libpq >= 9.6) prefer V.
  const w = new BufferWriter().byte(0x53).cstring(f.severity).byte(0x56).cstring(f.severity);
  w.byte(0x43).cstring(f.code).byte(0x4d).cstring(f.message);
  if (f.detail !== undefined) w.byte(0x44).cstring(f.detail);
  if (f.hint !== undefined) w.byte(0x48).cstring(f.hint);
  return w.byte(0);
}

export function errorResponse(f: ErrorFields): Buffer {
  return responseBody(f).frame(BackendCode.ErrorResponse);
}

export function noticeResponse(f: NoticeFields): Buffer {
  return responseBody(f).frame(BackendCode.NoticeResponse);
}
