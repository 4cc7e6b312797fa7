/**
 * `certgate emqx sync` against a stand-in of EMQX 5.8's REST API that records the calls as EMQX's
 * API defines them (emqx/emqx v5.8.9: apps/emqx_management/src/emqx_mgmt_api_listeners.erl,
 * `PUT /api/v5/listeners/:id` with `id` and `type` in the body; apps/emqx_management/src/
 * emqx_mgmt_api_clients.erl, `GET /api/v5/clients` with `fields`, `limit`, `page` answering
 * `{data, meta: {hasnext}}`, `DELETE /api/v5/clients/:clientid` answering 204 or 404), the API key
 * sent as HTTP Basic (apps/emqx_management/src/emqx_mgmt_auth.erl).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { build, VERIFIER_TOKEN, type TestApp } from '../helpers/app.js';
import { createCa, createDevice, type Credentials } from '../../src/certs/certs-service.js';
import { createChangeFeed } from '../../src/db/change-feed.js';
import { createBrokerSync } from '../../src/cluster/broker-sync.js';
import { createEmqxApi } from '../../src/cluster/emqx-api.js';
import { createSyncRepository } from '../../src/cluster/cluster-repository.js';
import { api, eventually, tenant, trust, updateDefaultProfile, updateTrusted, type Tenant } from '../verifier/fixtures.js';

interface Recorded {
  method: string;
  url: string;
  authorization?: string;
  body?: any;
}

/** A stand-in of EMQX's REST API: live clients with their client_attrs, and every call recorded. */
async function standInEmqx(t: TestContext, pageSize = 2) {
  const calls: Recorded[] = [];
  const clients = new Map<string, Record<string, string>>();
  const state = { refusePuts: 0 };
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d));
    req.on('end', () => {
      const url = new URL(req.url!, 'http://emqx');
      calls.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, ...(raw ? { body: JSON.parse(raw) } : {}) });
      const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (req.method === 'PUT' && state.refusePuts > 0) {
        state.refusePuts--;
        return json(503, { code: 'SERVICE_UNAVAILABLE', message: 'not now' });
      }
      if (req.method === 'PUT' && url.pathname.startsWith('/api/v5/listeners/')) return json(200, { id: decodeURIComponent(url.pathname.split('/').pop()!) });
      if (req.method === 'GET' && url.pathname === '/api/v5/clients') {
        const limit = Number(url.searchParams.get('limit'));
        const page = Number(url.searchParams.get('page'));
        const all = [...clients].map(([clientid, client_attrs]) => ({ clientid, client_attrs }));
        const data = all.slice((page - 1) * Math.min(limit, pageSize), page * Math.min(limit, pageSize));
        return json(200, { data, meta: { page, limit, hasnext: page * Math.min(limit, pageSize) < all.length } });
      }
      if (req.method === 'DELETE' && url.pathname.startsWith('/api/v5/clients/')) {
        const id = decodeURIComponent(url.pathname.slice('/api/v5/clients/'.length));
        if (!clients.delete(id)) return json(404, { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
        return res.writeHead(204).end();
      }
      json(404, { code: 'NOT_FOUND' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls, clients, state };
}

/** A device connects through EMQX: authenticated with the leaf alone; its client_attrs as EMQX keeps them. */
async function connect(s: TestApp, emqx: { clients: Map<string, Record<string, string>> }, tenantId: string, leaf: Credentials, cn: string) {
  const r = await api(s, 'POST', '/verifier/v1/authenticate', `Bearer ${VERIFIER_TOKEN}`, {
    clientId: cn,
    certificateChain: Buffer.from(leaf.certDer).toString('base64'),
    username: tenantId,
    tenantId,
  });
  assert.equal(r.body.result, 'allow', r.text);
  emqx.clients.set(`${tenantId}:${cn}`, r.body.client_attrs);
  return r.body.device.id as string;
}

async function setup(t: TestContext) {
  const s = await build(t, { changeFeed: true });
  const emqx = await standInEmqx(t);
  const tenants: Record<string, { t: Tenant; ca: Credentials; caFp: string }> = {};
  for (const id of ['acme', 'beta']) {
    const tt = await tenant(s, id);
    await updateDefaultProfile(s, tt, { clientIdPolicy: 'MUST_MATCH_DEVICE_NAME' });
    const ca = await createCa({ cn: `${id} CA` });
    tenants[id] = { t: tt, ca, caFp: await trust(s, tt, ca.certPem) };
  }
  const feed = await createChangeFeed(s.databaseUrl);
  const sync = createBrokerSync({
    feed,
    broker: createEmqxApi({ url: emqx.url, apiKey: 'certgate-sync', apiSecret: 'sync-secret', listenerId: 'ssl:default', pageSize: 2 }),
    repository: createSyncRepository(s.prisma),
    batchMs: 50,
  });
  t.after(async () => {
    await sync.close();
    await feed.close();
  });
  return { s, emqx, tenants, sync, feed };
}

const pemCount = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length;
const kicks = (calls: Recorded[]) => calls.filter((c) => c.method === 'DELETE').map((c) => decodeURIComponent(c.url.slice('/api/v5/clients/'.length)));
const pushes = (calls: Recorded[]) => calls.filter((c) => c.method === 'PUT');

test('ok/emqx-sync-bundle: pushed at start and when trusted certificates change, as EMQX\'s listener API takes it', async (t) => {
  const { s, emqx, tenants, sync } = await setup(t);
  await sync.start();
  const [first] = pushes(emqx.calls);
  assert.equal(first!.url, '/api/v5/listeners/ssl%3Adefault');
  assert.equal(first!.authorization, `Basic ${Buffer.from('certgate-sync:sync-secret').toString('base64')}`);
  assert.deepEqual(Object.keys(first!.body).sort(), ['id', 'ssl_options', 'type']);
  assert.equal(first!.body.id, 'ssl:default');
  assert.equal(first!.body.type, 'ssl');
  assert.equal(pemCount(first!.body.ssl_options.cacertfile), 2);
  const bundle = await s.app.inject({ method: 'GET', url: '/verifier/v1/ca-bundle', headers: { authorization: `Bearer ${VERIFIER_TOKEN}` } });
  assert.equal(first!.body.ssl_options.cacertfile, bundle.body, 'the same bytes as GET /verifier/v1/ca-bundle');

  // An upload reaches the listener; a change that leaves the set as it was pushes nothing.
  const extra = await createCa({ cn: 'acme second CA' });
  const fp = await trust(s, tenants.acme!.t, extra.certPem);
  await eventually(async () => pushes(emqx.calls).length === 2, 15_000, 'second push');
  assert.equal(pemCount(pushes(emqx.calls)[1]!.body.ssl_options.cacertfile), 3);
  await updateTrusted(s, tenants.acme!.t, fp, { name: 'renamed' });
  await updateTrusted(s, tenants.acme!.t, fp, { status: 'DISABLED' });
  await eventually(async () => pushes(emqx.calls).length >= 3, 15_000, 'push after disable');
  assert.equal(pemCount(pushes(emqx.calls).at(-1)!.body.ssl_options.cacertfile), 2);
  assert.equal(pushes(emqx.calls).length, 3, 'the rename changed no byte of the bundle');
});

test('ok/emqx-sync-kill-switch: device, serial, trusted certificate and tenant changes kick exactly their sessions', async (t) => {
  const { s, emqx, tenants, sync } = await setup(t);
  await sync.start();
  const { acme, beta } = tenants as Required<typeof tenants>;
  const leaves = {
    a1: await createDevice({ issuer: acme!.ca, cn: 'dev1' }),
    a2: await createDevice({ issuer: acme!.ca, cn: 'dev2', serialNumber: '0ABCDEF012' }),
    a3: await createDevice({ issuer: acme!.ca, cn: 'dev3' }),
    b1: await createDevice({ issuer: beta!.ca, cn: 'dev1' }),
    b2: await createDevice({ issuer: beta!.ca, cn: 'dev2' }),
  };
  const a1 = await connect(s, emqx, 'acme', leaves.a1, 'dev1');
  await connect(s, emqx, 'acme', leaves.a2, 'dev2');
  await connect(s, emqx, 'acme', leaves.a3, 'dev3');
  await connect(s, emqx, 'beta', leaves.b1, 'dev1');
  await connect(s, emqx, 'beta', leaves.b2, 'dev2');
  emqx.clients.set('not-ours', {}); // a client another authenticator let in: never touched
  await s.app.verifier.flush(); // the leaves are recorded as the devices' credentials

  // A disabled device: its session only.
  assert.equal((await api(s, 'PUT', `/tenant/tenants/acme/devices/${a1}`, acme!.t.auth, { status: 'DISABLED' })).status, 200);
  await eventually(async () => kicks(emqx.calls).length === 1, 15_000, 'kick of acme:dev1');
  assert.deepEqual(kicks(emqx.calls), ['acme:dev1']);

  // A revoked serial (written with leading zeros, lowercase): the device holding it.
  const crl = await api(s, 'PUT', '/tenant/tenants/acme/trusted-certificates/settings/crl', acme!.t.auth, {
    crls: [{ serialNumberInHex: '000abcdef012', revocationDate: new Date().toISOString() }],
  });
  assert.equal(crl.status, 200, crl.text);
  await eventually(async () => kicks(emqx.calls).length === 2, 15_000, 'kick of acme:dev2');
  assert.equal(kicks(emqx.calls)[1], 'acme:dev2');

  // beta's CA disabled: beta's devices, not acme's.
  await updateTrusted(s, beta!.t, beta!.caFp, { status: 'DISABLED' });
  await eventually(async () => kicks(emqx.calls).length === 4, 15_000, 'kicks of beta');
  assert.deepEqual(kicks(emqx.calls).slice(2).sort(), ['beta:dev1', 'beta:dev2']);

  // acme suspended: what is left of acme.
  assert.equal((await api(s, 'PUT', '/tenant/tenants/acme', s.management, { status: 'SUSPENDED' })).status, 200);
  await eventually(async () => kicks(emqx.calls).length === 5, 15_000, 'kick of acme:dev3');
  assert.equal(kicks(emqx.calls)[4], 'acme:dev3');
  assert.deepEqual([...emqx.clients.keys()], ['not-ours']);
  // Every listing asked for the two fields it reads, page by page.
  const listing = emqx.calls.find((c) => c.method === 'GET')!;
  assert.match(listing.url, /^\/api\/v5\/clients\?fields=clientid,client_attrs&limit=\d+&page=1$/);
});

test('ok/emqx-sync-resync: after the feed reconnects, sessions of devices no longer active are kicked', async (t) => {
  const { s, emqx, tenants, sync } = await setup(t);
  await sync.start();
  const leaf = await createDevice({ issuer: tenants.acme!.ca, cn: 'dev1' });
  const other = await createDevice({ issuer: tenants.acme!.ca, cn: 'dev2' });
  const id = await connect(s, emqx, 'acme', leaf, 'dev1');
  await connect(s, emqx, 'acme', other, 'dev2');
  // A change whose notification the sync never hears (written behind certgate's back), then the
  // sync's feed connection drops and comes back.
  await s.prisma.device.update({ where: { id }, data: { status: 'DISABLED' } });
  await s.prisma.$executeRawUnsafe(
    // Only this test's database: other test files share the PostgreSQL server.
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()`,
  );
  await eventually(async () => kicks(emqx.calls).length === 1, 20_000, 'kick after resync');
  assert.deepEqual(kicks(emqx.calls), ['acme:dev1']);
  assert.deepEqual([...emqx.clients.keys()], ['acme:dev2']);
});

test('fail/emqx-sync-broker-down: a refused push is retried until EMQX takes it', async (t) => {
  const { emqx, sync, s, tenants } = await setup(t);
  await sync.start();
  const before = pushes(emqx.calls).length;
  // EMQX answers 503 to the next listener update, then recovers.
  emqx.state.refusePuts = 1;
  await trust(s, tenants.acme!.t, (await createCa({ cn: 'late CA' })).certPem);
  await eventually(async () => pushes(emqx.calls).length >= before + 2, 20_000, 'push retried');
  assert.equal(pemCount(pushes(emqx.calls).at(-1)!.body.ssl_options.cacertfile), 3);
});

test('fail/sync-command-environment: `certgate emqx sync` without its settings names each missing one and exits 2', async () => {
  const { main } = await import('../../src/cli/main.js');
  const saved = { ...process.env };
  for (const k of ['EMQX_API_URL', 'EMQX_API_KEY', 'EMQX_API_SECRET', 'VERNEMQ_API_URL', 'VERNEMQ_API_KEY']) delete process.env[k];
  const writes: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => (writes.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    assert.equal(await main(['emqx', 'sync']), 2);
    assert.match(writes.join(''), /EMQX_API_URL: required by certgate emqx sync[\s\S]*EMQX_API_SECRET/);
    assert.equal(await main(['vernemq', 'sync']), 2);
    assert.match(writes.join(''), /VERNEMQ_API_URL: required by certgate vernemq sync/);
    assert.equal(await main(['emqx', 'bogus']), 2);
  } finally {
    process.stderr.write = write;
    process.env = saved;
  }
});
