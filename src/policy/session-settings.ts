// One set of rules for every way a client sets a PostgreSQL setting: startup-packet parameters,
// `-c name=value` in the `options` startup parameter, SET / SET LOCAL / SET NAMES / SET TIME ZONE
// / RESET statements and set_config() calls all ask settingRefusal(). A setting the gateway
// refuses one way must not be reachable another way (issue #16: `options` set what SET could not).
//
// Read sessions may change only settings that shape how their reads run (fail closed: anything
// not listed is refused). Some settings change how PostgreSQL *lexes* the bytes the gateway has
// already parsed (client_encoding, standard_conforming_strings, backslash_quote): a value other
// than the gateway's own reading would let PostgreSQL see a different statement than the one
// that was checked, so those are refused whatever the access level allows elsewhere.

export type SessionAccess = 'read' | 'write' | 'admin';
export type SettingSource = 'startup' | 'options' | 'SET' | 'set_config';

export interface SettingRefusal {
  /** 42501 (insufficient_privilege) for policy refusals, 0A000 (feature_not_supported) for protocol features. */
  sqlstate: string;
  /** A sentence naming the setting and why, e.g. `SET log_statement is not allowed: ...`. */
  message: string;
  /** The same as a phrase that completes "... is not allowed", for statement refusals. */
  reason: string;
}

const INSUFFICIENT_PRIVILEGE = '42501';
const FEATURE_NOT_SUPPORTED = '0A000';

/**
 * Settings (lower case, as PostgreSQL folds names) a read session may change: all PGC_USERSET in
 * PostgreSQL 15, and all only shape how reads run (planner, output format, locale display,
 * timeouts, memory for sorts and hashes). The test suite checks each against a real PG 15.
 */
export const READ_SAFE_SETTINGS: ReadonlySet<string> = new Set([
  // who is asking / search
  'application_name',
  'search_path',
  'row_security', // off only makes a query that RLS would filter fail; it never lifts RLS
  // timeouts
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'idle_session_timeout',
  'client_connection_check_interval',
  // output and input formats, locale display
  'client_min_messages',
  'datestyle',
  'intervalstyle',
  'timezone',
  'timezone_abbreviations',
  'extra_float_digits',
  'bytea_output',
  'xmlbinary',
  'xmloption',
  'lc_monetary',
  'lc_numeric',
  'lc_time',
  'default_text_search_config',
  'array_nulls',
  'quote_all_identifiers',
  'transform_null_equals',
  // Only adds warnings about backslashes in ordinary strings; never changes how they lex.
  'escape_string_warning',
  // transactions (read only is enforced separately, below)
  'default_transaction_isolation',
  'default_transaction_deferrable',
  'transaction_isolation',
  'transaction_deferrable',
  // memory for a query's own sorts, hashes and temp tables
  'work_mem',
  'hash_mem_multiplier',
  'maintenance_work_mem',
  'temp_buffers',
  // planner
  'seq_page_cost',
  'random_page_cost',
  'cpu_tuple_cost',
  'cpu_index_tuple_cost',
  'cpu_operator_cost',
  'parallel_setup_cost',
  'parallel_tuple_cost',
  'effective_cache_size',
  'effective_io_concurrency',
  'maintenance_io_concurrency',
  'min_parallel_table_scan_size',
  'min_parallel_index_scan_size',
  'max_parallel_workers_per_gather',
  'max_parallel_workers',
  'parallel_leader_participation',
  'force_parallel_mode',
  'cursor_tuple_fraction',
  'constraint_exclusion',
  'from_collapse_limit',
  'join_collapse_limit',
  'recursive_worktable_factor',
  'plan_cache_mode',
  'default_statistics_target',
  'synchronize_seqscans',
  'gin_fuzzy_search_limit',
  'geqo',
  'geqo_threshold',
  'geqo_effort',
  'geqo_pool_size',
  'geqo_generations',
  'geqo_selection_bias',
  'geqo_seed',
  'jit',
  'jit_above_cost',
  'jit_inline_above_cost',
  'jit_optimize_above_cost',
  'jit_expressions',
  'jit_tuple_deforming',
  // pgvector query-time knobs (an extension's dotted names, listed one by one)
  'ivfflat.probes',
  'ivfflat.iterative_scan',
  'ivfflat.max_probes',
  'hnsw.ef_search',
  'hnsw.iterative_scan',
  'hnsw.max_scan_tuples',
  'hnsw.scan_mem_multiplier',
]);

