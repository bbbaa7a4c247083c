// A free TCP port on 127.0.0.1 (one implementation, shared with the dev tools).
import { freePortOn } from '../../src/dev/free-port.js';

export function freePort(): Promise<number> {
  return freePortOn('127.0.0.1');
}
