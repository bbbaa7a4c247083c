// Unit tests of the strict incremental HTTP/1.1 response parser of the upstream leg
// (workers/http/upstream-response-parser.ts): every framing (Content-Length, chunked,
// read-until-close, no body), interim responses, each strictness rule, the keep-alive
// decision, bytes after the response, and a fast-check property that any split of a
// response parses like the whole.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_INTERIM_RESPONSES, MAX_RESPONSE_HEAD_BYTES, MAX_RESPONSE_HEADER_COUNT, ResponseParser, UpstreamProtocolError } from '../../workers/http/upstream-response-parser.js';
import type { ResponseHead } from '../../workers/http/upstream-response-parser.js';

interface Parsed {
  heads: ResponseHead[];
  body: Buffer;
  /** One entry per `end` call: the `rest` it reported (copied). */
  ends: (Buffer | null)[];
  parser: ResponseParser;
}

/** Feeds `pieces` in order (each a fresh copy, so views the parser keeps are of its own input), then `finish()` if asked. */
function parse(method: string, pieces: (Buffer | string)[], opts: { finish?: boolean } = {}): Parsed {
  const heads: ResponseHead[] = [];
  const body: Buffer[] = [];
  const ends: (Buffer | null)[] = [];
  const parser = new ResponseParser(method, {
    head: (h) => {
      assert.equal(ends.length, 0, 'head after end');
      heads.push(h);
    },
    body: (b) => {
      assert.equal(heads.length, 1, 'body before head');
      assert.equal(ends.length, 0, 'body after end');
      body.push(Buffer.from(b));
    },
    end: (rest) => {
      assert.equal(heads.length, 1, 'end before head');
      ends.push(rest === null ? null : Buffer.from(rest));
    },
  });
  for (const p of pieces) parser.feed(Buffer.from(typeof p === 'string' ? Buffer.from(p, 'latin1') : p));
  if (opts.finish) parser.finish();
  return { heads, body: Buffer.concat(body), ends, parser };
}

