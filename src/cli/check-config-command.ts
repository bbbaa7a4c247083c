// `vecgate check-config --config FILE`: validates the config as `start` would, then opens every
// file it names; prints one summary line, or one line per problem (exit 2). Every stage runs
// whatever the others found, so one run lists every problem it can see.
import path from 'node:path';
import { ConfigError, issueLine, type ConfigIssue } from '../config/config-issues.js';
import { readConfigDocument, resolveConfig } from '../config/load.js';
import { checkReferencedFiles } from '../config/referenced-files.js';
import type { VecgateConfig } from '../config/types.js';

export interface CheckConfigOptions {
  configPath: string;
  /** Where the summary goes (stdout) and where problems go (stderr); replaceable in tests. */
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/** Returns the exit code: 0 when valid, 2 when not. */
export async function runCheckConfig(opts: CheckConfigOptions): Promise<number> {
  const out = opts.out ?? ((line: string) => process.stdout.write(line + '\n'));
  const err = opts.err ?? ((line: string) => process.stderr.write(line + '\n'));
  const issues: ConfigIssue[] = [];
  let config: VecgateConfig | null = null;
  try {
    const doc = await readConfigDocument(opts.configPath);
    try {
      config = resolveConfig(doc.raw, doc.file);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      issues.push(...e.issues);
    }
    // Files whose key already has a problem (unreadable, say) are not opened again.
    issues.push(...checkReferencedFiles(doc.raw, path.dirname(doc.file), new Set(issues.map((i) => i.path))));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    issues.push(...e.issues);
  }
  if (issues.length > 0 || config === null) {
    for (const issue of issues) err(issueLine(issue));
    return 2;
  }
  const names = Object.keys(config.connections);
  const n = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`;
  out(`config OK: ${n(names.length, 'connection')} (${names.join(', ')}), ${n(config.identity.issuers.length, 'issuer')}, ${n(config.policies.length, 'policy').replace(/policys$/, 'policies')}`);
  return 0;
}
