// Group policy: maps (principal, connection) to an access level. Most permissive matching
// rule wins; no matching rule, no access (default deny).
import type { AccessLevel, PolicyConfig } from '../config/types.js';

const RANK: Record<AccessLevel, number> = { read: 1, write: 2, admin: 3 };

export function accessRank(level: AccessLevel): number {
  return RANK[level];
}

export interface PolicyDecision {
  access: AccessLevel;
  /** Names of the rules that granted it (for logs and recordings). */
  rules: string[];
}

export interface CompiledPolicy {
  decide(groups: readonly string[], connection: string): PolicyDecision | null;
  /** Groups that have any access to a connection: for refusal messages. */
  groupsFor(connection: string): string[];
}

export function compilePolicy(policies: readonly PolicyConfig[]): CompiledPolicy {
  // connection -> group -> [level, rule]
  const table = new Map<string, Map<string, { access: AccessLevel; rules: string[] }>>();
  for (const p of policies) {
    for (const conn of p.connections) {
      let byGroup = table.get(conn);
      if (!byGroup) table.set(conn, (byGroup = new Map()));
      for (const g of p.groups) {
        const cur = byGroup.get(g);
        if (!cur || RANK[p.access] > RANK[cur.access]) byGroup.set(g, { access: p.access, rules: [p.name] });
        else if (cur.access === p.access) cur.rules.push(p.name);
      }
    }
  }
  return {
    decide(groups, connection) {
      const byGroup = table.get(connection);
      if (!byGroup) return null;
      let best: { access: AccessLevel; rules: string[] } | null = null;
      for (const g of groups) {
        const hit = byGroup.get(g);
        if (hit && (!best || RANK[hit.access] > RANK[best.access])) best = hit;
      }
      return best ? { access: best.access, rules: [...best.rules] } : null;
    },
    groupsFor(connection) {
      return [...(table.get(connection)?.keys() ?? [])].sort();
    },
  };
}

/** The credential for an access level: its own when configured, else the next lower one that is. */
export function credentialFor<T>(creds: Partial<Record<AccessLevel, T>>, access: AccessLevel): T | null {
  const order: AccessLevel[] = access === 'admin' ? ['admin', 'write', 'read'] : access === 'write' ? ['write', 'read'] : ['read'];
  for (const level of order) {
    const c = creds[level];
    if (c) return c;
  }
  return null;
}
