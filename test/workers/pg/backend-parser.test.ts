// Tests for the setup-phase message decoder and the serializer that builds its fixtures:
// each message round-trips through MessageReader split at every offset; malformed bodies
// return `{kind: 'error', source: 'parser'}` and never throw; a fast-check property over
// sequences of valid messages; node-postgres parses what the serializer writes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseBackendMessage, parsePasswordMessage } from '../../../workers/pg/backend-parser.js';
import { MessageReader } from '../../../workers/pg/message-reader.js';
import { BufferWriter } from '../../../workers/pg/buffer-writer.js';
import * as ser from '../../../workers/pg/serializer.js';
import type { BackendMessage } from '../../../workers/pg/messages.js';

const MAX = 64 * 1024;

/** Reads every message of `stream` pushed in `pieces` and decodes it. */
function decode(pieces: Buffer[]): BackendMessage[] | string {
  const r = new MessageReader(MAX);
  const out: BackendMessage[] = [];
  for (const p of pieces) {
    r.push(p);
    for (;;) {
      const m = r.next();
      if (m.status === 'need-more') break;
      if (m.status === 'error') return m.message;
      out.push(parseBackendMessage(m.type, m.body));
    }
  }
  return r.pending() === 0 ? out : `${r.pending()} bytes left`;
}

function assertEverySplit(stream: Buffer, expected: BackendMessage[]): void {
  assert.deepEqual(decode([stream]), expected);
  for (let k = 0; k <= stream.length; k++) {
    assert.deepEqual(decode([stream.subarray(0, k), stream.subarray(k)]), expected, `split at ${k}`);
  }
}

function one(type: number, body: Buffer): BackendMessage {
  let r: BackendMessage | undefined;
  assert.doesNotThrow(() => {
    r = parseBackendMessage(type, body);
  });
  return r!;
}

function assertParseError(type: number, body: Buffer, pattern: RegExp): void {
  const r = one(type, body);
  assert.equal(r.kind, 'error');
  assert.equal((r as { source: string }).source, 'parser');
  assert.match((r as { message: string }).message, pattern);
}

const R = 0x52;

