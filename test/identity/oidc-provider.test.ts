// End to end against a certified OpenID provider: `oidc-provider` runs in-process behind a
// node:https server on loopback (self-signed CA), issues JWT access tokens for resource
// indicators through the client_credentials grant, and TokenVerifier checks them through
// discovery and the provider's own JWKS endpoint.
import { loadOidcProvider, startIssuerHttps } from '../harness/issuer-https.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import type { IssuerConfig } from '../../src/config/types.js';
import { TokenVerifier } from '../../src/identity/token-verifier.js';

const RESOURCE = 'urn:vecgate';
const OTHER_RESOURCE = 'urn:other-api';

let dir: string;
let caPem: string;
let caPath: string;
let server: https.Server;
let issuer: string;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-oidc-'));
  const https0 = await startIssuerHttps(dir);
  ({ certPath: caPath, certPem: caPem, server, url: issuer } = https0);
  const Provider = await loadOidcProvider();

  const es = await generateKeyPair('ES256', { extractable: true });
  const rs = await generateKeyPair('RS256', { extractable: true });
  const provider = new Provider(issuer, {
    clients: [
      { client_id: 'ml-pipeline', client_secret: 'ml-pipeline-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
      { client_id: 'reporting', client_secret: 'reporting-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
    ],
    jwks: {
      keys: [
        { ...(await exportJWK(rs.privateKey)), kid: 'op-rs256', alg: 'RS256', use: 'sig' },
        { ...(await exportJWK(es.privateKey)), kid: 'op-es256', alg: 'ES256', use: 'sig' },
      ],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resource: string) => ({
          audience: resource === RESOURCE ? 'vecgate' : 'other-api',
          scope: 'vectors',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    ttl: { ClientCredentials: 300 },
    // Groups the way Keycloak nests them, so the verifier's dotted claim path is exercised.
    extraTokenClaims: (ctx: { oidc: { client?: { clientId: string } } }) => ({
      realm_access: { roles: ctx.oidc.client?.clientId === 'ml-pipeline' ? ['ml-writers', 'ml-readers'] : ['reporting'] },
    }),
  });
  https0.setHandler(provider.callback());
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/** client_credentials token request over https, trusting the test CA. */
function clientCredentials(client: string, secret: string, resource: string): Promise<string> {
  const body = new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'vectors' }).toString();
  return new Promise((resolve, reject) => {
    const req = https.request(`${issuer}/token`, {
      method: 'POST',
      ca: caPem,
      agent: false,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${client}:${secret}`).toString('base64')}`,
      },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`token endpoint: HTTP ${res.statusCode} ${text}`));
        resolve((JSON.parse(text) as { access_token: string }).access_token);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

function config(over: Partial<IssuerConfig> = {}): IssuerConfig {
  return {
    issuer, audience: 'vecgate', groupsClaim: 'realm_access.roles', usernameClaim: 'client_id', jwks: null,
    algorithms: ['RS256', 'ES256', 'PS256', 'EdDSA'], clockSkewSec: 60, ca: caPath, ...over,
  };
}

test('a JWT access token from oidc-provider verifies through discovery, with nested groups', async () => {
  const token = await clientCredentials('ml-pipeline', 'ml-pipeline-secret', RESOURCE);
  assert.equal(decodeProtectedHeader(token).typ, 'at+jwt');
  const verifier = new TokenVerifier([config()]);
  const p = await verifier.verify(token);
  assert.equal(p.issuer, issuer);
  assert.equal(p.subject, 'ml-pipeline');
  assert.equal(p.username, 'ml-pipeline');
  assert.deepEqual([...p.groups], ['ml-writers', 'ml-readers']);
  assert.ok(p.expiresAt > Date.now());

  const other = await verifier.verify(await clientCredentials('reporting', 'reporting-secret', RESOURCE));
  assert.deepEqual([...other.groups], ['reporting']);
  assert.equal(verifier.keyFetchCount(issuer), 1);
});

test('a token minted for another resource is refused for its audience', async () => {
  const token = await clientCredentials('ml-pipeline', 'ml-pipeline-secret', OTHER_RESOURCE);
  await assert.rejects(new TokenVerifier([config()]).verify(token), (e: { code: string; message: string }) => {
    assert.equal(e.code, 'ERR_VG_TOKEN_AUDIENCE');
    assert.equal(e.message, 'token audience must include "vecgate"');
    return true;
  });
});

test('a gateway that allows only RS256 refuses the provider ES256 tokens', async () => {
  const token = await clientCredentials('ml-pipeline', 'ml-pipeline-secret', RESOURCE);
  await assert.rejects(new TokenVerifier([config({ algorithms: ['RS256'] })]).verify(token), { code: 'ERR_VG_TOKEN_ALG_NOT_ALLOWED' });
});
