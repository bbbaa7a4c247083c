// Maps upstream BackendKeyData (pid, secret) to the key the gateway hands the client, and
// back, with a keyed 64-bit permutation (4-round Feistel over HMAC-SHA256). Any worker or
// replica holding the same key can route a CancelRequest without shared state; a client
// cannot forge a key for a session it does not hold without guessing the upstream secret.
import { createHmac } from 'node:crypto';

const ROUNDS = 4;

function round(key: Buffer, i: number, half: number): number {
  const h = createHmac('sha256', key);
  const b = Buffer.allocUnsafe(5);
  b.writeUInt8(i, 0);
  b.writeUInt32BE(half >>> 0, 1);
  h.update(b);
  return h.digest().readUInt32BE(0);
}

export interface BackendKey {
  processId: number; // uint32
  secretKey: number; // uint32
}

export function encodeCancelKey(key: Buffer, upstream: BackendKey): BackendKey {
  let l = upstream.processId >>> 0;
  let r = upstream.secretKey >>> 0;
  for (let i = 0; i < ROUNDS; i++) {
    const next = (l ^ round(key, i, r)) >>> 0;
    l = r;
    r = next;
  }
  return { processId: l, secretKey: r };
}

export function decodeCancelKey(key: Buffer, gateway: BackendKey): BackendKey {
  let l = gateway.processId >>> 0;
  let r = gateway.secretKey >>> 0;
  for (let i = ROUNDS - 1; i >= 0; i--) {
    const prev = (r ^ round(key, i, l)) >>> 0;
    r = l;
    l = prev;
  }
  return { processId: l, secretKey: r };
}
