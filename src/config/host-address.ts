// Listen addresses (`host:port`, `[v6]:port`) and the loopback test that guards every
// insecure switch: only 127.0.0.0/8, ::1 and localhost count as loopback.
import { isIP } from 'node:net';

export type ListenResult = { ok: true; host: string; port: number } | { ok: false; error: string };

/** The native listeners bind IP literals; `localhost` is taken as 127.0.0.1. Port 0 = any free port. */
export function parseListen(text: string): ListenResult {
  const form = "must be host:port or [ipv6]:port with an IP address (like 0.0.0.0:15432, 127.0.0.1:15432 or [::]:15432)";
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]*)\]:(\d+)$/.exec(text);
  if (v6 !== null) {
    host = v6[1]!;
    portText = v6[2]!;
    if (isIP(host) !== 6) return { ok: false, error: `${form}; ${JSON.stringify(host)} is not an IPv6 address` };
  } else {
    const m = /^([^:\[\]]+):(\d+)$/.exec(text);
    if (m === null) {
      if (isIP(text) === 6 || /^[^:]*:[^:]*:/.test(text)) return { ok: false, error: `${form}; put an IPv6 address in brackets, like [::1]:15432` };
      return { ok: false, error: form };
    }
    host = m[1]!;
    portText = m[2]!;
    if (host.toLowerCase() === 'localhost') host = '127.0.0.1';
    if (isIP(host) !== 4) return { ok: false, error: `${form}; ${JSON.stringify(host)} is not an IP address` };
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port > 65535) return { ok: false, error: `port must be an integer 0-65535 (got ${portText})` };
  return { ok: true, host, port };
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (h.toLowerCase() === 'localhost') return true;
  if (isIP(h) === 4) return h.split('.')[0] === '127';
  if (isIP(h) === 6) return /^(0{0,4}:){2,7}0{0,3}1$/.test(h) || h === '::1';
  return false;
}

/** Wildcard addresses overlap every address on the same port. */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || /^(0{1,4}:){7}0{1,4}$/.test(host);
}
