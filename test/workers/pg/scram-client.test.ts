// Tests for the SCRAM-SHA-256(-PLUS) client: the RFC 7677 vector, every refusal (nonce,
// salt, iteration bounds, server signature, e=), the gs2 header and channel-binding
// content, and full exchanges against a real PostgreSQL 15 (ephemeral cluster on loopback,
// SCRAM over TLS with tls-server-end-point, and over plain TCP), driven by this module's
// serializer, MessageReader and backend parser.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, X509Certificate } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import fc from 'fast-check';
import { ScramClient, saslPrep, DEFAULT_MAX_SCRAM_ITERATIONS } from '../../../workers/pg/scram-client.js';
import { MessageReader } from '../../../workers/pg/message-reader.js';
import { parseBackendMessage } from '../../../workers/pg/backend-parser.js';
import * as ser from '../../../workers/pg/serializer.js';
import type { BackendMessage } from '../../../workers/pg/messages.js';

const RFC_NONCE = 'rOprNGfwEbeRWgbNEkqO';
const RFC_SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
const RFC_SERVER_FINAL = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

function rfcClient(extra: Partial<ConstructorParameters<typeof ScramClient>[0]> = {}): ScramClient {
  return new ScramClient({
    password: 'pencil',
    mechanisms: ['SCRAM-SHA-256'],
    channelBinding: null,
    username: 'user',
    insecureFixedNonceForTests: RFC_NONCE,
    ...extra,
  });
}

function refused(r: { ok: boolean; message?: string }, pattern: RegExp): void {
  assert.equal(r.ok, false);
  assert.match(r.message ?? '', pattern);
}

/** A server side of SCRAM for `password`, to produce valid server-first/-final for any client. */
function serverSide(password: string, clientFirst: string, iterations = 4096, salt = Buffer.from('0123456789abcdef')) {
  const bare = clientFirst.slice(clientFirst.indexOf(',', clientFirst.indexOf(',') + 1) + 1);
  const clientNonce = /r=([^,]*)/.exec(bare)![1]!;
  const serverFirst = `r=${clientNonce}SERVERPART,s=${salt.toString('base64')},i=${iterations}`;
  return {
    serverFirst,
    final(clientFinal: string): string {
      const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
      const auth = `${bare},${serverFirst},${withoutProof}`;
      const salted = pbkdf2Sync(saslPrep(password), salt, iterations, 32, 'sha256');
      const serverKey = createHmac('sha256', salted).update('Server Key').digest();
      return `v=${createHmac('sha256', serverKey).update(auth).digest('base64')}`;
    },
  };
}

describe('ScramClient: RFC 7677 test vector', () => {
  it('produces the RFC client-first, client-final proof, and accepts the server signature', () => {
    const c = rfcClient();
    assert.equal(c.mechanism, 'SCRAM-SHA-256');
    assert.equal(c.clientFirst().toString(), `n,,n=user,r=${RFC_NONCE}`);
    const r = c.handleServerFirst(Buffer.from(RFC_SERVER_FIRST));
    assert.ok(r.ok);
    assert.equal(
      r.clientFinal.toString(),
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    );
    assert.equal(c.done, false, 'not done before the server proved itself');
    assert.deepEqual(c.handleServerFinal(Buffer.from(RFC_SERVER_FINAL)), { ok: true });
    assert.equal(c.done, true);
  });

  it('refuses a wrong server signature (one bit off, wrong length, garbage)', () => {
    const wrong = Buffer.from('6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=', 'base64');
    wrong[0]! ^= 1;
    for (const [final, pattern] of [
      [`v=${wrong.toString('base64')}`, /does not match/],
      ['v=AAAA', /does not match/],
      ['v=!!!!', /not valid base64/],
      ['x=abc', /expected v=/],
      [`${RFC_SERVER_FINAL},ext=1`, /expected v=/],
    ] as const) {
      const c = rfcClient();
      c.clientFirst();
      assert.ok(c.handleServerFirst(Buffer.from(RFC_SERVER_FIRST)).ok);
      refused(c.handleServerFinal(Buffer.from(final)), pattern);
      assert.equal(c.done, false);
    }
  });

  it('reports a server e= error', () => {
    const c = rfcClient();
    c.clientFirst();
    c.handleServerFirst(Buffer.from(RFC_SERVER_FIRST));
    refused(c.handleServerFinal(Buffer.from('e=invalid-proof')), /server reported an error: invalid-proof/);
  });
});

