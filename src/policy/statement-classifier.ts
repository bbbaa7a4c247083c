// Statement-level enforcement for read-only sessions: decides, with PostgreSQL's own parser
// (libpg-query, compiled to WASM), whether a SQL string may run in a session whose policy
// grants only `read`. Never pattern-matches SQL text: every decision is made on the parse
// tree, so a "DELETE" inside a string literal, a comment or a quoted identifier stays data.
//
// Fail closed: anything the parser rejects, any statement type or syntax node not listed
// here as a read, comes back `unknown`, which a read-only session refuses.
//
// EXECUTE of a prepared statement cannot be judged from its own text: it is `unknown` here.
// classifyStatements() reports, per statement, what each does to the session's SQL-level
// prepared statements (PREPARE, EXECUTE, DEALLOCATE, DISCARD ALL), so the session layer can
// keep the names it saw PREPAREd as reads and decide EXECUTE from that record.
//
// A string PostgreSQL's parser rejects gets PostgreSQL's own answer: SQLSTATE 42601 with the
// parser's message and cursor position, as PostgreSQL would reply.
import { Buffer } from 'node:buffer';
import { loadModule, parseSync } from 'libpg-query';
import { deniedFunction } from './write-functions.js';
import { READ_ESCAPE_HATCH_SETTINGS, settingRefusal, type SettingRefusal } from './session-settings.js';

export type Classification =
  | { kind: 'read' }
  | {
      kind: 'write' | 'ddl' | 'admin' | 'unknown';
      /** Person-readable, e.g. "INSERT into docs", "data-modifying CTE (DELETE)", "SET ROLE". */
      reason: string;
      /**
       * The offending statement (of several: the first one of the most restrictive kind), trimmed,
       * at most MAX_STATEMENT_EXCERPT_CHARS characters.
       */
      statement: string;
      /** 42601 (syntax_error) when PostgreSQL's parser rejects the string, else 42501 (insufficient_privilege). */
      sqlstate: string;
      /** For syntax errors: 1-based character position in the string, PostgreSQL's ErrorResponse 'P' field. */
      position?: number;
    };

export type ClassificationKind = Classification['kind'];
export type Refusal = Exclude<Classification, { kind: 'read' }>;
type Finding = { kind: Refusal['kind']; reason: string };

/** Longest statement excerpt carried in a refusal (it ends up in client errors and logs). */
export const MAX_STATEMENT_EXCERPT_CHARS = 200;
/**
 * Largest SQL string the classifier parses. A read with a few hundred 1536-dimension vector
 * literals is a few MB; beyond this the parse tree costs more memory than a worker should spend.
 */
export const DEFAULT_MAX_CLASSIFY_BYTES = 8 * 1024 * 1024;

export interface ClassifyOptions {
  /** Larger strings are `unknown` (refused for read). Default DEFAULT_MAX_CLASSIFY_BYTES. */
  maxBytes?: number;
}

/** Order used to pick "the most restrictive" of several statements. */
const RESTRICTIVENESS: Record<ClassificationKind, number> = { read: 0, write: 1, ddl: 2, admin: 3, unknown: 4 };

const READ: Classification = Object.freeze({ kind: 'read' });

export const SQLSTATE_INSUFFICIENT_PRIVILEGE = '42501';
export const SQLSTATE_SYNTAX_ERROR = '42601';

/** What one statement does to the session's SQL-level prepared statements (names as PostgreSQL folds them). */
export type PreparedStatementEffect =
  | { op: 'prepare'; name: string }
  | { op: 'execute'; name: string }
  | { op: 'deallocate'; name: string }
  | { op: 'deallocate-all' };

export interface StatementVerdict {
  /** This statement alone (for PREPARE: its query; an EXECUTE is `unknown`: see `effect`). */
  classification: Classification;
  effect?: PreparedStatementEffect;
}

/** Each statement of a string in order, or one refusal for the whole string (too large, NUL, syntax error). */
export type StatementsResult = { ok: true; statements: StatementVerdict[] } | { ok: false; refusal: Refusal };

let ready = false;

/** Loads the parser's WASM module once; await it before the first classifyStatement(). */
export async function initStatementClassifier(): Promise<void> {
  if (ready) return;
  await loadModule();
  ready = true;
}

/** True only for `{ kind: 'read' }`. */
export function isReadOnly(c: Classification): boolean {
  return c.kind === 'read';
}

/**
 * Classifies a SQL string (one `Query` message: possibly several statements). The result is
 * the most restrictive of its statements; an empty string (or only comments) is a read.
 *
 * @example
 *   await initStatementClassifier();
 *   classifyStatement('WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d');
 *   // { kind: 'write', reason: 'data-modifying CTE (DELETE)', statement: 'WITH d AS ...' }
 */
