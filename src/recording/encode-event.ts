// Turns one recording event into the payload bytes of its record: checked, secrets removed
// (redact-event.ts), msgpack-encoded, size-capped. Workers run this on their own events, so
// secrets never cross to the primary and the primary only frames, chains and writes bytes.
import { VgError } from '../errors.js';
import type { RecordEvent } from './record-event.js';
import { redactEvent } from './redact-event.js';
import { packr } from './segment-format.js';

/** One event, encoded, may not exceed this: larger payloads belong in a summary (summarizeVector). */
export const MAX_EVENT_BYTES = 8 * 1024 * 1024;

/** Encoded payload of `e` for its connection's chain; throws VgError ERR_VG_RECORDING on a malformed or oversized event. */
export function encodeEvent(e: RecordEvent): Buffer {
  if (typeof e.connection !== 'string' || e.connection === '' || typeof e.type !== 'string' || typeof e.ts !== 'number' || typeof e.session !== 'string') {
    throw new VgError('ERR_VG_RECORDING', 'a recording event needs string type, session and connection and a numeric ts');
  }
  const payload = packr.pack(redactEvent(e));
  checkEventSize(payload.length, e.type, e.session);
  return payload;
}

export function checkEventSize(bytes: number, type: string, session: string): void {
  if (bytes > MAX_EVENT_BYTES) {
    throw new VgError('ERR_VG_RECORDING', `a ${type} event of session ${session} is ${bytes} bytes encoded, over the ${MAX_EVENT_BYTES}-byte limit: record a summary instead`);
  }
}
