// Loads a vecgate YAML config: parse, validate every key, resolve secrets and paths, and
// return the `VecgateConfig` the gateway runs on — or throw one `ERR_VG_CONFIG` error that
// lists every problem found, each naming its key path and what is allowed.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { crossCheck } from './config-cross-checks.js';
import { ConfigError, issueLine, issuesFromZod, type ConfigIssue } from './config-issues.js';
import { buildConfigSchema, defaultSchemaContext, type SchemaContext } from './schema.js';
import type { VecgateConfig } from './types.js';

export { ConfigError, type ConfigIssue } from './config-issues.js';
export { loadServerTlsFiles, checkServerTlsFiles, type ServerTlsFiles } from './server-tls-files.js';

/** A config file larger than this is not a config file. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

export interface LoadConfigOptions {
  /** Environment for `env:NAME` secrets; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Value of `workers: auto`; defaults to os.availableParallelism(). */
  availableParallelism?: number;
}

function fail(file: string, issues: ConfigIssue[]): never {
  const first = issueLine(issues[0]!);
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more; \`vecgate check-config --config ${file}\` lists them all)` : '';
  throw new ConfigError(`invalid config ${file}: ${first}${more}`, issues);
}

/** The YAML document as plain data, or the syntax problems with line and column. */
function parseYaml(text: string): { ok: true; value: unknown } | { ok: false; issues: ConfigIssue[] } {
  const lineCounter = new LineCounter();
  // uniqueKeys (the default) makes a repeated key an error instead of last-one-wins.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: false });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { path: '', message: `YAML syntax error at line ${pos.line}, column ${pos.col}: ${e.message.split('\n')[0]}` };
      }),
    };
  }
  // maxAliasCount bounds "billion laughs" alias expansion.
  return { ok: true, value: doc.toJS({ maxAliasCount: 100 }) };
}

/** Validates an already parsed document (the loader's core, also used by tests). */
export function resolveConfig(raw: unknown, configPath: string, opts: LoadConfigOptions = {}): VecgateConfig {
  const file = path.resolve(configPath);
  if (raw === null || raw === undefined) fail(file, [{ path: '', message: 'the config is empty; it needs server, identity, policies and connections' }]);
  if (typeof raw !== 'object' || Array.isArray(raw)) fail(file, [{ path: '', message: 'the config must be a YAML mapping with server, identity, policies and connections' }]);
  const base = defaultSchemaContext(path.dirname(file));
  const ctx: SchemaContext = { ...base, env: opts.env ?? base.env, availableParallelism: opts.availableParallelism ?? base.availableParallelism };
  const schema = buildConfigSchema(ctx);
  const parsed = schema.safeParse(raw);
  const issues: ConfigIssue[] = [];
  const seen = new Set<string>();
  // A rule checked both per key and across entries must be reported once.
  for (const issue of [...(parsed.success ? [] : issuesFromZod(parsed.error, schema, raw)), ...crossCheck(raw)]) {
    const line = issueLine(issue);
    if (!seen.has(line)) issues.push(issue);
    seen.add(line);
  }
  if (issues.length > 0 || !parsed.success) fail(file, issues);
  return { configPath: file, ...parsed.data };
}

/** The config file's YAML as plain data, with its absolute path; throws ERR_VG_CONFIG when unreadable or not YAML. */
export async function readConfigDocument(file: string): Promise<{ file: string; raw: unknown }> {
  const abs = path.resolve(file);
  let text: string;
  try {
    const buf = await readFile(abs);
    if (buf.length > MAX_CONFIG_FILE_BYTES) fail(abs, [{ path: '', message: `the file is larger than ${MAX_CONFIG_FILE_BYTES} bytes; is it the right file?` }]);
    text = buf.toString('utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`cannot read config file ${abs} (${code})`, [{ path: '', message: `cannot read config file ${abs} (${code})` }]);
  }
  const doc = parseYaml(text);
  if (!doc.ok) fail(abs, doc.issues);
  return { file: abs, raw: doc.value };
}

export async function loadConfig(file: string, opts: LoadConfigOptions = {}): Promise<VecgateConfig> {
  const doc = await readConfigDocument(file);
  return resolveConfig(doc.raw, doc.file, opts);
}