describe('parseBackendMessage: valid messages, split at every offset', () => {
  it('Authentication requests', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    const first = Buffer.from('r=abc,s=c2FsdA==,i=4096');
    const final = Buffer.from('v=xyz');
    assertEverySplit(
      Buffer.concat([
        ser.authenticationOk(),
        ser.authenticationCleartextPassword(),
        ser.authenticationMD5Password(salt),
        ser.authenticationSASL(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']),
        ser.authenticationSASLContinue(first),
        ser.authenticationSASLFinal(final),
      ]),
      [
        { kind: 'auth', type: 'ok' },
        { kind: 'auth', type: 'cleartext' },
        { kind: 'auth', type: 'md5', salt },
        { kind: 'auth', type: 'sasl', mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'] },
        { kind: 'auth', type: 'sasl-continue', data: first },
        { kind: 'auth', type: 'sasl-final', data: final },
      ],
    );
  });

  it('known but unsupported methods are named, not errors', () => {
    const names: [number, string][] = [[2, 'kerberos-v5'], [6, 'scm-credential'], [7, 'gss'], [8, 'gss-continue'], [9, 'sspi']];
    for (const [code, type] of names) {
      assert.deepEqual(one(R, new BufferWriter().int32(code).take()), { kind: 'auth', type });
    }
  });

  it('ParameterStatus, BackendKeyData (4-byte and long keys), ReadyForQuery, NegotiateProtocolVersion', () => {
    const longKey = Buffer.alloc(32, 0xab);
    assertEverySplit(
      Buffer.concat([
        ser.parameterStatus('application_name', 'vecgate ✓'),
        ser.parameterStatus('empty', ''),
        ser.backendKeyData(0xfffffffe, 0x01020304),
        ser.backendKeyData(7, longKey),
        ser.readyForQuery('I'),
        ser.readyForQuery('T'),
        ser.readyForQuery('E'),
        ser.negotiateProtocolVersion(0, ['_pq_.a', '_pq_.b']),
      ]),
      [
        { kind: 'parameter-status', name: 'application_name', value: 'vecgate ✓' },
        { kind: 'parameter-status', name: 'empty', value: '' },
        { kind: 'backend-key', processId: 0xfffffffe, secretKey: Buffer.from([1, 2, 3, 4]) },
        { kind: 'backend-key', processId: 7, secretKey: longKey },
        { kind: 'ready-for-query', status: 'I' },
        { kind: 'ready-for-query', status: 'T' },
        { kind: 'ready-for-query', status: 'E' },
        { kind: 'negotiate-protocol', newestMinor: 0, unrecognizedOptions: ['_pq_.a', '_pq_.b'] },
      ],
    );
  });

  it('ErrorResponse and NoticeResponse carry S and V, C, M, D, H', () => {
    const e = ser.errorResponse({ severity: 'FATAL', code: '28P01', message: 'password authentication failed', detail: 'd', hint: 'h' });
    const n = ser.noticeResponse({ severity: 'WARNING', code: '01000', message: 'careful' });
    const fields = new Map([['S', 'FATAL'], ['V', 'FATAL'], ['C', '28P01'], ['M', 'password authentication failed'], ['D', 'd'], ['H', 'h']]);
    assertEverySplit(Buffer.concat([e, n]), [
      { kind: 'error', source: 'server', fields, message: 'password authentication failed' },
      { kind: 'notice', fields: new Map([['S', 'WARNING'], ['V', 'WARNING'], ['C', '01000'], ['M', 'careful']]) },
    ]);
  });

  it('ErrorResponse text in a non-UTF-8 server encoding is kept (with replacement characters)', () => {
    const body = Buffer.concat([Buffer.from('SFATAL\0C28000\0M'), Buffer.from([0x72, 0xe9, 0x73]), Buffer.from('\0\0')]);
    const r = one(0x45, body);
    assert.equal(r.kind, 'error');
    assert.equal((r as { source: string }).source, 'server');
    assert.equal((r as { message: string }).message, 'r\ufffds');
  });
});

describe('parseBackendMessage: malformed bodies are errors, never exceptions', () => {
  it('Authentication', () => {
    assertParseError(R, Buffer.alloc(3), /shorter than 4 bytes/);
    assertParseError(R, new BufferWriter().int32(0).byte(0).take(), /AuthenticationOk: 1 bytes after the code, expected 0/);
    assertParseError(R, new BufferWriter().int32(3).byte(0).take(), /AuthenticationCleartextPassword/);
    assertParseError(R, new BufferWriter().int32(5).bytes(Buffer.from([1, 2, 3])).take(), /MD5Password: 3 bytes/);
    assertParseError(R, new BufferWriter().int32(10).take(), /without terminator/);
    assertParseError(R, new BufferWriter().int32(10).string('SCRAM-SHA-256').take(), /without terminator/);
    assertParseError(R, new BufferWriter().int32(10).cstring('SCRAM-SHA-256').take(), /without terminator/);
    assertParseError(R, new BufferWriter().int32(10).byte(0).take(), /no mechanisms/);
    assertParseError(R, new BufferWriter().int32(10).cstring('A').byte(0).byte(1).take(), /trailing bytes/);
    const many = new BufferWriter().int32(10);
    for (let i = 0; i < 17; i++) many.cstring(`M${i}`);
    assertParseError(R, many.byte(0).take(), /more than 16 mechanisms/);
    assertParseError(R, new BufferWriter().int32(1).take(), /unknown authentication request code 1/);
    assertParseError(R, new BufferWriter().int32(-1).take(), /unknown authentication request code -1/);
  });

  it('ParameterStatus, BackendKeyData, ReadyForQuery', () => {
    assertParseError(0x53, Buffer.from('name'), /missing terminator/);
    assertParseError(0x53, Buffer.from('name\0value'), /missing terminator/);
    assertParseError(0x53, Buffer.from('name\0value\0x'), /trailing bytes/);
    assertParseError(0x53, Buffer.from([0x6e, 0xff, 0, 0x76, 0]), /invalid UTF-8/);
    assertParseError(0x4b, Buffer.alloc(7), /4\.\.256 bytes, got 3/);
    assertParseError(0x4b, Buffer.alloc(0), /got 0/);
    assertParseError(0x4b, Buffer.alloc(4 + 257), /got 257/);
    assertParseError(0x5a, Buffer.alloc(0), /expected 1/);
    assertParseError(0x5a, Buffer.from('II'), /expected 1/);
    assertParseError(0x5a, Buffer.from('X'), /unknown transaction status/);
  });

  it('ErrorResponse, NoticeResponse, NegotiateProtocolVersion', () => {
    assertParseError(0x45, Buffer.alloc(0), /ErrorResponse: missing terminator/);
    assertParseError(0x45, Buffer.from('SFATAL\0'), /missing terminator/);
    assertParseError(0x45, Buffer.from('SFATAL'), /field S without terminator/);
    assertParseError(0x4e, Buffer.from('SNOTICE\0\0x'), /NoticeResponse: trailing bytes/);
    const many = new BufferWriter();
    for (let i = 0; i < 33; i++) many.byte(0x41 + (i % 26)).cstring('x');
    assertParseError(0x45, many.byte(0).take(), /more than 32 fields/);
    assertParseError(0x76, Buffer.alloc(7), /shorter than 8/);
    assertParseError(0x76, new BufferWriter().int32(0).int32(1).take(), /option without terminator/);
    assertParseError(0x76, new BufferWriter().int32(0).int32(0xffffffff).take(), /the limit is 64/);
    assertParseError(0x76, new BufferWriter().int32(0).int32(0).byte(1).take(), /trailing bytes/);
  });

  it('unknown message types during setup', () => {
    assertParseError(0x44 /* D */, Buffer.alloc(0), /unexpected backend message type 0x44 \('D'\)/);
    assertParseError(0x00, Buffer.alloc(0), /0x00 \(non-printable\)/);
  });

  it('arbitrary bodies of every type never throw', () => {
    fc.assert(
      fc.property(fc.constantFrom(0x52, 0x53, 0x4b, 0x5a, 0x45, 0x4e, 0x76, 0x70, 0x00), fc.uint8Array({ maxLength: 100 }), (type, body) => {
        one(type, Buffer.from(body));
        assert.doesNotThrow(() => parsePasswordMessage(Buffer.from(body)));
      }),
      { numRuns: 3000 },
    );
  });
});

describe('parsePasswordMessage', () => {
  const bodyOf = (msg: Buffer): Buffer => {
    const r = new MessageReader(MAX);
    r.push(msg);
    const m = r.next();
    assert.equal(m.status, 'ok');
    return (m as { body: Buffer }).body;
  };

  it('reads the client token from a PasswordMessage', () => {
    const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.sig';
    assert.deepEqual(parsePasswordMessage(bodyOf(ser.passwordMessage(token))), { kind: 'password', password: token });
    assert.deepEqual(parsePasswordMessage(bodyOf(ser.passwordMessage(''))), { kind: 'password', password: '' });
  });

  it('refuses missing terminators, trailing bytes, invalid UTF-8', () => {
    assert.match((parsePasswordMessage(Buffer.from('abc')) as { message: string }).message, /missing terminator/);
    assert.match((parsePasswordMessage(Buffer.from('abc\0d')) as { message: string }).message, /after the terminator/);
    assert.match((parsePasswordMessage(Buffer.from([0xc0, 0x80, 0])) as { message: string }).message, /UTF-8/);
    assert.equal(parsePasswordMessage(Buffer.alloc(0)).kind, 'error');
  });
});

describe('serializer', () => {
  it('writes exact bytes for fixed messages', () => {
    assert.equal(ser.authenticationOk().toString('hex'), '520000000800000000');
    assert.equal(ser.authenticationCleartextPassword().toString('hex'), '520000000800000003');
    assert.equal(ser.readyForQuery('I').toString('hex'), '5a0000000549');
    assert.equal(ser.terminate().toString('hex'), '5800000004');
    assert.equal(ser.sslRequest().toString('hex'), '0000000804d2162f');
    assert.equal(ser.cancelRequest(1, 2).toString('hex'), '0000001004d2162e0000000100000002');
    assert.equal(ser.passwordMessage('pw').toString('hex'), '7000000007707700');
    assert.equal(ser.saslInitialResponse('M', Buffer.from('ab')).toString('hex'), '700000000c4d00000000026162');
    assert.equal(ser.saslResponse(Buffer.from('ab')).toString('hex'), '70000000066162');
    assert.equal(ser.startupMessage({ user: 'u' }).toString('hex'), '0000001000030000' + '7573657200' + '7500' + '00');
  });

  it('refuses programmer errors: NUL in strings, bad SQLSTATE, bad status, bad secret size', () => {
    assert.throws(() => ser.passwordMessage('a\0b'), RangeError);
    assert.throws(() => ser.startupMessage({ '': 'x' }), RangeError);
    assert.throws(() => ser.errorResponse({ severity: 'FATAL', code: '2800', message: 'x' }), RangeError);
    assert.throws(() => ser.readyForQuery('Q'), RangeError);
    assert.throws(() => ser.backendKeyData(1, Buffer.alloc(3)), RangeError);
    assert.throws(() => ser.cancelRequest(1, Buffer.alloc(257)), RangeError);
  });
});

describe('decoding: properties', () => {
  const text = fc.string({ maxLength: 30, unit: 'grapheme' }).filter((s) => !s.includes('\0'));
  const nonEmpty = text.filter((s) => s.length > 0);
  const sqlstate = fc.stringMatching(/^[0-9A-Z]{5}$/);
  const item: fc.Arbitrary<[Buffer, BackendMessage]> = fc.oneof(
    fc.constant<[Buffer, BackendMessage]>([ser.authenticationOk(), { kind: 'auth', type: 'ok' }]),
    fc.array(nonEmpty, { minLength: 1, maxLength: 4 }).map((ms): [Buffer, BackendMessage] => [ser.authenticationSASL(ms), { kind: 'auth', type: 'sasl', mechanisms: ms }]),
    fc.uint8Array({ maxLength: 80 }).map((d): [Buffer, BackendMessage] => [ser.authenticationSASLContinue(Buffer.from(d)), { kind: 'auth', type: 'sasl-continue', data: Buffer.from(d) }]),
    fc.tuple(nonEmpty, text).map(([n, v]): [Buffer, BackendMessage] => [ser.parameterStatus(n, v), { kind: 'parameter-status', name: n, value: v }]),
    fc.tuple(fc.nat({ max: 0xffffffff }), fc.uint8Array({ minLength: 4, maxLength: 256 })).map(([pid, k]): [Buffer, BackendMessage] => [
      ser.backendKeyData(pid, Buffer.from(k)),
      { kind: 'backend-key', processId: pid, secretKey: Buffer.from(k) },
    ]),
    fc.constantFrom('I', 'T', 'E' as const).map((s): [Buffer, BackendMessage] => [ser.readyForQuery(s), { kind: 'ready-for-query', status: s as 'I' }]),
    fc.tuple(sqlstate, text).map(([c, m]): [Buffer, BackendMessage] => [
      ser.errorResponse({ severity: 'ERROR', code: c, message: m }),
      { kind: 'error', source: 'server', message: m, fields: new Map([['S', 'ERROR'], ['V', 'ERROR'], ['C', c], ['M', m]]) },
    ]),
  );

  it('any split of any valid sequence decodes the same as the whole, and as built', () => {
    fc.assert(
      fc.property(fc.array(item, { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 12 }), (items, cuts) => {
        const stream = Buffer.concat(items.map(([b]) => b));
        const expected = items.map(([, m]) => m);
        assert.deepEqual(decode([stream]), expected);
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const pieces: Buffer[] = [];
        let prev = 0;
        for (const p of points) {
          pieces.push(stream.subarray(prev, p));
          prev = p;
        }
        pieces.push(stream.subarray(prev));
        assert.deepEqual(decode(pieces), expected);
      }),
      { numRuns: 400 },
    );
  });
});
