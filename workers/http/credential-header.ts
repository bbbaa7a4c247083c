// The upstream credential of an HTTP connection as the header the gateway injects. The primary
// resolves it from its current config with every authorization decision (AuthGranted.
// upstreamHeader), the same path PostgreSQL credentials take: a reload (SIGHUP, a rotated
// `file:` secret) reaches workers with the next decision. Workers never read credentials
// from their own copy of the config, which is sent to them without any.
import type { HttpConnectionConfig } from '../../src/config/types.js';
import { UNSENDABLE_FIELD_VALUE } from './request-framing.js';

export interface CredentialHeader {
  /** Lower-case header name. */
  name: string;
  value: string;
}

/**
 * The header for a connection's `credentials` block, or null when it has none.
 *
 * @example
 * credentialHeader({ header: 'api-key', value: 's3cret' }); // { name: 'api-key', value: 's3cret' }
 * credentialHeader({ bearer: 'tok' }); // { name: 'authorization', value: 'Bearer tok' }
 */
export function credentialHeader(c: HttpConnectionConfig['credentials']): CredentialHeader | null {
  if (c === null) return null;
  if ('header' in c) return { name: c.header.toLowerCase(), value: c.value };
  if ('bearer' in c) return { name: 'authorization', value: `Bearer ${c.bearer}` };
  return { name: 'authorization', value: `Basic ${Buffer.from(`${c.basic.user}:${c.basic.password}`).toString('base64')}` };
}

/** Why a connection's credential cannot be sent as a header (a line break from a `file:` secret?), or null when it can. */
export function unsendableCredential(cfg: HttpConnectionConfig): string | null {
  const h = credentialHeader(cfg.credentials);
  if (h === null || !UNSENDABLE_FIELD_VALUE.test(h.value)) return null;
  return `connections.${cfg.name}.credentials: the value has a control character (a line break?) and cannot be sent as an HTTP header`;
}
