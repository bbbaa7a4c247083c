// nginx from Debian as a real TLS upstream for the HTTP data path: HTTP/1.1 over TLS on
// 127.0.0.1 with the test PKI's server certificate, fixed JSON answers of realistic sizes
// (a top-10 search, ten 1536-dim points with vectors, an upsert acknowledgement), every request
// body kept in a file, and an access log line per request (JSON) with the connection number and
// its request count (keep-alive reuse), the framing headers it received and the forwarding
// headers, so tests can check what the gateway actually sent. The request headers that matter
// are also echoed back as X-Echo-* response headers. Stops on stop(), on process exit, and
// through a detached watchdog when the test process is killed.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fixtureVector } from './http-upstream.js';
import { freePort } from './free-port.js';

export const NGINX_BIN = '/usr/sbin/nginx';
/** How long start() waits for nginx to accept TLS connections. */
const NGINX_START_TIMEOUT_MS = 15_000;
/** How often the watchdog checks that the test process is still alive. */
const WATCHDOG_INTERVAL_S = 1;
/** Largest request body nginx accepts (the gateway's streaming tests send a few MB). */
const NGINX_MAX_BODY = '64m';
/** Dimensions of the vectors in the fixed answers (OpenAI text-embedding-3-small). */
const ANSWER_DIM = 1536;

/** One access-log line: what nginx received on one request. Empty strings for absent headers. */
export interface NginxLogLine {
  /** nginx's connection serial number: equal numbers mean one reused TCP+TLS connection. */
  connection: number;
  /** Requests served on that connection so far, this one included. */
  connectionRequests: number;
  method: string;
  uri: string;
  status: number;
  protocol: string;
  contentLength: string;
  transferEncoding: string;
  /** The file nginx kept the request body in ('' for none). */
  bodyFile: string;
  host: string;
  xForwardedFor: string;
  xForwardedProto: string;
  forwarded: string;
  connectionHeader: string;
  keepAlive: string;
  te: string;
  upgrade: string;
  proxyConnection: string;
  /** Whatever X-Drop-Me header arrived (tests name it in Connection, so it must not). */
  xDropMe: string;
  xEndToEnd: string;
  /** 'yes' when the api-key header was the expected credential, 'no' otherwise (the value itself is never logged). */
  apiKeyOk: string;
  authorizationPresent: string;
  testId: string;
}

export interface NginxUpstream {
  port: number;
  /** https://127.0.0.1:PORT */
  url: string;
  pid: number;
  /** The fixed answers, byte for byte, by path. */
  answers: { search: Buffer; scroll: Buffer; upsert: Buffer; collection: Buffer };
  /** Parsed access log so far. */
  log(): NginxLogLine[];
  /** Waits until the access log has a line with this X-Test-Id (nginx logs after answering). */
  waitForLog(testId: string): Promise<NginxLogLine>;
  /** The body nginx received for a logged request. */
  body(line: NginxLogLine): Buffer;
  stop(): Promise<void>;
}

export interface NginxUpstreamOptions {
  certFile: string;
  keyFile: string;
  /** The api-key value nginx expects; requests are answered either way, the log says whether it matched. */
  apiKey: string;
}

/** Installs nginx with apt-get when it is missing and we are root (the same list as scripts/ensure-system-deps.sh). */
export function ensureNginx(): void {
  if (existsSync(NGINX_BIN)) return;
  if (process.getuid?.() !== 0) throw new Error(`nginx (${NGINX_BIN}) is not installed; as root run: bash scripts/ensure-system-deps.sh`);
  const script = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..', 'scripts', 'ensure-system-deps.sh');
  execFileSync('bash', [script, 'test'], { stdio: 'inherit' });
  if (!existsSync(NGINX_BIN)) throw new Error(`nginx is still missing after ${script}`);
}

