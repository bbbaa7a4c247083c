// The named denylist of PostgreSQL functions that write, take locks, or escape a read-only
// session (server files, other backends, other connections, settings, dynamic SQL), for the
// statement classifier. A read-only session refuses any query that calls one of these,
// wherever the call sits in the query.
//
// Listed: functions that write even in a read-only transaction, or that PostgreSQL's read-only
// mode does not stop (index maintenance, statistics resets, replication state, ...). Not listed:
// advisory locks (PostgreSQL allows them read-only, and asyncpg's pool reset calls
// pg_advisory_unlock_all()), and set_config(), which the classifier decides with the same
// settings rules as SET (session-settings.ts).
//
// This is a denylist on purpose: user-defined functions are common in vector reads (distance
// helpers, ranking), so they stay allowed. The read-only upstream credential is the backstop
// for a user function that writes; this list covers the built-ins and well-known extensions
// that a read-only database role can still call.

/** What calling the function does to a read-only session. */
export type FunctionRisk = 'write' | 'admin';

export interface DeniedFunction {
  readonly risk: FunctionRisk;
  /** Finishes the sentence "function NAME() ...", e.g. "can write". */
  readonly why: string;
}

const WRITES = 'can write';
const ASSIGNS_XID = 'assigns a transaction id (a write)';
const INDEX_MAINTENANCE = 'changes an index (maintenance a read-only transaction does not stop)';
const SERVER_FILES = 'reads or writes server files';
const OTHER_BACKENDS = 'signals other server processes';
const DYNAMIC_SQL = 'runs SQL text the gateway cannot check';
const OTHER_CONNECTIONS = 'opens connections the gateway cannot check';
const REPLICATION = 'changes replication or backup state';

function entries(risk: FunctionRisk, why: string, names: readonly string[]): [string, DeniedFunction][] {
  return names.map((n) => [n, { risk, why }]);
}

/** Exact names (lower case, without schema). */
export const DENIED_FUNCTIONS: ReadonlyMap<string, DeniedFunction> = new Map<string, DeniedFunction>([
  ...entries('write', WRITES, [
    'nextval',
    'setval',
    'pg_notify', // a message other sessions act on
    'pg_logical_emit_message',
    'lowrite',
    'loread',
    'pg_stat_statements_reset',
    'pg_import_system_collations',
    'pg_nextoid',
    'pg_truncate_visibility_map', // pg_visibility
    'heap_force_kill', // pg_surgery
    'heap_force_freeze',
  ]),
  ...entries('write', INDEX_MAINTENANCE, ['brin_summarize_new_values', 'brin_summarize_range', 'brin_desummarize_range', 'gin_clean_pending_list']),
  ...entries('write', ASSIGNS_XID, ['txid_current', 'pg_current_xact_id']),
  ...entries('admin', SERVER_FILES, [
    'pg_read_file',
    'pg_read_binary_file',
    'pg_ls_dir',
    'pg_stat_file',
    'pg_file_write',
    'pg_file_rename',
    'pg_file_unlink',
    'pg_file_sync',
    'pg_logdir_ls',
  ]),
  ...entries('admin', OTHER_BACKENDS, ['pg_terminate_backend', 'pg_cancel_backend', 'pg_signal_backend', 'pg_log_backend_memory_contexts', 'pg_reload_conf', 'pg_rotate_logfile']),
  // These take a query as text and run it inside the server, where this classifier never sees it.
  ...entries('admin', DYNAMIC_SQL, [
    'query_to_xml',
    'query_to_xmlschema',
    'query_to_xml_and_xmlschema',
    'ts_stat',
    'ts_rewrite',
    'connectby', // tablefunc
    'xpath_table', // xml2
  ]),
  ...entries('admin', SERVER_FILES, ['autoprewarm_dump_now', 'autoprewarm_start_worker']), // pg_prewarm's background worker and dump file
  ...entries('admin', REPLICATION, [
    'pg_switch_wal',
    'pg_create_restore_point',
    'pg_backup_start',
    'pg_backup_stop',
    'pg_start_backup',
    'pg_stop_backup',
    'pg_promote',
    'pg_wal_replay_pause',
    'pg_wal_replay_resume',
    'pg_create_physical_replication_slot',
    'pg_create_logical_replication_slot',
    'pg_copy_physical_replication_slot',
    'pg_copy_logical_replication_slot',
    'pg_drop_replication_slot',
    'pg_replication_slot_advance',
    'pg_logical_slot_get_changes',
    'pg_logical_slot_get_binary_changes',
    'pg_sync_replication_slots',
  ]),
]);

/** Families matched by name prefix (lower case), checked after the exact names. */
export const DENIED_FUNCTION_PREFIXES: readonly (DeniedFunction & { readonly prefix: string })[] = [
  { prefix: 'lo_', risk: 'write', why: 'uses large objects (can write, import and export server files)' },
  { prefix: 'dblink', risk: 'admin', why: OTHER_CONNECTIONS },
  { prefix: 'pg_ls_', risk: 'admin', why: SERVER_FILES },
  { prefix: 'pg_stat_reset', risk: 'write', why: WRITES },
  { prefix: 'pg_replication_origin_', risk: 'admin', why: REPLICATION },
  { prefix: 'binary_upgrade_', risk: 'admin', why: 'is for pg_upgrade only' },
  { prefix: 'crosstab', risk: 'admin', why: DYNAMIC_SQL }, // tablefunc: crosstab(text), crosstab2..4
  { prefix: 'pg_background_', risk: 'admin', why: DYNAMIC_SQL },
];

/**
 * The denylist entry for a function name, or null when the function is allowed in a read.
 * `name` is the last part of a possibly schema-qualified name; it is compared in lower case,
 * so a quoted "NEXTVAL" (a different function to PostgreSQL) is refused too: fail closed.
 */
export function deniedFunction(name: string): DeniedFunction | null {
  const key = name.toLowerCase();
  const exact = DENIED_FUNCTIONS.get(key);
  if (exact) return exact;
  for (const p of DENIED_FUNCTION_PREFIXES) if (key.startsWith(p.prefix)) return p;
  return null;
}
