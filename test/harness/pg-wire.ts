// Raw PostgreSQL wire helpers for tests that must do what drivers will not: send bytes
// after SSLRequest, use direct TLS with chosen ALPN, read the gateway's exact answers.
import net from 'node:net';
import tls from 'node:tls';

export function sslRequest(): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(80877103, 4);
  return b;
}

export function gssencRequest(): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(80877104, 4);
  return b;
}

export function startupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeInt32BE(body.length + 8, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

export function passwordMessage(pw: string): Buffer {
  const body = Buffer.from(`${pw}\0`);
  const head = Buffer.alloc(5);
  head.write('p', 0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** Reads until the socket closes or `ms` pass; returns everything received. */
export function collect(sock: net.Socket | tls.TLSSocket, ms = 3000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const t = setTimeout(() => finish(false), ms);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
  });
}

export function connectPlain(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** SSLRequest, expect 'S', then TLS over the same socket. */
export async function connectSslRequest(port: number, ca: string | Buffer, servername = 'localhost'): Promise<tls.TLSSocket> {
  const raw = await connectPlain(port);
  raw.write(sslRequest());
  const answer: Buffer = await new Promise((resolve, reject) => {
    raw.once('data', resolve);
    raw.once('error', reject);
  });
  if (answer.toString() !== 'S') throw new Error(`expected S, got ${JSON.stringify(answer.toString())}`);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ socket: raw, ca, servername }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Parses ErrorResponse fields from a buffer of backend messages (first 'E' found). */
export function errorFields(data: Buffer): Record<string, string> | null {
  let i = 0;
  while (i + 5 <= data.length) {
    const type = String.fromCharCode(data[i]!);
    const len = data.readInt32BE(i + 1);
    if (len < 4 || i + 1 + len > data.length) return null;
    if (type === 'E') {
      const body = data.subarray(i + 5, i + 1 + len);
      const out: Record<string, string> = {};
      let j = 0;
      while (j < body.length && body[j] !== 0) {
        const code = String.fromCharCode(body[j]!);
        const end = body.indexOf(0, j + 1);
        out[code] = body.subarray(j + 1, end).toString();
        j = end + 1;
      }
      return out;
    }
    i += 1 + len;
  }
  return null;
}

export function messageTypes(data: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i + 5 <= data.length) {
    const len = data.readInt32BE(i + 1);
    if (len < 4) break;
    out.push(String.fromCharCode(data[i]!));
    i += 1 + len;
  }
  return out;
}
