// The C++ reader of upstream response heads (native/http/http-response-head.cc) against the
// JavaScript reader it stands in for (upstream-response-parser.ts readHeadFields and the head
// checks of takeHead): where C++ vouches for a head, every field must equal what JavaScript
// reads; where JavaScript refuses a head, C++ must not vouch for it. Generated heads mix the
// bytes and values that matter: CR/LF, trimmed characters (HT, VT, FF, SP, NBSP), control and
// non-ASCII bytes, Content-Length / Transfer-Encoding / Connection values and repeats.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { native } from '../../src/native.js';
import { MAX_RESPONSE_HEAD_BYTES, readHeadFields, readWholeHeadNatively, type HeadFields } from '../../workers/http/upstream-response-parser.js';

const addon = native();

/** What the JavaScript reader makes of `bytes` when the whole head is there: fields, or null (refused or incomplete). */
function jsRead(bytes: Buffer): { used: number; fields: HeadFields } | null {
  const at = bytes.indexOf('\r\n\r\n');
  if (at < 0 || at + 4 > MAX_RESPONSE_HEAD_BYTES) return null;
  for (let i = bytes.indexOf(10); i >= 0 && i < at; i = bytes.indexOf(10, i + 1)) if (i === 0 || bytes[i - 1] !== 13) return null;
  try {
    return { used: at + 4, fields: readHeadFields(bytes.toString('latin1', 0, at)) };
  } catch {
    return null;
  }
}

const cRead = readWholeHeadNatively;

describe('readResponseHead (C++) against the JavaScript head reader', () => {
  it('reads a typical head exactly as JavaScript does', () => {
    const head = Buffer.from('HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: 1519\r\nConnection: keep-alive\r\nX-Note: caf\xe9 \xa0\r\n\r\n{"result":[]}', 'latin1');
    const c = cRead(head);
    assert.notEqual(c, null);
    assert.deepEqual(c, jsRead(head));
    assert.equal(c!.fields.rawHeaders[9], 'caf\xe9'); // trimmed of SP and NBSP, bytes as latin1
    const chunked = Buffer.from('HTTP/1.0 404 Not Found\r\nTransfer-Encoding: Chunked\r\nConnection: close, foo\r\n\r\n', 'latin1');
    assert.deepEqual(cRead(chunked), jsRead(chunked));
    assert.equal(cRead(chunked)!.fields.closeToken, true);
  });

  it('leaves incomplete, oversized and malformed heads to JavaScript', () => {
    for (const text of [
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n', // no blank line yet
      'HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n', // bare LF
      'HTTP/1.1 200 OK\r\n folded: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n',
      'HTTP/1.1 20 OK\r\n\r\n',
      'HTTP/2.0 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n', // valid, but lists are JavaScript's to judge
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
      `HTTP/1.1 200 OK\r\n${'X: y\r\n'.repeat(201)}\r\n`,
      `HTTP/1.1 200 OK\r\nX: ${'y'.repeat(MAX_RESPONSE_HEAD_BYTES)}\r\n\r\n`,
    ]) {
      assert.equal(addon.readResponseHead(Buffer.from(text, 'latin1'), MAX_RESPONSE_HEAD_BYTES), null, JSON.stringify(text.slice(0, 60)));
    }
  });

  it('agrees on generated heads: same fields where C++ vouches, never vouching for a head JavaScript refuses', () => {
    const piece = fc.constantFrom('a', 'Z', '0', '7', ' ', '\t', '\x0b', '\x0c', '\xa0', '\x85', '\x7f', '\x80', '\xff', ',', ';', ':', '"', 'close', 'Keep-Alive', 'chunked', 'gzip', '12', '007', '\r', '\x00');
    const value = fc.array(piece, { maxLength: 6 }).map((p) => p.join(''));
    const name = fc.constantFrom('Content-Length', 'content-length', 'Transfer-Encoding', 'Connection', 'CONNECTION', 'X-A', 'x_b!', 'Bad Name', '', ' X', 'X\x80', 'Date');
    const line = fc.oneof(
      fc.tuple(name, fc.constantFrom(':', ': ', ':\t', ' :'), value).map(([n, sep, v]) => `${n}${sep}${v}`),
      fc.constantFrom('', ' folded', 'no colon', 'Content-Length: 19', 'Connection: keep-alive', 'Transfer-Encoding: chunked'),
    );
    const status = fc.constantFrom('HTTP/1.1 200 OK', 'HTTP/1.0 204 No Content', 'HTTP/1.1 100 Continue', 'HTTP/1.1 301', 'HTTP/1.1 200 ', 'HTTP/1.1 200 caf\xe9', 'HTTP/1.1 200  two', 'HTTP/1.1 099 x', 'HTTP/1.2 200 OK', 'http/1.1 200 OK', 'HTTP/1.1 2000 OK', 'HTTP/1.1 200 O\x7fK', 'HTTP/1.1 200\tOK');
    const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\r\n', '\n', '\r');
    let vouched = 0;
    let runs = 0;
    fc.assert(
      fc.property(status, fc.array(fc.tuple(line, eol), { maxLength: 8 }), fc.constantFrom('', 'body', '\r\n'), (st, lines, tail) => {
        runs++;
        const text = `${st}\r\n${lines.map(([l, e]) => l + e).join('')}\r\n${tail}`;
        const bytes = Buffer.from(text, 'latin1');
        const c = cRead(bytes);
        const js = jsRead(bytes);
        if (c !== null) {
          vouched++;
          assert.deepEqual(c, js, JSON.stringify(text));
        }
        if (js === null) assert.equal(c, null, JSON.stringify(text));
      }),
      { numRuns: 20000 },
    );
    // Not vacuous: C++ takes a good share of the heads JavaScript accepts.
    assert.ok(vouched > runs / 20, `C++ vouched for ${vouched} of ${runs} generated heads`);
  });
});
