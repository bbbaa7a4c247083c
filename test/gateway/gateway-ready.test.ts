// The primary's `ready`: it resolves only once every worker reported a bound listener for every
// configured connection. A connection no worker serves (here a mysql one handed to the gateway
// past the loader, which refuses it) fails the start instead of leaving its port dark.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import type { MysqlConnectionConfig } from '../../src/config/types.js';
import { writeTestPki, type TestPki } from '../../src/dev/pki.js';
import { DevIssuer } from '../../src/identity/dev-issuer.js';
import { startGateway } from '../../src/gateway/gateway.js';
import { freePort } from '../harness/free-port.js';

let dir: string;
let pki: TestPki;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vg-ready-'));
  pki = await writeTestPki(path.join(dir, 'pki'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('a configured connection that no worker listens for fails the start (ERR_VG_LISTEN), not "ready"', async () => {
  const issuer = await DevIssuer.open(dir);
  const file = path.join(dir, 'pg.yaml');
  writeFileSync(
    file,
    stringify({
      server: { tls: { cert: pki.serverCert, key: pki.serverKey }, workers: 2 },
      identity: { issuers: [{ issuer: issuer.issuer, audience: 'vecgate', jwks: issuer.jwksPath }] },
      policies: [{ name: 'all', groups: ['g'], connections: ['vectors'], access: 'read' }],
      connections: {
        vectors: { protocol: 'postgres', listen: `127.0.0.1:${await freePort()}`, upstream: { host: '127.0.0.1', port: 1, database: 'v', tls: { mode: 'insecure-plaintext' } }, credentials: { user: 'u', password: 'p' }, recording: 'off' },
      },
    }),
  );
  const config = await loadConfig(file);
  const pg = config.connections['vectors']!;
  const mysqlPort = await freePort();
  config.connections['vectors_my'] = { ...(pg as unknown as MysqlConnectionConfig), name: 'vectors_my', protocol: 'mysql', listen: { host: '127.0.0.1', port: mysqlPort } };
  const started = startGateway(config, { logger: pino({ level: 'silent' }) });
  await assert.rejects(started, (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_VG_LISTEN');
    assert.match(err.message, new RegExp(`^connections\\.vectors_my: worker \\d opened no listener on 127\\.0\\.0\\.1:${mysqlPort} \\(protocol mysql is not served by this version; it serves postgres and http\\)$`));
    return true;
  });
  // A gateway that did start would hold its workers; stop it so the test ends either way.
  await started.then((gw) => gw.stop({ drainMs: 0 })).catch(() => {});
});