/**
 * Names from PostgreSQL versions after 15 that are as harmless as their listed peers
 * (debug_parallel_query is PG 16's name for force_parallel_mode).
 */
export const READ_SAFE_SETTINGS_LATER_VERSIONS: ReadonlySet<string> = new Set(['debug_parallel_query']);

/** Planner switches (enable_seqscan, enable_indexscan, ...): built-in names only, never dotted. */
const READ_SAFE_SETTING_PREFIXES: readonly string[] = ['enable_'];

/**
 * Settings that would lift the read-only guarantee or make PostgreSQL read statement bytes
 * differently from the gateway. Each maps to why, in a user's terms.
 */
const ESCAPE_HATCHES: Readonly<Record<string, string>> = {
  role: 'the gateway chooses the role a session runs as',
  session_authorization: 'the gateway chooses the role a session runs as',
  default_transaction_read_only: 'read sessions run with default_transaction_read_only on; only on is accepted',
  transaction_read_only: 'read sessions run read-only transactions; only on is accepted',
  session_replication_role: 'it turns off triggers and foreign-key enforcement',
  standard_conforming_strings:
    "the gateway reads statements with standard_conforming_strings on; with it off a backslash in '...' would let PostgreSQL see a different statement",
  backslash_quote: 'it changes how PostgreSQL reads quotes in string literals, which the gateway must read the same way',
  client_encoding:
    'in this client encoding a quote or backslash byte can sit inside a multibyte character, so the gateway cannot read statements exactly as PostgreSQL does; use UTF8',
};

/** Names a read session may never set; exported so the classifier can rank these refusals as admin. */
export const READ_ESCAPE_HATCH_SETTINGS: ReadonlySet<string> = new Set(Object.keys(ESCAPE_HATCHES));

/** Refused at startup (packet or options) for every access level, with SQLSTATE and why. */
const NEVER_AT_STARTUP: Readonly<Record<string, readonly [string, string]>> = {
  role: [INSUFFICIENT_PRIVILEGE, 'the gateway chooses the role a session runs as'],
  session_authorization: [INSUFFICIENT_PRIVILEGE, 'the gateway chooses the role a session runs as'],
  replication: [FEATURE_NOT_SUPPORTED, 'replication connections are not supported through the gateway'],
  local_preload_libraries: [INSUFFICIENT_PRIVILEGE, 'it loads server code at connection start'],
  session_preload_libraries: [INSUFFICIENT_PRIVILEGE, 'it loads server code at connection start'],
};

/** Startup parameters named `_pq_.*` are protocol extensions (NegotiateProtocolVersion). */
const PROTOCOL_EXTENSION_PREFIX = '_pq_.';

/**
 * Whether a client may set `name` to `value` (null: DEFAULT / RESET, which return to the
 * session's start values, which the gateway chose) with the given access, or why not.
 * `name` is a setting: the startup packet's `user` and `database` are not settings, and its
 * `options` goes through parseStartupOptions() first, each setting then through here.
 *
 * @example
 *   settingRefusal('client_encoding', 'SJIS', 'read', 'startup');
 *   // { sqlstate: '42501', message: 'startup parameter client_encoding=SJIS is not allowed: ...', reason: ... }
 *   settingRefusal('statement_timeout', '5s', 'read', 'SET'); // null
 */
export function settingRefusal(name: string, value: string | null, access: SessionAccess, source: SettingSource): SettingRefusal | null {
  const key = name.toLowerCase();
  if (source === 'startup' || source === 'options') {
    const never = NEVER_AT_STARTUP[key];
    if (never) return refusal(never[0], subject(name, value, source), never[1]);
    if (key.startsWith(PROTOCOL_EXTENSION_PREFIX)) {
      return refusal(FEATURE_NOT_SUPPORTED, subject(name, value, source), 'protocol extensions are not supported; the gateway speaks protocol 3.0');
    }
  }
  // Write and admin sessions are not inspected: their statements may do anything anyway.
  if (access !== 'read') return null;
  const why = readRefusalWhy(key, value);
  return why === null ? null : refusal(INSUFFICIENT_PRIVILEGE, subject(name, value, source), why);
}

