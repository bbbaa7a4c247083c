// Child process: a TLS client that verifies the server (CA + name localhost), reads the
// stream to its end and discards it, then prints {"bytes":N,"sec":S} on stdout.
// Usage: node tls-stream-sink.js --port P --ca F
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

function main(): void {
  const { values } = parseArgs({ options: { port: { type: 'string' }, ca: { type: 'string' } } });
  const t0 = process.hrtime.bigint();
  let bytes = 0;
  const sock = tls.connect({ host: '127.0.0.1', port: Number(values.port), ca: readFileSync(values.ca!), servername: 'localhost', minVersion: 'TLSv1.3' });
  sock.on('data', (b: Buffer) => (bytes += b.length));
  sock.on('end', () => {
    process.stdout.write(JSON.stringify({ bytes, sec: Number(process.hrtime.bigint() - t0) / 1e9, cipher: sock.getCipher().standardName }) + '\n');
    sock.destroy();
  });
  sock.on('error', (err) => {
    process.stderr.write(`tls-stream-sink: ${err.message}\n`);
    process.exit(1);
  });
}

main();
