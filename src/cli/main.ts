// The `vecgate` command line: parses arguments with commander and lazily loads the module
// of the chosen subcommand. Any error that reaches here becomes ONE line on stderr
// (`vecgate: <message>`) and an exit code: 2 for config and usage errors, 1 otherwise.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { VgError, isVgError } from '../errors.js';

/** Exit codes. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** After a failure, give stdout/stderr this long to flush before forcing the exit (open handles must not hang a failed start). */
export const EXIT_GRACE_MS = 2000;

/** Error codes that mean "fix your config or command line" (exit 2). */
const USAGE_CODES = new Set(['ERR_VG_CONFIG', 'ERR_VG_TLS_FILES', 'ERR_VG_USAGE']);

function packageVersion(): string {
  try {
    // dist/src/cli/main.js -> package.json at the repository root.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be an integer 0-65535.');
  return n;
}

function buildProgram(setExitCode: (code: number) => void): Command {
  const program = new Command()
    .name('vecgate')
    .description('Layer-7 gateway for vector databases: TLS in, verified TLS out, OIDC identity, group policy, recorded sessions.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpCommand(true)
    .showSuggestionAfterError(true)
    .exitOverride()
    // Commander's own error text is reported by main() as one `vecgate: ...` line.
    .configureOutput({ outputError: () => undefined });

  program
    .command('start')
    .description('run the gateway (JSON log lines on stdout; one "ready" line when every listener accepts)')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .action(async (opts: { config: string }) => {
      const { runStart } = await import('./start-command.js');
      await runStart({ configPath: opts.config });
    });

  program
    .command('dev')
    .description('run the embedded default: dev CA and certificates, dev token issuer, PGlite + pgvector and an in-memory Qdrant-compatible API as upstreams, the gateway in front')
    .option('--dir <dir>', 'dev state directory', '.vecgate-dev')
    .addOption(new Option('--port <n>', 'gateway port for PostgreSQL clients (default 15432)').argParser(parsePort))
    .addOption(new Option('--http-port <n>', 'gateway port for HTTP (Qdrant) clients (default 16333)').argParser(parsePort))
    .action(async (opts: { dir: string; port?: number; httpPort?: number }) => {
      const { runDev } = await import('./dev-command.js');
      await runDev({ dir: opts.dir, port: opts.port, httpPort: opts.httpPort });
    });

  program
    .command('token')
    .description('print an access token: from the embedded dev issuer (--dev), else from your `vecgate login` session')
    .option('--dev', 'mint a token from the embedded dev issuer in --dir')
    .option('--user <user>', 'dev token subject')
    .option('--groups <a,b>', 'dev token groups, comma-separated')
    .option('--ttl <duration>', 'dev token lifetime: 30s, 15m, 2h, 1d (default 15m)')
    .option('--dir <dir>', 'dev state directory (default .vecgate-dev)')
    .action(async (opts: { dev?: boolean; user?: string; groups?: string; ttl?: string; dir?: string }) => {
      const { runToken } = await import('./token-command.js');
      await runToken({ dev: opts.dev, user: opts.user, groups: opts.groups, ttl: opts.ttl, dir: opts.dir });
    });

  program
    .command('check-config')
    .description('validate a config; every problem names its key path and what is allowed')
    .requiredOption('-c, --config <file>', 'config file (YAML)')
    .action(async (opts: { config: string }) => {
      const { runCheckConfig } = await import('./check-config-command.js');
      setExitCode(await runCheckConfig({ configPath: opts.config }));
    });

  program
    .command('login')
    .description('OIDC login for people: device code when the issuer offers it, else authorization code + PKCE on a loopback redirect; the session is cached for `vecgate token`')
    .requiredOption('--issuer <url>', 'OpenID issuer URL (https)')
    .requiredOption('--client-id <id>', 'public client registered for vecgate at the issuer')
    .option('--scope <scopes>', 'scopes to ask for', 'openid offline_access')
    .option('--audience <aud>', 'audience parameter, for issuers that use one (Auth0 style)')
    .option('--resource <url>', 'resource indicator (RFC 8707) for the access token')
    .option('--ca <file>', 'extra CA certificate (PEM) for an issuer with an internal CA (NODE_EXTRA_CA_CERTS works too)')
    .option('--no-browser', 'do not open a browser; print the URL only')
    .addOption(new Option('--flow <flow>', 'login flow').choices(['auto', 'device', 'code']).default('auto'))
    .addOption(new Option('--redirect-port <n>', 'loopback port for the code flow redirect (default: any free port)').argParser(parsePort))
    .option('--insecure-http-loopback', 'INSECURE: allow a plain-http issuer, on a loopback address only (local test issuers)')
    .action(async (opts: { issuer: string; clientId: string; scope: string; audience?: string; resource?: string; ca?: string; browser: boolean; flow: 'auto' | 'device' | 'code'; redirectPort?: number; insecureHttpLoopback?: boolean }) => {
      const { runLogin } = await import('./login-command.js');
      await runLogin({
        issuer: opts.issuer, clientId: opts.clientId, scope: opts.scope, audience: opts.audience, resource: opts.resource, ca: opts.ca,
        noBrowser: !opts.browser, flow: opts.flow, redirectPort: opts.redirectPort, insecureHttpLoopback: opts.insecureHttpLoopback,
      });
    });

  program
    .command('whoami')
    .description('show who your access token says you are (decoded, not verified) and, with --config, what your groups may reach')
    .option('--token <jwt>', 'show this access token instead of your `vecgate login` one (- reads it from stdin)')
    .option('--groups-claim <path>', 'claim holding the groups, dotted paths allowed (default: the config issuer\'s, else "groups")')
    .option('-c, --config <file>', 'gateway config: list each connection and your access level there')
    .option('--json', 'print JSON')
    .action(async (opts: { token?: string; groupsClaim?: string; config?: string; json?: boolean }) => {
      const { runWhoami } = await import('./whoami-command.js');
      await runWhoami({ token: opts.token, groupsClaim: opts.groupsClaim, config: opts.config, json: opts.json });
    });
  program
    .command('pools')
    .description("show a running gateway's upstream pools, like PgBouncer's SHOW POOLS (from its admin endpoint's /pools)")
    .option('-c, --config <file>', 'gateway config: its server.admin.listen is asked (nothing else in it is read)')
    .option('--admin <url>', 'the admin endpoint, like http://127.0.0.1:9090')
    .option('--json', "print the endpoint's JSON")
    .action(async (opts: { config?: string; admin?: string; json?: boolean }) => {
      const { runPools } = await import('./pools-command.js');
      setExitCode(await runPools({ config: opts.config, admin: opts.admin, json: opts.json }));
    });
  const recordingsDir = async (opts: { dir?: string; config?: string }): Promise<string> => {
    if (opts.dir) return opts.dir;
    if (opts.config) {
      const { loadConfig } = await import('../config/load.js');
      return (await loadConfig(opts.config)).recordings.dir;
    }
    return 'recordings';
  };
  program
    .command('sessions')
    .description('list recorded sessions')
    .option('--dir <dir>', 'recordings directory (default: recordings.dir of --config, else ./recordings)')
    .option('-c, --config <file>', 'gateway config, for recordings.dir')
    .option('--since <when>', 'only sessions since a duration back (30m, 2h, 7d) or a date (2024-05-01)')
    .option('--user <subject>', 'only sessions of this subject')
    .option('--connection <name>', 'only sessions of this connection')
    .option('--json', 'print a JSON array')
    .action(async (opts: { dir?: string; config?: string; since?: string; user?: string; connection?: string; json?: boolean }) => {
      const { runSessions } = await import('./sessions-command.js');
      setExitCode(await runSessions({ dir: await recordingsDir(opts), since: opts.since, user: opts.user, connection: opts.connection, json: opts.json }));
    });
  program
    .command('replay')
    .argument('<id>', 'session id (from `vecgate sessions`)')
    .description('print a recorded session as it happened, in time order')
    .option('--dir <dir>', 'recordings directory (default: recordings.dir of --config, else ./recordings)')
    .option('-c, --config <file>', 'gateway config, for recordings.dir')
    .option('--speed <n|max>', 'N times the recorded pace, or max (default)', 'max')
    .option('--json', 'one JSON event per line')
    .action(async (id: string, opts: { dir?: string; config?: string; speed?: string; json?: boolean }) => {
      const { runReplay } = await import('./replay-command.js');
      setExitCode(await runReplay({ dir: await recordingsDir(opts), id, speed: opts.speed, json: opts.json }));
    });
  program
    .command('verify-recordings')
    .description('check every hash chain, CRC and signature; report the first bad record per connection')
    .option('--dir <dir>', 'recordings directory (default: recordings.dir of --config, else ./recordings)')
    .option('-c, --config <file>', 'gateway config, for recordings.dir')
    .option('--public-key <file>', "the auditor's copy of the signing public key (default: the one beside the recordings)")
    .option('--repair', 'cut torn tails left by a crash (reported, not fatal); re-sign a missing head when every record verifies')
    .option('--signing-key <file>', 'the recordings signing key, for --repair to re-sign a missing head (default: the one beside the recordings)')
    .option('--jobs <n>', 'connections verified at once on worker threads (default 1: this thread)')
    .option('--progress', 'a line on stderr per connection verified (default when stderr is a terminal)')
    .action(async (opts: { dir?: string; config?: string; publicKey?: string; signingKey?: string; repair?: boolean; jobs?: string; progress?: boolean }) => {
      const { parseJobs, runVerifyRecordings } = await import('./verify-recordings-command.js');
      const jobs = opts.jobs === undefined ? undefined : parseJobs(opts.jobs);
      setExitCode(await runVerifyRecordings({ dir: await recordingsDir(opts), publicKey: opts.publicKey, signingKey: opts.signingKey, repair: opts.repair, jobs, progress: opts.progress }));
    });
  return program;
}

/** The one line for an error, and its exit code. */
export function describeError(err: unknown): { line: string; code: number } {
  if (err instanceof CommanderError) {
    return { line: err.message.replace(/^error: /, '').split('\n')[0]!, code: EXIT_USAGE };
  }
  const message = err instanceof Error ? err.message : String(err);
  const firstLine = message.split('\n').find((l) => l.trim() !== '') ?? 'unknown error';
  const code = isVgError(err) && USAGE_CODES.has((err as VgError).code) ? EXIT_USAGE : EXIT_FAILURE;
  return { line: firstLine, code };
}

export async function main(argv: string[]): Promise<void> {
  let exitCode: number | undefined;
  const program = buildProgram((code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    if (exitCode !== undefined && exitCode !== EXIT_OK) process.exitCode = exitCode;
  } catch (err) {
    if (err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.version')) return;
    // `vecgate` alone or an unknown command: commander already printed the help.
    if (err instanceof CommanderError && (err.code === 'commander.help' || err.code === 'commander.executeSubCommandAsync')) {
      process.exitCode = EXIT_USAGE;
      return;
    }
    const { line, code } = describeError(err);
    process.stderr.write(`vecgate: ${line}\n`);
    if (process.env['VECGATE_DEBUG'] === '1' && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = code;
    setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
  }
}
