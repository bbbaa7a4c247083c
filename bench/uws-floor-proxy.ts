// The least an HTTP proxy built like vecgate's HTTP data path can do per request: a reference
// for `http-pairs.ts --floor`, never a product. The same stack as vecgate (a uWebSockets.js
// SSLApp in each of N worker threads on one port, the addon's verified TLS connections to the
// upstream in a keep-alive pool) with none of the gateway's work: no token, policy, guard,
// client address, framing checks, timeouts, recording or metrics. Request headers go upstream
// as they came (minus Authorization, Host and the framing headers) with the upstream's
// credential added; the response must have a Content-Length (the benchmark's fixture upstream
// always sends one) and goes back whole, its headers minus the framing ones. What vecgate
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
const HEAD_END = Buffer.from('\r\n\r\n');

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
    req.forEach((k, v) => {
      if (!DROPPED.has(k)) head += `${k}: ${v}\r\n`;
    });
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const chunks: Buffer[] = [];
    res.onData((chunk, last) => {
      if (chunk.byteLength > 0) chunks.push(Buffer.from(chunk.slice(0)));
      if (!last) return;
      const body = Buffer.concat(chunks);
      upstream((u) => {
        if (u === null) {
          if (!aborted) answer(res, '502 Bad Gateway', [], Buffer.from('upstream unavailable\n'));
          return;
        }
        let acc: Buffer | null = null;
        u.onData = (bytes) => {
          acc = acc === null ? Buffer.from(bytes) : Buffer.concat([acc, bytes]);
          const end = acc.indexOf(HEAD_END);
          if (end < 0) return;
          const lines = acc.toString('latin1', 0, end).split('\r\n');
          const m = /^content-length: *(\d+)$/im.exec(lines.join('\n'));
          if (!m) throw new Error('uws-floor-proxy: the upstream answered without Content-Length');
          const total = end + 4 + Number(m[1]);
          if (acc.length < total) return;
          u.onData = null;
          idle.push(u);
          if (aborted) return;
          const headers: [string, string][] = [];
          for (let i = 1; i < lines.length; i++) {
            const c = lines[i]!.indexOf(':');
            const k = lines[i]!.slice(0, c).toLowerCase();
            if (!DROPPED_BACK.has(k)) headers.push([k, lines[i]!.slice(c + 1).trim()]);
          }
          answer(res, lines[0]!.slice(9), headers, acc.subarray(end + 4, total));
        };
        u.conn.write([Buffer.from(`${method} ${target} HTTP/1.1\r\nhost: 127.0.0.1:${o.upstreamPort}\r\ncontent-length: ${body.length}\r\napi-key: ${o.apiKey}\r\n${head}\r\n`), body]);
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