const LOG_FIELDS: [keyof NginxLogLine, string][] = [
  ['connection', '$connection'],
  ['connectionRequests', '$connection_requests'],
  ['method', '$request_method'],
  ['uri', '$request_uri'],
  ['status', '$status'],
  ['protocol', '$server_protocol'],
  ['contentLength', '$http_content_length'],
  ['transferEncoding', '$http_transfer_encoding'],
  ['bodyFile', '$request_body_file'],
  ['host', '$http_host'],
  ['xForwardedFor', '$http_x_forwarded_for'],
  ['xForwardedProto', '$http_x_forwarded_proto'],
  ['forwarded', '$http_forwarded'],
  ['connectionHeader', '$http_connection'],
  ['keepAlive', '$http_keep_alive'],
  ['te', '$http_te'],
  ['upgrade', '$http_upgrade'],
  ['proxyConnection', '$http_proxy_connection'],
  ['xDropMe', '$http_x_drop_me'],
  ['xEndToEnd', '$http_x_end_to_end'],
  ['apiKeyOk', '$vg_api_key_ok'],
  ['authorizationPresent', '$vg_authorization_present'],
  ['testId', '$http_x_test_id'],
];
const NUMERIC = new Set<keyof NginxLogLine>(['connection', 'connectionRequests', 'status']);

/** Echoed back as response headers, so a test sees what arrived without reading the log. */
const ECHOED: [header: string, variable: string][] = [
  ['X-Echo-Forwarded-For', '$http_x_forwarded_for'],
  ['X-Echo-Forwarded', '$http_forwarded'],
  ['X-Echo-Connection', '$http_connection'],
  ['X-Echo-TE', '$http_te'],
  ['X-Echo-Transfer-Encoding', '$http_transfer_encoding'],
  ['X-Echo-Content-Length', '$http_content_length'],
  ['X-Echo-Api-Key-Ok', '$vg_api_key_ok'],
  ['X-Echo-Connection-Requests', '$connection_requests'],
];

function answers(): NginxUpstream['answers'] {
  const search = { result: Array.from({ length: 10 }, (_, i) => ({ id: i + 1, version: 3, score: 0.98 - i * 0.01, payload: { title: `document ${i + 1}`, source: 'nginx-fixture' } })), status: 'ok', time: 0.0021 };
  const scroll = { result: { points: Array.from({ length: 10 }, (_, i) => ({ id: i + 1, payload: { n: i + 1 }, vector: fixtureVector(i + 1, ANSWER_DIM) })), next_page_offset: 11 }, status: 'ok', time: 0.004 };
  const upsert = { result: { operation_id: 42, status: 'completed' }, status: 'ok', time: 0.0012 };
  const collection = { result: { status: 'green', points_count: 10, config: { params: { vectors: { size: ANSWER_DIM, distance: 'Cosine' } } } }, status: 'ok', time: 0.0001 };
  const b = (x: unknown) => Buffer.from(JSON.stringify(x));
  return { search: b(search), scroll: b(scroll), upsert: b(upsert), collection: b(collection) };
}

function config(dir: string, port: number, innerPort: number, opts: NginxUpstreamOptions): string {
  const root = process.getuid?.() === 0;
  const www = path.join(dir, 'www');
  const logFormat = LOG_FIELDS.map(([k, v]) => `"${k}":"${v}"`).join(',');
  const echo = ECHOED.map(([h, v]) => `      add_header ${h} "${v}" always;`).join('\n');
  const exact = (uri: string, file: string) => `    location = ${uri} { alias ${path.join(www, file)}; error_page 405 =200 $uri; }`;
  return `# vecgate test upstream (test/harness/nginx-upstream.ts)
${root ? 'user nobody nogroup;' : ''}
worker_processes 1;
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 256; }
http {
  default_type application/json;
  access_log off;
  client_body_temp_path ${path.join(dir, 'body')};
  proxy_temp_path ${path.join(dir, 'proxy')};
  fastcgi_temp_path ${path.join(dir, 'fastcgi')};
  uwsgi_temp_path ${path.join(dir, 'uwsgi')};
  scgi_temp_path ${path.join(dir, 'scgi')};
  keepalive_requests 10000;
  keepalive_timeout 120s;
  client_max_body_size ${NGINX_MAX_BODY};
  log_format vg escape=json '{${logFormat}}';
  map $http_api_key $vg_api_key_ok { "${opts.apiKey.replace(/["\\$]/g, '')}" yes; default no; }
  map $http_authorization $vg_authorization_present { "" no; default yes; }

  # The TLS front: keeps every request body in a file (client_body_in_file_only), logs what it
  # received, and has the inner server answer (proxying makes nginx read the body).
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${opts.certFile};
    ssl_certificate_key ${opts.keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    access_log ${path.join(dir, 'access.log')} vg;
    client_body_in_file_only on;
    location / {
${echo}
      proxy_pass http://127.0.0.1:${innerPort};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }

  # The fixed answers, for any method (405 from the static module becomes a 200 of the file).
  server {
    listen 127.0.0.1:${innerPort};
    access_log off;
${exact('/collections/docs/points/search', 'search.json')}
${exact('/collections/docs/points/scroll', 'scroll.json')}
${exact('/collections/docs/points', 'upsert.json')}
${exact('/collections/docs', 'collection.json')}
    location / { return 404 '{"status":{"error":"Not found"}}'; }
  }
}
`;
}

