// Tests for the first-packet parser: every packet kind from fixtures built with the
// BufferWriter/serializer, re-parsed split at every byte offset; malformed and hostile
// packets return errors (never throw); a real node-postgres client's first packets parse.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import pg from 'pg';
import { parseStartupPacket, type StartupParse } from '../../../workers/pg/startup-parser.js';
import { BufferWriter } from '../../../workers/pg/buffer-writer.js';
import * as ser from '../../../workers/pg/serializer.js';
import { DEFAULT_MAX_STARTUP_PACKET_BYTES } from '../../../workers/pg/messages.js';

const limits = { maxStartupPacketBytes: DEFAULT_MAX_STARTUP_PACKET_BYTES };
const parse = (b: Buffer): StartupParse => parseStartupPacket(b, limits);

/**
 * Feeds `buf` as a consumer does (prefix, then the whole accumulated buffer) for every split:
 * the prefix must not produce a different answer, and the whole must give `expected`.
 */
function assertEverySplit(buf: Buffer, expected: StartupParse, lim = limits): void {
  const p = (b: Buffer) => parseStartupPacket(b, lim);
  assert.deepEqual(p(buf), expected);
  for (let k = 0; k < buf.length; k++) {
    const first = p(buf.subarray(0, k));
    if (first.status === 'need-more') {
      assert.deepEqual(p(Buffer.concat([buf.subarray(0, k), buf.subarray(k)])), expected, `split at ${k}`);
    } else if (first.status === 'error') {
      // An error may be decided early (from a partial length field), with its own wording.
      assert.equal(expected.status, 'error', `early error at split ${k}: ${first.message}`);
    } else {
      assert.deepEqual(first, expected, `early answer at split ${k}`);
    }
  }
}

function rawPacket(code: number, rest: Buffer = Buffer.alloc(0)): Buffer {
  return new BufferWriter().int32(code).bytes(rest).frame();
}

function startupBody(pairs: [string, string][], terminate = true): Buffer {
  const w = new BufferWriter().int32(196608);
  for (const [k, v] of pairs) w.cstring(k).cstring(v);
  if (terminate) w.byte(0);
  return w.frame();
}