export function classifyStatement(sql: string, options: ClassifyOptions = {}): Classification {
  const result = classifyStatements(sql, options);
  if (!result.ok) return result.refusal;
  let worst: Refusal | null = null;
  for (const { classification: c } of result.statements) {
    if (c.kind !== 'read' && (!worst || RESTRICTIVENESS[c.kind] > RESTRICTIVENESS[worst.kind])) worst = c;
  }
  return worst ?? READ;
}

/**
 * Classifies each statement of a SQL string, in order, and says what each does to SQL-level
 * prepared statements. A string that cannot be checked at all is one refusal.
 *
 * @example
 *   classifyStatements('PREPARE p AS SELECT 1; EXECUTE p');
 *   // { ok: true, statements: [
 *   //   { classification: { kind: 'read' }, effect: { op: 'prepare', name: 'p' } },
 *   //   { classification: { kind: 'unknown', ... }, effect: { op: 'execute', name: 'p' } } ] }
 */
export function classifyStatements(sql: string, options: ClassifyOptions = {}): StatementsResult {
  if (!ready) throw new Error('initStatementClassifier() must complete before classifyStatement() is called');
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_CLASSIFY_BYTES;
  const bytes = Buffer.from(sql, 'utf8');
  if (bytes.length > maxBytes) {
    return { ok: false, refusal: refuse('unknown', `statement too large to check (${bytes.length} bytes; limit ${maxBytes})`, sql) };
  }
  // The parser reads a C string: text after a NUL would never be seen, so refuse it outright.
  if (sql.includes('\0')) return { ok: false, refusal: refuse('unknown', 'statement contains a NUL character', sql) };
  if (isBlank(sql)) return { ok: true, statements: [] }; // the parser rejects an empty string; PostgreSQL answers EmptyQueryResponse

  let tree: unknown;
  try {
    tree = parseSync(sql);
  } catch (err) {
    return { ok: false, refusal: syntaxError(err, sql) };
  }
  const stmts = (tree as { stmts?: unknown } | null)?.stmts;
  if (stmts === undefined) return { ok: true, statements: [] }; // only comments and semicolons
  if (!Array.isArray(stmts)) return { ok: false, refusal: refuse('unknown', 'could not parse: unexpected parser output', sql) };

  const statements: StatementVerdict[] = [];
  for (const raw of stmts as RawStmt[]) {
    const finding = classifyNode(raw?.stmt);
    const classification: Classification = finding
      ? { kind: finding.kind, reason: finding.reason, statement: excerpt(statementText(bytes, raw)), sqlstate: SQLSTATE_INSUFFICIENT_PRIVILEGE }
      : READ;
    const effect = preparedEffect(raw?.stmt);
    statements.push(effect ? { classification, effect } : { classification });
  }
  return { ok: true, statements };
}

/** The parser's own error, as PostgreSQL reports it: 42601, its message, a 1-based position. */
function syntaxError(err: unknown, sql: string): Refusal {
  const details = (err as { sqlDetails?: { message?: unknown; cursorPosition?: unknown } } | null)?.sqlDetails;
  const message = typeof details?.message === 'string' ? details.message : err instanceof Error ? err.message : String(err);
  const refusal: Refusal = { kind: 'unknown', reason: message, statement: excerpt(sql), sqlstate: SQLSTATE_SYNTAX_ERROR };
  // libpg-query's cursorPosition counts characters (code points) from 0; PostgreSQL's from 1.
  if (typeof details?.cursorPosition === 'number' && details.cursorPosition >= 0) refusal.position = details.cursorPosition + 1;
  return refusal;
}

function preparedEffect(node: unknown): PreparedStatementEffect | undefined {
  const pair = unwrap(node);
  if (!pair) return undefined;
  const [type, body] = pair;
  const name = typeof body.name === 'string' ? body.name : undefined;
  switch (type) {
    case 'PrepareStmt':
      return name === undefined ? undefined : { op: 'prepare', name };
    case 'ExecuteStmt':
      return name === undefined ? undefined : { op: 'execute', name };
    case 'DeallocateStmt':
      return body.isall === true || name === undefined ? { op: 'deallocate-all' } : { op: 'deallocate', name };
    case 'DiscardStmt':
      return body.target === 'DISCARD_ALL' ? { op: 'deallocate-all' } : undefined;
    default:
      return undefined;
  }
}

interface RawStmt {
  stmt?: unknown;
  /** Byte offset into the UTF-8 text; absent means 0. */
  stmt_location?: number;
  /** Length in bytes; absent or 0 means "to the end". */
  stmt_len?: number;
}

// ---------------------------------------------------------------------------------------------
// Statements