function readRefusalWhy(key: string, value: string | null): string | null {
  switch (key) {
    case 'default_transaction_read_only':
      // RESET returns to the session's start value, which the gateway set to on.
      if (value === null || parseBool(value) === true) return null;
      return ESCAPE_HATCHES[key]!;
    case 'transaction_read_only':
      // Not null: in PostgreSQL 15, RESET transaction_read_only inside a read-only transaction
      // resets it to off (its boot value), making the transaction read-write.
      return value !== null && parseBool(value) === true ? null : ESCAPE_HATCHES[key]!;
    case 'standard_conforming_strings':
      return value === null || parseBool(value) === true ? null : ESCAPE_HATCHES[key]!;
    case 'client_encoding':
      return value === null || isReadableClientEncoding(value) ? null : ESCAPE_HATCHES[key]!;
  }
  const hatch = ESCAPE_HATCHES[key];
  if (hatch !== undefined) {
    // RESET ROLE, SET ROLE NONE (the parser's folded keyword; a quoted 'NONE' is a role name)
    // and SET SESSION AUTHORIZATION DEFAULT return to the role the gateway chose.
    if (key === 'role' && (value === null || value === 'none')) return null;
    return value === null && key === 'session_authorization' ? null : hatch;
  }
  // RESET of anything else returns to the value the session started with.
  if (value === null) return null;
  if (READ_SAFE_SETTINGS.has(key) || READ_SAFE_SETTINGS_LATER_VERSIONS.has(key)) return null;
  if (!key.includes('.') && READ_SAFE_SETTING_PREFIXES.some((p) => key.startsWith(p))) return null;
  // Custom (dotted) settings are refused: row-level security policies often read
  // current_setting('app.tenant_id'), so setting one could show a read session other rows.
  if (key.includes('.')) return 'custom settings can steer row-level security policies and functions; a read session may change only settings that shape how reads run';
  return 'a read session may change only settings that shape how reads run';
}

function subject(name: string, value: string | null, source: SettingSource): string {
  const v = value === null ? '' : `=${value}`;
  switch (source) {
    case 'startup':
      return `startup parameter ${name}${v}`;
    case 'options':
      return `"-c ${name}${v}" in the options startup parameter`;
    case 'set_config':
      return `set_config('${name}', ${value === null ? 'NULL' : `'${value}'`})`;
    case 'SET': {
      const key = name.toLowerCase();
      if (key === 'role') return value === null ? 'RESET ROLE' : 'SET ROLE';
      if (key === 'session_authorization') return 'SET SESSION AUTHORIZATION';
      return value === null ? `RESET ${name}` : `SET ${name} = ${value}`;
    }
  }
}

function refusal(sqlstate: string, what: string, why: string): SettingRefusal {
  return { sqlstate, message: `${what} is not allowed: ${why}`, reason: `${what} (${why})` };
}

/**
 * PostgreSQL's parse_bool() (src/backend/utils/adt/bool.c), as GUCs read booleans: on/off,
 * and case-insensitive unique prefixes of true/false/yes/no, 1/0. No whitespace trimming.
 * Returns undefined for anything else.
 */
