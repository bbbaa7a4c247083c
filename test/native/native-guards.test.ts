// The addon's own guards (#17 items 10-13): wrapped objects are type-tagged, numbers are
// range-checked, a client TLS leg needs a server name, writes before the handshake throw,
// lent read buffers are detached after the call, and JavaScript called from inside a pump
// may end, release or destroy it without anything crashing (this file also runs against the
// ASan/UBSan build: scripts/run-tests.mjs). Real sockets on 127.0.0.1, no stubs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native, type Connection, type Listener, type NativeBinding, type PumpStats, type TlsContext } from '../../src/native.js';
import { selfSignedLocalhost } from '../harness/issuer-https.js';
import { loopbackPairs, type LoopbackPairs } from '../harness/native-pairs.js';

let n: NativeBinding;
let dir: string;
let serverCtx: TlsContext;
let clientCtx: TlsContext;
let pairs: LoopbackPairs;
let listener: Listener;
let pair: LoopbackPairs['pair'];

before(() => {
  n = native();
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-guards-'));
  const cert = selfSignedLocalhost(dir, 'guards');
  serverCtx = n.createServerContext({ cert: cert.certPem, key: cert.keyPem, profile: 'modern' });
  clientCtx = n.createClientContext({ ca: cert.certPem, profile: 'modern' });
  pairs = loopbackPairs(n);
  listener = pairs.listener;
  pair = () => pairs.pair();
});

after(() => {
  pairs.close();
  rmSync(dir, { recursive: true, force: true });
});

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

function pgMessage(type: string, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.write(type, 0, 'latin1');
  h.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}
const query = (sql: string) => pgMessage('Q', Buffer.from(sql + '\0'));

test('type tags: a TlsContext where a Connection is expected is a TypeError, not a reinterpretation', async () => {
  const [a, b] = await pair();
  const asConn = serverCtx as unknown as Connection;
  for (const call of [
    () => n.pump(asConn, b, { protocol: 'pg', highWaterBytes: 65536 }, () => {}),
    () => n.pump(a, asConn, { protocol: 'pg', highWaterBytes: 65536 }, () => {}),
    () => n.pump({} as Connection, b, { protocol: 'pg', highWaterBytes: 65536 }, () => {}),
    () => n.endPump(asConn, 'shutdown'),
    () => n.releaseStatement(asConn, 1),
    () => a.startTls(a as unknown as TlsContext, 'localhost', null, () => {}),
  ]) {
    assert.throws(call, (e: unknown) => e instanceof TypeError && code(e) === 'ERR_INVALID_ARG_TYPE');
  }
  // methods and accessors called with another wrapped object as `this`: V8's receiver check
  // ("Illegal invocation") or the tag check, a TypeError either way
  for (const call of [
    () => (Object.getPrototypeOf(a).write as (d: Buffer) => void).call(serverCtx, Buffer.from('x')),
    () => Object.getOwnPropertyDescriptor(Object.getPrototypeOf(serverCtx), 'kind')!.get!.call(a),
    () => Object.getOwnPropertyDescriptor(Object.getPrototypeOf(listener), 'port')!.get!.call(a),
    () => (Object.getPrototypeOf(listener).close as () => void).call(serverCtx),
  ]) {
    assert.throws(call, TypeError);
  }
  // the objects are untouched
  assert.equal(serverCtx.kind, 'server');
  assert.equal(a.closed, false);
  a.destroy();
  b.destroy();
});

test('numbers are range-checked: negative highWaterBytes, bad ports and ids are RangeErrors', async () => {
  const [a, b] = await pair();
  const isRange = (e: unknown) => e instanceof RangeError && code(e) === 'ERR_OUT_OF_RANGE';
  for (const hw of [-1, 0, 1.5, NaN, Infinity, 2 ** 40]) {
    assert.throws(() => n.pump(a, b, { protocol: 'pg', highWaterBytes: hw }, () => {}), isRange, `highWaterBytes ${hw}`);
  }
  assert.throws(
    () => n.pump(a, b, { protocol: 'pg', highWaterBytes: 65536, capture: { fromClient: 'Q', fromUpstream: '', maxBytes: -1, maxRowBytes: 0 }, onCapture: () => {} }, () => {}),
    isRange,
  );
  assert.throws(() => n.pump(a, b, { protocol: 'pg', highWaterBytes: 65536, expiresInMs: -5 }, () => {}), isRange);
  assert.throws(() => n.pump(a, b, { protocol: 'pg', highWaterBytes: '65536' as unknown as number }, () => {}), TypeError);
  assert.throws(() => n.pump(a, b, { protocol: 'mysql' as 'pg', highWaterBytes: 65536 }, () => {}), (e: unknown) => code(e) === 'ERR_INVALID_ARG_VALUE');
  for (const port of [-1, 65536, 1.5, NaN]) assert.throws(() => n.listen('127.0.0.1', port, 16, () => {}), isRange, `port ${port}`);
  assert.throws(() => n.listen('127.0.0.1', 0, -1, () => {}), isRange);
  assert.throws(() => n.connect('127.0.0.1', 0, () => {}), isRange);
  assert.throws(() => n.releaseStatement(a, -1), isRange);
  assert.throws(() => n.releaseStatement(a, 2 ** 60), isRange);
  assert.throws(() => n.skipJsonNumberList(Buffer.from('[1,2]'), 0.5), isRange);
  assert.throws(() => n.skipJsonNumberList(Buffer.from('[1,2]'), 6), isRange);
  assert.throws(() => n.readResponseHead(Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), -1), isRange);
  assert.throws(() => n.takeRecords(NaN), isRange);
  assert.throws(() => n.endPump(a, 'because' as 'shutdown'), (e: unknown) => code(e) === 'ERR_INVALID_ARG_VALUE');
  // nothing was attached by the refused calls: the pair still pumps
  let ended: PumpStats | null = null;
  n.pump(a, b, { protocol: 'raw', highWaterBytes: 65536 }, (s) => { ended = s; });
  assert.equal(n.endPump(a, 'shutdown'), true);
  await waitFor(() => ended !== null);
  assert.equal(ended!.reason, 'shutdown');
});

