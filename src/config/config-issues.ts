// Turns validation failures into `{path, message}` lines a person can act on: the key path
// as written in YAML (`connections.vectors.upstream.port`), what is allowed, and for an
// unknown key the closest allowed one ("did you mean").
import type { z } from 'zod';
import { VgError } from '../errors.js';

export interface ConfigIssue {
  /** Key path as in the YAML, like `identity.issuers[0].audience`; '' for the whole file. */
  path: string;
  message: string;
}

/** The error `loadConfig` throws: one line in `message`, every problem in `issues`. */
export class ConfigError extends VgError {
  readonly issues: ConfigIssue[];
  constructor(message: string, issues: ConfigIssue[]) {
    super('ERR_VG_CONFIG', message);
    this.issues = issues;
  }
}

export function formatPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of segments) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else {
      const s = String(seg);
      out += /^[A-Za-z0-9_-]+$/.test(s) ? (out === '' ? s : `.${s}`) : `[${JSON.stringify(s)}]`;
    }
  }
  return out;
}

export function issueLine(issue: ConfigIssue): string {
  return issue.path === '' ? issue.message : `${issue.path}: ${issue.message}`;
}

/** Levenshtein distance, small strings only (config keys). */
function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The allowed key closest to a typo, when it is close enough to be a likely meaning. */
export function closestKey(key: string, allowed: readonly string[]): string | null {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best: string | null = null;
  let bestDist = Infinity;
  for (const a of allowed) {
    // groupsClaim / groups-claim for groups_claim
    const d = norm(a) === norm(key) ? 0 : distance(key.toLowerCase(), a);
    if (d < bestDist) {
      best = a;
      bestDist = d;
    }
  }
  const limit = Math.max(1, Math.floor(key.length / 3));
  return best !== null && bestDist <= limit ? best : null;
}

type AnySchema = z.core.$ZodType;

/** Object keys accepted at `path`, following the raw value through unions; null when unknown. */
function allowedKeysAt(schema: AnySchema, path: readonly PropertyKey[], raw: unknown): string[] | null {
  let s: AnySchema | undefined = schema;
  let v: unknown = raw;
  let i = 0;
  for (let guard = 0; s !== undefined && guard < 1000; guard++) {
    const def = s._zod.def as unknown as Record<string, unknown> & { type: string };
    switch (def.type) {
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
        s = def['innerType'] as AnySchema;
        continue;
      case 'pipe': {
        const input = def['in'] as AnySchema;
        s = input._zod.def.type === 'transform' ? (def['out'] as AnySchema) : input;
        continue;
      }
      case 'union': {
        const disc = def['discriminator'] as string | undefined;
        const options = def['options'] as AnySchema[];
        const want = disc !== undefined && typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[disc] : undefined;
        s = options.find((o) => {
          const shape = (o._zod.def as unknown as { shape?: Record<string, AnySchema> }).shape;
          const lit = shape?.[disc ?? '']?._zod.def as unknown as { values?: unknown[] } | undefined;
          return lit?.values?.includes(want) ?? false;
        });
        continue;
      }
      case 'object': {
        const shape = def['shape'] as Record<string, AnySchema>;
        if (i === path.length) return Object.keys(shape);
        const key = String(path[i++]);
        s = shape[key];
        v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[key] : undefined;
        continue;
      }
      case 'array':
      case 'record': {
        if (i === path.length) return null;
        const key = path[i++]!;
        s = (def.type === 'array' ? def['element'] : def['valueType']) as AnySchema;
        v = typeof v === 'object' && v !== null ? (v as Record<PropertyKey, unknown>)[key as string] : undefined;
        continue;
      }
      default:
        return null;
    }
  }
  return null;
}

/** Every zod issue as a config issue; unknown keys get one issue each, with "did you mean". */
export function issuesFromZod(error: z.ZodError, schema: AnySchema, raw: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const iss of error.issues) {
    if (iss.code === 'unrecognized_keys') {
      const allowed = allowedKeysAt(schema, iss.path, raw) ?? [];
      for (const key of iss.keys) {
        const near = closestKey(key, allowed);
        const hint = near !== null ? `did you mean "${near}"? ` : '';
        out.push({
          path: formatPath([...iss.path, key]),
          message: `unknown key; ${hint}allowed here: ${allowed.join(', ')}`,
        });
      }
      continue;
    }
    out.push({ path: formatPath(iss.path), message: iss.message });
  }
  return out;
}