function tlsReady(port: number, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/**
 * Starts nginx on 127.0.0.1 and a free port; `certFile` must be valid for 127.0.0.1.
 * @example
 * const pki = await writeTestPki(tmp);
 * const ng = await startNginxUpstream({ certFile: pki.serverCert, keyFile: pki.serverKey, apiKey: 'k' });
 * after(() => ng.stop());
 */
export async function startNginxUpstream(opts: NginxUpstreamOptions & { caFile: string }): Promise<NginxUpstream> {
  ensureNginx();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vg-nginx-'));
  // nginx's workers run as nobody when we are root: they must enter the dir (the key is read by the master).
  chmodSync(dir, 0o755);
  const www = path.join(dir, 'www');
  mkdirSync(www);
  const fixed = answers();
  writeFileSync(path.join(www, 'search.json'), fixed.search);
  writeFileSync(path.join(www, 'scroll.json'), fixed.scroll);
  writeFileSync(path.join(www, 'upsert.json'), fixed.upsert);
  writeFileSync(path.join(www, 'collection.json'), fixed.collection);
  const port = await freePort();
  const innerPort = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, config(dir, port, innerPort, opts));
  const pidFile = path.join(dir, 'nginx.pid');
  const accessLog = path.join(dir, 'access.log');

  let child: ChildProcess | null = spawn(NGINX_BIN, ['-c', conf, '-p', dir, '-g', `daemon off; pid ${pidFile};`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const pid = child.pid!;
  let exited = false;
  child.once('exit', () => (exited = true));

  // Watchdog: a detached shell that outlives a killed test process and stops nginx then.
  const watchdog = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep ${WATCHDOG_INTERVAL_S}; done; kill -QUIT ${pid} 2>/dev/null; sleep 2; kill -KILL ${pid} 2>/dev/null; rm -rf '${dir}'`], {
    detached: true,
    stdio: 'ignore',
  });
  watchdog.unref();
  const killSync = () => {
    try {
      process.kill(watchdog.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    if (!exited) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => killSync();
  process.once('exit', onExit);

  const ca = readFileSync(opts.caFile, 'utf8');
  const deadline = Date.now() + NGINX_START_TIMEOUT_MS;
  for (;;) {
    if (exited) {
      process.removeListener('exit', onExit);
      killSync();
      throw new Error(`nginx exited during start: ${stderr.trim() || '(no output)'}`);
    }
    if (await tlsReady(port, ca)) break;
    if (Date.now() > deadline) {
      process.removeListener('exit', onExit);
      killSync();
      throw new Error(`nginx did not accept TLS on 127.0.0.1:${port} within ${NGINX_START_TIMEOUT_MS} ms: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  const log = (): NginxLogLine[] => {
    let text = '';
    try {
      text = readFileSync(accessLog, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        const o = JSON.parse(l) as Record<string, string>;
        const line: Record<string, unknown> = {};
        for (const [k] of LOG_FIELDS) line[k] = NUMERIC.has(k) ? Number(o[k]) : o[k] ?? '';
        return line as unknown as NginxLogLine;
      });
  };

  return {
    port,
    url: `https://127.0.0.1:${port}`,
    pid,
    answers: fixed,
    log,
    async waitForLog(testId: string) {
      // nginx writes the line once the answer is sent, which may be just after the client has it.
      const until = Date.now() + NGINX_START_TIMEOUT_MS;
      for (;;) {
        const hit = log().find((l) => l.testId === testId);
        if (hit) return hit;
        if (Date.now() > until) throw new Error(`nginx logged no request with X-Test-Id ${testId}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    body: (line) => (line.bodyFile ? readFileSync(line.bodyFile) : Buffer.alloc(0)),
    async stop() {
      process.removeListener('exit', onExit);
      if (child && !exited) {
        const gone = new Promise((r) => child!.once('exit', r));
        child.kill('SIGQUIT'); // graceful: finish requests, then exit
        const t = setTimeout(() => child?.kill('SIGKILL'), 5000);
        await gone;
        clearTimeout(t);
      }
      child = null;
      killSync();
    },
  };
}
