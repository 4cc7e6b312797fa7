/**
 * The verifier fails closed: a store it cannot reach is a 503 (never an allow, never a 500), and
 * malformed input is a 400 or a deny reason.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { buildApp } from '../../src/app.js';
import { createChangeFeed, createChangePublisher } from '../../src/db/change-feed.js';
import { createPrismaClient } from '../../src/db/prisma.js';
import { sha256Hex } from '../../src/lib/passwords.js';
import { bootstrapManagement } from '../../src/modules/tenants/management-bootstrap.js';
import { createMetrics } from '../../src/plugins/metrics.js';
import { createCa, createDevice, createIntermediate } from '../../src/certs/certs-service.js';
import { build, MANAGEMENT_PASSWORD, VERIFIER_TOKEN } from '../helpers/app.js';
import { createTestDatabase } from '../helpers/database.js';
import { api, authenticate, eventually, expectAllow, expectDeny, opensslCrl, sleep, tenant, trust, updateDefaultProfile, trustingTenant } from './fixtures.js';

function expectUnavailable(res: { status: number; body: any; text: string }, what: string): void {
  assert.equal(res.status, 503, `${what}: ${res.text}`);
  assert.equal(res.body.error, 'service/Unavailable', what);
  assert.equal(typeof res.body.message, 'string');
  assert.equal(typeof res.body.info, 'string');
  assert.doesNotMatch(res.text, /allow/, what);
}

/** A TCP proxy in front of PostgreSQL that the test can cut, as a network partition or a stopped server would. */
async function proxy(t: TestContext, target: URL): Promise<{ url: string; cut(): Promise<void>; restore(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  const listen = (port: number) => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return {
    url: url.toString(),
    async cut() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
    restore: () => listen(port),
  };
}

/** The app as `certgate api` builds it, with its store and its change feed at the given addresses. */
async function appOn(t: TestContext, urls: { store: string; feed: string }) {
  const prisma = createPrismaClient(urls.store);
  const feed = await createChangeFeed(urls.feed);
  await bootstrapManagement(prisma, { adminPassword: MANAGEMENT_PASSWORD, verifierToken: VERIFIER_TOKEN });
  const app = await buildApp({
    prisma,
    publisher: createChangePublisher(prisma),
    changeFeed: feed,
    metrics: createMetrics(),
    readiness: async () => {},
    verifierTokenSha256: sha256Hex(VERIFIER_TOKEN),
    logger: false,
  });
  t.after(async () => {
    await app.close();
    await feed.close();
    await prisma.$disconnect();
  });
  const management = `Basic ${Buffer.from(`management/admin:${MANAGEMENT_PASSWORD}`).toString('base64')}`;
  return { app, prisma, databaseUrl: urls.store, published: [], management, changeFeed: feed };
}

test('a store that cannot be reached from the start: 503 with the error shape, for the verifier and the API', async (t) => {
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', () => resolve()));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));

  const prisma = createPrismaClient(`postgresql://certgate:nothing@127.0.0.1:${port}/certgate`);
  const app = await buildApp({
    prisma,
    publisher: createChangePublisher(prisma),
    metrics: createMetrics(),
    readiness: async () => {
      throw new Error('database unreachable');
    },
    verifierTokenSha256: sha256Hex(VERIFIER_TOKEN),
    logger: false,
  });
  t.after(async () => {
    await app.close();
    await prisma.$disconnect();
  });
  const ca = await createCa();
  const leaf = await createDevice({ issuer: ca, cn: 'dev-1' });
  const s = { app };
  expectUnavailable(await authenticate(s, { clientId: 'dev-1', certificateChain: [leaf.certPem] }), 'verifier');
  expectUnavailable(await authenticate(s, { clientId: 'dev-1', certificateChain: [leaf.certPem, ca.certPem] }), 'verifier, again');
  const explain = await api(s, 'POST', '/tenant/tenants/acme/trusted-certificates/verify-cert-chain', `Basic ${Buffer.from('acme/admin:x').toString('base64')}`, { chain: leaf.certPem });
  expectUnavailable(explain, 'explain');
  const events = await api(s, 'GET', '/tenant/tenants/acme/auth-events', `Basic ${Buffer.from(`management/admin:${MANAGEMENT_PASSWORD}`).toString('base64')}`);
  expectUnavailable(events, 'auth events');
  // Malformed input is still told apart without the store.
  const bad = await authenticate(s, { clientId: 'x', certificateChain: ['not a certificate'] });
  assert.equal(bad.status, 200, bad.text);
  assert.equal(bad.body.reason, 'MALFORMED_CERTIFICATE');
});

test('the store goes away under a warm verifier: 503 for known and new leaves alike, never a cached allow; back when it returns', async (t) => {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  const link = await proxy(t, new URL(db.url));
  const s = await appOn(t, { store: link.url, feed: link.url });
  const { acme, ca } = await trustingTenant(s);
  const known = await createDevice({ issuer: ca, cn: 'known' });
  const knownReq = { clientId: 'known', certificateChain: [known.certPem] };
  await expectAllow(s, knownReq);
  await expectAllow(s, knownReq);

  await link.cut();
  const fresh = await createDevice({ issuer: ca, cn: 'fresh' });
  expectUnavailable(await authenticate(s, { clientId: 'fresh', certificateChain: [fresh.certPem] }), 'new leaf');
  // While the store is gone no change can be seen, so what was cached is no longer trusted once the
  // lost connection is noticed (a request racing that moment is as if it came a moment earlier).
  await eventually(async () => (await authenticate(s, knownReq)).status === 503, 2000, 'the known leaf is refused');
  for (let i = 0; i < 3; i++) expectUnavailable(await authenticate(s, knownReq), 'known leaf');
  expectUnavailable(await api(s, 'GET', '/tenant/tenants/acme/auth-events', acme.auth), 'auth events');

  await link.restore();
  await eventually(async () => (await authenticate(s, knownReq)).status === 200, 15_000, 'the verifier answers again');
  await expectAllow(s, knownReq);
  await expectAllow(s, { clientId: 'fresh', certificateChain: [fresh.certPem] });
});

test('malformed requests: 400 for the request shape, a deny reason for the certificates, never 500', async (t) => {
  const s = await build(t);
  const { acme, ca: root } = await trustingTenant(s);
  const leaf = await createDevice({ issuer: root, cn: 'dev-1' });
  const der = Buffer.from(leaf.certDer);
  const b64 = (buf: Buffer) => buf.toString('base64');

  // 11 certificates: a real chain of ten intermediates under the trusted root.
  let issuer = root;
  const intermediates = [];
  for (let i = 0; i < 10; i++) {
    issuer = await createIntermediate({ issuer, cn: `level-${i}` });
    intermediates.push(issuer);
  }
  const deep = await createDevice({ issuer, cn: 'deep' });

  const shapes: Array<[string, unknown]> = [
    ['fail/no-body', undefined],
    ['fail/empty-object', {}],
    ['fail/no-client-id', { certificateChain: [leaf.certPem] }],
    ['fail/no-chain', { clientId: 'dev-1' }],
    ['fail/empty-chain', { clientId: 'dev-1', certificateChain: [] }],
    ['fail/chain-a-number', { clientId: 'dev-1', certificateChain: 42 }],
    ['fail/client-id-number', { clientId: 42, certificateChain: [leaf.certPem] }],
    ['fail/chain-of-numbers', { clientId: 'dev-1', certificateChain: [1, 2] }],
    ['fail/empty-string-certificate', { clientId: 'dev-1', certificateChain: [''] }],
    ['fail/username-object', { clientId: 'dev-1', certificateChain: [leaf.certPem], username: { id: 'acme' } }],
    ['fail/65-certificates', { clientId: 'dev-1', certificateChain: Array(65).fill(b64(der)) }],
  ];
  for (const [name, body] of shapes) {
    const res = await authenticate(s, body as never);
    assert.equal(res.status, 400, `${name}: ${res.text}`);
    assert.equal(typeof res.body.error, 'string', name);
  }
  const notJson = await s.app.inject({
    method: 'POST',
    url: '/verifier/v1/authenticate',
    headers: { authorization: `Bearer ${VERIFIER_TOKEN}`, 'content-type': 'application/json' },
    payload: '{"clientId": "dev-1", "certificateChain": [',
  });
  assert.equal(notJson.statusCode, 400, notJson.body);

  const crlPem = (await opensslCrl(t, root, [leaf.serialNumberHex])).toString('utf8');
  const crlDer = await opensslCrl(t, root, [leaf.serialNumberHex], 'DER');
  const deny: Array<[string, string[], string]> = [
    ['deny/garbage-base64', ['bm90IGEgY2VydGlmaWNhdGU='], 'MALFORMED_CERTIFICATE'],
    ['deny/not-base64', ['%%% not base64 %%%'], 'MALFORMED_CERTIFICATE'],
    ['deny/truncated-der', [b64(der.subarray(0, der.length - 20))], 'MALFORMED_CERTIFICATE'],
    ['deny/truncated-pem', [leaf.certPem.slice(0, leaf.certPem.length / 2)], 'MALFORMED_CERTIFICATE'],
    ['deny/trailing-bytes', [b64(Buffer.concat([der, Buffer.from([0, 0])]))], 'MALFORMED_CERTIFICATE'],
    ['deny/crl-instead-of-certificate', [crlPem], 'MALFORMED_CERTIFICATE'],
    ['deny/crl-der-instead-of-certificate', [b64(crlDer)], 'MALFORMED_CERTIFICATE'],
    ['deny/private-key-instead-of-certificate', [leaf.keyPem], 'MALFORMED_CERTIFICATE'],
    ['deny/two-certificates-in-one-entry', [`${leaf.certPem}${root.certPem}`], 'MALFORMED_CERTIFICATE'],
    ['deny/good-leaf-garbage-intermediate', [leaf.certPem, 'AAAA'], 'MALFORMED_CERTIFICATE'],
    ['deny/11-certificates', [deep.certPem, ...intermediates.reverse().map((c) => c.certPem)], 'CHAIN_TOO_LONG'],
    ['deny/11-copies', Array(11).fill(leaf.certPem), 'CHAIN_TOO_LONG'],
  ];
  for (const [name, chain, reason] of deny) {
    await expectDeny(s, { clientId: 'dev-1', certificateChain: chain }, reason, name);
  }
  await expectAllow(s, { clientId: 'dev-1', certificateChain: [leaf.certPem] }, 'a good request still works');

  // The bearer token.
  const noToken = await api(s, 'POST', '/verifier/v1/authenticate', undefined, { clientId: 'dev-1', certificateChain: [leaf.certPem] });
  assert.equal(noToken.status, 401, noToken.text);
  const wrong = await api(s, 'POST', '/verifier/v1/authenticate', 'Bearer not-the-token', { clientId: 'dev-1', certificateChain: [leaf.certPem] });
  assert.equal(wrong.status, 401, wrong.text);
  const basicAuth = await api(s, 'POST', '/verifier/v1/authenticate', acme.auth, { clientId: 'dev-1', certificateChain: [leaf.certPem] });
  assert.equal(basicAuth.status, 401, 'a tenant login is not the verifier token');
});

test('only the change feed goes away: no decision is reused meanwhile, so a change made by another process is seen at once', async (t) => {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  const feedLink = await proxy(t, new URL(db.url));
  const a = await appOn(t, { store: db.url, feed: db.url });
  const b = await appOn(t, { store: db.url, feed: feedLink.url });
  const acme = await tenant(a, 'acme');
  await updateDefaultProfile(a, acme, { clientIdPolicy: 'ANY' });
  const ca = await createCa();
  const fingerprint = await trust(a, acme, ca.certPem);
  const leaf = await createDevice({ issuer: ca, cn: 'dev-1' });
  const req = { clientId: 'dev-1', certificateChain: [leaf.certPem] };
  await expectAllow(b, req);
  await expectAllow(b, req);

  await feedLink.cut();
  // B cannot hear of changes now; A disables the CA. B still answers (its store is fine) and must see it.
  await sleep(200);
  assert.equal((await api(a, 'PUT', `/tenant/tenants/acme/trusted-certificates/${fingerprint}`, acme.auth, { status: 'DISABLED' })).status, 200);
  await expectDeny(b, req, 'TRUSTED_CERTIFICATE_DISABLED', 'seen without the feed');
  assert.equal((await api(a, 'PUT', `/tenant/tenants/acme/trusted-certificates/${fingerprint}`, acme.auth, { status: 'ENABLED' })).status, 200);
  await expectAllow(b, req, 'seen again without the feed');

  // The feed comes back (the reconnect is retried with backoff): B hears A's changes again.
  await feedLink.restore();
  let heard = false;
  b.changeFeed.subscribe(() => {
    heard = true;
  });
  await eventually(
    async () => {
      await api(a, 'PUT', `/tenant/tenants/acme/trusted-certificates/${fingerprint}`, acme.auth, { name: `renamed ${Date.now()}` });
      await sleep(100);
      return heard;
    },
    15_000,
    'B\'s change feed reconnects',
  );
  await expectAllow(b, req);
  await expectAllow(b, req);
  assert.equal((await api(a, 'PUT', `/tenant/tenants/acme/trusted-certificates/${fingerprint}`, acme.auth, { status: 'DISABLED' })).status, 200);
  await eventually(async () => (await authenticate(b, req)).body.reason === 'TRUSTED_CERTIFICATE_DISABLED', 2000, 'B hears of the change through the feed again');
});
