// Transaction pooling through the addon's bindings (pump transactionPooling, onUpstreamWanted,
// onUpstreamReleased, attachUpstream), over real sockets on 127.0.0.1: the test plays the
// client and the servers byte by byte. The pump's own logic has C++ unit tests
// (native/test/pump-pooling-test.cc) and a fuzz target; this checks the hand-over between the
// pump and JavaScript: links released and attached again, what waited delivered, ownership.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { native, type Connection, type NativeBinding, type PumpStats } from '../../src/native.js';
import { loopbackPairs, type LoopbackPairs } from '../harness/native-pairs.js';

let n: NativeBinding;
let pairs: LoopbackPairs;
const pair = () => pairs.pair();

before(() => {
  n = native();
  pairs = loopbackPairs(n);
});

after(() => pairs.close());

function message(type: string, body: string | Buffer): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  const h = Buffer.alloc(5);
  h.write(type, 0, 'latin1');
  h.writeUInt32BE(b.length + 4, 1);
  return Buffer.concat([h, b]);
}
const query = (sql: string) => message('Q', sql + '\0');
const ready = (status: string) => message('Z', status);
const complete = (tag: string) => message('C', tag + '\0');
const terminate = message('X', '');

/** What one end of a pair receives, with a way to wait for a number of bytes. */
class Peer {
  received = Buffer.alloc(0);
  closed = false;
  private wait: { bytes: number; resolve: () => void } | null = null;
  constructor(readonly conn: Connection) {
    conn.setCallbacks(
      (chunk) => {
        this.received = Buffer.concat([this.received, chunk]);
        if (this.wait && this.received.length >= this.wait.bytes) {
          const w = this.wait;
          this.wait = null;
          w.resolve();
        }
      },
      () => {
        this.closed = true;
        this.wait?.resolve();
      },
    );
    conn.resume();
  }
  until(bytes: number, ms = 3000): Promise<void> {
    if (this.received.length >= bytes) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`waited for ${bytes} bytes, have ${this.received.length}`)), ms);
      this.wait = {
        bytes,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      };
    });
  }
}

/** Which message types a byte stream holds, in order. */
function types(b: Buffer): string {
  let out = '';
  for (let at = 0; at + 5 <= b.length; at += 1 + b.readUInt32BE(at + 1)) out += String.fromCharCode(b[at]!);
  return out;
}

test('a pooled session gives its link back between transactions and takes one again for the next', async () => {
  const [clientEnd, sessionConn] = await pair();
  const client = new Peer(clientEnd);
  const links: { conn: Connection; server: Peer }[] = [];
  for (let i = 0; i < 2; i++) {
    const [linkConn, serverEnd] = await pair();
    links.push({ conn: linkConn, server: new Peer(serverEnd) });
  }
  const released: Connection[] = [];
  let wanted = 0;
  let spare: Connection[] = [];
  let ended: PumpStats | null = null;
  const endedP = new Promise<void>((resolve) => {
    n.pump(
      sessionConn,
      links[0]!.conn,
      {
        protocol: 'pg',
        highWaterBytes: 65536,
        transactionPooling: true,
        onUpstreamWanted: () => {
          wanted++;
          const next = spare.shift();
          assert.ok(next, 'a link to give');
          assert.equal(n.attachUpstream(sessionConn, next), true);
        },
        onUpstreamReleased: (link) => {
          released.push(link);
          // JavaScript's again: its callbacks are ours to set (a pool would watch it here).
          link.setCallbacks(() => {}, () => {});
        },
      },
      (stats) => {
        ended = stats;
        resolve();
      },
    );
  });
  // A session starts between transactions: its first link goes back at once.
  assert.deepEqual(released, [links[0]!.conn]);

  spare = [links[1]!.conn];
  clientEnd.write(query('select 1'));
  await links[1]!.server.until(query('select 1').length);
  assert.equal(wanted, 1);
  assert.equal(types(links[1]!.server.received), 'Q');
  links[1]!.server.conn.write([complete('SELECT 1'), ready('I')]);
  await client.until(complete('SELECT 1').length + 6);
  assert.equal(types(client.received), 'CZ');
  assert.equal(released.length, 2);
  assert.equal(released[1], links[1]!.conn, 'the link it had');

  // The released link is handed out again (as a pool would): the next transaction uses it.
  spare = [links[1]!.conn];
  clientEnd.write(Buffer.concat([query('begin'), query('insert into t values (1)')]));
  const sent = query('begin').length + query('insert into t values (1)').length;
  await links[1]!.server.until(query('select 1').length + sent);
  links[1]!.server.conn.write([complete('BEGIN'), ready('T'), complete('INSERT 0 1'), ready('T')]);
  await client.until(client.received.length + 2 * 6 + complete('BEGIN').length + complete('INSERT 0 1').length);
  assert.equal(released.length, 2, 'kept inside the transaction');
  clientEnd.write(query('commit'));
  await links[1]!.server.until(query('select 1').length + sent + query('commit').length);
  links[1]!.server.conn.write([complete('COMMIT'), ready('I')]);
  await client.until(client.received.length + complete('COMMIT').length + 6);
  assert.equal(released.length, 3);

  // Terminate between transactions: the session ends; no server sees a Terminate.
  clientEnd.write(terminate);
  await endedP;
  assert.ok(ended);
  const stats = ended as PumpStats;
  assert.equal(stats.reason, 'client-terminate');
  assert.equal(stats.upstreamAttaches, 2);
  assert.equal(stats.upstreamReleases, 3);
  assert.equal(stats.upstreamKept, false);
  assert.ok(!types(links[0]!.server.received).includes('X'));
  assert.equal(types(links[1]!.server.received), 'QQQQ');
  for (const l of links) l.conn.close();
  clientEnd.close();
});