/** Statements refused with a fixed kind and label (everything not here or below: unknown). */
const FIXED: Readonly<Record<string, readonly [Finding['kind'], string]>> = {
  TruncateStmt: ['write', 'TRUNCATE'],
  // PostgreSQL allows NOTIFY in a read-only transaction, but it is a message other sessions
  // act on (cache invalidation, job queues): a reader must not trigger their work.
  NotifyStmt: ['write', 'NOTIFY (a message other sessions act on)'],
  DoStmt: ['write', 'DO block (runs procedural code)'],
  CallStmt: ['write', 'CALL of a procedure'],
  RefreshMatViewStmt: ['write', 'REFRESH MATERIALIZED VIEW'],
  ConstraintsSetStmt: ['write', 'SET CONSTRAINTS'],
  ExecuteStmt: ['unknown', 'EXECUTE of a prepared statement (the session decides from its PREPARE)'],

  CreateStmt: ['ddl', 'CREATE TABLE'],
  IndexStmt: ['ddl', 'CREATE INDEX'],
  ViewStmt: ['ddl', 'CREATE VIEW'],
  AlterTableStmt: ['ddl', 'ALTER TABLE'],
  AlterTableCmd: ['ddl', 'ALTER TABLE'],
  RenameStmt: ['ddl', 'ALTER ... RENAME'],
  AlterObjectSchemaStmt: ['ddl', 'ALTER ... SET SCHEMA'],
  AlterObjectDependsStmt: ['ddl', 'ALTER ... DEPENDS ON EXTENSION'],
  AlterOwnerStmt: ['ddl', 'ALTER ... OWNER TO'],
  CommentStmt: ['ddl', 'COMMENT ON'],
  SecLabelStmt: ['ddl', 'SECURITY LABEL'],
  CreateSchemaStmt: ['ddl', 'CREATE SCHEMA'],
  CreateSeqStmt: ['ddl', 'CREATE SEQUENCE'],
  AlterSeqStmt: ['ddl', 'ALTER SEQUENCE'],
  CreateFunctionStmt: ['ddl', 'CREATE FUNCTION'],
  AlterFunctionStmt: ['ddl', 'ALTER FUNCTION'],
  CreateTrigStmt: ['ddl', 'CREATE TRIGGER'],
  RuleStmt: ['ddl', 'CREATE RULE'],
  DefineStmt: ['ddl', 'CREATE (aggregate, operator, type, ...)'],
  CompositeTypeStmt: ['ddl', 'CREATE TYPE'],
  CreateEnumStmt: ['ddl', 'CREATE TYPE ... AS ENUM'],
  CreateRangeStmt: ['ddl', 'CREATE TYPE ... AS RANGE'],
  AlterEnumStmt: ['ddl', 'ALTER TYPE'],
  AlterTypeStmt: ['ddl', 'ALTER TYPE'],
  CreateDomainStmt: ['ddl', 'CREATE DOMAIN'],
  AlterDomainStmt: ['ddl', 'ALTER DOMAIN'],
  CreateCastStmt: ['ddl', 'CREATE CAST'],
  CreateConversionStmt: ['ddl', 'CREATE CONVERSION'],
  CreateTransformStmt: ['ddl', 'CREATE TRANSFORM'],
  CreateOpClassStmt: ['ddl', 'CREATE OPERATOR CLASS'],
  CreateOpFamilyStmt: ['ddl', 'CREATE OPERATOR FAMILY'],
  AlterOpFamilyStmt: ['ddl', 'ALTER OPERATOR FAMILY'],
  AlterOperatorStmt: ['ddl', 'ALTER OPERATOR'],
  CreateStatsStmt: ['ddl', 'CREATE STATISTICS'],
  AlterStatsStmt: ['ddl', 'ALTER STATISTICS'],
  CreatePolicyStmt: ['ddl', 'CREATE POLICY'],
  AlterPolicyStmt: ['ddl', 'ALTER POLICY'],
  CreateAmStmt: ['ddl', 'CREATE ACCESS METHOD'],
  AlterCollationStmt: ['ddl', 'ALTER COLLATION'],
  AlterTSDictionaryStmt: ['ddl', 'ALTER TEXT SEARCH DICTIONARY'],
  AlterTSConfigurationStmt: ['ddl', 'ALTER TEXT SEARCH CONFIGURATION'],
  CreateForeignTableStmt: ['ddl', 'CREATE FOREIGN TABLE'],
  ImportForeignSchemaStmt: ['ddl', 'IMPORT FOREIGN SCHEMA'],
  CreateExtensionStmt: ['ddl', 'CREATE EXTENSION'],
  AlterExtensionStmt: ['ddl', 'ALTER EXTENSION'],
  AlterExtensionContentsStmt: ['ddl', 'ALTER EXTENSION'],
  CreatePublicationStmt: ['ddl', 'CREATE PUBLICATION'],
  AlterPublicationStmt: ['ddl', 'ALTER PUBLICATION'],
  ReplicaIdentityStmt: ['ddl', 'ALTER TABLE ... REPLICA IDENTITY'],
  CreatePLangStmt: ['ddl', 'CREATE LANGUAGE'],

  GrantStmt: ['admin', 'GRANT/REVOKE'],
  GrantRoleStmt: ['admin', 'GRANT/REVOKE of a role'],
  AlterDefaultPrivilegesStmt: ['admin', 'ALTER DEFAULT PRIVILEGES'],
  CreateRoleStmt: ['admin', 'CREATE ROLE'],
  AlterRoleStmt: ['admin', 'ALTER ROLE'],
  AlterRoleSetStmt: ['admin', 'ALTER ROLE ... SET'],
  DropRoleStmt: ['admin', 'DROP ROLE'],
  DropOwnedStmt: ['admin', 'DROP OWNED'],
  ReassignOwnedStmt: ['admin', 'REASSIGN OWNED'],
  AlterSystemStmt: ['admin', 'ALTER SYSTEM'],
  VacuumStmt: ['admin', 'VACUUM/ANALYZE'],
  ClusterStmt: ['admin', 'CLUSTER'],
  ReindexStmt: ['admin', 'REINDEX'],
  CheckPointStmt: ['admin', 'CHECKPOINT'],
  LoadStmt: ['admin', 'LOAD of a server library'],
  CreatedbStmt: ['admin', 'CREATE DATABASE'],
  AlterDatabaseStmt: ['admin', 'ALTER DATABASE'],
  AlterDatabaseSetStmt: ['admin', 'ALTER DATABASE ... SET'],
  AlterDatabaseRefreshCollStmt: ['admin', 'ALTER DATABASE ... REFRESH COLLATION VERSION'],
  DropdbStmt: ['admin', 'DROP DATABASE'],
  CreateTableSpaceStmt: ['admin', 'CREATE TABLESPACE'],
  DropTableSpaceStmt: ['admin', 'DROP TABLESPACE'],
  AlterTableSpaceOptionsStmt: ['admin', 'ALTER TABLESPACE'],
  AlterTableMoveAllStmt: ['admin', 'ALTER ... SET TABLESPACE'],
  CreateEventTrigStmt: ['admin', 'CREATE EVENT TRIGGER'],
  AlterEventTrigStmt: ['admin', 'ALTER EVENT TRIGGER'],
  CreateFdwStmt: ['admin', 'CREATE FOREIGN DATA WRAPPER'],
  AlterFdwStmt: ['admin', 'ALTER FOREIGN DATA WRAPPER'],
  CreateForeignServerStmt: ['admin', 'CREATE SERVER'],
  AlterForeignServerStmt: ['admin', 'ALTER SERVER'],
  CreateUserMappingStmt: ['admin', 'CREATE USER MAPPING'],
  AlterUserMappingStmt: ['admin', 'ALTER USER MAPPING'],
  DropUserMappingStmt: ['admin', 'DROP USER MAPPING'],
  CreateSubscriptionStmt: ['admin', 'CREATE SUBSCRIPTION'],
  AlterSubscriptionStmt: ['admin', 'ALTER SUBSCRIPTION'],
  DropSubscriptionStmt: ['admin', 'DROP SUBSCRIPTION'],
};

