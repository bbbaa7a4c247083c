// `vecgate login`: OIDC login for people, with openid-client. The device authorization grant
// when the issuer offers it (code shown on stderr, works over SSH), else authorization code +
// PKCE on a loopback redirect. The tokens go to the owner-only login cache, where
// `vecgate token` reads (and refreshes) them. Also the refresh itself, for `vecgate token`.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import * as oidc from 'openid-client';
import { decodeJwt } from 'jose';
import { isLoopbackHost } from '../config/host-address.js';
import { VgError } from '../errors.js';
import { loginCachePath, writeLoginSession, type LoginSession } from '../identity/login-cache.js';

export const DEFAULT_LOGIN_SCOPE = 'openid offline_access';
/** Timeout of each request to the issuer (discovery, token, device authorization). */
export const LOGIN_HTTP_TIMEOUT_SEC = 30;
/** The device flow gives up after the issuer's own expiry or this, whichever comes first. */
export const MAX_DEVICE_WAIT_SEC = 15 * 60;
/** How long the loopback redirect listener waits for the browser to come back. */
export const CALLBACK_WAIT_SEC = 5 * 60;
/** A response from the issuer larger than this is refused (with --ca / loopback http). */
export const MAX_ISSUER_RESPONSE_BYTES = 1024 * 1024;
/** Path of the loopback redirect URI (http://127.0.0.1:<port>/callback). */
export const CALLBACK_PATH = '/callback';

export type LoginFlow = 'auto' | 'device' | 'code';

export interface LoginCommandOptions {
  issuer: string;
  clientId: string;
  scope?: string;
  audience?: string;
  resource?: string;
  /** Extra CA (PEM file) for issuers with an internal CA, added to the system roots. */
  ca?: string;
  /** Do not try to open a browser for the authorization code flow; just print the URL. */
  noBrowser?: boolean;
  flow?: LoginFlow;
  /** Port of the loopback redirect (0 = any free port; some issuers need a registered one). */
  redirectPort?: number;
  /** Plain-http issuer on a loopback address (tests, local dev issuers). Refused elsewhere. */
  insecureHttpLoopback?: boolean;
  /** Cache file; defaults to loginCachePath(). */
  cacheFile?: string;
}

/** What is needed to talk to the issuer again (login and refresh). */
export interface IssuerConnection {
  issuer: string;
  clientId: string;
  ca: string | null;
  insecureHttpLoopback: boolean;
}

function say(line: string): void {
  process.stderr.write(`vecgate login: ${line}\n`);
}

/**
 * A fetch over node:https that trusts the system roots plus `caPem` (and NODE_EXTRA_CA_CERTS,
 * which an explicit `ca` would otherwise drop), and refuses plain http except to loopback.
 */
