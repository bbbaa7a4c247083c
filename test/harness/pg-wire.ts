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

// ---------------------------------------------------------------------------------------------
// Frontend messages after startup, and a raw session that reads backend messages one by one.

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string | Buffer): Buffer => Buffer.concat([Buffer.isBuffer(s) ? s : Buffer.from(s), Buffer.from([0])]);
const int16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

/** Simple Query; `sql` as bytes lets a test send text in a client encoding other than UTF-8. */
export const queryMessage = (sql: string | Buffer): Buffer => message('Q', cstr(sql));
export const parseMessage = (name: string, sql: string | Buffer, types: number[] = []): Buffer =>
  message('P', Buffer.concat([cstr(name), cstr(sql), int16(types.length), ...types.map(int32)]));
/** Bind with text parameters (null: SQL NULL) and text results. */
export const bindMessage = (portal: string, statement: string, params: (string | null)[] = []): Buffer =>
  message('B', Buffer.concat([cstr(portal), cstr(statement), int16(0), int16(params.length), ...params.map((p) => (p === null ? int32(-1) : Buffer.concat([int32(Buffer.byteLength(p)), Buffer.from(p)]))), int16(0)]));
export const describeMessage = (kind: 'S' | 'P', name: string): Buffer => message('D', Buffer.concat([Buffer.from(kind), cstr(name)]));
export const executeMessage = (portal = '', maxRows = 0): Buffer => message('E', Buffer.concat([cstr(portal), int32(maxRows)]));
export const closeMessage = (kind: 'S' | 'P', name: string): Buffer => message('C', Buffer.concat([Buffer.from(kind), cstr(name)]));
export const syncMessage = (): Buffer => message('S', Buffer.alloc(0));
export const flushMessage = (): Buffer => message('H', Buffer.alloc(0));
export const terminateMessage = (): Buffer => message('X', Buffer.alloc(0));
/** Fast-path FunctionCall of `oid` with text arguments. */
export const functionCallMessage = (oid: number, args: string[]): Buffer =>
  message('F', Buffer.concat([int32(oid), int16(0), int16(args.length), ...args.map((a) => Buffer.concat([int32(Buffer.byteLength(a)), Buffer.from(a)])), int16(0)]));

export interface BackendMessage {
  type: string;
  body: Buffer;
  /** ErrorResponse / NoticeResponse fields by code ('C' SQLSTATE, 'M' message, 'P' position, ...). */
  fields?: Record<string, string>;
  /** CommandComplete's tag, ReadyForQuery's status, ParameterStatus "name=value". */
  text?: string;
}

function decode(type: string, body: Buffer): BackendMessage {
  const m: BackendMessage = { type, body };
  if (type === 'E' || type === 'N') {
    const fields: Record<string, string> = {};
    let j = 0;
    while (j < body.length && body[j] !== 0) {
      const end = body.indexOf(0, j + 1);
      fields[String.fromCharCode(body[j]!)] = body.subarray(j + 1, end).toString();
      j = end + 1;
    }
    m.fields = fields;
  } else if (type === 'C') {
    m.text = body.subarray(0, body.indexOf(0)).toString();
  } else if (type === 'Z') {
    m.text = String.fromCharCode(body[0]!);
  } else if (type === 'S') {
    const a = body.indexOf(0);
    m.text = `${body.subarray(0, a).toString()}=${body.subarray(a + 1, body.indexOf(0, a + 1)).toString()}`;
  }
  return m;
}

/**
 * A client that speaks the protocol by hand over TLS: writes exactly the bytes a test gives
 * (each `send` one TLS write, with TCP_NODELAY), and reads backend messages as they come.
 */
export class RawPgSession {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly sock: tls.TLSSocket) {
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** SSLRequest + TLS, then the StartupMessage; the caller reads the answer. */
  static async open(port: number, ca: string | Buffer, params: Record<string, string>): Promise<RawPgSession> {
    const s = new RawPgSession(await connectSslRequest(port, ca));
    s.send(startupMessage(params));
    return s;
  }

  /**
   * Through authentication: startup, the token as password, up to the first ReadyForQuery.
   * `afterPassword` is sent in its own TLS write right after the password (before AuthenticationOk).
   */
  static async login(port: number, ca: string | Buffer, token: string, params: Record<string, string> = {}, afterPassword?: Buffer): Promise<{ session: RawPgSession; startup: BackendMessage[] }> {
    const s = await RawPgSession.open(port, ca, { user: 'me', database: 'vectors', ...params });
    const auth = await s.next();
    if (auth.type !== 'R') throw new Error(`expected an authentication request, got ${auth.type} ${JSON.stringify(auth.fields ?? {})}`);
    s.send(passwordMessage(token));
    if (afterPassword) s.send(afterPassword);
    const startup: BackendMessage[] = [];
    for (;;) {
      const m = await s.next();
      startup.push(m);
      if (m.type === 'E') {
        s.end();
        throw new Error(`startup refused: ${JSON.stringify(m.fields)}`);
      }
      if (m.type === 'Z') return { session: s, startup };
    }
  }

  send(bytes: Buffer): void {
    this.sock.write(bytes);
  }

  /** The next backend message, or an error when the connection closes or `ms` pass first. */
  async next(ms = 5000): Promise<BackendMessage> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1);
        if (this.buf.length >= 1 + len) {
          const type = String.fromCharCode(this.buf[0]!);
          const body = Buffer.from(this.buf.subarray(5, 1 + len));
          this.buf = this.buf.subarray(1 + len);
          return decode(type, body);
        }
      }
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Messages up to and including the first of type `type`. */
  async until(type: string, ms = 5000): Promise<BackendMessage[]> {
    const out: BackendMessage[] = [];
    for (;;) {
      const m = await this.next(ms);
      out.push(m);
      if (m.type === type) return out;
    }
  }

  /** Resolves true once the server closed the connection, false after `ms`; messages read meanwhile are returned. */
  async waitClosed(ms = 3000): Promise<{ closed: boolean; messages: BackendMessage[] }> {
    const messages: BackendMessage[] = [];
    for (;;) {
      try {
        messages.push(await this.next(ms));
      } catch {
        return { closed: this.closed, messages };
      }
    }
  }

  end(): void {
    this.sock.destroy();
  }
}
