// Redaction of SQL text by its parse tree (libpg-query, the parser the policy uses): the
// tree says which string constants are secrets, the lexer (sql-lexer.ts) says where they
// are in the text, and only those spans are replaced. Secrets, by position:
// - a role's password: CREATE/ALTER ROLE|USER|GROUP ... [ENCRYPTED] PASSWORD '...', U&'...'
//   [UESCAPE 'c'], and any other option whose name looks secret (user mappings, servers);
// - the value of a setting whose name looks secret (SECRET_KEY_PATTERN) or is listed in
//   `recordings.redact_settings`: SET, ALTER SYSTEM/ROLE/DATABASE ... SET, a function's SET
//   clause, and set_config(name, value, ...) (a name that is not a constant counts as secret);
// - a subscription's CONNECTION string;
// - code bodies (DO blocks, CREATE FUNCTION/PROCEDURE ... AS '...') that mention a password or
//   a secret setting: see redactBody for what is kept.
// Text the parser refuses (MySQL, fragments, free text) is left to the caller's pattern
// redaction (redact-event.ts); so is text with a backslash, which a server with
// standard_conforming_strings off would read differently from this parser.
import { Buffer } from 'node:buffer';
import { loadModule, parseSync } from 'libpg-query';
import { tokenize, type Token } from './sql-lexer.js';

/** What a masked literal becomes (the same as the pattern redaction's). */
export const REDACTED_LITERAL = "'[redacted]'";
/** Bodies inside bodies (a DO block that EXECUTEs a DO block ...) are followed this deep; deeper, every literal is masked. */
export const MAX_BODY_DEPTH = 4;
/** The parser's input is a C string; longer texts than this are not parsed for redaction (the pattern redaction takes them). */
export const MAX_PARSED_SQL_BYTES = 1024 * 1024;

/** Settings whose names look secret but whose values are not (they name an algorithm). */
const NOT_SECRET_SETTINGS: ReadonlySet<string> = new Set(['password_encryption']);

export interface SqlSecretRules {
  /** Whether a setting's value is a secret (its name lower-cased). */
  secretSetting(name: string): boolean;
  /** Whether an option (DefElem) name marks its value as a secret: `password`, `api_key`, ... */
  secretOption(name: string): boolean;
  /** Whether code text may build a secret at run time (a body mentions a password or a secret setting). */
  mayBuildSecret(code: string): boolean;
}

export function defaultSqlSecretRules(secretKey: RegExp, sensitiveSettings: ReadonlySet<string>): SqlSecretRules {
  return {
    secretSetting: (name) => !NOT_SECRET_SETTINGS.has(name) && (sensitiveSettings.has(name) || secretKey.test(name)),
    secretOption: (name) => secretKey.test(name),
    mayBuildSecret: (code) => {
      if (/password|identified|set_config/i.test(code) || secretKey.test(code)) return true;
      if (sensitiveSettings.size === 0) return false;
      const lower = code.toLowerCase();
      for (const n of sensitiveSettings) if (lower.includes(n)) return true;
      return false;
    },
  };
}

let parserReady: boolean | undefined;

/** Loads the parser in this thread; until it is loaded, SQL is redacted by patterns only. */
export async function initSqlRedaction(): Promise<void> {
  await loadModule();
  parserReady = true;
}

/** Whether libpg-query's WASM module is loaded in this thread (initStatementClassifier / loadModule). */
function parserLoaded(): boolean {
  if (parserReady === true) return true;
  try {
    parseSync('SELECT 1');
    parserReady = true;
  } catch {
    return false; // not loaded yet: ask again next time
  }
  return true;
}

/**
 * `sql` with every secret the parse tree shows replaced by REDACTED_LITERAL, or null when the
 * text does not parse as PostgreSQL (or the parser is not loaded in this thread, or the text
 * is too large or holds a NUL): the caller then falls back to patterns.
 *
 * @example
 *   redactSqlByTree(`ALTER ROLE app PASSWORD U&'s\\0065cret'`, rules)
 *   // "ALTER ROLE app PASSWORD '[redacted]'"
 */