test('a client TLS leg without a server name is refused', async () => {
  const [a, b] = await pair();
  for (const name of [null, '']) {
    assert.throws(() => a.startTls(clientCtx, name, null, () => {}), (e: unknown) => code(e) === 'ERR_INVALID_ARG_VALUE', String(name));
  }
  a.destroy();
  b.destroy();
});

test('write before the TLS handshake completes throws ERR_VG_STATE (nothing is dropped silently)', async () => {
  const [a, b] = await pair();
  b.setCallbacks(() => {}, () => {});
  b.startTls(serverCtx, null, null, () => {});
  assert.throws(() => b.write(Buffer.from('early')), (e: unknown) => code(e) === 'ERR_VG_STATE');
  assert.throws(() => b.write([Buffer.from('early')]), (e: unknown) => code(e) === 'ERR_VG_STATE');
  const done = new Promise<Error | null>((resolve) => a.startTls(clientCtx, 'localhost', null, (err) => resolve(err)));
  assert.throws(() => a.write(Buffer.from('early')), (e: unknown) => code(e) === 'ERR_VG_STATE');
  assert.equal(await done, null);
  a.write(Buffer.from('after'));  // fine once the handshake is done
  a.destroy();
  b.destroy();
});

test('a lent read buffer is detached after the call: a kept reference reads as empty', async () => {
  const [a, b] = await pair();
  const kept: Buffer[] = [];
  const seen: string[] = [];
  await new Promise<void>((resolve) => {
    b.setLentCallbacks((bytes, length) => {
      seen.push(bytes.subarray(0, length).toString());
      kept.push(bytes);
      if (seen.join('').length >= 10) resolve();
    }, () => {});
    a.setCallbacks(() => {}, () => {});
    a.write(Buffer.from('first'));
    setTimeout(() => a.write(Buffer.from('later')), 20);
  });
  try {
    assert.equal(seen.join(''), 'firstlater');
    for (const k of kept) {
      assert.equal(k.byteLength, 0);
      assert.equal(k.toString(), '');
    }
  } finally {
    a.destroy();
    b.destroy();
  }
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A PostgreSQL pump between a test client (clientEnd -> gw client leg) and a fake server
 * (gw upstream leg -> serverEnd), with the given options.
 */
async function pgPump(opts: Partial<Parameters<NativeBinding['pump']>[2]>) {
  const [clientEnd, gwClient] = await pair();
  const [gwUpstream, serverEnd] = await pair();
  const fromGateway: Buffer[] = [];
  serverEnd.setCallbacks((c) => fromGateway.push(c), () => {});
  clientEnd.setCallbacks(() => {}, () => {});
  let stats: PumpStats | null = null;
  n.pump(gwClient, gwUpstream, { protocol: 'pg', highWaterBytes: 65536, ...opts }, (s) => { stats = s; });
  return { clientEnd, gwClient, gwUpstream, serverEnd, fromGateway, ended: () => stats as PumpStats | null };
}

test('microtasks queued by onStatement run after the chunk, not between its statements', async () => {
  const log: string[] = [];
  const p = await pgPump({
    onStatement: (_t, text) => {
      log.push(text);
      queueMicrotask(() => log.push('microtask'));
      return null;
    },
  });
  p.clientEnd.write(Buffer.concat([query('select 1'), query('select 2')]));
  await waitFor(() => log.length >= 4);
  assert.deepEqual(log, ['select 1', 'select 2', 'microtask', 'microtask']);
  p.clientEnd.destroy();
  await waitFor(() => p.ended() !== null);
  p.serverEnd.destroy();
});

for (const action of ['endPump', 'releaseStatement', 'destroy client', 'destroy upstream'] as const) {
  for (const where of ['onStatement', 'onCapture'] as const) {
    test(`JavaScript may ${action} from inside ${where}`, async () => {
      let p: Awaited<ReturnType<typeof pgPump>> | null = null;
      let calls = 0;
      const act = (): number | null => {
        calls++;
        const q = p!;
        if (action === 'endPump') n.endPump(q.gwClient, 'policy-revoked', pgMessage('E', Buffer.from('SFATAL\0C28000\0Mrevoked\0\0')));
        else if (action === 'releaseStatement') { n.releaseStatement(q.gwClient, 7); return 7; }
        else if (action === 'destroy client') q.gwClient.destroy();
        else q.gwUpstream.destroy();
        return null;
      };
      p = await pgPump(
        where === 'onStatement'
          ? { onStatement: () => act() }
          : { capture: { fromClient: 'Q', fromUpstream: 'CZ', maxBytes: 64, maxRowBytes: 0 }, onCapture: () => { act(); } },
      );
      // several statements in one chunk: the pump keeps parsing after the callback acted
      p.clientEnd.write(Buffer.concat([query('select 1'), query('select 2'), query('select 3')]));
      if (action === 'releaseStatement') {
        await waitFor(() => calls >= 1);
        p.clientEnd.destroy();
      }
      await waitFor(() => p!.ended() !== null);
      assert.ok(calls >= 1);
      p.clientEnd.destroy();
      p.serverEnd.destroy();
      await waitFor(() => n.stats().liveSessions === 0);
    });
  }
}
