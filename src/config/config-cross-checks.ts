// Rules that span several config entries: listen addresses do not collide, policies name
// existing connections and have a credential to use, names are unique. They read the raw
// YAML defensively, so they report alongside per-key errors instead of after them.
import { credentialFor } from '../policy/policy.js';
import type { AccessLevel } from './types.js';
import { formatPath, type ConfigIssue } from './config-issues.js';
import { isWildcardHost, parseListen } from './host-address.js';
import { CONNECTION_NAME, CONNECTION_NAME_RULE, plaintextUpstreamProblem, SERVED_PROTOCOLS } from './schema.js';

type Raw = Record<string, unknown>;
const asMap = (v: unknown): Raw | null => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Raw) : null);
const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : typeof v === 'string' ? [v] : []);

export function crossCheck(raw: unknown): ConfigIssue[] {
  const root = asMap(raw);
  if (root === null) return [];
  const issues: ConfigIssue[] = [];
  const connections = asMap(root['connections']) ?? {};
  checkListens(root, connections, issues);
  checkPolicies(root, connections, issues);
  checkIssuers(root, issues);
  checkPlaintextUpstreams(connections, issues);
  checkServedProtocols(connections, issues);
  checkConnectionNames(connections, issues);
  return issues;
}

/** Also in the schema, whose check is skipped when any connection has another problem. */
function checkConnectionNames(connections: Raw, issues: ConfigIssue[]): void {
  for (const name of Object.keys(connections)) {
    if (!CONNECTION_NAME.test(name)) issues.push({ path: formatPath(['connections', name]), message: CONNECTION_NAME_RULE });
  }
}

/** A connection this build cannot serve is refused, never started with nothing listening. */
function checkServedProtocols(connections: Raw, issues: ConfigIssue[]): void {
  for (const [name, c] of Object.entries(connections)) {
    const protocol = asMap(c)?.['protocol'];
    if (protocol !== 'mysql') continue; // unknown values are the schema's to report
    issues.push({
      path: formatPath(['connections', name, 'protocol']),
      message: `mysql is not served yet (MySQL support is planned); this version serves ${SERVED_PROTOCOLS.join(' and ')}: remove the connection or change its protocol`,
    });
  }
}

/** Also in the schema; repeated here so it is reported even when a sibling key is invalid. */
function checkPlaintextUpstreams(connections: Raw, issues: ConfigIssue[]): void {
  for (const [name, c] of Object.entries(connections)) {
    const upstream = asMap(asMap(c)?.['upstream']);
    if (upstream === null || asMap(upstream['tls'])?.['mode'] !== 'insecure-plaintext') continue;
    let host: string | null = null;
    if (typeof upstream['host'] === 'string') host = upstream['host'].trim().replace(/^\[(.*)\]$/, '$1');
    else if (typeof upstream['url'] === 'string') {
      try {
        host = new URL(upstream['url'].trim()).hostname.replace(/^\[(.*)\]$/, '$1');
      } catch {
        host = null; // the schema reports the URL itself
      }
    }
    const problem = host === null ? null : plaintextUpstreamProblem(host);
    if (problem !== null) issues.push({ path: formatPath(['connections', name, 'upstream', 'tls', 'mode']), message: problem });
  }
}

function checkListens(root: Raw, connections: Raw, issues: ConfigIssue[]): void {
  const seen: { path: string; host: string; port: number }[] = [];
  const admin = asMap(asMap(root['server'])?.['admin'])?.['listen'];
  const candidates: [string, unknown][] = [['server.admin.listen', admin]];
  for (const [name, conn] of Object.entries(connections)) candidates.push([formatPath(['connections', name, 'listen']), asMap(conn)?.['listen']]);
  for (const [p, value] of candidates) {
    if (typeof value !== 'string') continue;
    const r = parseListen(value.trim());
    if (!r.ok || r.port === 0) continue; // port 0 picks a free port each time: never a collision
    // With SO_REUSEPORT two listeners on one port would silently share it: refuse overlaps.
    const clash = seen.find((s) => s.port === r.port && (s.host === r.host || isWildcardHost(s.host) || isWildcardHost(r.host)));
    if (clash) issues.push({ path: p, message: `${value} overlaps ${clash.path} (${clash.host}:${clash.port}); every listen address must be unique` });
    else seen.push({ path: p, host: r.host, port: r.port });
  }
}

/** Access levels a connection has credentials for, from the raw credentials block. */
function credentialLevels(conn: Raw): Partial<Record<AccessLevel, true>> | null {
  const creds = asMap(conn['credentials']);
  if (creds === null) return null;
  if ('user' in creds || 'password' in creds) return { read: true, write: true, admin: true };
  const out: Partial<Record<AccessLevel, true>> = {};
  for (const l of ['read', 'write', 'admin'] as const) if (asMap(creds[l]) !== null) out[l] = true;
  return out;
}

function checkPolicies(root: Raw, connections: Raw, issues: ConfigIssue[]): void {
  const names = new Map<string, number>();
  const known = Object.keys(connections);
  asList(root['policies']).forEach((p, i) => {
    const policy = asMap(p);
    if (policy === null) return;
    const name = policy['name'];
    if (typeof name === 'string') {
      const first = names.get(name);
      if (first !== undefined) issues.push({ path: formatPath(['policies', i, 'name']), message: `"${name}" is already the name of policies[${first}]; policy names must be unique` });
      else names.set(name, i);
    }
    const access = policy['access'];
    asList(policy['connections']).forEach((c, j) => {
      if (typeof c !== 'string') return;
      const at = formatPath(Array.isArray(policy['connections']) ? ['policies', i, 'connections', j] : ['policies', i, 'connections']);
      const conn = asMap(connections[c]);
      if (conn === null) {
        issues.push({ path: at, message: `no connection named "${c}"; defined: ${known.length ? known.join(', ') : 'none'}` });
        return;
      }
      if ((conn['protocol'] === 'postgres' || conn['protocol'] === 'mysql') && (access === 'read' || access === 'write' || access === 'admin')) {
        const levels = credentialLevels(conn);
        if (levels !== null && Object.keys(levels).length > 0 && credentialFor(levels, access) === null) {
          issues.push({
            path: formatPath(['policies', i, 'access']),
            message: `grants ${access} on "${c}", which has no credential for ${access} or a lower level; add connections.${c}.credentials.${access}`,
          });
        }
      }
    });
  });
}

function checkIssuers(root: Raw, issues: ConfigIssue[]): void {
  const seen = new Map<string, number>();
  asList(asMap(root['identity'])?.['issuers']).forEach((entry, i) => {
    const iss = asMap(entry)?.['issuer'];
    if (typeof iss !== 'string') return;
    const first = seen.get(iss);
    if (first !== undefined) issues.push({ path: formatPath(['identity', 'issuers', i, 'issuer']), message: `${iss} is already listed at identity.issuers[${first}]; list each issuer once` });
    else seen.set(iss, i);
  });
}
