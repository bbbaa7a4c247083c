// A piscina task of `verifyRecordings`: verifies one connection's chain on a pool thread and
// returns its per-connection report (what the calling thread would have computed itself).
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { ConnectionDir } from './segment-store.js';
import { verifyConnection, type ConnectionVerifyReport, type Segments } from './verify-recordings.js';

export interface VerifyConnectionTask {
  connection: ConnectionDir;
  segments: Segments;
  /** The trusted public key, SPKI DER (a KeyObject would be cloned too, but this is what the key id is made of). */
  publicKeySpki: Uint8Array;
}

/** The key of the last task: every task of one run carries the same one. */
let lastKey: { spki: Buffer; key: KeyObject } | null = null;

export default async function verifyConnectionTask(task: VerifyConnectionTask): Promise<ConnectionVerifyReport> {
  const spki = Buffer.from(task.publicKeySpki.buffer, task.publicKeySpki.byteOffset, task.publicKeySpki.byteLength);
  if (lastKey === null || !lastKey.spki.equals(spki)) lastKey = { spki: Buffer.from(spki), key: createPublicKey({ key: spki, format: 'der', type: 'spki' }) };
  return verifyConnection(task.connection, task.segments, lastKey.key, () => {});
}