function issuerFetch(caPem: string | null): oidc.CustomFetch {
  let ca: string[] | undefined;
  if (caPem !== null) {
    ca = [...tls.rootCertificates, caPem];
    const extra = process.env['NODE_EXTRA_CA_CERTS'];
    if (extra) {
      try {
        ca.push(readFileSync(extra, 'utf8'));
      } catch {
        // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS; so do we (by ignoring it).
      }
    }
  }
  return (urlText, init) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(urlText);
      if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
        reject(new VgError('ERR_VG_LOGIN', `refusing to send a request to ${url.origin}: only https, or http on loopback with --insecure-http-loopback`));
        return;
      }
      const b = init.body;
      let body: Buffer | string | undefined;
      if (b === null || b === undefined) body = undefined;
      else if (typeof b === 'string') body = b;
      else if (b instanceof URLSearchParams) body = b.toString();
      else if (b instanceof ArrayBuffer) body = Buffer.from(b);
      else if (b instanceof Uint8Array) body = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
      else {
        reject(new Error('streamed request bodies are not supported'));
        return;
      }
      const options: https.RequestOptions = { method: init.method, headers: init.headers, agent: false, signal: init.signal };
      const onResponse = (res: http.IncomingMessage): void => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ISSUER_RESPONSE_BYTES) {
            req.destroy();
            reject(new VgError('ERR_VG_LOGIN', `${url.origin} sent a response larger than ${MAX_ISSUER_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            if (Array.isArray(v)) for (const one of v) headers.append(k, one);
            else if (v !== undefined) headers.set(k, v);
          }
          const status = res.statusCode ?? 500;
          const noBody = status === 204 || status === 304;
          resolve(new Response(noBody ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage ?? '', headers }));
        });
      };
      const req = url.protocol === 'https:' ? https.request(url, { ...options, ca }, onResponse) : http.request(url, options, onResponse);
      req.on('error', reject);
      req.end(body);
    });
}

/** Checks the issuer URL against the transport rules before anything is sent. */
function checkIssuerUrl(issuer: string, insecureHttpLoopback: boolean): URL {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new VgError('ERR_VG_USAGE', `--issuer ${JSON.stringify(issuer)} is not a URL; use the issuer's https URL, like https://login.example.com/realms/main`);
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol !== 'http:') throw new VgError('ERR_VG_USAGE', `--issuer must be an https URL, not ${url.protocol}`);
  if (!isLoopbackHost(url.hostname)) throw new VgError('ERR_VG_USAGE', `--issuer ${url.origin} is plain http; an issuer off this machine must use https`);
  if (!insecureHttpLoopback) throw new VgError('ERR_VG_USAGE', `--issuer ${url.origin} is plain http; use https, or add --insecure-http-loopback for a test issuer on this machine`);
  return url;
}

function readCa(file: string): string {
  try {
    const pem = readFileSync(file, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new VgError('ERR_VG_USAGE', `--ca ${file} holds no PEM certificate`);
    return pem;
  } catch (err) {
    if (err instanceof VgError) throw err;
    throw new VgError('ERR_VG_USAGE', `cannot read --ca ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** One line for an openid-client or network failure, in the user's terms. */
export function describeOidcError(err: unknown): string {
  if (err instanceof VgError) return err.message;
  if (err instanceof oidc.ResponseBodyError) return `${err.error}${err.error_description ? ` (${err.error_description})` : ''}`;
  if (err instanceof oidc.AuthorizationResponseError) return `${err.error}${err.error_description ? ` (${err.error_description})` : ''}`;
  const e = err as { message?: string; cause?: unknown; name?: string } | null;
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return 'the issuer did not answer in time';
  // openid-client wraps network failures in a generic "something went wrong": the cause says what.
  if (e?.cause instanceof Error && (e.message === 'something went wrong' || e.message === 'fetch failed')) return describeOidcError(e.cause);
  return e?.message ?? String(err);
}

/** OIDC discovery for a public client (PKCE / device flow: no client secret). */
export async function connectIssuer(conn: IssuerConnection): Promise<oidc.Configuration> {
  const url = checkIssuerUrl(conn.issuer, conn.insecureHttpLoopback);
  const caPem = conn.ca === null ? null : readCa(conn.ca);
  const options: oidc.DiscoveryRequestOptions = { timeout: LOGIN_HTTP_TIMEOUT_SEC };
  // Our own fetch whenever a rule must hold for every request: the extra CA, or "http only to loopback"
  // (allowInsecureRequests alone would let discovery metadata point plaintext anywhere).
  if (caPem !== null || url.protocol === 'http:') options[oidc.customFetch] = issuerFetch(caPem);
  if (url.protocol === 'http:') options.execute = [oidc.allowInsecureRequests];
  try {
    return await oidc.discovery(url, conn.clientId, undefined, oidc.None(), options);
  } catch (err) {
    throw new VgError('ERR_VG_LOGIN', `cannot read the OpenID configuration of ${url.href}: ${describeOidcError(err)}`, { cause: err });
  }
}

/** Expiry in unix seconds: from expires_in, else the JWT's own exp, else unknown. */
function expiresAt(tokens: oidc.TokenEndpointResponse, nowSec: number): number | null {
  if (typeof tokens.expires_in === 'number') return nowSec + tokens.expires_in;
  try {
    const exp = decodeJwt(tokens.access_token).exp;
    return typeof exp === 'number' ? exp : null;
  } catch {
    return null;
  }
}

/** The session to cache from a token response; a refresh that returns no new refresh token keeps the old one. */
export function sessionFromTokens(
  conn: IssuerConnection,
  tokens: oidc.TokenEndpointResponse,
  asked: { scope: string | null; resource: string | null; audience: string | null },
  previousRefreshToken: string | null = null,
): LoginSession {
  return {
    version: 1,
    issuer: conn.issuer,
    client_id: conn.clientId,
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token ?? previousRefreshToken,
    expires_at: expiresAt(tokens, Math.floor(Date.now() / 1000)),
    scope: tokens.scope ?? asked.scope,
    resource: asked.resource,
    audience: asked.audience,
    ca: conn.ca,
    insecure_http_loopback: conn.insecureHttpLoopback,
  };
}

/** Uses the refresh token of a session; throws ERR_VG_USAGE ("run `vecgate login` again") when that is impossible or refused. */
export async function refreshLoginSession(session: LoginSession): Promise<LoginSession> {
  const again = (why: string): VgError => new VgError('ERR_VG_USAGE', `your login session ${why} and has expired; run \`vecgate login\` again`);
  if (session.refresh_token === null) throw again('has no refresh token (ask for offline_access in --scope)');
  if (session.issuer === '' || session.client_id === '') throw again('does not name its issuer');
  const conn: IssuerConnection = { issuer: session.issuer, clientId: session.client_id, ca: session.ca, insecureHttpLoopback: session.insecure_http_loopback };
  let tokens: oidc.TokenEndpointResponse;
  try {
    const config = await connectIssuer(conn);
    const params: Record<string, string> = {};
    if (session.resource !== null) params['resource'] = session.resource;
    tokens = await oidc.refreshTokenGrant(config, session.refresh_token, params);
  } catch (err) {
    throw again(`could not be refreshed (${describeOidcError(err)})`);
  }
  return sessionFromTokens(conn, tokens, { scope: session.scope, resource: session.resource, audience: session.audience }, session.refresh_token);
}

function authorizationParams(opts: { scope: string; resource: string | null; audience: string | null }): Record<string, string> {
  const p: Record<string, string> = { scope: opts.scope };
  if (opts.resource !== null) p['resource'] = opts.resource;
  if (opts.audience !== null) p['audience'] = opts.audience;
  return p;
}

/** Device authorization grant (RFC 8628): show the code, poll until the person confirms it. */
async function deviceFlow(config: oidc.Configuration, params: Record<string, string>): Promise<oidc.TokenEndpointResponse> {
  const da = await oidc.initiateDeviceAuthorization(config, params);
  say('to sign in, open this page in a browser (on any device):');
  process.stderr.write(`\n    ${da.verification_uri}\n\n  and enter the code:  ${da.user_code}\n\n`);
  if (da.verification_uri_complete) say(`(or open ${da.verification_uri_complete}, which fills in the code)`);
  process.stderr.write('vecgate login: waiting for you to confirm ');
  const dots = setInterval(() => process.stderr.write('.'), Math.max(1, da.interval ?? 5) * 1000);
  dots.unref();
  try {
    const signal = AbortSignal.timeout(Math.min(da.expires_in, MAX_DEVICE_WAIT_SEC) * 1000);
    return await oidc.pollDeviceAuthorizationGrant(config, da, undefined, { signal });
  } finally {
    clearInterval(dots);
    process.stderr.write('\n');
  }
}

/** Best effort; the URL is printed anyway, so a missing opener is not an error. */
function openBrowser(url: string): void {
  const [cmd, args]: [string, string[]] =
    process.platform === 'darwin' ? ['open', [url]] : process.platform === 'win32' ? ['cmd', ['/c', 'start', '', url]] : ['xdg-open', [url]];
  if (process.platform === 'linux' && !process.env['DISPLAY'] && !process.env['WAYLAND_DISPLAY']) return;
  try {
    const child = spawn(cmd, args, { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // No opener: the person copies the printed URL.
  }
}

const PAGE = (title: string, text: string): string =>
  `<!doctype html><meta charset="utf-8"><title>${title}</title><body style="font-family:sans-serif;margin:3em"><h1>${title}</h1><p>${text}</p></body>`;

function htmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Authorization code + PKCE (RFC 7636) with a loopback redirect (RFC 8252); the listener stops itself. */
async function codeFlow(config: oidc.Configuration, params: Record<string, string>, opts: { redirectPort: number; noBrowser: boolean; resource: string | null }): Promise<oidc.TokenEndpointResponse> {
  const verifier = oidc.randomPKCECodeVerifier();
  const challenge = await oidc.calculatePKCECodeChallenge(verifier);
  const state = oidc.randomState();
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new VgError('ERR_VG_LOGIN', `cannot listen on 127.0.0.1:${opts.redirectPort} for the login redirect (${err.code ?? err.message})`)));
    server.listen(opts.redirectPort, '127.0.0.1', resolve);
  });
  const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}${CALLBACK_PATH}`;
  try {
    const extra: Record<string, string> = {};
    // OpenID Connect Core section 11: a request for offline_access MUST carry prompt=consent, or
    // conforming issuers drop it and give no refresh token.
    const scopes = (params['scope'] ?? '').split(' ');
    if (scopes.includes('offline_access') && scopes.includes('openid')) extra['prompt'] = 'consent';
    const authUrl = oidc.buildAuthorizationUrl(config, { ...params, ...extra, redirect_uri: redirectUri, code_challenge: challenge, code_challenge_method: 'S256', state });
    say('to sign in, open this URL in a browser on this machine:');
    process.stderr.write(`\n    ${authUrl.href}\n\n`);
    if (!opts.noBrowser) openBrowser(authUrl.href);
    say(`waiting for the browser to come back to ${redirectUri} ...`);
    return await new Promise<oidc.TokenEndpointResponse>((resolve, reject) => {
      const timer = setTimeout(() => reject(new VgError('ERR_VG_LOGIN', `no answer from the browser within ${CALLBACK_WAIT_SEC / 60} minutes; run \`vecgate login\` again`)), CALLBACK_WAIT_SEC * 1000);
      timer.unref();
      let busy = false;
      server.on('request', (req, res) => {
        const current = new URL(req.url ?? '/', redirectUri);
        // Browsers also ask for /favicon.ico and the like: only the callback counts, once.
        if (req.method !== 'GET' || current.pathname !== CALLBACK_PATH || busy) {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
          return;
        }
        busy = true;
        oidc
          .authorizationCodeGrant(config, current, { pkceCodeVerifier: verifier, expectedState: state }, opts.resource !== null ? { resource: opts.resource } : undefined)
          .then((tokens) => {
            res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', connection: 'close' }).end(PAGE('Signed in', 'vecgate has your login. You can close this tab.'));
            clearTimeout(timer);
            resolve(tokens);
          })
          .catch((err: unknown) => {
            const why = describeOidcError(err);
            res.writeHead(400, { 'content-type': 'text/html; charset=utf-8', connection: 'close' }).end(PAGE('Sign-in failed', htmlEscape(why)));
            clearTimeout(timer);
            reject(new VgError('ERR_VG_LOGIN', `the login did not complete: ${why}`, { cause: err }));
          });
      });
    });
  } finally {
    server.close();
    server.closeAllConnections();
  }
}