/** Every way of cutting `text` in two, plus one-byte pieces. */
function splits(text: string): string[][] {
  const out: string[][] = [[text], text.split('')];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

function rejects(method: string, pieces: string[], message: RegExp, opts: { finish?: boolean } = {}): void {
  assert.throws(
    () => parse(method, pieces, opts),
    (err: unknown) => {
      assert.ok(err instanceof UpstreamProtocolError, `not an UpstreamProtocolError: ${String(err)}`);
      assert.equal(err.code, 'ERR_VG_UPSTREAM_PROTOCOL');
      assert.match(err.message, message);
      return true;
    },
  );
}

describe('framing', () => {
  it('Content-Length body, at every split, with the head as sent', () => {
    const text = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\nX-Empty:\r\n\r\n{"result":[]}';
    for (const pieces of splits(text)) {
      const r = parse('GET', pieces);
      assert.equal(r.heads.length, 1);
      const h = r.heads[0]!;
      assert.equal(h.status, 200);
      assert.equal(h.reason, 'OK');
      assert.deepEqual(h.rawHeaders, ['Content-Type', 'application/json', 'Content-Length', '13', 'X-Empty', '']);
      assert.equal(h.contentLength, 13);
      assert.equal(h.keepAlive, true);
      assert.equal(r.body.toString(), '{"result":[]}');
      assert.deepEqual(r.ends, [null]);
      assert.equal(r.parser.done, true);
    }
  });

  it('Content-Length: 0 ends the response at the head', () => {
    for (const pieces of splits('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')) {
      const r = parse('GET', pieces);
      assert.equal(r.heads[0]!.contentLength, 0);
      assert.equal(r.body.length, 0);
      assert.deepEqual(r.ends, [null]);
      assert.equal(r.parser.done, true);
    }
  });

  it('chunked with chunk extensions and trailers, at every split', () => {
    const text =
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5;name=value\r\nhello\r\n' +
      '1 ;quoted="a;b"\r\n,\r\n' +
      'A\r\n0123456789\r\n' +
      '0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n';
    for (const pieces of splits(text)) {
      const r = parse('GET', pieces);
      assert.equal(r.heads[0]!.contentLength, null);
      assert.equal(r.heads[0]!.keepAlive, true);
      assert.equal(r.body.toString(), 'hello,0123456789');
      assert.deepEqual(r.ends, [null]);
    }
  });

  it('a chunked body is incomplete until the trailer section ends', () => {
    const r = parse('GET', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n']);
    assert.equal(r.body.toString(), 'abc');
    assert.deepEqual(r.ends, []);
    assert.equal(r.parser.done, false);
    assert.throws(() => r.parser.finish(), UpstreamProtocolError);
  });

  it('no framing: read until close, ended by finish()', () => {
    for (const pieces of splits('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this\r\n\r\nis body')) {
      const r = parse('GET', pieces);
      assert.equal(r.heads[0]!.keepAlive, false);
      assert.equal(r.heads[0]!.contentLength, null);
      assert.equal(r.parser.untilClose, true);
      assert.deepEqual(r.ends, []);
      r.parser.finish();
      assert.equal(r.body.toString(), 'all of this\r\n\r\nis body');
    }
    const r = parse('GET', ['HTTP/1.1 200 OK\r\n\r\nx'], { finish: true });
    assert.equal(r.parser.done, true);
    assert.equal(r.body.toString(), 'x');
  });

  it('Transfer-Encoding whose last coding is not chunked is read until close', () => {
    const r = parse('GET', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nabcde'], { finish: true });
    assert.equal(r.body.toString(), '5\r\nabcde');
    assert.equal(r.heads[0]!.keepAlive, false);
    assert.deepEqual(r.ends, [null]);
  });

  for (const [name, method, status] of [
    ['HEAD', 'HEAD', 200],
    ['204', 'GET', 204],
    ['304', 'GET', 304],
  ] as const) {
    it(`${name}: no body even with Content-Length or Transfer-Encoding, and the end is reported`, () => {
      const text = `HTTP/1.1 ${status} X\r\nContent-Length: 1234\r\nTransfer-Encoding: chunked\r\n\r\n`;
      for (const pieces of splits(text)) {
        const r = parse(method, pieces);
        assert.equal(r.heads.length, 1);
        assert.equal(r.heads[0]!.status, status);
        assert.equal(r.heads[0]!.contentLength, method === 'HEAD' ? 1234 : null);
        assert.equal(r.body.length, 0);
        assert.deepEqual(r.ends, [null], 'end() must be called: the pool releases the connection on it');
        assert.equal(r.parser.done, true);
        r.parser.finish(); // a close after a complete response is fine
      }
    });
  }

  it('100 Continue and 103 Early Hints are skipped, then the final response', () => {
    const text = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok';
    for (const pieces of splits(text)) {
      const r = parse('POST', pieces);
      assert.equal(r.heads.length, 1);
      assert.equal(r.heads[0]!.status, 201);
      assert.equal(r.body.toString(), 'ok');
      assert.deepEqual(r.ends, [null]);
    }
  });

  it('101 Switching Protocols is refused', () => {
    rejects('GET', ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'], /switched protocols \(101\)/);
  });

  it('reports the bytes that follow the response as `rest`', () => {
    const cases: [string, string, string][] = [
      ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi', 'HTTP/1.1 200 OK\r\n'],
      ['GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n', 'junk'],
      ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'extra'],
      ['HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n', 'HTTP/1.1 200 OK'],
      ['GET', 'HTTP/1.1 204 No Content\r\n\r\n', 'x'],
    ];
    for (const [method, response, extra] of cases) {
      const r = parse(method, [response + extra]);
      assert.equal(r.ends.length, 1, response);
      assert.equal(r.ends[0]?.toString('latin1'), extra, response);
    }
  });

  it('a partial head is copied: the caller may reuse its input buffer', () => {
    const heads: ResponseHead[] = [];
    const body: Buffer[] = [];
    const parser = new ResponseParser('GET', { head: (h) => heads.push(h), body: (b) => body.push(Buffer.from(b)), end: () => {} });
    const reused = Buffer.alloc(64);
    const first = 'HTTP/1.1 200 OK\r\nX-A: one\r\n';
    reused.write(first, 'latin1');
    parser.feed(reused.subarray(0, first.length));
    reused.fill(0x21); // a reading loop's buffer, refilled with the next read
    const second = 'Content-Length: 2\r\n\r\nok';
    reused.write(second, 'latin1');
    parser.feed(reused.subarray(0, second.length));
    assert.deepEqual(heads[0]?.rawHeaders, ['X-A', 'one', 'Content-Length', '2']);
    assert.equal(Buffer.concat(body).toString(), 'ok');
  });

  it('status line: reason may be empty or missing; the version must be HTTP/1.0 or 1.1', () => {
    assert.equal(parse('GET', ['HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n']).heads[0]!.reason, '');
    assert.equal(parse('GET', ['HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n']).heads[0]!.reason, '');
    assert.equal(parse('GET', ['HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n']).heads[0]!.reason, 'Service Unavailable');
    rejects('GET', ['HTTP/2 200 OK\r\n\r\n'], /malformed status line/);
    rejects('GET', ['HTTP/1.1 20 OK\r\n\r\n'], /malformed status line/);
    rejects('GET', ['http/1.1 200 OK\r\n\r\n'], /malformed status line/);
    rejects('GET', ['\r\nHTTP/1.1 200 OK\r\n\r\n'], /malformed status line|bare LF/);
  });
});

describe('strictness', () => {
  it('bare LF in the head', () => {
    rejects('GET', ['HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n'], /bare LF/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nA: b\nContent-Length: 0\r\n\r\n'], /bare LF/);
  });

  it('a head with bare LFs only (no CRLF CRLF ever) is refused as it arrives, not held', () => {
    rejects('GET', ['HTTP/1.1 200 OK\nContent-Length: 2\n\nhi'], /bare LF/);
    rejects('GET', ['HTTP/1.1 200 OK\r', '\nA: b', '\n'], /bare LF/);
    rejects('GET', ['\n'], /bare LF/);
    for (const pieces of splits('HTTP/1.1 200 OK\r\nA: b\nB: c')) rejects('GET', pieces, /bare LF/);
    // CR and LF in different pieces is not a bare LF.
    const r = parse('GET', ['HTTP/1.1 200 OK\r', '\n', 'Content-Length: 0\r', '\n\r', '\n']);
    assert.deepEqual(r.ends, [null]);
  });

  it('bare LF in a chunked body', () => {
    rejects('GET', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n'], /bare LF/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n'], /bare LF|longer than its chunk size/);
  });

  it('obs-fold', () => {
    rejects('GET', ['HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n'], /obs-fold/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nX-A: one\r\n\ttwo\r\nContent-Length: 0\r\n\r\n'], /obs-fold/);
  });

  it('malformed header lines and control characters in values', () => {
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n'], /malformed header line/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nno colon here\r\n\r\n'], /malformed header line/);
    rejects('GET', ['HTTP/1.1 200 OK\r\n: empty name\r\n\r\n'], /malformed header line/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n'], /control character/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n'], /control character/);
  });

  it('conflicting or invalid Content-Length; `1, 1` accepted', () => {
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'], /conflicting Content-Length/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab'], /invalid Content-Length/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n'], /invalid Content-Length/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n'], /invalid Content-Length/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n'], /invalid Content-Length/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n'], /invalid Content-Length/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length: 1 1\r\n\r\n'], /invalid Content-Length/);
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999\r\n\r\n'], /invalid Content-Length/);
    for (const cl of ['1, 1', '1,1', '1 ,  1, 1']) {
      const r = parse('GET', [`HTTP/1.1 200 OK\r\nContent-Length: ${cl}\r\n\r\nab`]);
      assert.equal(r.heads[0]!.contentLength, 1, cl);
      assert.equal(r.body.toString(), 'a');
      assert.equal(r.ends[0]?.toString(), 'b');
    }
    const same = parse('GET', ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab']);
    assert.equal(same.body.toString(), 'ab');
  });

  it('bad chunk sizes', () => {
    for (const line of ['zz', '-1', '0x5', '', ' 5', '5 x', '12345678901234', '5\r']) {
      rejects('GET', [`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${line}\r\nhello\r\n0\r\n\r\n`], /invalid chunk size|bare LF/);
    }
  });

  it('chunk data longer than its size', () => {
    rejects('GET', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n'], /longer than its chunk size/);
  });

  it('over-long head, with or without its terminator, and too many header fields', () => {
    const filler = `X-Filler: ${'a'.repeat(1000)}\r\n`;
    const big = `HTTP/1.1 200 OK\r\n${filler.repeat(Math.ceil(MAX_RESPONSE_HEAD_BYTES / filler.length))}`;
    rejects('GET', [big], /response head is over/);
    rejects('GET', [big + 'Content-Length: 0\r\n\r\n'], /response head is over/);
    // Fed in pieces the limit holds too (nothing is kept past it).
    rejects('GET', big.match(/[\s\S]{1,4096}/g)!, /response head is over/);
    const many = `HTTP/1.1 200 OK\r\n${'A: b\r\n'.repeat(MAX_RESPONSE_HEADER_COUNT + 1)}\r\n`;
    rejects('GET', [many], /more than \d+ header fields/);
    const fine = parse('GET', [`HTTP/1.1 200 OK\r\n${'A: b\r\n'.repeat(MAX_RESPONSE_HEADER_COUNT - 1)}Content-Length: 0\r\n\r\n`]);
    assert.equal(fine.heads[0]!.rawHeaders.length, MAX_RESPONSE_HEADER_COUNT * 2);
  });

  it('over-long chunk line and trailer section', () => {
    rejects('GET', [`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;${'e'.repeat(5000)}`], /over-long chunk line/);
    rejects('GET', [`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n${`X-T: ${'t'.repeat(1000)}\r\n`.repeat(20)}\r\n`], /over-long trailer/);
  });

  it('too many interim responses', () => {
    const interim = 'HTTP/1.1 100 Continue\r\n\r\n';
    const ok = parse('GET', [interim.repeat(MAX_INTERIM_RESPONSES) + 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n']);
    assert.equal(ok.heads[0]!.status, 200);
    rejects('GET', [interim.repeat(MAX_INTERIM_RESPONSES + 1) + 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'], /more than \d+ interim responses/);
  });

  it('finish() on a truncated head or body', () => {
    rejects('GET', [], /closed the connection before answering/, { finish: true });
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Len'], /in the middle of the response head/, { finish: true });
    rejects('GET', ['HTTP/1.1 100 Continue\r\n\r\n'], /in the middle of the response head/, { finish: true });
    rejects('GET', ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort'], /before the end of the response body/, { finish: true });
    rejects('GET', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab'], /before the end of the response body/, { finish: true });
    rejects('GET', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde'], /before the end of the response body/, { finish: true });
  });
});

describe('keep-alive decision', () => {
  const keepAlive = (head: string): boolean => parse('GET', [`${head}\r\n\r\n`]).heads[0]!.keepAlive;

  it('HTTP/1.1 is reusable unless Connection: close', () => {
    assert.equal(keepAlive('HTTP/1.1 200 OK\r\nContent-Length: 0'), true);
    assert.equal(keepAlive('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close'), false);
    assert.equal(keepAlive('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive, CLOSE'), false);
    assert.equal(keepAlive('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive'), true);
  });

  it('HTTP/1.0 is reusable only with Connection: keep-alive, and never when close is also said', () => {
    assert.equal(keepAlive('HTTP/1.0 200 OK\r\nContent-Length: 0'), false);
    assert.equal(keepAlive('HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive'), true);
    assert.equal(keepAlive('HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close, keep-alive'), false);
    assert.equal(keepAlive('HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nConnection: keep-alive'), false);
  });

  it('Transfer-Encoding together with Content-Length: chunked framing wins, connection not reusable', () => {
    const r = parse('GET', ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n']);
    assert.equal(r.body.toString(), 'hello');
    assert.equal(r.heads[0]!.keepAlive, false);
    assert.equal(r.heads[0]!.contentLength, null);
    assert.deepEqual(r.ends, [null]);
  });

  it('Transfer-Encoding in an HTTP/1.0 response is faulty framing: not reusable', () => {
    assert.equal(keepAlive('HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive'), false);
  });

  it('a read-until-close body is never reusable', () => {
    assert.equal(keepAlive('HTTP/1.1 200 OK'), false);
  });
});

// ---- property: any split parses like the whole ---------------------------------------------

const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/).filter((n) => !['content-length', 'transfer-encoding', 'connection'].includes(n.toLowerCase()));
const headerValue = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,30}[\x21-\x7e])?$/);

interface GeneratedResponse {
  text: Buffer;
  status: number;
  headers: [string, string][];
  body: Buffer;
  framing: 'length' | 'chunked' | 'close';
}

const response = fc
  .record({
    status: fc.integer({ min: 200, max: 599 }).filter((s) => s !== 204 && s !== 304),
    headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 8 }),
    body: fc.uint8Array({ maxLength: 600 }),
    framing: fc.constantFrom('length' as const, 'chunked' as const, 'close' as const),
    chunkSizes: fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 10 }),
    extension: fc.boolean(),
    trailer: fc.boolean(),
  })
  .map(({ status, headers, body, framing, chunkSizes, extension, trailer }): GeneratedResponse => {
    const b = Buffer.from(body);
    let head = `HTTP/1.1 ${status} Reason Phrase\r\n`;
    for (const [n, v] of headers) head += `${n}: ${v}\r\n`;
    let payload: Buffer;
    if (framing === 'length') {
      head += `Content-Length: ${b.length}\r\n`;
      payload = b;
    } else if (framing === 'chunked') {
      head += 'Transfer-Encoding: chunked\r\n';
      const parts: Buffer[] = [];
      let at = 0;
      for (let i = 0; at < b.length; i++) {
        const n = Math.min(chunkSizes[i % chunkSizes.length]!, b.length - at);
        parts.push(Buffer.from(`${n.toString(16)}${extension ? ';x=1' : ''}\r\n`), b.subarray(at, at + n), Buffer.from('\r\n'));
        at += n;
      }
      parts.push(Buffer.from(`0\r\n${trailer ? 'X-Trailer: t\r\n' : ''}\r\n`));
      payload = Buffer.concat(parts);
    } else payload = b;
    return { text: Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), payload]), status, headers, body: b, framing };
  });

