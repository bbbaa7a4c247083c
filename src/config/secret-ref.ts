// Resolves `env:NAME` and `file:PATH` references that may stand for any secret in the
// config. Errors name the variable or file, never the secret's value.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** A secret file larger than this is a mistake (a certificate bundle, a log): refuse it. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024;

export interface SecretContext {
  /** Directory that relative `file:` paths resolve against (the config file's). */
  baseDir: string;
  env: NodeJS.ProcessEnv;
}

export type SecretResult = { ok: true; value: string } | { ok: false; error: string };

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isSecretRef(text: string): boolean {
  return text.startsWith('env:') || text.startsWith('file:');
}

/** A literal is returned as is; `env:`/`file:` are read. Trailing newlines of files are dropped. */
export function resolveSecret(text: string, ctx: SecretContext): SecretResult {
  if (text.startsWith('env:')) {
    const name = text.slice(4);
    if (!ENV_NAME.test(name)) return { ok: false, error: `"env:${name}" is not a valid environment variable name (letters, digits and _)` };
    const value = ctx.env[name];
    if (value === undefined) return { ok: false, error: `environment variable ${name} is not set` };
    if (value === '') return { ok: false, error: `environment variable ${name} is empty` };
    return { ok: true, value };
  }
  if (text.startsWith('file:')) {
    const given = text.slice(5);
    if (given === '') return { ok: false, error: '"file:" needs a path, like file:/run/secrets/db-password' };
    const file = path.resolve(ctx.baseDir, given);
    let value: string;
    try {
      const st = statSync(file);
      if (!st.isFile()) return { ok: false, error: `secret file ${file} is not a regular file` };
      if (st.size > MAX_SECRET_FILE_BYTES) return { ok: false, error: `secret file ${file} is larger than ${MAX_SECRET_FILE_BYTES} bytes` };
      value = readFileSync(file, 'utf8');
    } catch (err) {
      return { ok: false, error: `cannot read secret file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
    }
    // Editors and `echo` add a final newline; a secret never ends with one on purpose.
    value = value.replace(/\r?\n$/, '');
    if (value === '') return { ok: false, error: `secret file ${file} is empty` };
    return { ok: true, value };
  }
  return { ok: true, value: text };
}