describe('ScramClient: server-first validation', () => {
  const cases: [string, RegExp][] = [
    [`r=someoneElse123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, /does not extend the client nonce/],
    [`r=${RFC_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, /does not extend the client nonce/],
    [`r=${RFC_NONCE}x,s=not*base64,i=4096`, /salt is not valid base64/],
    [`r=${RFC_NONCE}x,s=,i=4096`, /salt is not valid base64/],
    [`r=${RFC_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096`, /salt is not valid base64/],
    [`r=${RFC_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095`, /below the minimum of 4096/],
    [`r=${RFC_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=${DEFAULT_MAX_SCRAM_ITERATIONS + 1}`, /above the maximum of 1000000/],
    [`r=${RFC_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999999999999`, /not a positive integer/],
    [`r=${RFC_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0`, /not a positive integer/],
    [`r=${RFC_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-5`, /not a positive integer/],
    [`r=${RFC_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,x=1`, /malformed server-first/],
    [`s=W22ZaJ0SNY7soEsUEjb6gQ==,r=${RFC_NONCE}x,i=4096`, /malformed server-first/],
    [`m=ext,r=${RFC_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, /unsupported extension/],
    [`r=${RFC_NONCE}x\u00e9,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, /not printable ASCII/],
    ['', /malformed server-first/],
    ['x'.repeat(5000), /over the limit/],
  ];
  for (const [serverFirst, pattern] of cases) {
    it(`refuses ${JSON.stringify(serverFirst.slice(0, 60))}`, () => {
      const c = rfcClient();
      c.clientFirst();
      refused(c.handleServerFirst(Buffer.from(serverFirst)), pattern);
      refused(c.handleServerFinal(Buffer.from(RFC_SERVER_FINAL)), /out of sequence/);
    });
  }

  it('iteration bounds are options', () => {
    const c = rfcClient({ maxIterations: 4095, minIterations: 1 });
    c.clientFirst();
    refused(c.handleServerFirst(Buffer.from(RFC_SERVER_FIRST)), /above the maximum of 4095/);
    assert.throws(() => rfcClient({ minIterations: 10, maxIterations: 5 }), RangeError);
  });

  it('out-of-sequence steps fail; calling clientFirst twice is a programmer error', () => {
    const c = rfcClient();
    refused(c.handleServerFirst(Buffer.from(RFC_SERVER_FIRST)), /out of sequence/);
    const d = rfcClient();
    d.clientFirst();
    assert.throws(() => d.clientFirst());
    refused(d.handleServerFinal(Buffer.from(RFC_SERVER_FINAL)), /out of sequence/);
  });

  it('arbitrary server messages never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 100 }), (first, final) => {
        const c = rfcClient({ minIterations: 1, maxIterations: 16 });
        c.clientFirst();
        c.handleServerFirst(Buffer.from(first));
        c.handleServerFinal(Buffer.from(final));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('ScramClient: mechanism choice and channel binding', () => {
  const endPoint = createHash('sha256').update('certificate').digest();

  it('chooses PLUS when offered and a binding is available; gs2 p=tls-server-end-point and cbind = header + hash', () => {
    const c = new ScramClient({ password: 'pw', mechanisms: ['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS'], channelBinding: endPoint });
    assert.equal(c.mechanism, 'SCRAM-SHA-256-PLUS');
    const first = c.clientFirst().toString();
    assert.match(first, /^p=tls-server-end-point,,n=,r=[A-Za-z0-9+/=]{24}$/);
    const server = serverSide('pw', first);
    const r = c.handleServerFirst(Buffer.from(server.serverFirst));
    assert.ok(r.ok);
    const cbind = /^c=([^,]+),/.exec(r.clientFinal.toString())![1]!;
    assert.deepEqual(Buffer.from(cbind, 'base64'), Buffer.concat([Buffer.from('p=tls-server-end-point,,'), endPoint]));
    assert.deepEqual(c.handleServerFinal(Buffer.from(server.final(r.clientFinal.toString()))), { ok: true });
    assert.ok(c.done);
  });

  it("sends y,, when it could bind but the server did not offer PLUS, n,, when it cannot", () => {
    const y = new ScramClient({ password: 'pw', mechanisms: ['SCRAM-SHA-256'], channelBinding: endPoint });
    assert.equal(y.mechanism, 'SCRAM-SHA-256');
    const yFirst = y.clientFirst().toString();
    assert.ok(yFirst.startsWith('y,,n=,r='));
    const yr = y.handleServerFirst(Buffer.from(serverSide('pw', yFirst).serverFirst));
    assert.ok(yr.ok && yr.clientFinal.toString().startsWith('c=eSws,'));

    const n = new ScramClient({ password: 'pw', mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'], channelBinding: null });
    assert.equal(n.mechanism, 'SCRAM-SHA-256');
    assert.ok(n.clientFirst().toString().startsWith('n,,n=,r='));
  });

  it('no usable mechanism: reported by `failure`, never thrown, and every step fails', () => {
    const only = new ScramClient({ password: 'pw', mechanisms: ['SCRAM-SHA-256-PLUS'], channelBinding: null });
    assert.match(only.failure ?? '', /only SCRAM-SHA-256-PLUS/);
    const none = new ScramClient({ password: 'pw', mechanisms: ['SCRAM-SHA-1', 'OAUTHBEARER'], channelBinding: endPoint });
    assert.equal(none.mechanism, '');
    assert.match(none.failure ?? '', /none of the server's SASL mechanisms is supported/);
    none.clientFirst();
    refused(none.handleServerFirst(Buffer.from(RFC_SERVER_FIRST)), /none of the server's/);
    assert.equal(none.done, false);
  });

  it('random nonces differ; user names are escaped', () => {
    const a = new ScramClient({ password: 'pw', mechanisms: ['SCRAM-SHA-256'], channelBinding: null }).clientFirst().toString();
    const b = new ScramClient({ password: 'pw', mechanisms: ['SCRAM-SHA-256'], channelBinding: null }).clientFirst().toString();
    assert.notEqual(a, b);
    const e = new ScramClient({ password: 'pw', mechanisms: ['SCRAM-SHA-256'], channelBinding: null, username: 'a,b=c', insecureFixedNonceForTests: 'n' });
    assert.equal(e.clientFirst().toString(), 'n,,n=a=2Cb=3Dc,r=n');
  });

  it('saslPrep: ASCII unchanged, non-ASCII spaces mapped, soft hyphen dropped, NFKC applied', () => {
    assert.equal(saslPrep('pencil'), 'pencil');
    assert.equal(saslPrep('a\u00a0b'), 'a b');
    assert.equal(saslPrep('I\u00adX'), 'IX');
    assert.equal(saslPrep('\u2168'), 'IX'); // ROMAN NUMERAL NINE (RFC 4013 example)
    assert.equal(saslPrep('\u00aa'), 'a'); // FEMININE ORDINAL INDICATOR (RFC 4013 example)
  });
});

// ---------------------------------------------------------------------------------------
// Against a real PostgreSQL 15: an ephemeral cluster on loopback, scram-sha-256 in pg_hba.

const PG_BIN = '/usr/lib/postgresql/15/bin';
const ROLE = 'vgscram';
const PASSWORD = 'canary-Pässwörd-42'; // non-ASCII on purpose: exercises saslPrep against the server's
const haveServer = existsSync(path.join(PG_BIN, 'initdb')) && existsSync('/usr/bin/openssl');

interface Outcome {
  mechanism: string;
  messages: BackendMessage[];
  failure: string | null;
  done: boolean;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** tls-server-end-point (RFC 5929) of the test certificate, which is signed with ECDSA-SHA256. */
function serverEndPoint(cert: X509Certificate): Buffer {
  return createHash('sha256').update(cert.raw).digest();
}

describe('ScramClient against a real PostgreSQL 15', { skip: haveServer ? false : 'PostgreSQL 15 or openssl not installed' }, () => {
  let dir = '';
  let port = 0;
  let ca: Buffer;
  const asPostgres = process.getuid?.() === 0;

  function run(cmd: string, args: string[]): void {
    const full = asPostgres ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] as const : [cmd, args] as const;
    const r = spawnSync(full[0], full[1] as string[], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout}`);
  }

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vg-scram-'));
    const data = path.join(dir, 'data');
    writeFileSync(path.join(dir, 'pw'), PASSWORD + '\n');
    // EC P-256 with ECDSA-SHA256: tls-server-end-point is SHA-256 of the DER certificate.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-sha256', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost', '-keyout', path.join(dir, 'server.key'), '-out', path.join(dir, 'server.crt')], { stdio: 'ignore' });
    chmodSync(path.join(dir, 'server.key'), 0o600);
    ca = readFileSync(path.join(dir, 'server.crt'));
    if (asPostgres) {
      const pw = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
      const uid = Number(pw.stdout.trim());
      for (const f of ['', 'pw', 'server.key', 'server.crt']) chownSync(path.join(dir, f), uid, -1);
    }
    run(path.join(PG_BIN, 'initdb'), ['-D', data, '-U', ROLE, `--pwfile=${path.join(dir, 'pw')}`, '-A', 'scram-sha-256', '--no-sync', '--no-instructions']);
    writeFileSync(
      path.join(data, 'pg_hba.conf'),
      ['hostssl all all 127.0.0.1/32 scram-sha-256', 'hostnossl all all 127.0.0.1/32 scram-sha-256', ''].join('\n'),
    );
    port = await freePort();
    const opts = [`-p ${port}`, `-k ${dir}`, '-c listen_addresses=127.0.0.1', '-c ssl=on', `-c ssl_cert_file=${path.join(dir, 'server.crt')}`, `-c ssl_key_file=${path.join(dir, 'server.key')}`, '-c fsync=off'];
    run(path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'log'), '-w', '-t', '60', '-o', opts.join(' '), 'start']);
  });

  after(() => {
    if (!dir) return;
    try {
      run(path.join(PG_BIN, 'pg_ctl'), ['-D', path.join(dir, 'data'), '-m', 'immediate', '-w', 'stop']);
    } catch {
      // already stopped or never started
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** One connection: optional SSLRequest + TLS, startup, SCRAM to ReadyForQuery or an error. */
  async function authenticate(o: { useTls: boolean; password: string; offer?: (m: string[]) => string[]; bind?: boolean; bindingOverride?: Buffer }): Promise<Outcome> {
    const raw = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => raw.once('connect', resolve).once('error', reject));
    let sock: net.Socket = raw;
    let binding: Buffer | null = null;
    if (o.useTls) {
      raw.write(ser.sslRequest());
      const answer = await new Promise<Buffer>((resolve) => raw.once('data', resolve));
      assert.deepEqual(answer, Buffer.from('S'));
      const t = tls.connect({ socket: raw, ca, servername: 'localhost' });
      await new Promise<void>((resolve, reject) => t.once('secureConnect', resolve).once('error', reject));
      binding = serverEndPoint(t.getPeerX509Certificate()!);
      sock = t;
    }
    const reader = new MessageReader(64 * 1024);
    const messages: BackendMessage[] = [];
    let scram: ScramClient | null = null;
    return new Promise<Outcome>((resolve, reject) => {
      const finish = () => {
        sock.end(ser.terminate());
        resolve({ mechanism: scram?.mechanism ?? '', messages, failure: scram?.failure ?? null, done: scram?.done ?? false });
      };
      sock.on('error', reject);
      sock.on('close', () => resolve({ mechanism: scram?.mechanism ?? '', messages, failure: null, done: scram?.done ?? false }));
      sock.on('data', (chunk: Buffer) => {
        reader.push(chunk);
        for (;;) {
          const m = reader.next();
          if (m.status === 'need-more') return;
          if (m.status === 'error') return reject(new Error(m.message));
          const msg = parseBackendMessage(m.type, m.body);
          messages.push(msg);
          if (msg.kind === 'auth' && msg.type === 'sasl') {
            const mechanisms = o.offer ? o.offer(msg.mechanisms) : msg.mechanisms;
            scram = new ScramClient({ password: o.password, mechanisms, channelBinding: o.bind === false ? null : (o.bindingOverride ?? binding) });
            sock.write(ser.saslInitialResponse(scram.mechanism, scram.clientFirst()));
          } else if (msg.kind === 'auth' && msg.type === 'sasl-continue') {
            const r = scram!.handleServerFirst(msg.data);
            if (!r.ok) return reject(new Error(r.message));
            sock.write(ser.saslResponse(r.clientFinal));
          } else if (msg.kind === 'auth' && msg.type === 'sasl-final') {
            const r = scram!.handleServerFinal(msg.data);
            if (!r.ok) return reject(new Error(r.message));
          } else if (msg.kind === 'ready-for-query' || msg.kind === 'error') {
            return finish();
          }
        }
      });
      sock.write(ser.startupMessage({ user: ROLE, database: 'postgres', application_name: 'vecgate-scram-test' }));
    });
  }

  function assertReady(out: Outcome): void {
    const kinds = out.messages.map((m) => (m.kind === 'auth' ? `auth:${m.type}` : m.kind));
    assert.deepEqual(kinds.slice(0, 4), ['auth:sasl', 'auth:sasl-continue', 'auth:sasl-final', 'auth:ok']);
    assert.equal(kinds.at(-1), 'ready-for-query');
    assert.ok(out.done, 'the server signature was verified');
    const params = new Map(out.messages.flatMap((m) => (m.kind === 'parameter-status' ? [[m.name, m.value] as const] : [])));
    assert.match(params.get('server_version') ?? '', /^15\./);
    assert.equal(params.get('application_name'), 'vecgate-scram-test');
    const key = out.messages.find((m) => m.kind === 'backend-key');
    assert.ok(key && key.kind === 'backend-key' && key.secretKey.length === 4);
  }

  it('SCRAM-SHA-256-PLUS over TLS with tls-server-end-point binding', async () => {
    const out = await authenticate({ useTls: true, password: PASSWORD });
    const sasl = out.messages[0];
    assert.ok(sasl?.kind === 'auth' && sasl.type === 'sasl' && sasl.mechanisms.includes('SCRAM-SHA-256-PLUS'));
    assert.equal(out.mechanism, 'SCRAM-SHA-256-PLUS');
    assertReady(out);
  });

  it('SCRAM-SHA-256 over plain TCP (server offers no PLUS), n,, and y,, both accepted', async () => {
    const n = await authenticate({ useTls: false, password: PASSWORD });
    assert.equal(n.mechanism, 'SCRAM-SHA-256');
    assertReady(n);
    // With a binding at hand but no PLUS offered, the client says y,, (the server, without TLS, agrees).
    const y = await authenticate({ useTls: false, password: PASSWORD, bindingOverride: Buffer.alloc(32, 1) });
    assert.equal(y.mechanism, 'SCRAM-SHA-256');
    assertReady(y);
  });

  it('a wrong tls-server-end-point hash is refused by the server (the binding is really checked)', async () => {
    const out = await authenticate({ useTls: true, password: PASSWORD, bindingOverride: Buffer.alloc(32, 7) });
    assert.equal(out.mechanism, 'SCRAM-SHA-256-PLUS');
    const err = out.messages.find((m) => m.kind === 'error');
    assert.ok(err && err.kind === 'error' && err.source === 'server', 'an ErrorResponse');
    assert.equal(out.done, false);
  });

  it('SCRAM-SHA-256 over TLS without a binding (n,,) is accepted', async () => {
    const out = await authenticate({ useTls: true, password: PASSWORD, bind: false });
    assert.equal(out.mechanism, 'SCRAM-SHA-256');
    assertReady(out);
  });

  it('PLUS stripped from the offer (a downgrade): the client says y,, and the server refuses', async () => {
    const out = await authenticate({ useTls: true, password: PASSWORD, offer: (m) => m.filter((x) => x !== 'SCRAM-SHA-256-PLUS') });
    const err = out.messages.find((m) => m.kind === 'error');
    assert.ok(err && err.kind === 'error' && err.source === 'server', 'an ErrorResponse');
    assert.match(err.fields.get('C') ?? '', /^(28000|08P01)$/);
    assert.equal(out.done, false);
  });

  it('a wrong password: ErrorResponse 28P01 from the server, not done', async () => {
    const out = await authenticate({ useTls: true, password: 'wrong' });
    const err = out.messages.find((m) => m.kind === 'error');
    assert.ok(err && err.kind === 'error' && err.source === 'server');
    assert.equal(err.fields.get('C'), '28P01');
    assert.equal(err.fields.get('V'), 'FATAL');
    assert.equal(out.done, false);
  });
});
