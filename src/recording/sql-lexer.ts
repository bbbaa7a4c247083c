// A lexer for SQL text, just enough to find string literals, quoted names and words where
// PostgreSQL's (or MySQL's) scanner would: quotes, E'' / U&'' strings, dollar quotes and
// nested comments. The redaction uses it to map the parse tree's positions to literal spans,
// and on its own when text does not parse (redact-event.ts).

export type TokenKind = 'word' | 'string' | 'quoted' | 'op' | 'space' | 'comment';
export interface Token {
  kind: TokenKind;
  start: number;
  end: number;
}

export const isWordStart = (c: string) => /[A-Za-z_\u0080-\uffff]/.test(c);
export const isWordPart = (c: string) => /[A-Za-z0-9_$\u0080-\uffff]/.test(c);

/** End of a '...' literal starting at `i` (the quote), by PostgreSQL rules ('' escapes a quote). */
export function endOfStandardString(sql: string, i: number): number {
  let j = i + 1;
  for (;;) {
    if (j >= sql.length) return sql.length;
    if (sql[j] === "'") {
      if (sql[j + 1] === "'") j += 2;
      else return j + 1;
    } else j++;
  }
}

/** End of a literal where backslash escapes the next character (E'...' and MySQL strings). */
export function endOfBackslashString(sql: string, i: number, quote: string): number {
  let j = i + 1;
  for (;;) {
    if (j >= sql.length) return sql.length;
    const c = sql[j];
    if (c === '\\') j += 2;
    else if (c === quote) {
      if (sql[j + 1] === quote) j += 2;
      else return j + 1;
    } else j++;
  }
}

/** End of a "name" (or `name`) starting at `i` (the quote); a doubled quote stays inside. */
function endOfQuotedName(sql: string, i: number, c: string): number {
  const close = sql.indexOf(c, i + 1);
  let end = close < 0 ? sql.length : close + 1;
  while (end < sql.length && sql[end] === c) {
    const next = sql.indexOf(c, end + 1);
    end = next < 0 ? sql.length : next + 1;
  }
  return end;
}

export type Dialect = 'postgres' | 'mysql';

export function tokenize(sql: string, dialect: Dialect): Token[] {
  const tokens: Token[] = [];
  const my = dialect === 'mysql';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    const start = i;
    let kind: TokenKind;
    if (/\s/.test(c)) {
      while (i < sql.length && /\s/.test(sql[i]!)) i++;
      kind = 'space';
    } else if ((c === '-' && sql[i + 1] === '-') || (my && c === '#')) {
      while (i < sql.length && sql[i] !== '\n') i++;
      kind = 'comment';
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 1; // PostgreSQL block comments nest; MySQL's do not, and never contain '/*' in practice
      i += 2;
      while (i < sql.length && depth > 0) {
        if (!my && sql[i] === '/' && sql[i + 1] === '*') (depth++, (i += 2));
        else if (sql[i] === '*' && sql[i + 1] === '/') (depth--, (i += 2));
        else i++;
      }
      kind = 'comment';
    } else if (c === "'") {
      i = my ? endOfBackslashString(sql, i, "'") : endOfStandardString(sql, i);
      kind = 'string';
    } else if (!my && (c === 'E' || c === 'e') && sql[i + 1] === "'" && (i === 0 || !isWordPart(sql[i - 1]!))) {
      i = endOfBackslashString(sql, i + 1, "'");
      kind = 'string';
    } else if (!my && (c === 'U' || c === 'u') && sql[i + 1] === '&' && (sql[i + 2] === "'" || sql[i + 2] === '"') && (i === 0 || !isWordPart(sql[i - 1]!))) {
      // U&'...' (Unicode escapes; an optional UESCAPE clause follows as its own tokens) and U&"name".
      if (sql[i + 2] === "'") {
        i = endOfStandardString(sql, i + 2);
        kind = 'string';
      } else {
        i = endOfQuotedName(sql, i + 2, '"');
        kind = 'quoted';
      }
    } else if (!my && /[bBxXnN]/.test(c) && sql[i + 1] === "'" && (i === 0 || !isWordPart(sql[i - 1]!))) {
      // B'0101', X'1f', N'national': standard strings with a prefix.
      i = endOfStandardString(sql, i + 1);
      kind = 'string';
    } else if (my && c === '"') {
      i = endOfBackslashString(sql, i, '"');
      kind = 'string';
    } else if (c === '"' || c === '`') {
      i = endOfQuotedName(sql, i, c);
      kind = c === '"' ? 'quoted' : 'word';
    } else if (!my && c === '$' && /[A-Za-z_$]/.test(sql[i + 1] ?? '')) {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 80));
      if (m !== null) {
        const close = sql.indexOf(m[0], i + m[0].length);
        i = close < 0 ? sql.length : close + m[0].length;
        kind = 'string';
      } else {
        i++;
        kind = 'op';
      }
    } else if (isWordStart(c)) {
      while (i < sql.length && isWordPart(sql[i]!)) i++;
      kind = 'word';
    } else {
      i++;
      kind = 'op';
    }
    tokens.push({ kind, start, end: i });
  }
  return tokens;
}