test('attachUpstream later: what the client sent meanwhile waits and goes to the link it gets; refused when the session takes none', async () => {
  const [clientEnd, sessionConn] = await pair();
  const client = new Peer(clientEnd);
  const [first, firstServer] = await pair();
  const [second, secondServerEnd] = await pair();
  const secondServer = new Peer(secondServerEnd);
  new Peer(firstServer);
  let wantedResolve: () => void = () => {};
  const wanted = new Promise<void>((r) => (wantedResolve = r));
  let onEnd: (s: PumpStats) => void = () => {};
  const ended = new Promise<PumpStats>((r) => (onEnd = r));
  n.pump(
    sessionConn,
    first,
    {
      protocol: 'pg',
      highWaterBytes: 65536,
      transactionPooling: true,
      onUpstreamWanted: () => wantedResolve(),
      onUpstreamReleased: (link) => link.setCallbacks(() => {}, () => {}),
    },
    onEnd,
  );
  // The client pipelines a write and its Terminate while the session has no link.
  clientEnd.write(Buffer.concat([query('insert into t values (2)'), terminate]));
  await wanted;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(secondServer.received.length, 0);
  assert.equal(n.attachUpstream(sessionConn, second), true);
  await secondServer.until(query('insert into t values (2)').length);
  assert.equal(types(secondServer.received), 'Q', 'the insert, and no Terminate');
  secondServer.conn.write([complete('INSERT 0 1'), ready('I')]);
  const stats = await ended;
  await client.until(complete('INSERT 0 1').length + 6);
  assert.equal(types(client.received), 'CZ');
  assert.equal(stats.upstreamKept, true);
  assert.equal(stats.upstream, second, 'the kept link is the one it ended on');
  // The session is over: it takes no link, and the caller keeps the one it offered.
  assert.equal(n.attachUpstream(sessionConn, first), false);
  assert.equal(first.closed, false);
  for (const c of [first, second, clientEnd]) c.close();
});

test('transactionPooling needs its two callbacks and the pg protocol', async () => {
  const [a, b] = await pair();
  assert.throws(() => n.pump(a, b, { protocol: 'pg', highWaterBytes: 65536, transactionPooling: true }, () => {}), TypeError);
  assert.throws(
    () => n.pump(a, b, { protocol: 'raw', highWaterBytes: 65536, transactionPooling: true, onUpstreamWanted: () => {}, onUpstreamReleased: () => {} }, () => {}),
    TypeError,
  );
  // Not a pooled session: attachUpstream says no.
  const [c, d] = await pair();
  n.pump(a, b, { protocol: 'pg', highWaterBytes: 65536 }, () => {});
  assert.equal(n.attachUpstream(a, c), false);
  for (const x of [a, b, c, d]) x.close();
});
