// PostgreSQL wire-protocol codes and the shapes of the setup-phase messages the gateway's
// JavaScript reads and writes (protocol 3.x). The native pump has its own C++ framing; this
// file covers only what JavaScript sees before `pump()` takes over.

/** Type bytes of backend (server -> client) messages seen during setup. */
export const enum BackendCode {
  Authentication = 0x52, // 'R'
  ParameterStatus = 0x53, // 'S'
  BackendKeyData = 0x4b, // 'K'
  ReadyForQuery = 0x5a, // 'Z'
  ErrorResponse = 0x45, // 'E'
  NoticeResponse = 0x4e, // 'N'
  NegotiateProtocolVersion = 0x76, // 'v'
}

/** Type bytes of frontend (client -> server) messages the gateway writes or reads during setup. */
export const enum FrontendCode {
  /** PasswordMessage, SASLInitialResponse and SASLResponse all share 'p'. */
  Password = 0x70, // 'p'
  Terminate = 0x58, // 'X'
  Query = 0x51, // 'Q'
}

/** The int32 after 'R' in an Authentication* message. */
export const enum AuthCode {
  Ok = 0,
  KerberosV5 = 2,
  CleartextPassword = 3,
  MD5Password = 5,
  SCMCredential = 6,
  GSS = 7,
  GSSContinue = 8,
  SSPI = 9,
  SASL = 10,
  SASLContinue = 11,
  SASLFinal = 12,
}

/** Request codes of untyped first packets (in the place of the protocol version). */
export const enum RequestCode {
  Cancel = 80877102, // 1234 << 16 | 5678
  SSL = 80877103, // 1234 << 16 | 5679
  GSSENC = 80877104, // 1234 << 16 | 5680
}

/** Protocol 3.0 as sent in a StartupMessage: major << 16 | minor. */
export const PROTOCOL_3_0 = 196608;

/** First byte of a TLS record carrying a handshake (ClientHello): PG 17 direct TLS. */
export const TLS_HANDSHAKE_RECORD_BYTE = 0x16;

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH: largest first packet, length field included. */
export const DEFAULT_MAX_STARTUP_PACKET_BYTES = 10000;

/** Cancel secrets: 4 bytes up to protocol 3.1; PG 18 (protocol 3.2) allows up to 256. */
export const MIN_CANCEL_SECRET_BYTES = 4;
export const MAX_CANCEL_SECRET_BYTES = 256;

/** Transaction status byte carried by ReadyForQuery. */
export type TransactionStatus = 'I' | 'T' | 'E';

/** Fields of ErrorResponse / NoticeResponse, keyed by their one-letter code (S, V, C, M, D, H, ...). */
export type ResponseFields = Map<string, string>;

export type AuthMessage =
  | { kind: 'auth'; type: 'ok' }
  | { kind: 'auth'; type: 'cleartext' }
  | { kind: 'auth'; type: 'md5'; salt: Buffer }
  | { kind: 'auth'; type: 'sasl'; mechanisms: string[] }
  | { kind: 'auth'; type: 'sasl-continue'; data: Buffer }
  | { kind: 'auth'; type: 'sasl-final'; data: Buffer }
  /** Known methods the gateway does not implement; callers refuse them by name. */
  | { kind: 'auth'; type: 'kerberos-v5' | 'scm-credential' | 'gss' | 'gss-continue' | 'sspi' };

/**
 * ErrorResponse from the server. It shares `kind: 'error'` with a parse failure because both
 * end the setup; `source` (or the presence of `fields`) tells them apart.
 */
export interface ServerErrorMessage {
  kind: 'error';
  source: 'server';
  fields: ResponseFields;
  /** The M field (primary human-readable message), '' if absent. */
  message: string;
}

/** Bytes that do not form a message we understand. */
export interface ParseFailure {
  kind: 'error';
  source: 'parser';
  message: string;
}

export type BackendMessage =
  | AuthMessage
  | { kind: 'parameter-status'; name: string; value: string }
  | { kind: 'backend-key'; processId: number; secretKey: Buffer }
  | { kind: 'ready-for-query'; status: TransactionStatus }
  | { kind: 'notice'; fields: ResponseFields }
  | { kind: 'negotiate-protocol'; newestMinor: number; unrecognizedOptions: string[] }
  | ServerErrorMessage
  | ParseFailure;

export type PasswordParse = { kind: 'password'; password: string } | ParseFailure;

/** What a client may send as its first packet (or first packet after TLS). */
export type StartupPacket =
  | { kind: 'ssl-request' }
  | { kind: 'gssenc-request' }
  | { kind: 'cancel'; processId: number; secretKey: Buffer }
  | { kind: 'startup'; protocolMajor: 3; protocolMinor: number; params: Map<string, string> }
  /** A TLS ClientHello (PG 17 direct TLS); nothing is consumed, the bytes belong to TLS. */
  | { kind: 'direct-tls' };