type Body = Record<string, unknown>;

/** The single `{ NodeType: body }` pair of a wrapped parse node, or null. */
function unwrap(node: unknown): [string, Body] | null {
  if (typeof node !== 'object' || node === null || Array.isArray(node)) return null;
  const keys = Object.keys(node);
  if (keys.length !== 1) return null;
  const body = (node as Body)[keys[0]!];
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return null;
  return [keys[0]!, body as Body];
}

/** Classifies one statement node: null for a read, else why it is refused. */
function classifyNode(node: unknown): Finding | null {
  const pair = unwrap(node);
  if (!pair) return { kind: 'unknown', reason: 'could not parse: unexpected statement shape' };
  const [type, body] = pair;
  switch (type) {
    case 'SelectStmt':
      return walkRead(node);
    case 'InsertStmt':
      return { kind: 'write', reason: `INSERT into ${relationName(body.relation)}` };
    case 'UpdateStmt':
      return { kind: 'write', reason: `UPDATE ${relationName(body.relation)}` };
    case 'DeleteStmt':
      return { kind: 'write', reason: `DELETE from ${relationName(body.relation)}` };
    case 'MergeStmt':
      return { kind: 'write', reason: `MERGE into ${relationName(body.relation)}` };
    case 'VariableShowStmt':
    case 'ListenStmt': // LISTEN / UNLISTEN only change what this session hears (allowed read-only by PostgreSQL too)
    case 'UnlistenStmt':
    case 'DiscardStmt':
    case 'DeallocateStmt':
    case 'ClosePortalStmt':
    case 'FetchStmt': // FETCH and MOVE: read rows of a cursor that was itself classified at DECLARE
      return null;
    case 'TransactionStmt':
      return classifyTransaction(body);
    case 'LockStmt':
      return classifyLock(body);
    case 'VariableSetStmt':
      return classifySet(body);
    case 'ExplainStmt':
      return classifyExplain(body);
    case 'CopyStmt':
      return classifyCopy(body);
    case 'DeclareCursorStmt':
      return classifyNode(body.query);
    case 'PrepareStmt':
      return prefixed('PREPARE of ', classifyNode(body.query));
    case 'CreateTableAsStmt':
      return { kind: 'ddl', reason: body.objtype === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS' };
    case 'DropStmt':
      return { kind: 'ddl', reason: `DROP ${objectTypeLabel(body.removeType)}` };
    default: {
      const fixed = FIXED[type];
      if (fixed) return { kind: fixed[0], reason: fixed[1] };
      return { kind: 'unknown', reason: `statement type ${type} is not known to be read-only` };
    }
  }
}

/** DROP TABLE / DROP INDEX / ... from the parser's OBJECT_* enum. */
function objectTypeLabel(objtype: unknown): string {
  if (typeof objtype !== 'string' || !objtype.startsWith('OBJECT_')) return 'object';
  return objtype.slice('OBJECT_'.length).split('_').join(' ');
}

function relationName(rel: unknown): string {
  if (typeof rel !== 'object' || rel === null) return '(unnamed relation)';
  const r = rel as { schemaname?: unknown; relname?: unknown };
  const name = typeof r.relname === 'string' ? r.relname : '(unnamed relation)';
  return typeof r.schemaname === 'string' ? `${r.schemaname}.${name}` : name;
}

/** LOCK modes by the parser's number (lockdefs.h), for messages. */
const LOCK_MODES: readonly string[] = [
  '', 'ACCESS SHARE', 'ROW SHARE', 'ROW EXCLUSIVE', 'SHARE UPDATE EXCLUSIVE', 'SHARE', 'SHARE ROW EXCLUSIVE', 'EXCLUSIVE', 'ACCESS EXCLUSIVE',
];
/** Strongest LOCK mode a read may take: ROW SHARE (what SELECT ... FOR SHARE's table lock is; blocks only EXCLUSIVE and up). */
const MAX_READ_LOCK_MODE = 2;

function classifyLock(body: Body): Finding | null {
  // LOCK without a mode is ACCESS EXCLUSIVE, which the parser fills in; a missing field is unexpected: strongest.
  const mode = typeof body.mode === 'number' ? body.mode : 8;
  if (mode >= 1 && mode <= MAX_READ_LOCK_MODE) return null;
  const label = LOCK_MODES[mode] ?? `mode ${mode}`;
  return { kind: 'write', reason: `LOCK ... IN ${label} MODE (${mode >= 5 ? 'blocks writers' : 'a lock for writing'})` };
}

// ---------------------------------------------------------------------------------------------
// Transaction control and settings

function classifyTransaction(body: Body): Finding | null {
  switch (body.kind) {
    case 'TRANS_STMT_BEGIN':
    case 'TRANS_STMT_START':
      return transactionModesAreRead(body.options) ? null : { kind: 'write', reason: 'BEGIN READ WRITE' };
    case 'TRANS_STMT_COMMIT':
    case 'TRANS_STMT_ROLLBACK':
    case 'TRANS_STMT_SAVEPOINT':
    case 'TRANS_STMT_RELEASE':
    case 'TRANS_STMT_ROLLBACK_TO':
      return null;
    case 'TRANS_STMT_PREPARE':
      return { kind: 'write', reason: 'PREPARE TRANSACTION' };
    case 'TRANS_STMT_COMMIT_PREPARED':
      return { kind: 'write', reason: 'COMMIT PREPARED' };
    case 'TRANS_STMT_ROLLBACK_PREPARED':
      return { kind: 'write', reason: 'ROLLBACK PREPARED' };
    default:
      return { kind: 'unknown', reason: `transaction statement ${String(body.kind)} is not known to be read-only` };
  }
}

/** BEGIN / SET TRANSACTION modes: isolation and deferrable are fine; READ WRITE is not. */
function transactionModesAreRead(options: unknown): boolean {
  if (options === undefined) return true;
  if (!Array.isArray(options)) return false;
  for (const opt of options) {
    const pair = unwrap(opt);
    if (!pair || pair[0] !== 'DefElem') return false;
    const def = pair[1];
    if (def.defname === 'transaction_isolation' || def.defname === 'transaction_deferrable') continue;
    // READ ONLY is ival 1; READ WRITE is ival 0, which the parser's JSON leaves out.
    if (def.defname === 'transaction_read_only' && constInt(def.arg) === 1) continue;
    return false;
  }
  return true;
}

function constInt(node: unknown): number | undefined {
  const pair = unwrap(node);
  if (!pair || pair[0] !== 'A_Const') return undefined;
  const ival = pair[1].ival as { ival?: unknown } | undefined;
  if (typeof ival !== 'object' || ival === null) return undefined;
  return typeof ival.ival === 'number' ? ival.ival : 0;
}

/** SET / RESET of one setting, decided by the session-settings rules every other way shares. */
function classifySet(body: Body): Finding | null {
  const kind = body.kind;
  const name = typeof body.name === 'string' ? body.name : '';
  // RESET ALL returns every setting to the value the session started with (startup packet, role
  // and database defaults), which the gateway chose; transaction_read_only is not among them
  // (GUC_NO_RESET_ALL).
  if (kind === 'VAR_RESET_ALL') return null;
  if (kind === 'VAR_SET_MULTI') {
    // SET TRANSACTION ... / SET SESSION CHARACTERISTICS AS TRANSACTION ...
    if ((name === 'TRANSACTION' || name === 'SESSION CHARACTERISTICS') && transactionModesAreRead(body.args)) return null;
    return { kind: 'write', reason: `SET ${name} READ WRITE` };
  }
  let value: string | null;
  if (kind === 'VAR_RESET' || kind === 'VAR_SET_DEFAULT' || kind === 'VAR_SET_CURRENT') {
    value = null; // SET ... FROM CURRENT keeps the current value: no change either
  } else if (kind === 'VAR_SET_VALUE') {
    const text = setValueText(body.args);
    if (text === undefined) {
      // SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE: the only SET whose value is not a constant.
      if (name.toLowerCase() !== 'timezone') return { kind: 'unknown', reason: `SET ${name} with a value that is not a constant` };
      value = '';
    } else value = text;
  } else {
    return { kind: 'unknown', reason: `SET form ${String(kind)} is not known to be read-only` };
  }
  return settingFinding(settingRefusal(name, value, 'read', 'SET'), name);
}

function settingFinding(r: SettingRefusal | null, name: string): Finding | null {
  if (!r) return null;
  return { kind: READ_ESCAPE_HATCH_SETTINGS.has(name.toLowerCase()) ? 'admin' : 'unknown', reason: r.reason };
}

/** The text PostgreSQL's flatten_set_variable_args() would build from constant SET arguments. */
function setValueText(args: unknown): string | undefined {
  if (!Array.isArray(args) || args.length === 0) return undefined;
  const parts: string[] = [];
  for (const arg of args) {
    const text = constantText(arg);
    if (text === undefined) return undefined;
    parts.push(text);
  }
  return parts.join(', ');
}

/** A constant's text: strings, numbers and booleans (A_Const), or undefined for anything else. */
function constantText(node: unknown): string | undefined {
  const pair = unwrap(node);
  if (!pair || pair[0] !== 'A_Const') return undefined;
  const c = pair[1];
  if (c.isnull === true) return undefined;
  const field = <T>(key: string, inner: string): T | undefined => {
    const v = c[key] as Record<string, unknown> | undefined;
    return typeof v === 'object' && v !== null ? (v[inner] as T | undefined) : undefined;
  };
  if (c.sval !== undefined) return field<string>('sval', 'sval') ?? '';
  if (c.ival !== undefined) return String(field<number>('ival', 'ival') ?? 0);
  if (c.fval !== undefined) return field<string>('fval', 'fval');
  if (c.boolval !== undefined) return field<boolean>('boolval', 'boolval') === true ? 'true' : 'false';
  if (c.bsval !== undefined) return undefined;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// EXPLAIN and COPY

/**
 * EXPLAIN without ANALYZE only plans, so it is a read whatever it explains (PostgreSQL also
 * allows it in a read-only transaction). EXPLAIN ANALYZE runs the statement: classify that.
 */
function classifyExplain(body: Body): Finding | null {
  return explainRuns(body.options) ? prefixed('EXPLAIN ANALYZE of ', classifyNode(body.query)) : null;
}

function prefixed(prefix: string, f: Finding | null): Finding | null {
  return f && { kind: f.kind, reason: prefix + f.reason };
}

function explainRuns(options: unknown): boolean {
  if (options === undefined) return false;
  if (!Array.isArray(options)) return true;
  for (const opt of options) {
    const pair = unwrap(opt);
    if (!pair || pair[0] !== 'DefElem') return true;
    if (String(pair[1].defname).toLowerCase() !== 'analyze') continue;
    if (!isFalseOption(pair[1].arg)) return true;
  }
  return false;
}

/** Only spellings that PostgreSQL's defGetBoolean() reads as false; anything else counts as on. */
function isFalseOption(arg: unknown): boolean {
  const pair = unwrap(arg);
  if (!pair) return false; // bare ANALYZE: on
  const [type, body] = pair;
  if (type === 'Integer') return body.ival === undefined || body.ival === 0;
  if (type === 'Boolean') return body.boolval !== true;
  if (type === 'String') {
    const s = String(body.sval).toLowerCase();
    return s === 'false' || s === 'off';
  }
  return false;
}

function classifyCopy(body: Body): Finding | null {
  if (body.is_from === true) return { kind: 'write', reason: 'COPY ... FROM' };
  if (body.is_program === true) return { kind: 'admin', reason: 'COPY ... TO PROGRAM' };
  if (body.filename !== undefined) return { kind: 'admin', reason: "COPY ... TO 'file'" };
  // COPY table TO STDOUT reads the table; COPY (query) TO STDOUT is as read as its query.
  return body.query !== undefined ? classifyNode(body.query) : null;
}

// ---------------------------------------------------------------------------------------------
// Read queries: every node of the tree

/** Raw-parse-tree node types that may appear in a read query (SELECT / VALUES / TABLE). */
const READ_NODE_TYPES: ReadonlySet<string> = new Set([
  'SelectStmt', 'ResTarget', 'ColumnRef', 'A_Star', 'A_Const', 'String', 'Integer', 'Float', 'Boolean',
  'BitString', 'List', 'A_Expr', 'BoolExpr', 'FuncCall', 'TypeCast', 'TypeName', 'RangeVar',
  // ColumnDef: only a function's column definition list, `FROM f() AS t(a int)`, in a read
  'RangeSubselect', 'RangeFunction', 'ColumnDef', 'RangeTableSample', 'RangeTableFunc', 'RangeTableFuncCol',
  'JoinExpr', 'SubLink', 'CaseExpr', 'CaseWhen', 'CoalesceExpr', 'MinMaxExpr', 'NullTest',
  'BooleanTest', 'SortBy', 'WindowDef', 'A_Indirection', 'A_Indices', 'A_ArrayExpr', 'RowExpr',
  'ParamRef', 'CollateClause', 'WithClause', 'CommonTableExpr', 'CTESearchClause', 'CTECycleClause',
  'Alias', 'GroupingSet', 'GroupingFunc', 'SQLValueFunction', 'XmlExpr', 'XmlSerialize', 'NamedArgExpr',
  'JsonFormat', 'JsonReturning', 'JsonValueExpr', 'JsonOutput', 'JsonArgument', 'JsonFuncExpr',
  'JsonTablePathSpec', 'JsonTable', 'JsonTableColumn', 'JsonKeyValue', 'JsonParseExpr',
  'JsonScalarExpr', 'JsonSerializeExpr', 'JsonObjectConstructor', 'JsonArrayConstructor',
  'JsonArrayQueryConstructor', 'JsonAggConstructor', 'JsonObjectAgg', 'JsonArrayAgg',
  'JsonIsPredicate', 'JsonBehavior',
]);

const DATA_MODIFYING: Readonly<Record<string, string>> = {
  InsertStmt: 'INSERT',
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE',
  MergeStmt: 'MERGE',
};

/**
 * Walks a read query's whole tree (iteratively: hostile nesting cannot overflow the stack) and
 * returns the most restrictive problem: a data-modifying CTE, SELECT INTO, a locking clause,
 * a denylisted function, or a node type this file does not know.
 *
 * Typed child fields (SelectStmt.larg, .intoClause, .withClause, ...) come without a
 * `{ Type: ... }` wrapper; generic ones are wrapped. Upper-case keys are therefore node types,
 * lower-case keys are fields, and `intoClause` / `lockingClause` are checked by field name.
 */
function walkRead(root: unknown): Finding | null {
  let worst: Finding | null = null;
  const note = (f: Finding): void => {
    if (!worst || RESTRICTIVENESS[f.kind] > RESTRICTIVENESS[worst.kind]) worst = f;
  };
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== 'object' || value === null) continue;
    if (Array.isArray(value)) {
      for (const item of value) stack.push(item);
      continue;
    }
    for (const [key, child] of Object.entries(value as Body)) {
      if (key === 'intoClause') {
        note({ kind: 'ddl', reason: `SELECT INTO ${relationName((child as Body | null)?.rel)} (creates a table)` });
        continue;
      } else if (key === 'lockingClause') {
        if (Array.isArray(child) && child.length > 0) note({ kind: 'write', reason: `SELECT ... ${lockingLabel(child[0])} (takes row locks)` });
        continue; // holds only the locked relations' names
      } else if (isNodeTypeKey(key)) {
        const dml = DATA_MODIFYING[key];
        if (dml) {
          note({ kind: 'write', reason: `data-modifying CTE (${dml})` });
          continue; // refused whatever it contains; its own syntax (SET (a, b) = ...) is not a read's
        } else if (key === 'FuncCall') {
          const f = deniedCall(child);
          if (f) note(f);
        } else if (!READ_NODE_TYPES.has(key)) {
          note({ kind: 'unknown', reason: `${key} is not known to be read-only` });
        }
      }
      stack.push(child);
    }
  }
  return worst;
}

