// Refuses to start on an address another process already listens on. The workers' listeners
// (native and uWebSockets.js) set SO_REUSEPORT so that every worker shares one port; a second
// vecgate on the same address would set it too and the kernel would let both bind and split
// new connections between them: a stale instance with an old config would silently serve some
// of the clients. A plain bind (no SO_REUSEPORT) by the primary first fails with EADDRINUSE
// whenever anything listens there, so such a start is refused before any worker binds.
import net from 'node:net';
import type { VecgateConfig } from '../config/types.js';
import { VgError } from '../errors.js';

/** Resolves when nothing listens on host:port (port 0 is never taken); rejects with EADDRINUSE's errno error otherwise. */
function probe(host: string, port: number): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? reject(err) : resolve())); // other failures are the workers' to report
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve()));
  });
}

/** Throws ERR_VG_LISTEN naming the setting when a connection's or the admin endpoint's address is already in use. */
export async function assertListenAddressesFree(config: VecgateConfig): Promise<void> {
  const addresses: [setting: string, host: string, port: number][] = Object.values(config.connections).map((c) => [`connections.${c.name}.listen`, c.listen.host, c.listen.port]);
  if (config.server.admin) addresses.push(['server.admin.listen', config.server.admin.host, config.server.admin.port]);
  for (const [setting, host, port] of addresses) {
    try {
      await probe(host, port);
    } catch {
      throw new VgError(
        'ERR_VG_LISTEN',
        `${setting}: cannot listen on ${host}:${port}: the address is already in use by another process (if it is another vecgate, stop it first: two instances would share the port and split its connections) (EADDRINUSE)`,
      );
    }
  }
}
