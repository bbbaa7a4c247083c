// Removes secrets from an event before anything is written: values under secret-looking
// keys anywhere in the event, `Bearer`/`Basic` credentials inside strings, and secrets in SQL
// text. SQL is redacted by its parse tree (redact-sql.ts: role passwords in any literal form,
// values of secret settings through SET and set_config, code bodies that build either).
// Text that does not parse as PostgreSQL (MySQL, fragments, free text) falls back to the
// patterns below: the string literal after PASSWORD (PostgreSQL, MySQL) or IDENTIFIED ... BY
// (MySQL), and the value after SET of a listed setting; their scan knows quotes, dollar
// quotes and comments so it finds the real literal, and it masks generously when unsure.
import type { RecordEvent } from './record-event.js';
import { defaultSqlSecretRules, redactSqlByTree, setPatternFallback, type SqlSecretRules } from './redact-sql.js';
import { endOfBackslashString, tokenize, type Dialect, type Token } from './sql-lexer.js';

/** What a removed secret is replaced with. */
export const REDACTED = '[redacted]';
/** What a masked SQL password literal becomes. */
export const REDACTED_SQL_LITERAL = "'[redacted]'";
/** Keys whose values are never written, matched anywhere in the key name. */
export const SECRET_KEY_PATTERN = /passw(?:or)?d|token|authori[sz]ation|secret|api[-_]?key|cookie|credential/i;
/** Credentials inside free text ("Authorization: Bearer abc", error messages). */
const AUTH_SCHEME_PATTERN = /\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]+/g;
/** Nesting deeper than this is cut off: events come from our own workers, not clients, but stay bounded. */
export const MAX_REDACT_DEPTH = 32;

export function redactEvent(e: RecordEvent): RecordEvent {
  return redactValue(e, 0) as RecordEvent;
}

/** Any value as it would be written inside an event (C++ recording asks for strings it cannot judge). */
export function redactRecordedValue(value: unknown): unknown {
  return redactValue(value, 0);
}

function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return redactString(value);
  if (value === null || typeof value !== 'object') return value;
  // Binary payloads (vectors in `full` mode) are kept as they are.
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value;
  if (depth >= MAX_REDACT_DEPTH) return REDACTED;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  if (value instanceof Map) {
    const out = new Map<unknown, unknown>();
    for (const [k, v] of value) out.set(k, typeof k === 'string' && isSecretKey(k) ? REDACTED : redactValue(v, depth + 1));
    return out;
  }
  const out: Record<string, unknown> = {};
  const obj = value as Record<string, unknown>;
  for (const k in obj) {
    if (!Object.hasOwn(obj, k)) continue;
    out[k] = isSecretKey(k) ? REDACTED : redactValue(obj[k], depth + 1);
  }
  return out;
}

/** Key names seen so far and whether they are secret: events repeat a few dozen names, so the pattern runs once per name. */
const secretKeyCache = new Map<string, boolean>();
/** Past this many distinct names the cache stops growing (names are ours, but stay bounded). */
const MAX_SECRET_KEY_CACHE = 4096;

function isSecretKey(k: string): boolean {
  let secret = secretKeyCache.get(k);
  if (secret === undefined) {
    secret = SECRET_KEY_PATTERN.test(k);
    if (secretKeyCache.size < MAX_SECRET_KEY_CACHE) secretKeyCache.set(k, secret);
  }
  return secret;
}

/**
 * One scan that says whether any of the checks below can apply (most strings: none). The
 * native statement recorder (native/statement-recorder.cc, MaybeSecretText) keeps its own copy
 * of this test to decide which strings it hands to this redaction.
 */
const MAYBE_SECRET_TEXT = /password|identified|\bset\b|set_config|bearer|basic/i;

/**
 * Settings (`recordings.redact_settings`) whose values are masked in `ALTER SYSTEM SET` and
 * `SET` statements. Process-wide: set once by the gateway when it opens the recorder.
 */
let sensitiveSettings: ReadonlySet<string> = new Set();

let sqlRules: SqlSecretRules = defaultSqlSecretRules(SECRET_KEY_PATTERN, sensitiveSettings);

export function setSensitiveSettings(names: readonly string[]): void {
  sensitiveSettings = new Set(names.map((n) => n.toLowerCase()));
  sqlRules = defaultSqlSecretRules(SECRET_KEY_PATTERN, sensitiveSettings);
}

/** The pattern redaction alone: for text the parser refuses. */
function maskSqlPatterns(s: string): string {
  let out = s;
  if (/password|identified/i.test(out)) out = maskSqlPasswords(out);
  if (sensitiveSettings.size > 0 && /\bset\b/i.test(out)) out = maskSensitiveSettings(out);
  return out;
}
setPatternFallback(maskSqlPatterns);

/**
 * SQL secrets of one string: by the parse tree when it parses (the parser must be loaded in
 * this thread: initSqlRedaction or initStatementClassifier, which the recorder and the
 * gateway's workers await),
 * else by patterns. A backslash is the one thing a server with standard_conforming_strings off
 * lexes differently from the parser, so text with one also gets the patterns, which mask under
 * both readings.
 */
export function redactSql(s: string): string {
  const byTree = redactSqlByTree(s, sqlRules);
  if (byTree === null) return maskSqlPatterns(s);
  return byTree.includes('\\') ? maskSqlPatterns(byTree) : byTree;
}

