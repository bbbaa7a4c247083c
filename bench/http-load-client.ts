// Child process: one autocannon run (closed loop, or paced with `overallRate`) against one
// HTTPS endpoint, printed as one JSON line. It runs in its own process so its CPU is the
// load generator's own (read by the parent from /proc), and it keeps every response time
// at µs resolution itself: autocannon's own histogram holds whole milliseconds.
// Usage: node http-load-client.js SPEC.json   (spec: see LoadSpec)
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** What to run; written by the parent as a JSON file (it holds the token, so not argv). */
export interface LoadSpec {
  url: string;
  method: 'GET' | 'POST' | 'PUT';
  headers: Record<string, string>;
  bodyFile?: string;
  connections: number;
  durationSec: number;
  /** Requests per second over all connections (paced); 0 = as fast as answers come back. */
  overallRate: number;
  /** Seconds one request may take before autocannon counts it as a timeout. */
  timeoutSec: number;
}

export interface LoadReport {
  requests: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** Response bytes read (status line, headers, body) over all requests. */
  responseBytes: number;
  /** Request body bytes sent in completed requests. */
  requestBodyBytes: number;
  /** Wall time of the measured run. */
  wallSec: number;
  /** Response times of 2xx answers, first answer on each connection left out (its TLS handshake). */
  latencyUs: { p50: number; p90: number; p99: number; max: number; mean: number; samples: number };
}

interface AutocannonInstance {
  on(event: 'response', fn: (client: object, statusCode: number, resBytes: number, responseTimeMs: number) => void): void;
}
type Autocannon = (opts: Record<string, unknown>, cb: (err: Error | null, result: { errors: number; timeouts: number; non2xx: number }) => void) => AutocannonInstance;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as LoadSpec;
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  const body = spec.bodyFile ? readFileSync(spec.bodyFile) : undefined;
  const samples: number[] = [];
  const seen = new WeakSet<object>();
  const statusCodes: Record<string, number> = {};
  let requests = 0;
  let ok2xx = 0;
  let responseBytes = 0;
  const t0 = process.hrtime.bigint();
  const result = await new Promise<{ errors: number; timeouts: number; non2xx: number }>((resolve, reject) => {
    const inst = autocannon(
      {
        url: spec.url,
        method: spec.method,
        headers: { ...spec.headers, ...(body ? { 'content-type': 'application/json' } : {}) },
        body,
        connections: spec.connections,
        duration: spec.durationSec,
        timeout: spec.timeoutSec,
        servername: 'localhost',
        ...(spec.overallRate > 0 ? { overallRate: spec.overallRate } : {}),
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    inst.on('response', (client, statusCode, resBytes, ms) => {
      requests++;
      responseBytes += resBytes;
      statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
      if (statusCode < 200 || statusCode > 299) return;
      ok2xx++;
      if (!seen.has(client)) return void seen.add(client);
      samples.push(ms * 1000);
    });
  });
  const wallSec = Number(process.hrtime.bigint() - t0) / 1e9;
  const sorted = Float64Array.from(samples).sort();
  const report: LoadReport = {
    requests,
    ok2xx,
    non2xx: requests - ok2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    responseBytes,
    requestBodyBytes: (body?.length ?? 0) * requests,
    wallSec,
    latencyUs: {
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      max: sorted.length ? sorted[sorted.length - 1]! : NaN,
      mean: sorted.length ? samples.reduce((a, b) => a + b, 0) / samples.length : NaN,
      samples: sorted.length,
    },
  };
  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch((err: Error) => {
  process.stderr.write(`http-load-client: ${err.message}\n`);
  process.exit(1);
});