export function parseBool(value: string): boolean | undefined {
  const v = value.toLowerCase();
  if (v.length === 0) return undefined;
  switch (v[0]) {
    case 't':
      return 'true'.startsWith(v) ? true : undefined;
    case 'f':
      return 'false'.startsWith(v) ? false : undefined;
    case 'y':
      return 'yes'.startsWith(v) ? true : undefined;
    case 'n':
      return 'no'.startsWith(v) ? false : undefined;
    case 'o':
      // "o" alone is ambiguous (on/off): PostgreSQL compares at least two characters.
      if (v === 'on') return true;
      if (v.length >= 2 && 'off'.startsWith(v)) return false;
      return undefined;
    case '1':
      return v.length === 1 ? true : undefined;
    case '0':
      return v.length === 1 ? false : undefined;
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Client encodings

/**
 * Encoding names (as clean_encoding_name() leaves them) for encodings in which every byte of a
 * multibyte character is >= 0x80, so an ASCII quote or backslash is always itself: the
 * gateway's UTF-8 view lexes statements as PostgreSQL does. Aliases from src/common/encnames.c.
 * Not here, on purpose (client-only encodings whose trailing bytes can be 0x27 or 0x5c):
 * SJIS (mskanji, shiftjis, win932, windows932), SHIFT_JIS_2004, BIG5 (win950, windows950),
 * GBK (win936, windows936), UHC (win949, windows949), GB18030, JOHAB.
 */
const READABLE_ENCODING_NAMES: ReadonlySet<string> = new Set([
  'utf8', 'unicode',
  'sqlascii',
  'eucjp', 'euccn', 'euckr', 'euctw', 'eucjis2004',
  'muleinternal',
  'latin1', 'iso88591',
  'latin2', 'iso88592',
  'latin3', 'iso88593',
  'latin4', 'iso88594',
  'latin5', 'iso88599',
  'latin6', 'iso885910',
  'latin7', 'iso885913',
  'latin8', 'iso885914',
  'latin9', 'iso885915',
  'latin10', 'iso885916',
  'iso88595', 'iso88596', 'iso88597', 'iso88598',
  'win1250', 'windows1250',
  'win1251', 'windows1251', 'win',
  'win1252', 'windows1252',
  'win1253', 'windows1253',
  'win1254', 'windows1254',
  'win1255', 'windows1255',
  'win1256', 'windows1256',
  'win1257', 'windows1257',
  'win1258', 'windows1258', 'abc', 'tcvn', 'tcvn5712', 'vscii',
  'win866', 'windows866', 'alt',
  'win874', 'windows874',
  'koi8r', 'koi8',
  'koi8u',
]);

/** PostgreSQL's NAMEDATALEN: a longer encoding name is never valid. */
const NAMEDATALEN = 64;

/**
 * True when `value` names (as PostgreSQL normalizes it: ASCII letters and digits only, lower
 * case) a client encoding the gateway reads exactly. Fail closed: unknown names, non-ASCII
 * names and client-only multibyte encodings are false.
 */
export function isReadableClientEncoding(value: string): boolean {
  if (value.length === 0 || value.length >= NAMEDATALEN) return false;
  // isalnum() in PostgreSQL's locale may accept non-ASCII letters: refuse those outright.
  if (!/^[\x01-\x7f]*$/.test(value)) return false;
  const clean = value.replace(/[^A-Za-z0-9]/g, '').toLowerCase();
  return READABLE_ENCODING_NAMES.has(clean);
}

// ---------------------------------------------------------------------------------------------
// The `options` startup parameter

export type StartupOptions = { ok: true; settings: Array<[string, string]> } | { ok: false; message: string };

/**
 * Reads the `options` startup parameter as the backend does: pg_split_opts() (split on
 * whitespace; a backslash takes the next character literally), then the switches the gateway
 * accepts: `-c name=value`, `-cname=value` and `--name=value` (dashes in the name become
 * underscores, like ParseLongOption). Any other switch or word is refused, naming it.
 *
 * @example
 *   parseStartupOptions('-c statement_timeout=5s --search-path=app');
 *   // { ok: true, settings: [['statement_timeout', '5s'], ['search_path', 'app']] }
 */
export function parseStartupOptions(options: string): StartupOptions {
  const argv = splitOptions(options);
  const settings: Array<[string, string]> = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    let setting: string;
    let spelled: string;
    if (arg === '-c') {
      if (i + 1 >= argv.length) return { ok: false, message: 'options: -c requires a setting (-c name=value)' };
      setting = argv[++i]!;
      spelled = `-c ${setting}`;
    } else if (arg.startsWith('-c')) {
      setting = arg.slice(2);
      spelled = arg;
    } else if (arg.startsWith('--') && arg.length > 2) {
      setting = arg.slice(2);
      spelled = arg;
    } else if (arg === '--') {
      // getopt's end of switches: PostgreSQL then refuses any word that follows.
      if (i + 1 < argv.length) return { ok: false, message: `options: invalid command-line argument "${argv[i + 1]}"; only -c name=value is accepted` };
      break;
    } else if (arg.startsWith('-')) {
      return { ok: false, message: `options: switch "${arg}" is not accepted by the gateway; only -c name=value is` };
    } else {
      return { ok: false, message: `options: invalid command-line argument "${arg}"; only -c name=value is accepted` };
    }
    const eq = setting.indexOf('=');
    if (eq < 0) return { ok: false, message: `options: ${spelled} requires a value (-c name=value)` };
    const name = setting.slice(0, eq).replace(/-/g, '_');
    if (name.length === 0) return { ok: false, message: `options: ${spelled} has no setting name (-c name=value)` };
    settings.push([name, setting.slice(eq + 1)]);
  }
  return { ok: true, settings };
}

/** pg_split_opts(): C-locale isspace separates; a backslash escapes the next character. */
function splitOptions(options: string): string[] {
  const out: string[] = [];
  let i = 0;
  const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
  while (i < options.length) {
    while (i < options.length && isSpace(options[i]!)) i++;
    if (i >= options.length) break;
    let word = '';
    let escaped = false;
    while (i < options.length) {
      const c = options[i]!;
      if (isSpace(c) && !escaped) break;
      if (!escaped && c === '\\') escaped = true;
      else {
        escaped = false;
        word += c;
      }
      i++;
    }
    out.push(word);
  }
  return out;
}
