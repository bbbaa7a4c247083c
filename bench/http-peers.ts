// nginx (http proxy) and haproxy (mode http) as TLS-terminating, TLS-re-encrypting HTTP/1.1
// reverse proxies with the benchmark's certificates, keeping verified keep-alive connections
// to the upstream (nginx `keepalive` upstream block, haproxy `http-reuse always`): the HTTP
// rows' counterparts of vecgate's `protocol: http` connection.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePortOn } from '../src/dev/free-port.js';
import type { Server } from './bench-processes.js';
import { startServer, waitForListen } from './bench-processes.js';
import { childPids } from './proc-usage.js';
import { STREAM_PROXY_MAX_CONN, STREAM_PROXY_WORKERS, type StreamProxyPeer } from './stream-proxy-peers.js';

/** Idle keep-alive connections each nginx worker keeps to the upstream. */
export const NGINX_UPSTREAM_KEEPALIVE = 64;
/** nginx buffers: 16 KB (one TLS record) each, enough that a 175 KB answer never spills to a temp file. */
export const NGINX_PROXY_BUFFERS = '16 16k';
/** How long a proxy may take to listen. */
export const HTTP_PEER_READY_TIMEOUT_MS = 10_000;

interface HttpPeerOptions {
  dir: string;
  serverCert: string;
  serverKey: string;
  caCert: string;
  upstreamPort: number;
  workers?: number;
}

/**
 * nginx http proxy. Request bodies stream (`proxy_request_buffering off`, like vecgate for
 * routes it does not inspect); responses are buffered in memory only (no temp files).
 */
export async function startNginxHttp(opts: HttpPeerOptions): Promise<StreamProxyPeer> {
  const port = await freePortOn('127.0.0.1');
  const tmp = path.join(opts.dir, `nginx-http-${port}-tmp`);
  const conf = path.join(opts.dir, `nginx-http-${port}.conf`);
  writeFileSync(
    conf,
    `worker_processes ${opts.workers ?? STREAM_PROXY_WORKERS};
worker_rlimit_nofile ${STREAM_PROXY_MAX_CONN * 2};
daemon off;
master_process on;
pid ${path.join(opts.dir, `nginx-http-${port}.pid`)};
error_log ${path.join(opts.dir, `nginx-http-${port}-error.log`)} warn;
events { worker_connections ${STREAM_PROXY_MAX_CONN}; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_max_body_size 0;
  client_body_buffer_size 16k;
  client_body_temp_path ${tmp}-body;
  proxy_temp_path ${tmp}-proxy;
  fastcgi_temp_path ${tmp}-fastcgi;
  uwsgi_temp_path ${tmp}-uwsgi;
  scgi_temp_path ${tmp}-scgi;
  upstream up {
    server 127.0.0.1:${opts.upstreamPort};
    keepalive ${NGINX_UPSTREAM_KEEPALIVE};
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${port} ssl reuseport;
    ssl_certificate ${opts.serverCert};
    ssl_certificate_key ${opts.serverKey};
    ssl_protocols TLSv1.3;
    location / {
      proxy_pass https://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host localhost;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${opts.caCert};
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_request_buffering off;
      proxy_buffer_size 16k;
      proxy_buffers ${NGINX_PROXY_BUFFERS};
      proxy_max_temp_file_size 0;
    }
  }
}
`,
  );
  const server = startServer('nginx-http', '/usr/sbin/nginx', ['-p', opts.dir, '-e', path.join(opts.dir, `nginx-http-${port}-error.log`), '-c', conf]);
  await waitForListen(port, server, HTTP_PEER_READY_TIMEOUT_MS);
  return { server, port, pids: () => [server.pid, ...childPids(server.pid)] };
}

/** haproxy `mode http`, TLS on both legs, upstream verified, server connections shared (`http-reuse always`). */
export async function startHaproxyHttp(opts: HttpPeerOptions): Promise<StreamProxyPeer> {
  const port = await freePortOn('127.0.0.1');
  const combined = path.join(opts.dir, 'haproxy-http-server.pem');
  writeFileSync(combined, readFileSync(opts.serverCert, 'utf8') + readFileSync(opts.serverKey, 'utf8'), { mode: 0o600 });
  const conf = path.join(opts.dir, `haproxy-http-${port}.cfg`);
  writeFileSync(
    conf,
    `global
  maxconn ${STREAM_PROXY_MAX_CONN}
  nbthread ${opts.workers ?? STREAM_PROXY_WORKERS}
defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 300s
frontend bench
  bind 127.0.0.1:${port} ssl crt ${combined} ssl-min-ver TLSv1.3 alpn http/1.1
  default_backend upstream
backend upstream
  server up 127.0.0.1:${opts.upstreamPort} ssl verify required ca-file ${opts.caCert} verifyhost localhost sni str(localhost) ssl-min-ver TLSv1.3 alpn http/1.1
`,
  );
  const server = startServer('haproxy-http', '/usr/sbin/haproxy', ['-db', '-f', conf]);
  await waitForListen(port, server, HTTP_PEER_READY_TIMEOUT_MS);
  return { server, port, pids: () => [server.pid] };
}

interface FloorPeerOptions extends HttpPeerOptions {
  /** uws: vecgate's front (uWebSockets.js); native: the addon's TLS listener; pump: no HTTP, bytes pumped in C++. */
  front: 'uws' | 'native' | 'pump';
  /** The upstream's credential, written to a file only the floor reads. */
  apiKey: string;
  /** Checkout whose dist/bench/floor-proxy.js runs. */
  repoRoot: string;
}

/**
 * bench/floor-proxy.ts: vecgate's stack (N worker threads, the addon's verified upstream TLS,
 * a uWebSockets.js or the addon's own front) doing nothing but forward: the least a proxy
 * built that way costs.
 */
export async function startFloorProxy(opts: FloorPeerOptions): Promise<StreamProxyPeer> {
  const port = await freePortOn('127.0.0.1');
  const keyFile = path.join(opts.dir, `floor-${port}-api-key`);
  writeFileSync(keyFile, opts.apiKey, { mode: 0o600 });
  const script = path.join(opts.repoRoot, 'dist', 'bench', 'floor-proxy.js');
  const args = [script, '--front', opts.front, '--port', String(port), '--upstream-port', String(opts.upstreamPort), '--cert', opts.serverCert, '--key', opts.serverKey, '--ca', opts.caCert, '--api-key-file', keyFile, '--workers', String(opts.workers ?? STREAM_PROXY_WORKERS)];
  const server = startServer(`floor-proxy (${opts.front})`, process.execPath, args);
  await server.waitFor(/floor-proxy \(\w+\) listening/, HTTP_PEER_READY_TIMEOUT_MS);
  return { server, port, pids: () => [server.pid] };
}