export async function runLogin(opts: LoginCommandOptions): Promise<void> {
  const scope = (opts.scope ?? DEFAULT_LOGIN_SCOPE).trim();
  if (scope === '') throw new VgError('ERR_VG_USAGE', '--scope must not be empty; the default is "openid offline_access"');
  const flow = opts.flow ?? 'auto';
  if (!['auto', 'device', 'code'].includes(flow)) throw new VgError('ERR_VG_USAGE', `--flow ${flow} is not one of auto, device, code`);
  if (opts.clientId.trim() === '') throw new VgError('ERR_VG_USAGE', '--client-id must not be empty');
  const conn: IssuerConnection = {
    issuer: opts.issuer,
    clientId: opts.clientId,
    ca: opts.ca ? path.resolve(opts.ca) : null,
    insecureHttpLoopback: opts.insecureHttpLoopback === true,
  };
  const asked = { scope, resource: opts.resource ?? null, audience: opts.audience ?? null };
  const cacheFile = opts.cacheFile ?? loginCachePath();

  const config = await connectIssuer(conn);
  const hasDevice = typeof config.serverMetadata().device_authorization_endpoint === 'string';
  if (flow === 'device' && !hasDevice) throw new VgError('ERR_VG_LOGIN', `${conn.issuer} offers no device authorization endpoint; use --flow code`);
  const params = authorizationParams(asked);
  let tokens: oidc.TokenEndpointResponse;
  try {
    tokens = flow === 'code' || (flow === 'auto' && !hasDevice)
      ? await codeFlow(config, params, { redirectPort: opts.redirectPort ?? 0, noBrowser: opts.noBrowser === true, resource: asked.resource })
      : await deviceFlow(config, params);
  } catch (err) {
    if (err instanceof VgError) throw err;
    throw new VgError('ERR_VG_LOGIN', `the login did not complete: ${describeOidcError(err)}`, { cause: err });
  }
  const session = sessionFromTokens(conn, tokens, asked);
  writeLoginSession(session, cacheFile);
  let who = '';
  try {
    const claims = decodeJwt(session.access_token);
    const name = claims['preferred_username'] ?? claims['email'] ?? claims.sub;
    if (typeof name === 'string') who = ` as ${name}`;
  } catch {
    // Opaque access token: nothing to show.
  }
  say(`signed in${who}; session saved in ${cacheFile}${session.refresh_token === null ? ' (no refresh token: log in again when it expires)' : ''}`);
}