export function redactSqlByTree(sql: string, rules: SqlSecretRules, depth = 0): string | null {
  if (sql.includes('\0') || Buffer.byteLength(sql, 'utf8') > MAX_PARSED_SQL_BYTES || !parserLoaded()) return null;
  let tree: unknown;
  try {
    tree = parseSync(sql);
  } catch {
    return null;
  }
  const stmts = (tree as { stmts?: unknown } | null)?.stmts;
  if (stmts === undefined) return sql; // only comments
  if (!Array.isArray(stmts)) return null;
  const finder = new SecretFinder(sql, rules, depth);
  for (const raw of stmts as { stmt?: unknown; stmt_location?: number; stmt_len?: number }[]) {
    finder.statement(raw);
  }
  return finder.apply();
}

interface Replacement {
  start: number;
  end: number;
  text: string;
}

class SecretFinder {
  private readonly tokens: Token[];
  /** Character index of each UTF-8 byte offset (null: the text is ASCII and they agree). */
  private readonly charAt: Uint32Array | null;
  private readonly replacements: Replacement[] = [];
  private stmtStart = 0;
  private stmtEnd = 0;

  constructor(
    private readonly sql: string,
    private readonly rules: SqlSecretRules,
    private readonly depth: number,
  ) {
    this.tokens = tokenize(sql, 'postgres').filter((t) => t.kind !== 'space' && t.kind !== 'comment');
    this.charAt = byteToCharIndex(sql);
  }

  statement(raw: { stmt?: unknown; stmt_location?: number; stmt_len?: number }): void {
    this.stmtStart = this.char(raw.stmt_location ?? 0);
    this.stmtEnd = raw.stmt_len ? this.char((raw.stmt_location ?? 0) + raw.stmt_len) : this.sql.length;
    this.walk(raw.stmt, 0);
  }

  /** The text with every replacement made (overlaps: the first wins). */
  apply(): string {
    if (this.replacements.length === 0) return this.sql;
    this.replacements.sort((a, b) => a.start - b.start);
    let out = '';
    let pos = 0;
    for (const r of this.replacements) {
      if (r.start < pos) continue;
      out += this.sql.slice(pos, r.start) + r.text;
      pos = r.end;
    }
    return out + this.sql.slice(pos);
  }

  private char(byteOffset: number): number {
    if (this.charAt === null) return byteOffset;
    return this.charAt[Math.min(byteOffset, this.charAt.length - 1)]!;
  }

  private walk(node: unknown, level: number): void {
    // The tree mirrors the text, whose size is capped: this depth is a guard, not a limit anyone meets.
    if (node === null || typeof node !== 'object' || level > 10_000) return;
    if (Array.isArray(node)) {
      for (const n of node) this.walk(n, level + 1);
      return;
    }
    const obj = node as Record<string, unknown>;
    for (const type in obj) {
      const body = obj[type];
      // A statement's SET clause (ALTER SYSTEM / ROLE / DATABASE ... SET) is an unwrapped VariableSetStmt.
      if (body !== null && typeof body === 'object' && !Array.isArray(body)) this.visit(type === 'setstmt' ? 'VariableSetStmt' : type, body as Record<string, unknown>);
      this.walk(body, level + 1);
    }
  }

