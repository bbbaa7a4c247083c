// Child process: the load generator of the handshake rows. `--concurrency` loops, each one
// full TLS 1.3 handshake after another (server verified against the CA and the name
// localhost, ALPN offered, no session resumption), the connection closed as soon as the
// handshake completes; for `--seconds`, then waits for the connections in flight and prints
// {"handshakes":N,"errors":M,...} on stdout.
// Usage: node handshake-client.js --port P --ca F [--concurrency C] [--seconds S] [--alpn postgresql] [--ciphersuite TLS_AES_128_GCM_SHA256]
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

/** Handshakes in flight at once: enough to keep the server busy while this process works on its side. */
const DEFAULT_HANDSHAKE_CONCURRENCY = 16;
/** How long the loops start new handshakes. */
const DEFAULT_HANDSHAKE_SECONDS = 5;
/**
 * The one TLS 1.3 suite offered, so every server derives the same key schedule (SHA-256):
 * left to themselves, vecgate (server preference) picks AES-128 and haproxy/nginx (client
 * preference, Node's order) AES-256 with SHA-384.
 */
const DEFAULT_CIPHERSUITE = 'TLS_AES_128_GCM_SHA256';
/** One handshake may take this long before it counts as an error. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface HandshakeClientReport {
  /** Handshakes completed ('secureConnect': server Finished verified, client Finished sent). */
  handshakes: number;
  errors: number;
  firstError: string;
  /** From the first connect to the last handshake in flight settled. */
  seconds: number;
  /** CPU of this process over `seconds` (user+system), in seconds: the generator's own cost. */
  cpuSec: number;
  /** Negotiated ALPN protocol, TLS version and cipher of the first completed handshake. */
  alpn: string | false | null;
  protocol: string | null;
  cipher: string | null;
  /** Handshakes that resumed a session: must be 0 (every handshake is a full one). */
  resumed: number;
  /** Connections the server did not close within the timeout after the client's FIN. */
  closeTimeouts: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      ca: { type: 'string' },
      concurrency: { type: 'string' },
      seconds: { type: 'string' },
      alpn: { type: 'string', default: 'postgresql' },
      ciphersuite: { type: 'string', default: DEFAULT_CIPHERSUITE },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port <= 0 || !values.ca) throw new Error('usage: handshake-client --port P --ca F [--concurrency C] [--seconds S]');
  // One context for every connection: `ca` on each tls.connect would build a new context
  // (and certificate store) per handshake, several times the handshake's own client cost.
  const secureContext = tls.createSecureContext({ ca: readFileSync(values.ca), minVersion: 'TLSv1.3', ciphers: values.ciphersuite });
  const concurrency = Number(values.concurrency ?? DEFAULT_HANDSHAKE_CONCURRENCY);
  const seconds = Number(values.seconds ?? DEFAULT_HANDSHAKE_SECONDS);
  const r: HandshakeClientReport = { handshakes: 0, errors: 0, firstError: '', seconds: 0, cpuSec: 0, alpn: null, protocol: null, cipher: null, resumed: 0, closeTimeouts: 0 };

  const one = () =>
    new Promise<void>((resolve) => {
      let settled = false;
      // A fresh connect with no `session`: Node's tls client never resumes on its own.
      const sock = tls.connect({ host: '127.0.0.1', port, secureContext, servername: 'localhost', ALPNProtocols: [values.alpn], minVersion: 'TLSv1.3' });
      let handshaken = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        resolve();
      };
      const fail = (err: Error) => {
        // After the handshake counted, an error is the server resetting while we close: not a failure.
        if (!handshaken) {
          r.errors++;
          if (!r.firstError) r.firstError = err.message;
        }
        finish();
      };
      const timer = setTimeout(() => {
        if (handshaken) r.closeTimeouts++;
        fail(new Error(`handshake not completed in ${HANDSHAKE_TIMEOUT_MS} ms`));
      }, HANDSHAKE_TIMEOUT_MS);
      sock.once('secureConnect', () => {
        handshaken = true;
        r.handshakes++;
        if (sock.isSessionReused()) r.resumed++;
        if (r.protocol === null) {
          r.alpn = sock.alpnProtocol ?? null;
          r.protocol = sock.getProtocol();
          r.cipher = sock.getCipher().standardName;
        }
        // end(), not destroy(): destroy() here drops the client Finished still queued in
        // Node's TLS layer and resets the connection, so the server never completes its
        // handshake. end() flushes Finished, then sends FIN; the next handshake starts once
        // the server has closed its side too.
        sock.end();
        sock.resume(); // anything the server sends must not hold the close back
      });
      sock.on('error', fail);
      sock.once('close', () => (handshaken ? finish() : fail(new Error('closed before the handshake completed'))));
    });

  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const endAt = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < endAt) await one();
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  r.seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  r.cpuSec = (cpu.user + cpu.system) / 1e6;
  process.stdout.write(JSON.stringify(r) + '\n');
}

main().catch((err: Error) => {
  process.stderr.write(`handshake-client: ${err.message}\n`);
  process.exit(1);
});
