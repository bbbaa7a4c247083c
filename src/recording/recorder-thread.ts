// The primary's recorder: the same surface as Recorder (recorder.ts), with the Recorder itself
// running in a thread of its own (recorder-thread-main.ts). The primary's event loop answers
// every worker's authorization requests; framing megabytes of events, writing them and
// waiting for fdatasync there delayed those answers by as long as the disk took. Here the
// primary only hands each batch over (moved, not copied, when the batch owns its buffer) and
// resolves the append when the thread says the records are written; under strict durability
// that is after their fdatasync, which concurrent batches still share (group commit: the
// thread drains everything that arrived while it was syncing as one group).
import { Worker } from 'node:worker_threads';
import { VgError, type VgErrorCode } from '../errors.js';
import type { RecordEvent } from './record-event.js';
import { encodeEvents, type EncodedEvents, type RecorderOptions } from './recorder.js';

/** Messages to the recorder thread. */
export type ToRecorderThread =
  | { t: 'batch'; id: number; blob: Uint8Array }
  | { t: 'encoded'; id: number; connections: string[]; payloads: Uint8Array[] }
  | { t: 'retention'; id: number; now: number }
  | { t: 'close'; id: number };

/** Messages from it: errors cross as code + message (their class does not survive the thread). */
export type FromRecorderThread =
  | { t: 'open'; ok: boolean; keyId: string; code: string; message: string }
  | { t: 'done'; id: number; ok: true; deleted?: string[] }
  | { t: 'done'; id: number; ok: false; code: string; message: string };

const threadUrl = new URL('./recorder-thread-main.js', import.meta.url);

interface Waiter {
  resolve: (v: { deleted?: string[] }) => void;
  reject: (e: unknown) => void;
}

export class RecorderThread {
  private readonly waiting = new Map<number, Waiter>();
  private nextId = 1;
  private closing: Promise<void> | null = null;
  private exited: VgError | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly keyId: string,
  ) {
    worker.on('message', (m: FromRecorderThread) => {
      if (m.t !== 'done') return;
      const w = this.waiting.get(m.id);
      if (w === undefined) return;
      this.waiting.delete(m.id);
      if (m.ok) w.resolve(m);
      else w.reject(new VgError(m.code as VgErrorCode, m.message));
    });
    const gone = (why: string) => {
      this.exited ??= new VgError('ERR_VG_RECORDING', `the recorder thread ${why}; no more events can be recorded`);
      for (const w of this.waiting.values()) w.reject(this.exited);
      this.waiting.clear();
    };
    worker.on('error', (e) => gone(`failed: ${e.message}`));
    worker.on('exit', (code) => gone(`exited (code ${code})`));
  }

  /** Starts the thread and opens the recordings there (same checks and errors as Recorder.open). */
  static async open(opts: RecorderOptions): Promise<RecorderThread> {
    const worker = new Worker(threadUrl, { workerData: opts, name: 'vecgate-recorder' });
    let onMessage!: (m: FromRecorderThread) => void;
    let onError!: (e: Error) => void;
    let onExit!: (code: number) => void;
    const first = await new Promise<FromRecorderThread>((resolve, reject) => {
      onMessage = resolve;
      onError = reject;
      onExit = (code) => reject(new VgError('ERR_VG_RECORDING', `the recorder thread exited while opening the recordings (code ${code})`));
      worker.once('message', onMessage).once('error', onError).once('exit', onExit);
    }).finally(() => {
      // Only ours: Worker keeps listeners of its own (removeAllListeners would stop its messages).
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
    });
    if (first.t !== 'open' || !first.ok) {
      await worker.terminate();
      const f = first as { code?: string; message?: string };
      throw new VgError((f.code ?? 'ERR_VG_RECORDING') as VgErrorCode, f.message ?? 'the recorder thread did not open');
    }
    return new RecorderThread(worker, first.keyId);
  }

  /** Recorder.append: events are encoded (and redacted) here, written there. */
  append(events: RecordEvent[]): Promise<void> {
    let encoded: EncodedEvents;
    try {
      encoded = encodeEvents(events);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.appendEncoded(encoded.connections, encoded.payloads);
  }

  /** Recorder.appendEncoded. */
  appendEncoded(connections: readonly string[], payloads: readonly Uint8Array[]): Promise<void> {
    return this.call({ t: 'encoded', id: 0, connections: [...connections], payloads: [...payloads] }).then(() => undefined);
  }

  /**
   * Recorder.appendBatch. A batch that is the whole of its ArrayBuffer is moved to the thread
   * (`blob` is detached: do not use it after); a view into a larger buffer is copied first.
   */
  appendBatch(blob: Uint8Array): Promise<void> {
    const own = blob.byteOffset === 0 && blob.byteLength === blob.buffer.byteLength && blob.buffer instanceof ArrayBuffer ? blob : blob.slice();
    return this.call({ t: 'batch', id: 0, blob: own }, [own.buffer as ArrayBuffer]).then(() => undefined);
  }

  /** Recorder.enforceRetention. */
  enforceRetention(now: number = Date.now()): Promise<{ deleted: string[] }> {
    return this.call({ t: 'retention', id: 0, now }).then((r) => ({ deleted: r.deleted ?? [] }));
  }

  /** Recorder.close: seals every open segment there, then the thread ends. */
  close(): Promise<void> {
    this.closing ??= this.call({ t: 'close', id: 0 }, [], true)
      .then(() => undefined)
      .finally(() => this.worker.terminate().then(() => undefined));
    return this.closing;
  }

  private call(m: ToRecorderThread, transfer: ArrayBuffer[] = [], isClose = false): Promise<{ deleted?: string[] }> {
    if (this.exited !== null) return Promise.reject(this.exited);
    if (this.closing !== null && !isClose) return Promise.reject(new VgError('ERR_VG_RECORDING', 'the recorder is closed; no more events can be recorded'));
    const id = this.nextId++;
    m.id = id;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage(m, transfer);
    });
  }
}
