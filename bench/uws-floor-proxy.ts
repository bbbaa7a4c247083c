// The least an HTTP proxy built like vecgate's HTTP data path can do per request: a reference
// for `http-pairs.ts --floor`, never a product. The same stack as vecgate (a uWebSockets.js
// SSLApp in each of N worker threads on one port, the addon's verified TLS connections to the
// upstream in a keep-alive pool) with none of the gateway's work: no token, policy, guard,
// client address, framing checks, timeouts, recording or metrics. Request headers go upstream
// as they came (minus Authorization, Host and the framing headers) with the upstream's
// credential added; the body is copied once (uWS lends its chunks only for the callback); the
// response head is read by the addon's C++ reader, the response must have a Content-Length
// (the benchmark's fixture upstream always sends one) and goes back from the read buffer,
// its headers minus the framing ones. What vecgate
// costs above this is the gateway's own work; what this costs above nginx is the stack's.
//
//   node dist/bench/uws-floor-proxy.js --port P --upstream-port U --cert F --key F --ca F --api-key-file F [--workers 2] [--lifetime-sec 3600]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import uWS from 'uWebSockets.js';
import type { HttpResponse } from 'uWebSockets.js';
import { native } from '../src/native.js';
import type { Connection, TlsContext } from '../src/native.js';

interface FloorOptions {
  port: number;
  upstreamPort: number;
  cert: string;
  key: string;
  ca: string;
  apiKey: string;
}

/** Request headers not sent on as they came (the floor writes its own Host and Content-Length). */
const DROPPED = new Set(['authorization', 'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'expect']);
/** Response headers uWS writes itself (framing, Date) or that end at the proxy. */
const DROPPED_BACK = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date']);

/** One upstream connection of the pool and the response it is reading now. */
interface Upstream {
  conn: Connection;
  onData: ((bytes: Buffer) => void) | null;
}

function serve(o: FloorOptions): void {
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
  const answer = (res: HttpResponse, status: string, headers: [string, string][], body: Buffer): void => {
    res.cork(() => {
      res.writeStatus(status);
      for (const [k, v] of headers) res.writeHeader(k, v);
      res.end(body);
    });
  };
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
      upstream((u) => {
        if (u === null) {
          if (!aborted) answer(res, '502 Bad Gateway', [], Buffer.from('upstream unavailable\n'));
          return;
        }
        let acc: Buffer | null = null;
        u.onData = (bytes) => {
          // The response is usually one read: it is used in place, copied only when it is not.
          const buf = acc === null ? bytes : (acc = Buffer.concat([acc, bytes]));
          const r = addon.readResponseHead(buf, 64 * 1024); // the addon's C++ head reader
          if (r === null) {
            if (acc === null) acc = Buffer.from(bytes);
            return;
          }
          const used = r[0] as number;
          const total = used + (r[4] as number);
          if ((r[4] as number) < 0) throw new Error('uws-floor-proxy: the upstream answered without Content-Length');
          if (buf.length < total) {
            if (acc === null) acc = Buffer.from(bytes);
            return;
          }
          u.onData = null;
          idle.push(u);
          if (aborted) return;
          const headers: [string, string][] = [];
          for (let i = 6; i + 1 < r.length; i += 2) {
            const k = (r[i] as string).toLowerCase();
            if (!DROPPED_BACK.has(k)) headers.push([k, r[i + 1] as string]);
          }
          answer(res, `${r[2]} ${r[3]}`, headers, buf.subarray(used, total));
        };
        u.conn.write([Buffer.from(`${method} ${target} HTTP/1.1\r\nhost: 127.0.0.1:${o.upstreamPort}\r\ncontent-length: ${whole.length}\r\napi-key: ${o.apiKey}\r\n${head}\r\n`), whole]);
      });
    });
  });
  app.listen('127.0.0.1', o.port, (token) => {
    parentPort!.postMessage(token ? 'listening' : 'cannot listen');
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
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
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers must be a positive integer (got ${values.workers})`);
  const o: FloorOptions = {
    port: Number(values.port),
    upstreamPort: Number(values['upstream-port']),
    cert: values.cert!,
    key: values.key!,
    ca: values.ca!,
    apiKey: readFileSync(values['api-key-file']!, 'utf8').trim(),
  };
  const file = fileURLToPath(import.meta.url);
  const started = Array.from({ length: workers }, () => {
    const w = new Worker(file, { workerData: o });
    return new Promise<void>((resolve, reject) => {
      w.once('message', (m) => (m === 'listening' ? resolve() : reject(new Error(`uws-floor-proxy: ${String(m)} on 127.0.0.1:${o.port}`))));
      w.once('error', reject);
    });
  });
  await Promise.all(started);
  process.stdout.write(`uws-floor-proxy listening on 127.0.0.1:${o.port} with ${workers} worker${workers === 1 ? '' : 's'}\n`);
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
  serve(workerData as FloorOptions);
}