function isNodeTypeKey(key: string): boolean {
  const c = key.charCodeAt(0);
  return c >= 65 && c <= 90; // A-Z: node types are CamelCase, fields camelCase or snake_case
}

function lockingLabel(clause: unknown): string {
  const strength = unwrap(clause)?.[1].strength;
  switch (strength) {
    case 'LCS_FORKEYSHARE':
      return 'FOR KEY SHARE';
    case 'LCS_FORSHARE':
      return 'FOR SHARE';
    case 'LCS_FORNOKEYUPDATE':
      return 'FOR NO KEY UPDATE';
    default:
      return 'FOR UPDATE';
  }
}

function deniedCall(call: unknown): Finding | null {
  const parts = (call as { funcname?: unknown } | null)?.funcname;
  if (!Array.isArray(parts) || parts.length === 0) return { kind: 'unknown', reason: 'function call without a name' };
  const last = unwrap(parts[parts.length - 1]);
  const name = last && last[0] === 'String' ? last[1].sval : undefined;
  if (typeof name !== 'string') return { kind: 'unknown', reason: 'function call without a name' };
  if (name.toLowerCase() === 'set_config') return classifySetConfig((call as Body).args);
  const denied = deniedFunction(name);
  return denied ? { kind: denied.risk, reason: `function ${name}() ${denied.why}` } : null;
}

