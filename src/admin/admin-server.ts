// The admin endpoint on the primary thread (uWebSockets.js App, plain HTTP, meant for
// loopback or a cluster-internal port): /healthz (alive), /readyz (every listener accepts
// and not draining), /metrics (Prometheus text), /pools (JSON: the upstream pools now,
// src/admin/pools-view.ts).
import uWS from 'uWebSockets.js';
import type { HostPort } from '../config/types.js';
import type { GatewayMetrics } from './metrics.js';
import type { PoolsView } from './pools-view.js';

export interface AdminServer {
  port: number;
  close(): void;
}

export interface AdminState {
  ready(): boolean;
  metrics: GatewayMetrics;
  pools(): Promise<PoolsView>;
}

export function startAdminServer(listen: HostPort, state: AdminState): Promise<AdminServer> {
  return new Promise((resolve, reject) => {
    const app = uWS.App();
    app.get('/healthz', (res) => {
      res.writeHeader('content-type', 'application/json').end('{"status":"ok"}');
    });
    app.get('/readyz', (res) => {
      const ok = state.ready();
      res.writeStatus(ok ? '200 OK' : '503 Service Unavailable').writeHeader('content-type', 'application/json').end(ok ? '{"status":"ready"}' : '{"status":"not ready"}');
    });
    app.get('/metrics', (res) => {
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      state.metrics.registry.metrics().then((text) => {
        if (aborted) return;
        res.cork(() => {
          res.writeHeader('content-type', state.metrics.registry.contentType).end(text);
        });
      });
    });
    app.get('/pools', (res) => {
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      state.pools().then(
        (view) => {
          if (aborted) return;
          res.cork(() => {
            res.writeHeader('content-type', 'application/json').end(JSON.stringify(view));
          });
        },
        (err: Error) => {
          if (aborted) return;
          res.cork(() => {
            res.writeStatus('500 Internal Server Error').writeHeader('content-type', 'application/json').end(JSON.stringify({ error: `the pools could not be read: ${err.message}` }));
          });
        },
      );
    });
    app.any('/*', (res) => {
      res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json').end('{"error":"not found: use /healthz, /readyz, /metrics or /pools"}');
    });
    app.listen(listen.host, listen.port, (token) => {
      if (!token) {
        reject(Object.assign(new Error(`server.admin.listen: cannot listen on ${listen.host}:${listen.port} (in use or not permitted)`), { code: 'ERR_VG_LISTEN' }));
        return;
      }
      resolve({
        port: uWS.us_socket_local_port(token),
        close: () => uWS.us_listen_socket_close(token),
      });
    });
  });
}
