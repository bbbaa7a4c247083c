// Reads a claim named by a configured path: a top-level claim by its exact name (which may
// itself contain dots, like `https://example.com/groups`), else a dotted path into nested
// objects (`realm_access.roles`). Only own properties are followed.

export function readClaim(payload: Record<string, unknown>, claimPath: string): unknown {
  if (Object.hasOwn(payload, claimPath)) return payload[claimPath];
  let node: unknown = payload;
  for (const part of claimPath.split('.')) {
    if (typeof node !== 'object' || node === null || Array.isArray(node) || !Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/**
 * Groups as a list of names: a JSON array of strings (other members are ignored) or one
 * string separated by spaces and/or commas. Anything else means no groups. Duplicates are
 * dropped; at most `max` names are kept.
 */
export function groupsFrom(value: unknown, max: number): string[] {
  let names: string[];
  if (Array.isArray(value)) names = value.filter((g): g is string => typeof g === 'string' && g !== '');
  else if (typeof value === 'string') names = value.split(/[\s,]+/).filter((g) => g !== '');
  else return [];
  return [...new Set(names)].slice(0, max);
}
