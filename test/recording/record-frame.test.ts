// Native frameEvents against the JavaScript frames (encodeFrame in a loop): byte for byte on
// random payloads, on the edges (no payloads, 1 byte, 1 MiB, sequences past 2^32), read back
// by scanSegment with the JavaScript CRC-32, and every kind of bad argument refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { native } from '../../src/native.js';
import { crc32Js } from '../../src/recording/crc32.js';
import { eventFramer } from '../../src/recording/recorder.js';
import { encodeFrame, FrameKind, frameEventsJs, scanSegment, SEGMENT_MAGIC } from '../../src/recording/segment-format.js';

const frameEvents = native().frameEvents.bind(native());
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Payloads laid into one blob with `gap` junk bytes before each (offsets need not be contiguous). */
function layout(payloads: Uint8Array[], gap: number, lead = 0): { blob: Uint8Array; offsets: Uint32Array } {
  const size = lead + payloads.reduce((n, p) => n + gap + p.length, 0);
  // A view at an odd offset into a larger buffer: byteOffset must be honoured.
  const backing = randomBytes(size + 7);
  const blob = new Uint8Array(backing.buffer, backing.byteOffset + 3, size);
  const offsets = new Uint32Array(2 * payloads.length);
  let at = lead;
  payloads.forEach((p, i) => {
    at += gap;
    blob.set(p, at);
    offsets[2 * i] = at;
    offsets[2 * i + 1] = at + p.length;
    at += p.length;
  });
  return { blob, offsets };
}

/** The frames as the recorder wrote them before: one encodeFrame per payload. */
function jsChain(payloads: Uint8Array[], firstSeq: number, prevHash: Buffer): { frames: Buffer; hash: Buffer } {
  const parts: Buffer[] = [];
  let hash = prevHash;
  payloads.forEach((p, i) => {
    const f = encodeFrame(FrameKind.Event, firstSeq + i, hash, p);
    parts.push(f.bytes);
    hash = f.hash;
  });
  return { frames: Buffer.concat(parts), hash };
}