describe('parseStartupPacket: valid packets, split at every offset', () => {
  it('SSLRequest', () => {
    const b = ser.sslRequest();
    assert.deepEqual([...b], [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assertEverySplit(b, { status: 'ok', consumed: 8, packet: { kind: 'ssl-request' } });
  });

  it('GSSENCRequest', () => {
    assertEverySplit(ser.gssencRequest(), { status: 'ok', consumed: 8, packet: { kind: 'gssenc-request' } });
  });

  it('CancelRequest with a classic 4-byte key and with a PG 18 long key', () => {
    assertEverySplit(ser.cancelRequest(1234, 0xdeadbeef), {
      status: 'ok',
      consumed: 16,
      packet: { kind: 'cancel', processId: 1234, secretKey: Buffer.from([0xde, 0xad, 0xbe, 0xef]) },
    });
    const long = Buffer.alloc(256, 7);
    assertEverySplit(ser.cancelRequest(0xffffffff, long), { status: 'ok', consumed: 12 + 256, packet: { kind: 'cancel', processId: 0xffffffff, secretKey: long } });
  });

  it('StartupMessage 3.0 with parameters, UTF-8 included', () => {
    const params = new Map([
      ['user', 'alice'],
      ['database', 'vectors'],
      ['application_name', 'psql ✓'],
      ['options', '-c search_path=x'],
    ]);
    const b = ser.startupMessage(params);
    assertEverySplit(b, { status: 'ok', consumed: b.length, packet: { kind: 'startup', protocolMajor: 3, protocolMinor: 0, params } });
  });

  it('StartupMessage 3.2 (newer minor) and _pq_ options are accepted and reported', () => {
    const w = new BufferWriter().int32((3 << 16) | 2).cstring('user').cstring('bob').cstring('_pq_.x').cstring('1').byte(0);
    const b = w.frame();
    assertEverySplit(b, {
      status: 'ok',
      consumed: b.length,
      packet: { kind: 'startup', protocolMajor: 3, protocolMinor: 2, params: new Map([['user', 'bob'], ['_pq_.x', '1']]) },
    });
  });

  it('direct TLS: 0x16 first byte, nothing consumed, decided from one byte', () => {
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    assert.deepEqual(parse(hello.subarray(0, 1)), { status: 'ok', consumed: 0, packet: { kind: 'direct-tls' } });
    assertEverySplit(hello, { status: 'ok', consumed: 0, packet: { kind: 'direct-tls' } });
  });

  it('reports consumed so the caller keeps bytes that follow (GSSENCRequest then startup)', () => {
    const next = ser.startupMessage({ user: 'u' });
    const both = Buffer.concat([ser.gssencRequest(), next]);
    const r = parse(both);
    assert.equal(r.status, 'ok');
    assert.equal(r.status === 'ok' && r.consumed, 8);
    assert.deepEqual(parse(both.subarray(8)), { status: 'ok', consumed: next.length, packet: { kind: 'startup', protocolMajor: 3, protocolMinor: 0, params: new Map([['user', 'u']]) } });
  });

  it('need-more on nothing and on partial packets', () => {
    assert.deepEqual(parse(Buffer.alloc(0)), { status: 'need-more' });
    assert.deepEqual(parse(Buffer.from([0, 0])), { status: 'need-more' });
    assert.deepEqual(parse(ser.sslRequest().subarray(0, 7)), { status: 'need-more' });
  });
});

function assertError(b: Buffer, pattern: RegExp, lim = limits): void {
  let r: StartupParse | undefined;
  assert.doesNotThrow(() => {
    r = parseStartupPacket(b, lim);
  });
  assert.equal(r!.status, 'error', `expected an error for ${b.toString('hex')}`);
  assert.match((r as { message: string }).message, pattern);
  // Split anywhere, the answer is still this error (early or at the end), never something else.
  assertEverySplit(b, r!, lim);
}

describe('parseStartupPacket: malformed and hostile packets', () => {
  it('length below 8, zero, negative', () => {
    assertError(new BufferWriter().int32(7).int32(0).take(), /minimum is 8/);
    assertError(new BufferWriter().int32(0).int32(0).take(), /minimum is 8/);
    assertError(new BufferWriter().int32(4).take(), /minimum is 8/);
    assertError(Buffer.from([0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0]), /negative/);
  });

  it('length over the cap is refused from the length field alone, before the body arrives', () => {
    const header = new BufferWriter().int32(DEFAULT_MAX_STARTUP_PACKET_BYTES + 1).int32(196608).take();
    assertError(header, /limit is 10000/);
    // A huge length is refused from its first byte.
    assert.equal(parse(Buffer.from([0x7f])).status, 'error');
    // A custom, smaller cap.
    const b = ser.startupMessage({ user: 'a'.repeat(100) });
    assertError(b, /limit is 64/, { maxStartupPacketBytes: 64 });
    // Exactly at the cap is fine.
    assert.equal(parseStartupPacket(b, { maxStartupPacketBytes: b.length }).status, 'ok');
  });

  it('SSLRequest / GSSENCRequest with a body', () => {
    assertError(rawPacket(80877103, Buffer.from([0])), /SSLRequest must be 8 bytes/);
    assertError(rawPacket(80877104, Buffer.from([0, 0, 0, 0])), /GSSENCRequest must be 8 bytes/);
  });

  it('CancelRequest with a short or overlong key', () => {
    assertError(rawPacket(80877102, Buffer.from([0, 0, 0, 1, 9, 9, 9])), /secret key must be 4\.\.256 bytes, got 3/);
    assertError(rawPacket(80877102, Buffer.from([0, 0, 0, 1])), /got 0/);
    assertError(rawPacket(80877102, Buffer.concat([Buffer.from([0, 0, 0, 1]), Buffer.alloc(257)])), /got 257/);
  });

  it('unknown request codes and protocol versions', () => {
    assertError(rawPacket((1234 << 16) | 5681), /unsupported request code 1234\.5681/);
    assertError(rawPacket((2 << 16) | 0, Buffer.from('user\0x\0\0')), /unsupported frontend protocol 2\.0/);
    assertError(rawPacket((4 << 16) | 0, Buffer.from('user\0x\0\0')), /unsupported frontend protocol 4\.0/);
  });

  it('missing terminators and bad layout', () => {
    assertError(startupBody([['user', 'x']], false), /expected terminator as last byte/);
    assertError(rawPacket(196608, Buffer.from('user\0x')), /value without terminator/);
    assertError(rawPacket(196608, Buffer.from('user')), /name without terminator/);
    assertError(rawPacket(196608, Buffer.from('user\0x\0\0extra')), /expected terminator as last byte/);
    assertError(rawPacket(196608, Buffer.from('user\0x\0\0\0')), /expected terminator as last byte/);
    assertError(rawPacket(196608), /expected terminator as last byte/);
  });

  it('duplicate keys, non-UTF-8, missing or empty user', () => {
    assertError(startupBody([['user', 'a'], ['user', 'b']]), /"user" given twice/);
    assertError(rawPacket(196608, Buffer.concat([Buffer.from('user\0'), Buffer.from([0xc3, 0x28]), Buffer.from('\0\0')])), /UTF-8/);
    assertError(rawPacket(196608, Buffer.concat([Buffer.from([0xff]), Buffer.from('\0v\0user\0x\0\0')])), /UTF-8/);
    assertError(startupBody([['database', 'd']]), /no PostgreSQL user name/);
    assertError(startupBody([['user', '']]), /no PostgreSQL user name/);
  });

  it('a nonsense limit is a programmer error and throws', () => {
    assert.throws(() => parseStartupPacket(ser.sslRequest(), { maxStartupPacketBytes: 0 }), RangeError);
  });
});

describe('parseStartupPacket: properties', () => {
  const paramName = fc.string({ minLength: 1, maxLength: 20, unit: 'grapheme' }).filter((s) => !s.includes('\0') && s !== 'user');
  const paramValue = fc.string({ maxLength: 40, unit: 'grapheme' }).filter((s) => !s.includes('\0'));

  it('any valid startup packet round-trips, whatever the split', () => {
    fc.assert(
      fc.property(
        fc.dictionary(paramName, paramValue, { maxKeys: 8 }),
        fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !s.includes('\0')),
        fc.nat(),
        (extra, user, cut) => {
          const params = new Map<string, string>([['user', user], ...Object.entries(extra)]);
          const b = ser.startupMessage(params);
          const expected: StartupParse = { status: 'ok', consumed: b.length, packet: { kind: 'startup', protocolMajor: 3, protocolMinor: 0, params } };
          const k = cut % (b.length + 1);
          const first = parse(b.subarray(0, k));
          if (k < b.length) assert.deepEqual(first, { status: 'need-more' });
          assert.deepEqual(parse(b), expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('arbitrary bytes never throw and never claim more than they have', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 8, max: 400 }), (bytes, max) => {
        const r = parseStartupPacket(Buffer.from(bytes), { maxStartupPacketBytes: max });
        if (r.status === 'ok') assert.ok(r.consumed <= bytes.length && r.consumed <= max);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parseStartupPacket with a real node-postgres client', () => {
  const servers: net.Server[] = [];
  after(() => {
    for (const s of servers) s.close();
  });

  /** A loopback server that parses the client's first packet, answers `answer`, and reports. */
  function firstPacketOf(connect: (port: number) => Promise<unknown>, answer: Buffer | null): Promise<StartupParse> {
    return new Promise((resolve, reject) => {
      const server = net.createServer((sock) => {
        let pending = Buffer.alloc(0);
        sock.on('data', (chunk) => {
          pending = Buffer.concat([pending, chunk]);
          const r = parse(pending);
          if (r.status === 'need-more') return;
          resolve(r);
          if (answer) sock.end(answer);
          else sock.destroy();
        });
        sock.on('error', () => {});
      });
      servers.push(server);
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as net.AddressInfo).port;
        connect(port).catch(() => {}); // the client fails: we answer with an error or close
      });
      server.on('error', reject);
    });
  }

  it('parses pg.Client StartupMessage (user, database, application_name)', async () => {
    const r = await firstPacketOf(async (port) => {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'alice', database: 'vectors', application_name: 'spec', password: 'x' });
      c.on('error', () => {});
      await c.connect();
    }, ser.errorResponse({ severity: 'FATAL', code: '28000', message: 'test refusal' }));
    assert.equal(r.status, 'ok');
    if (r.status !== 'ok' || r.packet.kind !== 'startup') throw new Error('expected a startup packet');
    assert.equal(r.packet.protocolMinor, 0);
    assert.equal(r.packet.params.get('user'), 'alice');
    assert.equal(r.packet.params.get('database'), 'vectors');
    assert.equal(r.packet.params.get('application_name'), 'spec');
  });

  it('parses pg.Client SSLRequest (ssl: true)', async () => {
    const r = await firstPacketOf(async (port) => {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'alice', ssl: { rejectUnauthorized: true } });
      c.on('error', () => {});
      await c.connect();
    }, Buffer.from('N'));
    assert.deepEqual(r, { status: 'ok', consumed: 8, packet: { kind: 'ssl-request' } });
  });

  it('the client shows our ErrorResponse (FATAL, SQLSTATE, message)', async () => {
    let err: (Error & { code?: string; severity?: string; hint?: string }) | null = null;
    await firstPacketOf(async (port) => {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'alice', password: 'x' });
      c.on('error', () => {});
      try {
        await c.connect();
      } catch (e) {
        err = e as Error;
      }
    }, ser.errorResponse({ severity: 'FATAL', code: '28000', message: 'token expired', hint: 'run vecgate token' }));
    // The client's promise settles after our server resolved; wait for it deterministically.
    for (let i = 0; i < 200 && err === null; i++) await new Promise((r) => setImmediate(r));
    assert.ok(err, 'the client should have failed');
    const e = err as Error & { code?: string; severity?: string; hint?: string };
    assert.equal(e.message, 'token expired');
    assert.equal(e.code, '28000');
    assert.equal(e.severity, 'FATAL');
    assert.equal(e.hint, 'run vecgate token');
  });
});