/**
 * set_config(name, value, is_local) is SET by another name: allowed when name and value are
 * string constants the settings rules allow. Its arguments are walked like any others, so a
 * write hidden in is_local is still found.
 */
function classifySetConfig(args: unknown): Finding | null {
  if (!Array.isArray(args) || args.length !== 3) return { kind: 'unknown', reason: 'set_config() without its three positional arguments' };
  const name = stringConstant(args[0]);
  if (name === undefined || name === null) return { kind: 'unknown', reason: 'set_config() with a setting name that is not a string constant' };
  const value = stringConstant(args[1]);
  if (value === undefined) return { kind: 'unknown', reason: `set_config('${name}', ...) with a value that is not a string constant` };
  return settingFinding(settingRefusal(name, value, 'read', 'set_config'), name);
}

/** Text types a string constant may be cast to and stay the same text. */
const TEXT_TYPES: ReadonlySet<string> = new Set(['text', 'varchar']);

/** A string constant's text, null for NULL, undefined for anything else. `'x'::text` counts. */
function stringConstant(node: unknown): string | null | undefined {
  let pair = unwrap(node);
  if (pair && pair[0] === 'TypeCast') {
    const names = (pair[1].typeName as Body | undefined)?.names;
    const last = Array.isArray(names) ? unwrap(names[names.length - 1]) : null;
    const typeName = last && last[0] === 'String' ? last[1].sval : undefined;
    if (typeof typeName !== 'string' || !TEXT_TYPES.has(typeName) || (pair[1].typeName as Body).arrayBounds !== undefined) return undefined;
    pair = unwrap(pair[1].arg);
  }
  if (!pair || pair[0] !== 'A_Const') return undefined;
  if (pair[1].isnull === true) return null;
  if (pair[1].sval === undefined) return undefined;
  return constantText({ A_Const: pair[1] });
}