/** Cut points (sorted, unique) into pieces; small cuts give 1-byte pieces. */
function cut(buf: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...at, buf.length]) {
    if (p > prev) out.push(buf.subarray(prev, p));
    prev = Math.max(prev, p);
  }
  return out;
}

describe('property', () => {
  it('any split of a response (down to 1-byte pieces) gives the same head and body as the whole', () => {
    fc.assert(
      fc.property(response, fc.array(fc.nat(), { maxLength: 40 }), fc.boolean(), (res, points, bytewise) => {
        const finish = res.framing === 'close';
        const whole = parse('GET', [res.text], { finish });
        const pieces = bytewise ? cut(res.text, Array.from({ length: res.text.length }, (_, i) => i)) : cut(res.text, points);
        const split = parse('GET', pieces, { finish });
        assert.equal(whole.heads.length, 1);
        assert.equal(whole.heads[0]!.status, res.status);
        assert.deepEqual(whole.heads[0]!.rawHeaders.filter((_, i) => i % 2 === 0).slice(0, res.headers.length), res.headers.map(([n]) => n));
        assert.ok(whole.body.equals(res.body));
        assert.deepEqual(split.heads, whole.heads);
        assert.ok(split.body.equals(whole.body));
        assert.deepEqual(split.ends, [null]);
        assert.deepEqual(whole.ends, [null]);
      }),
      { numRuns: 300 },
    );
  });
});