describe('native frameEvents', () => {
  it('is what recorders use when the addon is built', () => {
    assert.equal(eventFramer().kind, 'native');
  });

  it('matches the JavaScript frames byte for byte on random payloads', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 600 }), { maxLength: 40 }),
        fc.nat({ max: 9 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.oneof(fc.nat({ max: 1000 }), fc.integer({ min: 2 ** 32 - 20, max: 2 ** 32 + 20 }), fc.integer({ min: MAX_SAFE - 1000, max: MAX_SAFE - 40 })),
        (payloads, gap, prev, firstSeq) => {
          const prevHash = Buffer.from(prev);
          const { blob, offsets } = layout(payloads, gap, gap);
          const got = frameEvents(blob, offsets, firstSeq, prevHash);
          const want = jsChain(payloads, firstSeq, prevHash);
          assert.ok(got.frames.equals(want.frames), 'frames differ');
          assert.ok(got.hash.equals(want.hash), 'last hash differs');
          assert.ok(got.frames.equals(frameEventsJs(blob, offsets, firstSeq, prevHash).frames), 'reference differs');
        },
      ),
      { numRuns: 300 },
    );
  });

  it('matches at every payload length from 0 to 400 bytes (the CRC folds 64 and 16 bytes at a time, zlib takes the tail)', () => {
    const payloads = Array.from({ length: 401 }, (_, n) => randomBytes(n));
    const prevHash = randomBytes(32);
    for (const lead of [0, 1, 5]) {
      const { blob, offsets } = layout(payloads, lead % 3, lead);
      const got = frameEvents(blob, offsets, 7, prevHash);
      const want = jsChain(payloads, 7, prevHash);
      assert.ok(got.frames.equals(want.frames), `frames differ (lead ${lead})`);
      assert.ok(got.hash.equals(want.hash));
    }
  });

  it('writes frames scanSegment reads back, with the JavaScript CRC-32 and the chain intact', () => {
    const payloads = Array.from({ length: 50 }, (_, i) => randomBytes(1 + ((i * 97) % 700)));
    const prevHash = randomBytes(32);
    const { blob, offsets } = layout(payloads, 0);
    const { frames, hash } = frameEvents(blob, offsets, 10, prevHash);
    const scan = scanSegment(Buffer.concat([SEGMENT_MAGIC, frames]));
    assert.deepEqual(scan.stop, { kind: 'end' });
    assert.equal(scan.frames.length, 50);
    let prev: Buffer = prevHash;
    scan.frames.forEach((f, i) => {
      assert.equal(f.kind, FrameKind.Event);
      assert.equal(f.seq, 10 + i);
      assert.ok(f.prevHash.equals(prev));
      assert.ok(f.payload.equals(payloads[i]!));
      const body = frames.subarray(f.offset - SEGMENT_MAGIC.length + 8, f.offset - SEGMENT_MAGIC.length + f.size);
      assert.equal(frames.readUInt32BE(f.offset - SEGMENT_MAGIC.length + 4), crc32Js(body));
      prev = f.hash;
    });
    assert.ok(hash.equals(prev));
  });

  it('handles the edges: no payloads, empty and 1-byte payloads, 1 MiB, sequences past 2^32 and up to MAX_SAFE_INTEGER', () => {
    const prevHash = randomBytes(32);
    const none = frameEvents(new Uint8Array(0), new Uint32Array(0), 1, prevHash);
    assert.equal(none.frames.length, 0);
    assert.ok(none.hash.equals(prevHash));
    const cases: [Uint8Array[], number][] = [
      [[Uint8Array.of(0x5a)], 1],
      [[new Uint8Array(0), Uint8Array.of(1)], 0],
      [[randomBytes(1024 * 1024)], 7],
      [[randomBytes(3), randomBytes(1024 * 1024), randomBytes(5)], 2 ** 32 + 1],
      [[randomBytes(10), randomBytes(10)], 2 ** 40 + 12345],
      [[randomBytes(2)], MAX_SAFE],
    ];
    for (const [payloads, firstSeq] of cases) {
      const { blob, offsets } = layout(payloads, 1);
      const got = frameEvents(blob, offsets, firstSeq, prevHash);
      const want = jsChain(payloads, firstSeq, prevHash);
      assert.ok(got.frames.equals(want.frames), `frames differ at firstSeq ${firstSeq}`);
      assert.ok(got.hash.equals(want.hash));
    }
    // The sequence field is the full u64, not its low 32 bits.
    const { frames } = frameEvents(Uint8Array.of(1), Uint32Array.of(0, 1), 2 ** 32 + 3, prevHash);
    assert.equal(frames.readBigUInt64BE(9), 2n ** 32n + 3n);
  });

  it('accepts a Buffer and a prevHash that is a plain Uint8Array', () => {
    const payload = Buffer.from('hello');
    const prev = new Uint8Array(32).fill(7);
    const got = frameEvents(payload, Uint32Array.of(0, 5), 3, prev);
    assert.ok(got.frames.equals(encodeFrame(FrameKind.Event, 3, Buffer.from(prev), payload).bytes));
  });

  it('refuses bad arguments with a TypeError that says what is wrong', () => {
    const blob = randomBytes(16);
    const h = randomBytes(32);
    const bad: [() => unknown, RegExp][] = [
      [() => (frameEvents as (...a: unknown[]) => unknown)(blob, Uint32Array.of(0, 1), 1), /expects \(blob/],
      [() => frameEvents(new Uint16Array(4) as unknown as Uint8Array, Uint32Array.of(0, 1), 1, h), /blob must be a Uint8Array/],
      [() => frameEvents(blob, [0, 1] as unknown as Uint32Array, 1, h), /offsets must be a Uint32Array/],
      [() => frameEvents(blob, new Int32Array([0, 1]) as unknown as Uint32Array, 1, h), /offsets must be a Uint32Array/],
      [() => frameEvents(blob, Uint32Array.of(0, 1, 2), 1, h), /odd length 3/],
      [() => frameEvents(blob, Uint32Array.of(0, 17), 1, h), /payload 0 \[0, 17\) is outside the 16-byte blob/],
      [() => frameEvents(blob, Uint32Array.of(0, 4, 9, 8), 1, h), /payload 1 \[9, 8\) is outside/],
      [() => frameEvents(blob, Uint32Array.of(0, 1), 1, randomBytes(31)), /prevHash must be 32 bytes, got 31/],
      [() => frameEvents(blob, Uint32Array.of(0, 1), 1, 'x'.repeat(32) as unknown as Buffer), /prevHash must be a 32-byte Buffer/],
      [() => frameEvents(blob, Uint32Array.of(0, 1), -1, h), /firstSeq must be a non-negative safe integer/],
      [() => frameEvents(blob, Uint32Array.of(0, 1), 1.5, h), /firstSeq must be a non-negative safe integer/],
      [() => frameEvents(blob, Uint32Array.of(0, 1), Number.NaN, h), /firstSeq must be a non-negative safe integer/],
      [() => frameEvents(blob, Uint32Array.of(0, 1), 2 ** 53, h), /firstSeq must be a non-negative safe integer/],
      [() => frameEvents(blob, Uint32Array.of(0, 1), '1' as unknown as number, h), /firstSeq must be a number/],
      [() => frameEvents(blob, Uint32Array.of(0, 1, 1, 2), MAX_SAFE, h), /would pass Number.MAX_SAFE_INTEGER/],
    ];
    for (const [call, message] of bad) assert.throws(call, (e: unknown) => e instanceof TypeError && message.test((e as Error).message), String(message));
  });
});