// ---------------------------------------------------------------------------------------------
// Text

/** PostgreSQL's whitespace (scan.l: space, \t, \n, \r, \f, \v). */
function isBlank(sql: string): boolean {
  for (let i = 0; i < sql.length; i++) {
    const c = sql.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d && c !== 0x0c && c !== 0x0b) return false;
  }
  return true;
}

function statementText(bytes: Buffer, raw: RawStmt): string {
  const start = typeof raw.stmt_location === 'number' ? raw.stmt_location : 0;
  const len = typeof raw.stmt_len === 'number' && raw.stmt_len > 0 ? raw.stmt_len : bytes.length - start;
  return bytes.subarray(start, start + len).toString('utf8');
}

function excerpt(text: string): string {
  const trimmed = text.trim();
  if (trimmed.length <= MAX_STATEMENT_EXCERPT_CHARS) return trimmed;
  // Cut on a code point boundary so the excerpt stays valid UTF-16.
  let out = '';
  let n = 0;
  for (const ch of trimmed) {
    if (n++ >= MAX_STATEMENT_EXCERPT_CHARS) break;
    out += ch;
  }
  return out;
}

function refuse(kind: Refusal['kind'], reason: string, sql: string): Refusal {
  return { kind, reason, statement: excerpt(sql), sqlstate: SQLSTATE_INSUFFICIENT_PRIVILEGE };
}
