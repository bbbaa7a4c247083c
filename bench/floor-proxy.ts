// The least an HTTP proxy built like vecgate's HTTP data path can do per request: a reference
// for `http-pairs.ts --floor`, never a product. N worker threads on one port (SO_REUSEPORT),
// the addon's verified TLS connections to the upstream in a keep-alive pool per thread, and
// none of the gateway's work: no token, policy, guard, client address, framing checks,
// timeouts, recording or metrics. Request headers go upstream as they came (minus
// Authorization, Host and the framing headers) with the upstream's credential added; the body
// is copied once; the response head is read by the addon's C++ reader, the response must have
// a Content-Length (the benchmark's fixture upstream always sends one) and goes back from the
// read buffer, its headers minus the framing ones.
//
// `--front uws` (vecgate's stack): a uWebSockets.js SSLApp per thread. `--front native`: the
// addon's own TLS listener (the PostgreSQL path's) with a minimal HTTP/1.1 reader in
// JavaScript, one call per read: what a front without uWebSockets.js would start from.
// `--front pump`: no HTTP at all, the addon's pump between the client's TLS connection and
// one upstream TLS connection per client (clients send the upstream's credential): no
// JavaScript per request. What vecgate costs above the uws floor is the gateway's own work;
// what the floors cost above nginx is the stack's.
//
//   node dist/bench/floor-proxy.js --front uws|native|pump --port P --upstream-port U --cert F --key F --ca F --api-key-file F [--workers 2] [--lifetime-sec 3600]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import uWS from 'uWebSockets.js';
import { HTTP_WORKER_YOUNG_GENERATION_MB } from '../src/gateway/gateway.js';
import { native } from '../src/native.js';
import type { Connection, TlsContext } from '../src/native.js';

interface FloorOptions {
  front: 'uws' | 'native' | 'pump';
  port: number;
  upstreamPort: number;
  cert: string;
  key: string;
  ca: string;
  apiKey: string;
}

