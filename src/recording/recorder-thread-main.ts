// The recorder thread: owns the segment files and does everything the recorder does to them
// (framing, hash chaining, writes, fdatasync, checkpoint and seal signatures, head files,
// retention), so none of it runs on the primary's event loop, which answers the workers'
// authorization requests. The primary talks to it through RecorderThread (recorder-thread.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { useBlockingSyncs } from './durable-sync.js';
import { Recorder, type RecorderOptions } from './recorder.js';
import type { ToRecorderThread, FromRecorderThread } from './recorder-thread.js';

const port = parentPort!;
const post = (m: FromRecorderThread) => port.postMessage(m);
const failure = (id: number, e: unknown): FromRecorderThread => ({
  t: 'done',
  id,
  ok: false,
  code: typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : 'ERR_VG_RECORDING',
  message: (e as Error)?.message ?? String(e),
});

useBlockingSyncs();
let recorder: Recorder;
try {
  recorder = await Recorder.open(workerData as RecorderOptions);
  post({ t: 'open', ok: true, keyId: recorder.keyId, code: '', message: '' });
} catch (e) {
  const f = failure(0, e) as { code: string; message: string };
  post({ t: 'open', ok: false, keyId: '', code: f.code, message: f.message });
  process.exit(0);
}

port.on('message', (m: ToRecorderThread) => {
  switch (m.t) {
    case 'batch':
      recorder.appendBatch(m.blob).then(
        () => post({ t: 'done', id: m.id, ok: true }),
        (e: unknown) => post(failure(m.id, e)),
      );
      break;
    case 'encoded':
      recorder.appendEncoded(m.connections, m.payloads).then(
        () => post({ t: 'done', id: m.id, ok: true }),
        (e: unknown) => post(failure(m.id, e)),
      );
      break;
    case 'retention':
      recorder.enforceRetention(m.now).then(
        (r) => post({ t: 'done', id: m.id, ok: true, deleted: r.deleted }),
        (e: unknown) => post(failure(m.id, e)),
      );
      break;
    case 'close':
      recorder.close().then(
        () => {
          post({ t: 'done', id: m.id, ok: true });
          port.close();
        },
        (e: unknown) => {
          post(failure(m.id, e));
          port.close();
        },
      );
      break;
  }
});
