// Child process: a TLS 1.3 server that sends every client `--bytes` bytes shaped like the
// COPY workload's (CopyData frames of 1000 'x' and a newline) and closes. It is the
// upstream for nginx and haproxy, which cannot speak PostgreSQL's TLS negotiation.
// Usage: node tls-stream-source.js --port P --cert F --key F --bytes N
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

/** Bytes handed to the TLS socket per write. */
const SOURCE_CHUNK_BYTES = 1 << 20;
/** Size of one COPY row on the wire: 'd' + int32 length + 1000 'x' + '\n'. */
const COPY_ROW_WIRE_BYTES = 1006;

function copyLikeChunk(): Buffer {
  const row = Buffer.alloc(COPY_ROW_WIRE_BYTES, 'x');
  row[0] = 0x64; // 'd' CopyData
  row.writeInt32BE(COPY_ROW_WIRE_BYTES - 1, 1);
  row[COPY_ROW_WIRE_BYTES - 1] = 0x0a;
  const rows = Math.floor(SOURCE_CHUNK_BYTES / COPY_ROW_WIRE_BYTES);
  return Buffer.concat(Array.from({ length: rows }, () => row));
}

function main(): void {
  const { values } = parseArgs({ options: { port: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, bytes: { type: 'string' } } });
  const total = Number(values.bytes);
  const chunk = copyLikeChunk();
  const server = tls.createServer({ cert: readFileSync(values.cert!), key: readFileSync(values.key!), minVersion: 'TLSv1.3' }, (sock) => {
    let left = total;
    sock.on('error', () => sock.destroy());
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        const more = sock.write(n === chunk.length ? chunk : chunk.subarray(0, n));
        if (!more) return void sock.once('drain', pump);
      }
      sock.end();
    };
    pump();
  });
  server.listen(Number(values.port), '127.0.0.1', () => process.stdout.write('listening\n'));
}

main();
