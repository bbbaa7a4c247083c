// The upstream of the HTTP workloads: nginx (http, TLS 1.3, the benchmark's certificate)
// answering the Qdrant routes the workloads call with canned JSON of realistic size, and
// GET /bytes/N with N-byte bodies for the latency rows. nginx rather than a node server so
// the upstream stays cheap (a few µs of CPU per request) and does not bound the proxies.
// POST/PUT cannot be served from files directly, so each route `return`s 418 and
// `error_page 418 =200` redirects (as a GET) to the answer file. Like a real vector
// database, which parses the body before it answers, the upstream reads the whole request
// body first: the TLS server buffers it in memory (`proxy_request_buffering on`) and hands
// the request over loopback to a plaintext server block that answers. (Answering
// before the body is read is legal HTTP, but it is not what a search or upsert does.) Like
// Qdrant with an API key, it answers 401 unless the `api-key` header carries the key: a
// proxy that forgets to inject the credential fails its rows instead of measuring
// something else.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePortOn } from '../src/dev/free-port.js';
import { startServer, waitForListen, type Server } from './bench-processes.js';
import { BENCH_COLLECTION, bytesBody, searchAnswer, upsertAnswer } from './http-payloads.js';
import { childPids } from './proc-usage.js';

/** nginx workers of the fixture upstream. */
export const FIXTURE_UPSTREAM_WORKERS = 2;
/** Connections each fixture worker accepts. */
export const FIXTURE_UPSTREAM_MAX_CONN = 4096;
/** Request header that picks the search answer: `vectors` for top-10 with vectors, else ids only. */
export const BENCH_ANSWER_HEADER = 'x-bench-answer';
/** Upstream credential header (Qdrant's). */
export const FIXTURE_API_KEY_HEADER = 'api-key';
/** Largest request body held in memory before the answer (upserts of 1,000 vectors are about 19 MB). */
export const FIXTURE_BODY_BUFFER = '32m';
/** How long the fixture may take to listen. */
export const FIXTURE_READY_TIMEOUT_MS = 10_000;

export interface HttpFixtureUpstream {
  server: Server;
  port: number;
  /** https://127.0.0.1:PORT (the certificate names 127.0.0.1 too) */
  url: string;
  pids(): number[];
  /** Bytes of each canned answer, for the notes under the tables. */
  answerBytes: { searchIds: number; searchVectors: number; upsert: number };
}

export async function startHttpFixtureUpstream(opts: { dir: string; serverCert: string; serverKey: string; apiKey: string; bodySizes: number[] }): Promise<HttpFixtureUpstream> {
  const root = path.join(opts.dir, 'http-fixture');
  mkdirSync(path.join(root, 'answers'), { recursive: true });
  // nginx workers run as www-data when the benchmark runs as root: the files must be readable.
  chmodSync(opts.dir, 0o755);
  chmodSync(root, 0o755);
  mkdirSync(path.join(root, 'bytes'), { recursive: true });
  const ids = searchAnswer(false);
  const vectors = searchAnswer(true);
  const upsert = upsertAnswer();
  writeFileSync(path.join(root, 'answers', 'search-ids.json'), ids);
  writeFileSync(path.join(root, 'answers', 'search-vectors.json'), vectors);
  writeFileSync(path.join(root, 'answers', 'upsert.json'), upsert);
  for (const n of opts.bodySizes) writeFileSync(path.join(root, 'bytes', String(n)), bytesBody(n));
  const port = await freePortOn('127.0.0.1');
  const innerPort = await freePortOn('127.0.0.1');
  const conf = path.join(opts.dir, `nginx-fixture-${port}.conf`);
  const headerVar = `$http_${BENCH_ANSWER_HEADER.replace(/-/g, '_')}`;
  const keyVar = `$http_${FIXTURE_API_KEY_HEADER.replace(/-/g, '_')}`;
  writeFileSync(
    conf,
    `worker_processes ${FIXTURE_UPSTREAM_WORKERS};
daemon off;
master_process on;
pid ${path.join(opts.dir, `nginx-fixture-${port}.pid`)};
error_log ${path.join(opts.dir, `nginx-fixture-${port}-error.log`)} warn;
events { worker_connections ${FIXTURE_UPSTREAM_MAX_CONN}; }
http {
  access_log off;
  default_type application/json;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  # upserts of 1,000 vectors are about 17 MB of JSON
  client_max_body_size 0;
  client_body_temp_path ${path.join(root, 'body-temp')};
  proxy_temp_path ${path.join(root, 'proxy-temp')};
  fastcgi_temp_path ${path.join(root, 'fastcgi-temp')};
  uwsgi_temp_path ${path.join(root, 'uwsgi-temp')};
  scgi_temp_path ${path.join(root, 'scgi-temp')};
  map ${headerVar} $bench_answer { default search-ids.json; vectors search-vectors.json; }
  upstream answers {
    server 127.0.0.1:${innerPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  # The answering side: plaintext on loopback, reached only once the body has been read.
  server {
    listen 127.0.0.1:${innerPort};
    location = /collections/${BENCH_COLLECTION}/points/search { error_page 418 =200 /answers/$bench_answer; return 418; }
    location = /collections/${BENCH_COLLECTION}/points { error_page 418 =200 /answers/upsert.json; return 418; }
    location /answers/ { internal; alias ${path.join(root, 'answers')}/; }
    location / { return 404 '{"status":{"error":"Not found"}}'; }
  }
  server {
    listen 127.0.0.1:${port} ssl reuseport;
    ssl_certificate ${opts.serverCert};
    ssl_certificate_key ${opts.serverKey};
    ssl_protocols TLSv1.3;
    if (${keyVar} != "${opts.apiKey}") { return 401 '{"status":{"error":"Must provide an API key or an Authorization bearer token"}}'; }
    location /collections/ {
      proxy_pass http://answers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering on;
      client_body_buffer_size ${FIXTURE_BODY_BUFFER};
      proxy_buffer_size 16k;
      proxy_buffers 16 16k;
      proxy_max_temp_file_size 0;
    }
    location /bytes/ { default_type application/octet-stream; alias ${path.join(root, 'bytes')}/; }
    location / { return 404 '{"status":{"error":"Not found"}}'; }
  }
}
`,
  );
  const server = startServer('nginx-fixture', '/usr/sbin/nginx', ['-p', opts.dir, '-e', path.join(opts.dir, `nginx-fixture-${port}-error.log`), '-c', conf]);
  await waitForListen(port, server, FIXTURE_READY_TIMEOUT_MS);
  return {
    server,
    port,
    url: `https://127.0.0.1:${port}`,
    pids: () => [server.pid, ...childPids(server.pid)],
    answerBytes: { searchIds: ids.length, searchVectors: vectors.length, upsert: upsert.length },
  };
}
