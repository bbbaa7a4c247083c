// Maps upstream BackendKeyData (pid, secret) to the key the gateway hands the client, and
// back. The 64-bit gateway key is a keyed permutation (4-round Feistel over HMAC-SHA256) of
//
//   [ upstream pid: 22 bits | MAC: 10 bits ][ upstream secret: 32 bits ]
//
// where the MAC is HMAC-SHA256(gateway key, pid, secret) cut to 10 bits. Decoding inverts the
// permutation and checks the MAC, so a key the gateway never handed out is recognised (all but
// 1 in 1,024 random keys) before anything is sent upstream. Any worker or replica holding the
// same gateway key can decode without shared state; a client cannot forge a key for a session
// it does not hold without guessing the upstream secret.
//
// The pid gets 22 bits because Linux's pid_max is at most 2^22; an upstream whose pid does not
// fit (not Linux, or a pooler handing out random keys) gets no cancel key at all: the session
// runs without BackendKeyData rather than with a key that cannot be routed back.
//
// Cross-replica cancel (issue #20) needs no field: every replica sharing the key decodes to
// the same upstream (pid, secret). If one is ever needed (a replica id, a format version), it
// is taken from the MAC bits (MAC_BITS below), which keeps the key 64 bits as PostgreSQL's is.
import { createHmac, randomBytes } from 'node:crypto';

const ROUNDS = 4;
/** Bits of the upstream pid carried in the key (Linux pid_max is at most 2^22). */
export const CANCEL_KEY_PID_BITS = 22;
/** Bits of the key's MAC: a random key decodes with probability 2^-MAC_BITS. */
export const CANCEL_KEY_MAC_BITS = 32 - CANCEL_KEY_PID_BITS;
/** Largest upstream pid a cancel key can carry. */
export const MAX_CANCEL_KEY_PID = 2 ** CANCEL_KEY_PID_BITS - 1;
const MAC_MASK = 2 ** CANCEL_KEY_MAC_BITS - 1;
/** Domain byte of the MAC input (round inputs are 5 bytes and start with the round index 0..3). */
const MAC_DOMAIN = 0x80;

function round(key: Buffer, i: number, half: number): number {
  const h = createHmac('sha256', key);
  const b = Buffer.allocUnsafe(5);
  b.writeUInt8(i, 0);
  b.writeUInt32BE(half >>> 0, 1);
  h.update(b);
  return h.digest().readUInt32BE(0);
}

/**
 * What a key stands for: an upstream backend's (pid, secret) (session pooling: a session keeps
 * its backend), or a pooled session's slot and secret (transaction pooling: the session's
 * backend changes, so the key names the session and the gateway finds its current backend).
 * The two use different MAC domains, so neither decodes as the other.
 */
export type CancelKeyKind = 'upstream' | 'session';
const SESSION_MAC_DOMAIN = 0x81;

function mac(key: Buffer, pid: number, secret: number, kind: CancelKeyKind = 'upstream'): number {
  const b = Buffer.allocUnsafe(9);
  b.writeUInt8(kind === 'upstream' ? MAC_DOMAIN : SESSION_MAC_DOMAIN, 0);
  b.writeUInt32BE(pid >>> 0, 1);
  b.writeUInt32BE(secret >>> 0, 5);
  return createHmac('sha256', key).update(b).digest().readUInt32BE(0) & MAC_MASK;
}

export interface BackendKey {
  processId: number; // uint32
  secretKey: number; // uint32
}

/** Whether an upstream's BackendKeyData can be carried in a gateway cancel key. */
export function canEncodeCancelKey(upstream: BackendKey): boolean {
  return Number.isInteger(upstream.processId) && upstream.processId >= 0 && upstream.processId <= MAX_CANCEL_KEY_PID;
}

/**
 * The key handed to the client for an upstream (pid, secret), or null when the pid does not
 * fit in CANCEL_KEY_PID_BITS (the session then gets no BackendKeyData).
 * @example
 * const k = encodeCancelKey(gatewayKey, { processId: 4242, secretKey: 0xdeadbeef });
 * decodeCancelKey(gatewayKey, k!); // { processId: 4242, secretKey: 0xdeadbeef }
 */
export function encodeCancelKey(key: Buffer, upstream: BackendKey, kind: CancelKeyKind = 'upstream'): BackendKey | null {
  if (!canEncodeCancelKey(upstream)) return null;
  const pid = upstream.processId;
  const secret = upstream.secretKey >>> 0;
  let l = (pid * 2 ** CANCEL_KEY_MAC_BITS + mac(key, pid, secret, kind)) >>> 0;
  let r = secret;
  for (let i = 0; i < ROUNDS; i++) {
    const next = (l ^ round(key, i, r)) >>> 0;
    l = r;
    r = next;
  }
  return { processId: l, secretKey: r };
}

/** The upstream (pid, secret) behind a key this gateway handed out, or null for any other key. */
export function decodeCancelKey(key: Buffer, gateway: BackendKey): BackendKey | null {
  const d = decodeAnyCancelKey(key, gateway);
  return d !== null && d.kind === 'upstream' ? { processId: d.processId, secretKey: d.secretKey } : null;
}

/** What a key this gateway handed out stands for (an upstream's key or a pooled session's), or null. */
export function decodeAnyCancelKey(key: Buffer, gateway: BackendKey): (BackendKey & { kind: CancelKeyKind }) | null {
  let l = gateway.processId >>> 0;
  let r = gateway.secretKey >>> 0;
  for (let i = ROUNDS - 1; i >= 0; i--) {
    const prev = (r ^ round(key, i, l)) >>> 0;
    r = l;
    l = prev;
  }
  const pid = Math.floor(l / 2 ** CANCEL_KEY_MAC_BITS);
  if ((l & MAC_MASK) === mac(key, pid, r, 'upstream')) return { processId: pid, secretKey: r, kind: 'upstream' };
  if ((l & MAC_MASK) === mac(key, pid, r, 'session')) return { processId: pid, secretKey: r, kind: 'session' };
  return null;
}

/**
 * A pooled session's key: the worker's index and the session's slot in that worker share the
 * pid bits (SESSION_SLOT_BITS for the slot), so any worker can route the cancel to the one
 * holding the session.
 */
export const SESSION_SLOT_BITS = 16;
/** Workers whose pooled sessions can get a cancel key (the rest of the pid bits). */
export const MAX_CANCEL_ROUTED_WORKERS = 2 ** (CANCEL_KEY_PID_BITS - SESSION_SLOT_BITS);
export function sessionKeyPid(worker: number, slot: number): number {
  return worker * 2 ** SESSION_SLOT_BITS + slot;
}
export function sessionOfKeyPid(pid: number): { worker: number; slot: number } {
  return { worker: Math.floor(pid / 2 ** SESSION_SLOT_BITS), slot: pid % 2 ** SESSION_SLOT_BITS };
}

/**
 * A fresh key for a pooled session in slot `slot` of worker `worker`, and its secret. A key
 * whose MAC happens to be valid in the upstream domain too (1 in 2^CANCEL_KEY_MAC_BITS) would
 * be read as an upstream key: such a secret is drawn again.
 */
export function newSessionCancelKey(key: Buffer, worker: number, slot: number): { gateway: BackendKey; secret: number } {
  for (;;) {
    const secret = randomBytes(4).readUInt32BE(0);
    const gateway = encodeCancelKey(key, { processId: sessionKeyPid(worker, slot), secretKey: secret }, 'session')!;
    if (decodeAnyCancelKey(key, gateway)?.kind === 'session') return { gateway, secret };
  }
}
