// nginx (stream module) and haproxy (mode tcp) as TLS-terminating, TLS-re-encrypting
// stream proxies with the benchmark's certificates: TLS 1.3 on both legs, upstream
// certificate verified against the CA and the name `localhost`. The handshake rows ask for
// a plaintext upstream (`upstreamTls: false`), so each connection costs the proxy exactly
// one TLS handshake, the client's.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePortOn } from '../src/dev/free-port.js';
import { childPids } from './proc-usage.js';
import { startServer, waitForListen, type Server } from './bench-processes.js';

/** Worker processes / threads for each proxy: one per core, like vecgate's workers. */
export const STREAM_PROXY_WORKERS = 2;
/** Connections each proxy accepts (haproxy needs about 2 fds per connection under the hard open-file limit). */
export const STREAM_PROXY_MAX_CONN = 8000;

export interface StreamProxyPeer {
  server: Server;
  port: number;
  /** Every pid whose CPU belongs to the proxy (nginx: master and workers). */
  pids(): number[];
}

interface TlsFiles {
  dir: string;
  serverCert: string;
  serverKey: string;
  caCert: string;
}

interface UpstreamOptions {
  upstreamPort: number;
  /** TLS (verified) to the upstream: the default. false: plain TCP, for the handshake rows only (loopback). */
  upstreamTls?: boolean;
  /** ALPN protocols the listener selects from (none by default: a client's ALPN offer is ignored). */
  alpn?: string[];
}

export async function startNginxStream(opts: TlsFiles & UpstreamOptions & { workers?: number }): Promise<StreamProxyPeer> {
  const port = await freePortOn('127.0.0.1');
  const upstreamTls =
    opts.upstreamTls === false
      ? ''
      : `
    proxy_ssl on;
    proxy_ssl_protocols TLSv1.3;
    proxy_ssl_verify on;
    proxy_ssl_trusted_certificate ${opts.caCert};
    proxy_ssl_name localhost;
    proxy_ssl_server_name on;`;
  const alpn = opts.alpn?.length ? `\n    ssl_alpn ${opts.alpn.join(' ')};` : '';
  const conf = path.join(opts.dir, `nginx-${port}.conf`);
  writeFileSync(
    conf,
    `load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes ${opts.workers ?? STREAM_PROXY_WORKERS};
worker_rlimit_nofile ${STREAM_PROXY_MAX_CONN * 2};
daemon off;
master_process on;
pid ${path.join(opts.dir, `nginx-${port}.pid`)};
error_log ${path.join(opts.dir, `nginx-${port}-error.log`)} warn;
events { worker_connections ${STREAM_PROXY_MAX_CONN}; }
stream {
  server {
    listen 127.0.0.1:${port} ssl reuseport;
    ssl_certificate ${opts.serverCert};
    ssl_certificate_key ${opts.serverKey};
    ssl_protocols TLSv1.3;${alpn}
    proxy_pass 127.0.0.1:${opts.upstreamPort};${upstreamTls}
    proxy_buffer_size 16k;
  }
}
`,
  );
  const server = startServer('nginx', '/usr/sbin/nginx', ['-p', opts.dir, '-e', path.join(opts.dir, `nginx-${port}-error.log`), '-c', conf]);
  await waitForListen(port, server, 10_000);
  return { server, port, pids: () => [server.pid, ...childPids(server.pid)] };
}

export async function startHaproxy(opts: TlsFiles & UpstreamOptions & { threads?: number }): Promise<StreamProxyPeer> {
  const port = await freePortOn('127.0.0.1');
  const upstreamTls = opts.upstreamTls === false ? '' : ` ssl verify required ca-file ${opts.caCert} verifyhost localhost sni str(localhost) ssl-min-ver TLSv1.3`;
  const alpn = opts.alpn?.length ? ` alpn ${opts.alpn.join(',')}` : '';
  const combined = path.join(opts.dir, 'haproxy-server.pem');
  writeFileSync(combined, readFileSync(opts.serverCert, 'utf8') + readFileSync(opts.serverKey, 'utf8'), { mode: 0o600 });
  const conf = path.join(opts.dir, `haproxy-${port}.cfg`);
  writeFileSync(
    conf,
    `global
  maxconn ${STREAM_PROXY_MAX_CONN}
  nbthread ${opts.threads ?? STREAM_PROXY_WORKERS}
  tune.ssl.default-dh-param 2048
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend bench
  bind 127.0.0.1:${port} ssl crt ${combined} ssl-min-ver TLSv1.3${alpn}
  default_backend upstream
backend upstream
  server up 127.0.0.1:${opts.upstreamPort}${upstreamTls}
`,
  );
  const server = startServer('haproxy', '/usr/sbin/haproxy', ['-db', '-f', conf]);
  await waitForListen(port, server, 10_000);
  return { server, port, pids: () => [server.pid] };
}