  private visit(type: string, n: Record<string, unknown>): void {
    switch (type) {
      case 'DefElem': {
        const name = typeof n['defname'] === 'string' ? n['defname'].toLowerCase() : '';
        const loc = typeof n['location'] === 'number' ? n['location'] : -1;
        if (loc < 0) return;
        if (name === 'as') {
          // DO '...' / CREATE FUNCTION ... AS '...' [, 'link symbol']: the (first) string is code.
          const t = this.stringTokenFrom(this.char(loc));
          if (t !== undefined) this.body(t);
        } else if (this.rules.secretOption(name) && isStringArg(n['arg'])) {
          const t = this.stringTokenFrom(this.char(loc));
          if (t !== undefined) this.mask(t);
        }
        return;
      }
      case 'VariableSetStmt': {
        const name = typeof n['name'] === 'string' ? n['name'].toLowerCase() : '';
        if (name !== '' && this.rules.secretSetting(name)) this.maskConstants(n['args']);
        return;
      }
      case 'FuncCall': {
        const fn = n['funcname'];
        const last = Array.isArray(fn) ? stringValue(fn[fn.length - 1]) : null;
        const args = n['args'];
        if (last?.toLowerCase() !== 'set_config' || !Array.isArray(args) || args.length < 2) return;
        const name = constantString(args[0]);
        // A name computed at run time may be any setting: its value is masked.
        if (name === null || this.rules.secretSetting(name.toLowerCase())) this.maskConstants(args[1]);
        return;
      }
      case 'CreateSubscriptionStmt':
      case 'AlterSubscriptionStmt':
        if (typeof n['conninfo'] === 'string') this.maskAfterWord('CONNECTION');
        return;
      default:
        return;
    }
  }

  /** Masks every constant (A_Const) inside `node`: a setting's value. */
  private maskConstants(node: unknown): void {
    const visit = (x: unknown): void => {
      if (x === null || typeof x !== 'object') return;
      if (Array.isArray(x)) return x.forEach(visit);
      const o = x as Record<string, unknown>;
      const c = o['A_Const'] as Record<string, unknown> | undefined;
      if (c !== undefined && typeof c['location'] === 'number') {
        const t = this.tokenAt(this.char(c['location']));
        if (t !== undefined) this.mask(t);
      }
      for (const k in o) visit(o[k]);
    };
    visit(node);
  }

  /** Masks the first string after the word `word` in the current statement. */
  private maskAfterWord(word: string): void {
    for (let i = 0; i < this.tokens.length; i++) {
      const t = this.tokens[i]!;
      if (t.start < this.stmtStart || t.start >= this.stmtEnd) continue;
      if (t.kind === 'word' && this.sql.slice(t.start, t.end).toUpperCase() === word) {
        const lit = this.tokens[i + 1];
        if (lit !== undefined && lit.kind === 'string') this.mask(lit);
        return;
      }
    }
  }

  /** The token that starts at `at`, or the first after it. */
  private tokenAt(at: number): Token | undefined {
    return this.tokens.find((t) => t.start >= at);
  }

  /** The first string literal at or after `at`, within the current statement. */
  private stringTokenFrom(at: number): Token | undefined {
    const t = this.tokens.find((x) => x.start >= at && x.kind === 'string');
    return t !== undefined && t.start < this.stmtEnd ? t : undefined;
  }

  private mask(t: Token): void {
    this.replacements.push({ start: t.start, end: this.literalEnd(t), text: REDACTED_LITERAL });
  }

  /** Where a literal ends, with a `UESCAPE 'c'` clause after a U&'...' taken along. */
  private literalEnd(t: Token): number {
    const i = this.tokens.indexOf(t);
    const next = this.tokens[i + 1];
    const esc = this.tokens[i + 2];
    if (next !== undefined && next.kind === 'word' && this.sql.slice(next.start, next.end).toUpperCase() === 'UESCAPE' && esc !== undefined && esc.kind === 'string') return esc.end;
    return t.end;
  }

  /** A code body (its literal token `t`): replaced by its redacted text, quoted again, when that differs. */
  private body(t: Token): void {
    const code = literalValue(this.sql.slice(t.start, this.literalEnd(t)));
    if (code === null) {
      // A body this parser cannot read back (should not happen for text it parsed): masked whole.
      this.mask(t);
      return;
    }
    const redacted = redactBody(code, this.rules, this.depth + 1);
    if (redacted !== code) this.replacements.push({ start: t.start, end: this.literalEnd(t), text: dollarQuote(redacted) });
  }
}

