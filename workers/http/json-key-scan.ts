// A validating single-pass JSON scanner for the body guard: it checks that a body is JSON
// exactly as JSON.parse would accept it (same grammar, bytes as JSON.parse sees them after UTF-8
// decoding), and reports the object keys the guard cares about, at any depth, without building
// the document: a search body is mostly one 1536-number embedding, which JSON.parse would turn
// into 1536 doubles only for the guard to look past them. Every occurrence of a wanted key is
// reported (duplicate keys included), so the guard judges the strictest reading of a body.

import { native } from '../../src/native.js';

const addon = native();

/** What to report while scanning. Key names are compared after JSON unescaping. */
export interface JsonKeyScanSpec {
  /** Keys whose JSON-number value is reported (the largest one); any other value but `null` is reported as not a number. */
  numberKeys: ReadonlySet<string>;
  /**
   * Keys whose value asks for something unless it is `false` or `null` (JSON's "not set"):
   * `true`, `1`, `"true"`, `[]`, `{}` all ask. Types are not trusted: an upstream may read
   * `"true"` or `1` as true.
   */
  flagKeys: ReadonlySet<string>;
  /** Keys holding a list: reported when one of its direct string elements is in `listValues`. */
  listKeys: ReadonlySet<string>;
  listValues: ReadonlySet<string>;
}

export interface JsonKeyScanFindings {
  /** The first flag key set, and where its value starts (see `jsonValueText`). */
  flag: { key: string; valueStart: number } | null;
  /** The first list key holding a listed value, and that value. */
  listHit: { key: string; value: string } | null;
  /** The largest number given to a number key. */
  number: { key: string; value: number } | null;
  /** The first number key given something other than a number or `null`, and where that value starts. */
  notNumber: { key: string; valueStart: number } | null;
}

export type JsonKeyScanResult = { ok: true; findings: JsonKeyScanFindings } | { ok: false; reason: 'invalid' | 'too-deep' };

const INVALID: JsonKeyScanResult = { ok: false, reason: 'invalid' };
const TOO_DEEP: JsonKeyScanResult = { ok: false, reason: 'too-deep' };

const OBJECT = 1;
const ARRAY = 2;
/** An array that is the value of a list key: its direct string elements are checked. */
const WATCHED_ARRAY = 3;

const WANT_NUMBER = 1;
const WANT_FLAG = 2;
const WANT_LIST = 4;

const enum Ch {
  Tab = 0x09,
  Lf = 0x0a,
  Cr = 0x0d,
  Space = 0x20,
  Quote = 0x22,
  Plus = 0x2b,
  Comma = 0x2c,
  Minus = 0x2d,
  Dot = 0x2e,
  Slash = 0x2f,
  Zero = 0x30,
  Nine = 0x39,
  Colon = 0x3a,
  UpperE = 0x45,
  LBracket = 0x5b,
  Backslash = 0x5c,
  RBracket = 0x5d,
  LowerE = 0x65,
  LBrace = 0x7b,
  RBrace = 0x7d,
}

/** Set by `skipString`: the string just skipped had an escape (its text needs JSON unescaping). */
let lastStringEscaped = false;

function skipWs(b: Uint8Array, i: number): number {
  const n = b.length;
  while (i < n) {
    const c = b[i]!;
    if (c !== Ch.Space && c !== Ch.Lf && c !== Ch.Cr && c !== Ch.Tab) break;
    i++;
  }
  return i;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** `i` at the opening quote; returns the index after the closing quote, or -1 when invalid. */
function skipString(b: Uint8Array, i: number): number {
  const n = b.length;
  let escaped = false;
  i++;
  while (i < n) {
    const c = b[i]!;
    if (c === Ch.Quote) {
      lastStringEscaped = escaped;
      return i + 1;
    }
    if (c === Ch.Backslash) {
      escaped = true;
      const e = b[i + 1];
      // " \ / b f n r t
      if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) i += 2;
      else if (e === 0x75 && i + 5 < n && isHex(b[i + 2]!) && isHex(b[i + 3]!) && isHex(b[i + 4]!) && isHex(b[i + 5]!)) i += 6;
      else return -1;
      continue;
    }
    if (c < 0x20) return -1; // control characters must be escaped
    i++;
  }
  return -1;
}

