// Typed errors with stable codes. Errors that cross threads lose their class, so callers
// switch on `code`; messages say what happened and what to do, in the user's terms.

export type VgErrorCode =
  // configuration and start-up
  | 'ERR_VG_CONFIG'
  | 'ERR_VG_TLS_FILES'
  | 'ERR_VG_LISTEN'
  | 'ERR_VG_NATIVE_MISSING'
  | 'ERR_VG_USAGE'
  // identity
  | 'ERR_VG_TOKEN_MISSING'
  | 'ERR_VG_TOKEN_MALFORMED'
  | 'ERR_VG_TOKEN_EXPIRED'
  | 'ERR_VG_TOKEN_NOT_YET_VALID'
  | 'ERR_VG_TOKEN_MISSING_EXP'
  | 'ERR_VG_TOKEN_ISSUER_UNTRUSTED'
  | 'ERR_VG_TOKEN_AUDIENCE'
  | 'ERR_VG_TOKEN_SIGNATURE'
  | 'ERR_VG_TOKEN_ALG_NOT_ALLOWED'
  | 'ERR_VG_TOKEN_KID_UNKNOWN'
  | 'ERR_VG_TOKEN_NOT_ACCESS_TOKEN'
  | 'ERR_VG_JWKS_UNAVAILABLE'
  | 'ERR_VG_LOGIN'
  // policy
  | 'ERR_VG_ACCESS_DENIED'
  // upstream
  | 'ERR_VG_UPSTREAM_CONNECT'
  | 'ERR_VG_UPSTREAM_TLS'
  | 'ERR_VG_UPSTREAM_AUTH'
  | 'ERR_VG_UPSTREAM_PROTOCOL'
  | 'ERR_VG_UPSTREAM_TIMEOUT'
  // HTTP data path
  | 'ERR_VG_HTTP_BAD_REQUEST'
  | 'ERR_VG_HTTP_BODY_TOO_LARGE'
  | 'ERR_VG_HTTP_HEADERS_TOO_LARGE'
  | 'ERR_VG_HTTP_UNSUPPORTED'
  // recordings
  | 'ERR_VG_RECORDING'
  // the admin endpoint, as CLI commands reach it
  | 'ERR_VG_ADMIN_UNREACHABLE'
  | 'ERR_VG_ADMIN_ANSWER';

export class VgError extends Error {
  readonly code: VgErrorCode;
  /** Detail for operators' logs only: never sent to clients. */
  readonly operatorDetail: string | undefined;

  constructor(code: VgErrorCode, message: string, options?: { cause?: unknown; operatorDetail?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'VgError';
    this.code = code;
    this.operatorDetail = options?.operatorDetail;
  }
}

export function isVgError(err: unknown): err is VgError {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' && String((err as { code: string }).code).startsWith('ERR_VG_');
}