describe('native frameEventsInto', () => {
  const frameEventsInto = native().frameEventsInto.bind(native());

  it('writes the same frames as frameEvents at the offset it is given, and nothing outside them', () => {
    const payloads = Array.from({ length: 30 }, (_, i) => randomBytes(i * 13));
    const prevHash = randomBytes(32);
    const { blob, offsets } = layout(payloads, 2, 1);
    const want = frameEvents(blob, offsets, 41, prevHash);
    const into = Buffer.alloc(want.frames.length + 100, 0xee);
    const got = frameEventsInto(into, 37, blob, offsets, 41, prevHash);
    assert.equal(got.length, want.frames.length);
    assert.ok(got.hash.equals(want.hash));
    assert.ok(into.subarray(37, 37 + got.length).equals(want.frames));
    assert.ok(into.subarray(0, 37).every((b) => b === 0xee), 'bytes before `at` untouched');
    assert.ok(into.subarray(37 + got.length).every((b) => b === 0xee), 'bytes after the frames untouched');
  });

  it('refuses frames that do not fit with a RangeError, writing nothing, and checks its arguments like frameEvents', () => {
    const blob = randomBytes(100);
    const h = randomBytes(32);
    const need = frameEvents(blob, Uint32Array.of(0, 100), 1, h).frames.length;
    const into = Buffer.alloc(need + 3, 0xee);
    assert.throws(() => frameEventsInto(into, 4, blob, Uint32Array.of(0, 100), 1, h), (e: unknown) => e instanceof RangeError && /do not fit at 4/.test((e as Error).message));
    assert.throws(() => frameEventsInto(into, into.length + 1, blob, Uint32Array.of(0, 100), 1, h), RangeError);
    assert.throws(() => frameEventsInto(into, 1.5, blob, Uint32Array.of(0, 100), 1, h), RangeError);
    assert.ok(into.every((b) => b === 0xee));
    assert.equal(frameEventsInto(into, 3, blob, Uint32Array.of(0, 100), 1, h).length, need);
    assert.throws(() => frameEventsInto(into, 0, blob, Uint32Array.of(0, 101), 1, h), (e: unknown) => e instanceof TypeError && /outside the 100-byte blob/.test((e as Error).message));
    assert.throws(() => (frameEventsInto as (...a: unknown[]) => unknown)('x', 0, blob, Uint32Array.of(0, 1), 1, h), (e: unknown) => e instanceof TypeError && /expects \(into/.test((e as Error).message));
  });
});