function skipDigits(b: Uint8Array, i: number): number {
  const n = b.length;
  while (i < n) {
    const c = b[i]!;
    if (c < Ch.Zero || c > Ch.Nine) break;
    i++;
  }
  return i;
}

/** `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` from `i`; returns its end, or -1. */
function skipNumber(b: Uint8Array, i: number): number {
  if (b[i] === Ch.Minus) i++;
  const c = b[i];
  if (c === Ch.Zero) i++;
  else if (c !== undefined && c > Ch.Zero && c <= Ch.Nine) i = skipDigits(b, i + 1);
  else return -1;
  if (b[i] === Ch.Dot) {
    const d = b[i + 1];
    if (d === undefined || d < Ch.Zero || d > Ch.Nine) return -1;
    i = skipDigits(b, i + 2);
  }
  const e = b[i];
  if (e === Ch.LowerE || e === Ch.UpperE) {
    i++;
    if (b[i] === Ch.Plus || b[i] === Ch.Minus) i++;
    const d = b[i];
    if (d === undefined || d < Ch.Zero || d > Ch.Nine) return -1;
    i = skipDigits(b, i + 1);
  }
  return i;
}

/**
 * `i` at a comma after a number inside an array: skips `,number` repeats (whitespace allowed
 * around commas) and returns the index after the last number, or -1 when a number is malformed.
 * Stops at anything else (the state machine judges it). The scanner runs the addon's C++ twin
 * (native/json-number-list.h, about 4x faster on an embedding); this is the reference the
 * tests compare it with.
 */
export function skipNumberList(b: Uint8Array, i: number): number {
  const n = b.length;
  while (i < n && b[i] === Ch.Comma) {
    let j = i + 1;
    let c = b[j];
    while (c === Ch.Space || c === Ch.Lf || c === Ch.Cr || c === Ch.Tab) c = b[++j];
    if (c !== Ch.Minus && (c === undefined || c < Ch.Zero || c > Ch.Nine)) return i; // not a number: back to the comma
    // Inline of skipNumber (the hot loop of a search body).
    if (c === Ch.Minus) c = b[++j];
    if (c === Ch.Zero) c = b[++j];
    else if (c !== undefined && c > Ch.Zero && c <= Ch.Nine) {
      c = b[++j];
      while (c !== undefined && c >= Ch.Zero && c <= Ch.Nine) c = b[++j];
    } else return -1;
    if (c === Ch.Dot) {
      c = b[++j];
      if (c === undefined || c < Ch.Zero || c > Ch.Nine) return -1;
      c = b[++j];
      while (c !== undefined && c >= Ch.Zero && c <= Ch.Nine) c = b[++j];
    }
    if (c === Ch.LowerE || c === Ch.UpperE) {
      c = b[++j];
      if (c === Ch.Plus || c === Ch.Minus) c = b[++j];
      if (c === undefined || c < Ch.Zero || c > Ch.Nine) return -1;
      c = b[++j];
      while (c !== undefined && c >= Ch.Zero && c <= Ch.Nine) c = b[++j];
    }
    i = j;
    while (c === Ch.Space || c === Ch.Lf || c === Ch.Cr || c === Ch.Tab) c = b[++i];
  }
  return i;
}

function matches(b: Uint8Array, i: number, word: string): boolean {
  if (i + word.length > b.length) return false;
  for (let k = 0; k < word.length; k++) if (b[i + k] !== word.charCodeAt(k)) return false;
  return true;
}

/** A string token's text (`start` at its opening quote, `end` after its closing quote). */
function stringText(b: Buffer, start: number, end: number, escaped: boolean): string {
  // Escapes: let JSON.parse unescape exactly as it would in the whole document.
  if (escaped) return JSON.parse(b.toString('utf8', start, end)) as string;
  return b.toString('utf8', start + 1, end - 1);
}