/** Request headers not sent on as they came (the floor writes its own Host and Content-Length). */
const DROPPED = new Set(['authorization', 'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'expect']);
/** Response headers the front writes itself (framing, Date) or that end at the proxy. */
const DROPPED_BACK = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date']);

/** One upstream connection of the pool and the response it is reading now. */
interface Upstream {
  conn: Connection;
  onData: ((bytes: Buffer) => void) | null;
}

/** The answer to hand back: status line text (`200 OK`), headers, and the body (valid during the call only). */
type Answer = (status: string, headers: [string, string][], body: Buffer) => void;

/** This thread's keep-alive pool of verified TLS connections to the upstream. */
function upstreamForwarder(o: FloorOptions): (method: string, target: string, headBlock: string, body: Buffer, answer: Answer) => void {
  const addon = native();
  const tls: TlsContext = addon.createClientContext({ ca: readFileSync(o.ca), profile: 'modern' });
  const idle: Upstream[] = [];
  const upstream = (cb: (u: Upstream | null) => void): void => {
    const u = idle.pop();
    if (u) return cb(u);
    addon.connect('127.0.0.1', o.upstreamPort, (err, conn) => {
      if (err || !conn) return cb(null);
      conn.startTls(tls, 'localhost', ['http/1.1'], (tlsErr) => {
        if (tlsErr) return cb(null);
        const fresh: Upstream = { conn, onData: null };
        conn.setLentCallbacks(
          (bytes, n) => fresh.onData?.(bytes.subarray(0, n)),
          () => {
            const i = idle.indexOf(fresh);
            if (i >= 0) idle.splice(i, 1);
          },
        );
        conn.resume();
        cb(fresh);
      });
    });
  };
  return (method, target, headBlock, body, answer) => {
    upstream((u) => {
      if (u === null) return answer('502 Bad Gateway', [], Buffer.from('upstream unavailable\n'));
      let acc: Buffer | null = null;
      u.onData = (bytes) => {
        // The response is usually one read: used in place, copied only when it is not whole.
        const buf = acc === null ? bytes : (acc = Buffer.concat([acc, bytes]));
        const r = addon.readResponseHead(buf, 64 * 1024); // the addon's C++ head reader
        if (r === null) {
          if (acc === null) acc = Buffer.from(bytes);
          return;
        }
        const used = r[0] as number;
        if ((r[4] as number) < 0) throw new Error('floor-proxy: the upstream answered without Content-Length');
        const total = used + (r[4] as number);
        if (buf.length < total) {
          if (acc === null) acc = Buffer.from(bytes);
          return;
        }
        u.onData = null;
        idle.push(u);
        const headers: [string, string][] = [];
        for (let i = 6; i + 1 < r.length; i += 2) {
          const k = (r[i] as string).toLowerCase();
          if (!DROPPED_BACK.has(k)) headers.push([k, r[i + 1] as string]);
        }
        answer(`${r[2]} ${r[3]}`, headers, buf.subarray(used, total));
      };
      u.conn.write([Buffer.from(`${method} ${target} HTTP/1.1\r\nhost: 127.0.0.1:${o.upstreamPort}\r\ncontent-length: ${body.length}\r\napi-key: ${o.apiKey}\r\n${headBlock}\r\n`), body]);
    });
  };
}

/** vecgate's front: a uWebSockets.js SSLApp. */
function serveUws(o: FloorOptions): void {
  const forward = upstreamForwarder(o);
  const app = uWS.SSLApp({ cert_file_name: o.cert, key_file_name: o.key });
  app.any('/*', (res, req) => {
    const method = req.getMethod().toUpperCase();
    const query = req.getQuery();
    const target = query ? `${req.getUrl()}?${query}` : req.getUrl();
    let head = '';
    let contentLength = '';
    req.forEach((k, v) => {
      if (k === 'content-length') contentLength = v;
      else if (!DROPPED.has(k)) head += `${k}: ${v}\r\n`;
    });
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // One copy of the body, into a buffer of its announced size (uWS lends its chunks only for
    // the callback); bodies without Content-Length are joined.
    const length = Number(contentLength);
    let body: Buffer | null = contentLength !== '' && Number.isSafeInteger(length) ? Buffer.allocUnsafe(length) : null;
    let fill = 0;
    const chunks: Buffer[] = [];
    res.onData((chunk, last) => {
      const n = chunk.byteLength;
      if (n > 0) {
        if (body !== null && fill + n <= body.length) {
          body.set(new Uint8Array(chunk), fill);
          fill += n;
        } else chunks.push(Buffer.from(chunk.slice(0)));
      }
      if (!last) return;
      const whole = body !== null && chunks.length === 0 ? body.subarray(0, fill) : Buffer.concat(body !== null ? [body.subarray(0, fill), ...chunks] : chunks);
      body = null;
      forward(method, target, head, whole, (status, headers, answerBody) => {
        if (aborted) return;
        res.cork(() => {
          res.writeStatus(status);
          for (const [k, v] of headers) res.writeHeader(k, v);
          res.end(answerBody);
        });
      });
    });
  });
  app.listen('127.0.0.1', o.port, (token) => {
    parentPort!.postMessage(token ? 'listening' : 'cannot listen');
  });
}

const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * The addon's TLS listener with a minimal HTTP/1.1 reader: one request at a time per
 * connection (no pipelining), Content-Length bodies only. Not hardened: a reference figure.
 */
function serveNative(o: FloorOptions): void {
  const addon = native();
  const forward = upstreamForwarder(o);
  const ctx = addon.createServerContext({ cert: readFileSync(o.cert), key: readFileSync(o.key), profile: 'modern', alpn: ['http/1.1'] });
  const listener = addon.listen('127.0.0.1', o.port, 1024, (conn) => {
    let acc: Buffer | null = null; // bytes of the request being read (copies: reads are lent)
    let need = -1; // head + body bytes of that request, once its head is read
    let method = '';
    let target = '';
    let head = '';
    let bodyAt = 0;
    let closed = false;
    const onBytes = (bytes: Buffer): void => {
      acc = acc === null ? Buffer.from(bytes) : Buffer.concat([acc, bytes]);
      if (need < 0) {
        const end = acc.indexOf(HEAD_END);
        if (end < 0) return;
        const lines = acc.toString('latin1', 0, end).split('\r\n');
        const sp1 = lines[0]!.indexOf(' ');
        const sp2 = lines[0]!.indexOf(' ', sp1 + 1);
        method = lines[0]!.slice(0, sp1);
        target = lines[0]!.slice(sp1 + 1, sp2);
        head = '';
        let length = 0;
        for (let i = 1; i < lines.length; i++) {
          const c = lines[i]!.indexOf(':');
          const k = lines[i]!.slice(0, c).toLowerCase();
          const v = lines[i]!.slice(c + 1).trim();
          if (k === 'content-length') length = Number(v);
          else if (!DROPPED.has(k)) head += `${k}: ${v}\r\n`;
        }
        bodyAt = end + 4;
        need = bodyAt + length;
      }
      if (acc.length < need) return;
      const body = acc.subarray(bodyAt, need);
      acc = null;
      need = -1;
      forward(method, target, head, body, (status, headers, answerBody) => {
        if (closed) return;
        let out = `HTTP/1.1 ${status}\r\n`;
        for (const [k, v] of headers) out += `${k}: ${v}\r\n`;
        conn.write([Buffer.from(`${out}content-length: ${answerBody.length}\r\n\r\n`, 'latin1'), answerBody]);
      });
    };
    conn.setLentCallbacks(
      (bytes, n) => onBytes(bytes.subarray(0, n)),
      () => {
        closed = true;
      },
    );
    conn.startTls(ctx, null, ['http/1.1'], (err) => {
      if (err) conn.destroy();
    });
    conn.resume();
  });
  void listener;
  parentPort!.postMessage('listening');
}

/**
 * No HTTP at all: each client connection gets its own verified TLS connection to the upstream
 * and the addon's pump moves the bytes both ways in C++ (like nginx's and haproxy's TLS stream
 * rows). Clients send the upstream's credential themselves. What the threads and the native
 * data path cost per request when no JavaScript runs per request.
 */
function servePump(o: FloorOptions): void {
  const addon = native();
  const serverCtx = addon.createServerContext({ cert: readFileSync(o.cert), key: readFileSync(o.key), profile: 'modern', alpn: ['http/1.1'] });
  const clientCtx = addon.createClientContext({ ca: readFileSync(o.ca), profile: 'modern' });
  const listener = addon.listen('127.0.0.1', o.port, 1024, (client) => {
    const early: Buffer[] = []; // bytes the client sent before the upstream was ready
    client.setCallbacks(
      (chunk) => early.push(chunk),
      () => {},
    );
    client.startTls(serverCtx, null, ['http/1.1'], (err) => {
      if (err) return client.destroy();
      client.pause();
      addon.connect('127.0.0.1', o.upstreamPort, (cErr, up) => {
        if (cErr || !up) return client.destroy();
        up.startTls(clientCtx, 'localhost', ['http/1.1'], (tErr) => {
          if (tErr) {
            up.destroy();
            return client.destroy();
          }
          if (early.length > 0) up.write(early.splice(0));
          addon.pump(client, up, { protocol: 'raw', highWaterBytes: 256 * 1024 }, () => {});
          client.resume();
        });
      });
    });
    client.resume();
  });
  void listener;
  parentPort!.postMessage('listening');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      front: { type: 'string', default: 'uws' },
      port: { type: 'string' },
      'upstream-port': { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      ca: { type: 'string' },
      'api-key-file': { type: 'string' },
      workers: { type: 'string', default: '2' },
      'lifetime-sec': { type: 'string', default: '3600' },
    },
  });
  for (const k of ['port', 'upstream-port', 'cert', 'key', 'ca', 'api-key-file'] as const) {
    if (!values[k]) throw new Error(`--${k} is required`);
  }
  if (values.front !== 'uws' && values.front !== 'native' && values.front !== 'pump') throw new Error(`--front must be uws, native or pump (got ${values.front})`);
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers must be a positive integer (got ${values.workers})`);
  const o: FloorOptions = {
    front: values.front,
    port: Number(values.port),
    upstreamPort: Number(values['upstream-port']),
    cert: values.cert!,
    key: values.key!,
    ca: values.ca!,
    apiKey: readFileSync(values['api-key-file']!, 'utf8').trim(),
  };
  const file = fileURLToPath(import.meta.url);
  const started = Array.from({ length: workers }, () => {
    // The young generation vecgate gives its workers when it serves HTTP (src/gateway/gateway.ts).
    const w = new Worker(file, { workerData: o, resourceLimits: { maxYoungGenerationSizeMb: HTTP_WORKER_YOUNG_GENERATION_MB } });
    return new Promise<void>((resolve, reject) => {
      w.once('message', (m) => (m === 'listening' ? resolve() : reject(new Error(`floor-proxy: ${String(m)} on 127.0.0.1:${o.port}`))));
      w.once('error', reject);
    });
  });
  await Promise.all(started);
  process.stdout.write(`floor-proxy (${o.front}) listening on 127.0.0.1:${o.port} with ${workers} worker${workers === 1 ? '' : 's'}\n`);
  // Stops by itself: a benchmark that died leaves nothing behind for long.
  setTimeout(() => process.exit(0), Number(values['lifetime-sec']) * 1000).unref();
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}

if (isMainThread) {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  });
} else {
  const o = workerData as FloorOptions;
  if (o.front === 'native') serveNative(o);
  else if (o.front === 'pump') servePump(o);
  else serveUws(o);
}
