// One HTTPS request to a gateway on 127.0.0.1 (SNI localhost), with an optional bearer token
// and JSON body; resolves with the status, headers and body text.
import https from 'node:https';

export interface HttpsReply {
  status: number;
  headers: Record<string, unknown>;
  body: string;
}

export function httpsJson(opts: { port: number; ca: string | Buffer; method: string; path: string; token?: string | null; body?: unknown; agent?: false }): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const req = https.request(
      {
        host: '127.0.0.1',
        port: opts.port,
        servername: 'localhost',
        method: opts.method,
        path: opts.path,
        ca: opts.ca,
        ...(opts.agent === false ? { agent: false } : {}),
        headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
