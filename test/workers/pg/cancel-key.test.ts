// Gateway cancel keys: round trip for every pid that fits, null for keys the gateway did not
// hand out (random, tampered, or made with another gateway key), no key for a pid past 22 bits.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { decodeAnyCancelKey, decodeCancelKey, encodeCancelKey, MAX_CANCEL_KEY_PID, MAX_CANCEL_ROUTED_WORKERS, newSessionCancelKey, sessionKeyPid, sessionOfKeyPid } from '../../../workers/pg/cancel-key.js';

const key = randomBytes(32);

describe('cancel keys', () => {
  it('round-trips upstream (pid, secret) for pids up to 2^22-1, edge secrets too', () => {
    for (const processId of [0, 1, 42, 4242, 32768, 4_194_303]) {
      for (const secretKey of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, randomBytes(4).readUInt32BE(0)]) {
        const k = encodeCancelKey(key, { processId, secretKey });
        assert.ok(k !== null);
        assert.ok(k.processId >= 0 && k.processId <= 0xffffffff && k.secretKey >= 0 && k.secretKey <= 0xffffffff);
        assert.deepEqual(decodeCancelKey(key, k), { processId, secretKey });
      }
    }
  });

  it('gives no key for a pid that does not fit (the session then gets no BackendKeyData)', () => {
    assert.equal(MAX_CANCEL_KEY_PID, 4_194_303);
    assert.equal(encodeCancelKey(key, { processId: 4_194_304, secretKey: 1 }), null);
    assert.equal(encodeCancelKey(key, { processId: 0xffffffff, secretKey: 1 }), null);
  });

  it('random keys almost never decode (10-bit MAC: about 1 in 1,024)', () => {
    let decoded = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      if (decodeCancelKey(key, { processId: randomBytes(4).readUInt32BE(0), secretKey: randomBytes(4).readUInt32BE(0) }) !== null) decoded++;
    }
    // Expected ~19.5; the bound is loose enough never to flake, and far below n.
    assert.ok(decoded < 60, `${decoded} of ${n} random keys decoded`);
  });

  it('a key from another gateway key, or with one bit flipped, does not decode', () => {
    const other = randomBytes(32);
    let passed = 0;
    for (let i = 0; i < 2000; i++) {
      const k = encodeCancelKey(key, { processId: 1000 + i, secretKey: randomBytes(4).readUInt32BE(0) })!;
      if (decodeCancelKey(other, k) !== null) passed++;
      const bit = i % 64;
      const flipped = bit < 32 ? { processId: (k.processId ^ (1 << bit)) >>> 0, secretKey: k.secretKey } : { processId: k.processId, secretKey: (k.secretKey ^ (1 << (bit - 32))) >>> 0 };
      if (decodeCancelKey(key, flipped) !== null) passed++;
    }
    assert.ok(passed < 20, `${passed} of 4000 forged keys decoded`);
  });

  it('pooled-session keys carry worker and slot, and never decode as an upstream key (nor the reverse)', () => {
    let crossed = 0;
    for (let i = 0; i < 2000; i++) {
      const worker = i % MAX_CANCEL_ROUTED_WORKERS;
      const slot = (i * 7919) % 65536;
      const { gateway: k, secret: secretKey } = newSessionCancelKey(key, worker, slot);
      assert.equal(k.processId, encodeCancelKey(key, { processId: sessionKeyPid(worker, slot), secretKey }, 'session')!.processId);
      const d = decodeAnyCancelKey(key, k)!;
      assert.equal(d.kind, 'session');
      assert.deepEqual(sessionOfKeyPid(d.processId), { worker, slot });
      assert.equal(d.secretKey, secretKey);
      // decodeCancelKey (upstream keys only) refuses it; an upstream key never reads as a session's.
      if (decodeCancelKey(key, k) !== null) crossed++;
      const u = encodeCancelKey(key, { processId: 1000 + i, secretKey })!;
      if (decodeAnyCancelKey(key, u)!.kind !== 'upstream') crossed++;
    }
    assert.equal(crossed, 0);
    assert.equal(MAX_CANCEL_ROUTED_WORKERS, 64);
  });
});
