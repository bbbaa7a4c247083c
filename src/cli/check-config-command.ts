// `vecgate check-config --config FILE`: loads the config as `start` would, then opens every
// file it names; prints one summary line, or one line per problem (exit 2).
import { ConfigError, issueLine, type ConfigIssue } from '../config/config-issues.js';
import { loadConfig } from '../config/load.js';
import { checkReferencedFiles } from '../config/referenced-files.js';

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
  let issues: ConfigIssue[];
  let summary = '';
  try {
    const config = await loadConfig(opts.configPath);
    issues = checkReferencedFiles(config);
    const names = Object.keys(config.connections);
    const n = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`;
    summary = `config OK: ${n(names.length, 'connection')} (${names.join(', ')}), ${n(config.identity.issuers.length, 'issuer')}, ${n(config.policies.length, 'policy').replace(/policys$/, 'policies')}`;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    issues = e.issues;
  }
  if (issues.length > 0) {
    for (const issue of issues) err(issueLine(issue));
    return 2;
  }
  out(summary);
  return 0;
}