/**
 * A code body's text (plpgsql, SQL or another language) with its secrets removed. Dynamic SQL
 * decides only at run time which value lands in a password's place (`EXECUTE format('ALTER ROLE
 * %I PASSWORD %L', r, pw)`, `'... PASSWORD ' || quote_literal(v)`), so no single literal can be
 * shown to be the secret; a body that mentions a password or a secret setting therefore has
 * EVERY string literal masked, except a literal that is itself SQL (or SQL text with a
 * password keyword: a format string, a fragment), which is kept with its own secrets removed
 * (parse tree when it parses, patterns when it does not). A body that mentions none of them is
 * kept as it is. Literals are found with PostgreSQL's lexing rules, which plpgsql shares.
 */
export function redactBody(code: string, rules: SqlSecretRules, depth: number): string {
  if (!rules.mayBuildSecret(code)) return code;
  const tokens = tokenize(code, 'postgres');
  let out = '';
  let pos = 0;
  for (const t of tokens) {
    if (t.kind !== 'string') continue;
    const text = code.slice(t.start, t.end);
    const value = depth < MAX_BODY_DEPTH ? literalValue(text) : null;
    let replacement = REDACTED_LITERAL;
    if (value !== null && rules.mayBuildSecret(value)) {
      const inner = redactSqlByTree(value, rules, depth) ?? fallbackPatterns(value);
      replacement = inner === value ? text : quoteLiteral(inner);
    }
    out += code.slice(pos, t.start) + replacement;
    pos = t.end;
  }
  return out + code.slice(pos);
}

/** The pattern redaction (redact-event.ts sets it): for literal text inside a body that does not parse. */
let fallbackPatterns: (s: string) => string = () => REDACTED_LITERAL;
export function setPatternFallback(fn: (s: string) => string): void {
  fallbackPatterns = fn;
}

/** The value of one literal token ('...', E'...', U&'...' [UESCAPE], $$...$$), read by the parser; null if it is not one. */
function literalValue(text: string): string | null {
  if (!parserLoaded()) return null;
  try {
    const tree = parseSync(`SELECT ${text}`) as { stmts?: { stmt?: { SelectStmt?: { targetList?: { ResTarget?: { val?: unknown } }[] } } }[] };
    const targets = tree.stmts?.[0]?.stmt?.SelectStmt?.targetList;
    if (tree.stmts?.length !== 1 || targets?.length !== 1) return null;
    return constantString(targets[0]?.ResTarget?.val);
  } catch {
    return null;
  }
}

function isStringArg(arg: unknown): boolean {
  return stringValue(arg) !== null;
}

/** sval of a `{ String: { sval } }` node. */
function stringValue(node: unknown): string | null {
  const s = (node as { String?: { sval?: unknown } } | null)?.String?.sval;
  return typeof s === 'string' ? s : null;
}

/** sval of a string constant (`{ A_Const: { sval: { sval } } }`), null for anything else. */
function constantString(node: unknown): string | null {
  const c = (node as { A_Const?: { sval?: { sval?: unknown } } } | null)?.A_Const;
  if (c === undefined) return null;
  const s = c.sval?.sval;
  return typeof s === 'string' ? s : c.sval !== undefined ? '' : null;
}

/** A standard string literal of `s` (standard_conforming_strings on: only quotes are doubled). */
function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** `s` between dollar quotes with a tag that does not occur in it. */
function dollarQuote(s: string): string {
  let tag = '$$';
  for (let n = 0; s.includes(tag) || s.endsWith(tag.slice(0, -1)); n++) tag = `$vg${n === 0 ? '' : n}$`;
  return tag + s + tag;
}

/** For non-ASCII text: the character index of every UTF-8 byte offset (parse-tree locations are bytes). */
function byteToCharIndex(s: string): Uint32Array | null {
  let ascii = true;
  for (let i = 0; i < s.length && ascii; i++) if (s.charCodeAt(i) > 0x7f) ascii = false;
  if (ascii) return null;
  const map = new Uint32Array(Buffer.byteLength(s, 'utf8') + 1);
  let b = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.codePointAt(i)!;
    const n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    for (let k = 0; k < n; k++) map[b + k] = i;
    b += n;
    if (c > 0xffff) i++;
  }
  map[b] = s.length;
  return map;
}
