// The startup parameters the gateway sends upstream for a client's StartupMessage: every
// setting the client asked for (the `options` string's `-c name=value` switches included)
// goes through the same rules as SET and set_config() (src/policy/session-settings.ts), and is
// either forwarded or refused by name: never dropped. Read sessions also get PostgreSQL's own
// read-only mode as a second lock, and the string syntax the statement check reads by.
import { parseStartupOptions, settingRefusal, type SessionAccess } from '../../src/policy/session-settings.js';

/** Set by the gateway itself (user, database) or expanded (options): never forwarded as given. */
const GATEWAY_OWNED = new Set(['user', 'database', 'options']);

/**
 * Settings a read session always starts with: a write the statement check misses (a
 * user-defined function that writes) still fails in PostgreSQL with 25006, and string
 * literals are lexed as the gateway's parser lexes them. Changing either is refused.
 */
export const READ_SESSION_SETTINGS: ReadonlyMap<string, string> = new Map([
  ['default_transaction_read_only', 'on'],
  ['standard_conforming_strings', 'on'],
]);

export type UpstreamStartup =
  | { ok: true; params: Map<string, string> }
  | { ok: false; sqlstate: string; message: string };

/**
 * The upstream StartupMessage's parameters (without user and database) for a client's.
 *
 * @example
 *   upstreamStartupParameters(new Map([['user', 'me'], ['options', '-c statement_timeout=5s']]), 'read');
 *   // { ok: true, params: Map { statement_timeout => '5s', default_transaction_read_only => 'on', ... } }
 */
export function upstreamStartupParameters(client: ReadonlyMap<string, string>, access: SessionAccess): UpstreamStartup {
  const params = new Map<string, string>();
  const take = (name: string, value: string, source: 'startup' | 'options'): UpstreamStartup | null => {
    const refusal = settingRefusal(name, value, access, source);
    if (refusal) return { ok: false, sqlstate: refusal.sqlstate, message: refusal.message };
    params.set(name, value);
    return null;
  };
  for (const [name, value] of client) {
    if (GATEWAY_OWNED.has(name)) continue;
    const refused = take(name, value, 'startup');
    if (refused) return refused;
  }
  const options = client.get('options');
  if (options !== undefined && options.trim() !== '') {
    const parsed = parseStartupOptions(options);
    if (!parsed.ok) return { ok: false, sqlstate: '22023', message: `invalid startup options: ${parsed.message}` };
    for (const [name, value] of parsed.settings) {
      const refused = take(name, value, 'options');
      if (refused) return refused;
    }
  }
  if (access === 'read') {
    for (const [name, value] of READ_SESSION_SETTINGS) {
      for (const key of params.keys()) if (key.toLowerCase() === name) params.delete(key);
      params.set(name, value);
    }
  }
  return { ok: true, params };
}