const keyLengthCache = new WeakMap<JsonKeyScanSpec, [number, number]>();

/** Shortest and longest wanted key, in UTF-8 bytes. */
function keyLengths(spec: JsonKeyScanSpec): [number, number] {
  let r = keyLengthCache.get(spec);
  if (r === undefined) {
    r = [Infinity, 0];
    for (const set of [spec.numberKeys, spec.flagKeys, spec.listKeys]) {
      for (const k of set) {
        const len = Buffer.byteLength(k);
        r[0] = Math.min(r[0], len);
        r[1] = Math.max(r[1], len);
      }
    }
    keyLengthCache.set(spec, r);
  }
  return r;
}

/**
 * Scans `body` (lent, not kept). Containers nested deeper than `maxDepth` (the outermost is at
 * depth 0) give `too-deep`; anything JSON.parse would refuse gives `invalid`.
 *
 * @example
 * scanJsonKeys(Buffer.from('{"vector":[0.1,0.2],"limit":5000}'), spec, 64);
 * // { ok: true, findings: { flag: null, listHit: null, number: { key: 'limit', value: 5000 }, notNumber: null } }
 */
export function scanJsonKeys(body: Buffer, spec: JsonKeyScanSpec, maxDepth: number): JsonKeyScanResult {
  const b = body;
  const n = b.length;
  const findings: JsonKeyScanFindings = { flag: null, listHit: null, number: null, notNumber: null };
  // Keys are only decoded when their length could match a wanted key.
  const [minKey, maxKey] = keyLengths(spec);
  const kinds = new Uint8Array(maxDepth + 1);
  /** The list key of each watched array, by depth. */
  const listKeys: string[] = [];
  let depth = 0;
  let want = 0;
  let wantKey = '';
  let i = skipWs(b, 0);
  // 0: a value is expected at i; 1: a value just ended; 2: an object key is expected at i.
  let state = 0;
  for (;;) {
    if (state === 0) {
      if (i >= n) return INVALID;
      const c = b[i]!;
      const w = want;
      want = 0;
      if (c === Ch.LBrace || c === Ch.LBracket) {
        if (depth > maxDepth) return TOO_DEEP;
        const close = c === Ch.LBrace ? Ch.RBrace : Ch.RBracket;
        const start = i;
        i = skipWs(b, i + 1);
        const empty = b[i] === close;
        if ((w & WANT_FLAG) !== 0 && findings.flag === null) findings.flag = { key: wantKey, valueStart: start };
        if ((w & WANT_NUMBER) !== 0 && findings.notNumber === null) findings.notNumber = { key: wantKey, valueStart: start };
        if (empty) {
          i++;
          state = 1;
          continue;
        }
        const kind = c === Ch.LBrace ? OBJECT : (w & WANT_LIST) !== 0 ? WATCHED_ARRAY : ARRAY;
        if (kind === WATCHED_ARRAY) listKeys[depth] = wantKey;
        kinds[depth++] = kind;
        state = c === Ch.LBrace ? 2 : 0;
        continue;
      }
      if (c === Ch.Quote) {
        const start = i;
        i = skipString(b, i);
        if (i < 0) return INVALID;
        if ((w & WANT_FLAG) !== 0 && findings.flag === null) findings.flag = { key: wantKey, valueStart: start };
        if ((w & WANT_NUMBER) !== 0 && findings.notNumber === null) findings.notNumber = { key: wantKey, valueStart: start };
        if (depth > 0 && kinds[depth - 1] === WATCHED_ARRAY && findings.listHit === null) {
          const text = stringText(b, start, i, lastStringEscaped);
          if (spec.listValues.has(text)) findings.listHit = { key: listKeys[depth - 1]!, value: text };
        }
        state = 1;
        continue;
      }
      if (c === Ch.Minus || (c >= Ch.Zero && c <= Ch.Nine)) {
        const start = i;
        i = skipNumber(b, i);
        if (i < 0) return INVALID;
        if ((w & WANT_FLAG) !== 0 && findings.flag === null) findings.flag = { key: wantKey, valueStart: start };
        if ((w & WANT_NUMBER) !== 0) {
          const value = Number(b.toString('latin1', start, i));
          if (findings.number === null || value > findings.number.value) findings.number = { key: wantKey, value };
        } else if (depth > 0 && kinds[depth - 1] !== OBJECT && b[i] === Ch.Comma) {
          // An embedding: run through `number,number,...` here rather than once round the state machine per element.
          i = addon.skipJsonNumberList(b, i);
          if (i < 0) return INVALID;
        }
        state = 1;
        continue;
      }
      if (c === 0x74 /* t */ && matches(b, i, 'true')) {
        if ((w & WANT_FLAG) !== 0 && findings.flag === null) findings.flag = { key: wantKey, valueStart: i };
        if ((w & WANT_NUMBER) !== 0 && findings.notNumber === null) findings.notNumber = { key: wantKey, valueStart: i };
        i += 4;
        state = 1;
        continue;
      }
      if (c === 0x66 /* f */ && matches(b, i, 'false')) {
        if ((w & WANT_NUMBER) !== 0 && findings.notNumber === null) findings.notNumber = { key: wantKey, valueStart: i };
        i += 5;
        state = 1;
        continue;
      }
      if (c === 0x6e /* n */ && matches(b, i, 'null')) {
        i += 4;
        state = 1;
        continue;
      }
      return INVALID;
    }
    if (state === 1) {
      i = skipWs(b, i);
      if (depth === 0) return i === n ? { ok: true, findings } : INVALID;
      const c = b[i];
      const kind = kinds[depth - 1]!;
      if (c === Ch.Comma) {
        i = skipWs(b, i + 1);
        state = kind === OBJECT ? 2 : 0;
        continue;
      }
      if (c === (kind === OBJECT ? Ch.RBrace : Ch.RBracket)) {
        i++;
        depth--;
        continue;
      }
      return INVALID;
    }
    // state 2: an object key
    if (b[i] !== Ch.Quote) return INVALID;
    const start = i;
    i = skipString(b, i);
    if (i < 0) return INVALID;
    const escaped = lastStringEscaped;
    const len = i - start - 2;
    if (escaped || (len >= minKey && len <= maxKey)) {
      const key = stringText(b, start, i, escaped);
      want = (spec.numberKeys.has(key) ? WANT_NUMBER : 0) | (spec.flagKeys.has(key) ? WANT_FLAG : 0) | (spec.listKeys.has(key) ? WANT_LIST : 0);
      if (want !== 0) wantKey = key;
    }
    i = skipWs(b, i);
    if (b[i] !== Ch.Colon) return INVALID;
    i = skipWs(b, i + 1);
    state = 0;
  }
}

/** The JSON text of the value starting at `start` in a body `scanJsonKeys` accepted (for messages). */
export function jsonValueText(body: Buffer, start: number): string {
  const b = body;
  let i = start;
  const c = b[i];
  if (c === Ch.LBrace || c === Ch.LBracket) {
    let depth = 0;
    while (i < b.length) {
      const d = b[i]!;
      if (d === Ch.Quote) {
        i = skipString(b, i);
        if (i < 0) break;
        continue;
      }
      if (d === Ch.LBrace || d === Ch.LBracket) depth++;
      else if (d === Ch.RBrace || d === Ch.RBracket) {
        depth--;
        if (depth === 0) {
          i++;
          break;
        }
      }
      i++;
    }
  } else if (c === Ch.Quote) {
    i = skipString(b, i);
  } else {
    while (i < b.length && b[i] !== Ch.Comma && b[i] !== Ch.RBrace && b[i] !== Ch.RBracket && b[i]! > Ch.Space) i++;
  }
  return b.toString('utf8', start, i < 0 ? b.length : i);
}