function redactString(s: string): string {
  if (!MAYBE_SECRET_TEXT.test(s)) return s;
  let out = /password|identified|\bset\b|set_config/i.test(s) ? redactSql(s) : s;
  if (/bearer|basic/i.test(out)) out = out.replace(AUTH_SCHEME_PATTERN, `$1$2${REDACTED}`);
  return out;
}

/** How many significant tokens may stand between IDENTIFIED and BY (`IDENTIFIED WITH plugin BY`). */
const IDENTIFIED_BY_WINDOW = 4;

/**
 * Masks the literal after PASSWORD / IDENTIFIED ... BY; everything else is left as it was.
 * The text is scanned once with PostgreSQL's quoting rules and once with MySQL's (the event
 * does not say which server it went to), so a quote that one dialect escapes cannot hide a
 * later PASSWORD from the other.
 */
/**
 * Masks the value in `[ALTER SYSTEM] SET name = value` / `SET name TO value` when `name` is a
 * sensitive setting: every token of the value up to the end of the statement.
 */
export function maskSensitiveSettings(sql: string, names: ReadonlySet<string> = sensitiveSettings): string {
  let out = sql;
  for (const dialect of ['postgres', 'mysql'] as const) {
    const all = tokenize(out, dialect);
    const sig = all.filter((t) => t.kind !== 'space' && t.kind !== 'comment');
    const text = (t: Token | undefined) => (t === undefined ? '' : out.slice(t.start, t.end));
    const spans: { start: number; end: number }[] = [];
    for (let i = 0; i + 1 < sig.length; i++) {
      if (text(sig[i]).toUpperCase() !== 'SET') continue;
      let j = i + 1;
      if (['SESSION', 'LOCAL'].includes(text(sig[j]).toUpperCase())) j++;
      // A setting name may be dotted (`my_ext.secret`), each part possibly quoted.
      let name = text(sig[j]).replace(/^"|"$/g, '').toLowerCase();
      while (text(sig[j + 1]) === '.' && sig[j + 2] !== undefined) {
        name += '.' + text(sig[j + 2]).replace(/^"|"$/g, '').toLowerCase();
        j += 2;
      }
      if (!names.has(name)) continue;
      j++;
      if (text(sig[j]) === '=' || text(sig[j]).toUpperCase() === 'TO') j++;
      let k = j;
      while (k < sig.length && text(sig[k]) !== ';') k++;
      if (k > j) {
        const last = sig[k - 1]!;
        const q = out[last.start];
        // As for passwords: a quoted value is masked to the later of the two dialects' ends.
        const end = q === "'" || q === '"' ? Math.max(last.end, endOfBackslashString(out, last.start, q)) : last.end;
        spans.push({ start: sig[j]!.start, end });
      }
    }
    if (spans.length === 0) continue;
    let next = '';
    let pos = 0;
    for (const sp of spans) {
      if (sp.start < pos) continue;
      next += out.slice(pos, sp.start) + REDACTED_SQL_LITERAL;
      pos = sp.end;
    }
    out = next + out.slice(pos);
  }
  return out;
}

export function maskSqlPasswords(sql: string): string {
  return maskWith(maskWith(sql, 'postgres'), 'mysql');
}

function maskWith(sql: string, dialect: Dialect): string {
  const all = tokenize(sql, dialect);
  const sig = all.filter((t) => t.kind !== 'space' && t.kind !== 'comment');
  const word = (t: Token | undefined) => (t !== undefined && t.kind === 'word' ? sql.slice(t.start, t.end).toUpperCase() : '');
  const text = (t: Token | undefined) => (t === undefined ? '' : sql.slice(t.start, t.end));
  const masked: Token[] = [];
  for (let i = 0; i < sig.length; i++) {
    const w = word(sig[i]);
    let armed = w === 'PASSWORD';
    if (w === 'BY') {
      for (let k = Math.max(0, i - IDENTIFIED_BY_WINDOW); k < i; k++) if (word(sig[k]) === 'IDENTIFIED') armed = true;
    }
    if (!armed) continue;
    // Skip what may stand between the keyword and the literal: `=`, `PASSWORD(`, `AS`.
    let j = i + 1;
    while (j < sig.length && (text(sig[j]) === '=' || text(sig[j]) === '(' || word(sig[j]) === 'PASSWORD' || word(sig[j]) === 'AS')) j++;
    const lit = sig[j];
    if (lit === undefined || (lit.kind !== 'string' && lit.kind !== 'quoted')) continue;
    // Mask to the later of the two dialects' ends of a quoted literal, so no tail of it survives.
    const q = sql[lit.start];
    let end = q === "'" || q === '"' ? Math.max(lit.end, endOfBackslashString(sql, lit.start, q)) : lit.end;
    // U&'...' UESCAPE 'c': the escape clause goes with the literal.
    if (word(sig[j + 1]) === 'UESCAPE' && sig[j + 2]?.kind === 'string') end = Math.max(end, sig[j + 2]!.end);
    masked.push({ kind: lit.kind, start: lit.start, end });
  }
  if (masked.length === 0) return sql;
  let out = '';
  let pos = 0;
  for (const t of masked) {
    if (t.start < pos) continue;
    out += sql.slice(pos, t.start) + REDACTED_SQL_LITERAL;
    pos = t.end;
  }
  return out + sql.slice(pos);
}
