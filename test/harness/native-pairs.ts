// Connected pairs of the addon's Connections over 127.0.0.1, for tests that drive the native
// layer (pumps, guards) with real sockets: one listener, accepted sides matched to connects.
import type { Connection, Listener, NativeBinding } from '../../src/native.js';

export interface LoopbackPairs {
  listener: Listener;
  /** A connected pair: [the side that connected, the accepted side]. */
  pair(): Promise<[Connection, Connection]>;
  close(): void;
}

export function loopbackPairs(n: NativeBinding): LoopbackPairs {
  const accepted: Connection[] = [];
  const waiters: ((c: Connection) => void)[] = [];
  const listener = n.listen('127.0.0.1', 0, 16, (c) => {
    const w = waiters.shift();
    if (w) w(c);
    else accepted.push(c);
  });
  const nextAccepted = (): Promise<Connection> => {
    const c = accepted.shift();
    if (c) return Promise.resolve(c);
    return new Promise((resolve) => waiters.push(resolve));
  };
  return {
    listener,
    async pair() {
      const server = nextAccepted();
      const client = await new Promise<Connection>((resolve, reject) => {
        n.connect('127.0.0.1', listener.port, (err, c) => (err ? reject(err) : resolve(c!)));
      });
      return [client, await server];
    },
    close: () => listener.close(),
  };
}
