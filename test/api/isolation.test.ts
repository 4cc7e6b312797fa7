/**
 * Tenant isolation: a user of tenant B gets 404 for every resource of tenant A,
 * the same answer as for a tenant that does not exist, and never A's data. The walk covers every
 * route of the OpenAPI document; a route it cannot fill in fails the test.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build, basic, type TestApp } from '../helpers/app.js';
import { call, snapshotDatabase, type Reply } from '../helpers/requests.js';
import { bodyMaterial, fillPath, operationsOf, seedTenant, validBodyFor, type BodyMaterial, type Operation, type SeededTenant } from '../helpers/routes.js';

/**
 * Routes without a tenant in their path, and what any tenant user gets from them. A new route
 * without `{tenantId}` must be added here, with the reason it cannot leak another tenant's data.
 */
const ROUTES_WITHOUT_TENANT: Record<string, { status: number; why: string }> = {
  'GET /health': { status: 200, why: 'process liveness, no data' },
  'GET /ready': { status: 200, why: 'database readiness, no data' },
  'GET /metrics': { status: 200, why: 'Prometheus metrics labelled by route template, never by id' },
  'POST /tenant/tenants': { status: 403, why: 'the management tenant only' },
  'GET /tenant/tenants': { status: 403, why: 'the management tenant only' },
  'POST /verifier/v1/authenticate': { status: 401, why: 'the verifier bearer token only; Basic users are refused' },
  'POST /verifier/v1/authorize': { status: 401, why: 'the verifier token only (a Basic password must be the token)' },
  'POST /verifier/v1/vernemq': { status: 401, why: 'the verifier token only (a Basic password must be the token)' },
  'GET /verifier/v1/ca-bundle': { status: 401, why: 'the verifier token only (a Basic password must be the token)' },
  'GET /verifier/v1/token': { status: 401, why: 'the verifier token only; answers whether it is accepted, no data' },
};

async function send(s: TestApp, op: Operation, url: string, auth: string, m: BodyMaterial): Promise<Reply & { sent: string }> {
  const body = validBodyFor(op, m);
  const payload = body?.payload;
  const reply = await call(
    s,
    op.method,
    url,
    // Always the tenant user's own Basic credentials, also where the route wants another kind.
    auth,
    payload === undefined ? undefined : Buffer.isBuffer(payload) || typeof payload === 'string' ? payload : JSON.stringify(payload),
    body ? { 'content-type': body.contentType } : {},
  );
  return { ...reply, sent: `${url} ${payload === undefined ? '' : Buffer.isBuffer(payload) ? '' : JSON.stringify(payload)}` };
}

/** None of the tenant's own strings may appear in an answer, unless the caller sent them. */
function assertNoLeak(owner: SeededTenant, reply: { text: string; sent: string }, what: string): void {
  for (const secret of owner.secrets) {
    if (reply.sent.includes(secret) || reply.sent.includes(encodeURIComponent(secret))) continue;
    assert.ok(!reply.text.includes(secret), `${what}: the answer contains "${secret}" of tenant ${owner.tenantId}: ${reply.text.slice(0, 300)}`);
  }
}

test('every route answers tenant B\'s users 404 for tenant A\'s resources, as for a tenant that does not exist', async (t) => {
  const s = await build(t);
  const a = await seedTenant(s, 'tenant-a');
  const b = await seedTenant(s, 'tenant-b');
  for (const [userName, role] of [['b-reader', 'ROLE_READONLY'], ['b-devman', 'ROLE_DEVICE_MANAGER']] as const) {
    assert.equal((await call(s, 'POST', '/user/tenant-b/users', b.admin, { userName, password: `${userName}-pass`, roles: [role] })).status, 201);
  }
  const actors: Array<[string, string]> = [
    ['B admin', b.admin],
    ['B readonly', basic('tenant-b/b-reader', 'b-reader-pass')],
    ['B device manager', basic('tenant-b/b-devman', 'b-devman-pass')],
  ];
  const m = await bodyMaterial('isolation');
  const { operations } = await operationsOf(s.app);
  assert.ok(operations.length >= 30, `the document lists every route (${operations.length})`);

  // The values really name A's resources: A's admin reads every one of them.
  for (const op of operations.filter((o) => o.method === 'GET')) {
    if (!op.pathParams.includes('tenantId')) continue;
    const res = await call(s, 'GET', fillPath(op, a.params), a.admin);
    assert.equal(res.status, 200, `control: A's admin reads ${op.operationId}: ${res.text}`);
  }
  const users = await call(s, 'GET', '/user/tenant-a/users', a.admin);
  assert.ok(users.body.users.some((u: { userName: string }) => u.userName === a.params.userName));
  const revoked = await call(s, 'GET', '/tenant/tenants/tenant-a/trusted-certificates/settings/crl', a.admin);
  assert.ok(revoked.body.crls.some((c: { serialNumberInHex: string }) => c.serialNumberInHex === a.params.serialNumberInHex));
  assert.equal((await call(s, 'GET', '/tenant/tenants/tenant-a/auth-events', a.admin)).body.events.length, 1, 'A has an auth event');

  const before = await snapshotDatabase(s.prisma);
  let walked = 0;
  for (const op of operations) {
    const key = `${op.method} ${op.path}`;
    if (!op.pathParams.includes('tenantId')) {
      const expected = ROUTES_WITHOUT_TENANT[key];
      assert.ok(expected, `${key} (${op.operationId}) has no {tenantId}; add it to ROUTES_WITHOUT_TENANT with why it cannot leak`);
      for (const [who, auth] of actors) {
        const res = await send(s, op, fillPath(op, {}), auth, m);
        assert.equal(res.status, expected.status, `${who}: ${key}: ${res.text.slice(0, 200)}`);
        assertNoLeak(a, res, `${who}: ${key}`);
      }
      walked++;
      continue;
    }

    for (const [who, auth] of actors) {
      // A's tenant in the path, A's resources in the other parameters.
      const url = fillPath(op, a.params);
      const res = await send(s, op, url, auth, m);
      assert.equal(res.status, 404, `${who}: ${op.method} ${url} (${op.operationId}) answered ${res.status}: ${res.text.slice(0, 300)}`);
      assertNoLeak(a, res, `${who}: ${op.method} ${url}`);

      // Indistinguishable from a tenant that does not exist.
      const ghost = await send(s, op, fillPath(op, { ...a.params, tenantId: 'no-such-tenant' }), auth, m);
      assert.equal(ghost.status, res.status, `${who}: ${op.operationId}: an absent tenant answers the same`);
      assert.equal(ghost.body.error, res.body.error, `${who}: ${op.operationId}: with the same error code`);

      // B's own tenant in the path, A's resources in the other parameters.
      if (op.pathParams.length > 1) {
        const own = fillPath(op, { ...a.params, tenantId: 'tenant-b' });
        const mixed = await send(s, op, own, auth, m);
        const roleLimited = mixed.status === 403 && op.method !== 'GET' && who !== 'B admin';
        assert.ok(
          mixed.status === 404 || roleLimited,
          `${who}: ${op.method} ${own} (${op.operationId}) reaches A's resource through B's tenant: ${mixed.status} ${mixed.text.slice(0, 300)}`,
        );
        assertNoLeak(a, mixed, `${who}: ${op.method} ${own}`);
      }
    }
    walked++;
  }
  assert.equal(walked, operations.length);
  assert.deepEqual(await snapshotDatabase(s.prisma), before, 'tenant B changed nothing anywhere');

  // And A still sees all of it.
  assert.equal((await call(s, 'GET', `/tenant/tenants/tenant-a/devices/${a.params.deviceId}`, a.admin)).status, 200);
  assert.equal((await call(s, 'GET', '/tenant/tenants/tenant-a', a.admin)).body.company, a.company);
});

test('collections and filters of one tenant never list another tenant\'s items', async (t) => {
  const s = await build(t);
  const a = await seedTenant(s, 'tenant-a');
  const b = await seedTenant(s, 'tenant-b');
  const { operations } = await operationsOf(s.app);
  const collections = operations.filter((o) => o.method === 'GET' && o.pathParams.length === 1 && o.pathParams[0] === 'tenantId');
  assert.ok(collections.length >= 6);
  for (const op of collections) {
    const url = fillPath(op, b.params);
    const res = await call(s, 'GET', `${url}${url.includes('?') ? '&' : '?'}pageSize=2000`, b.admin);
    assert.equal(res.status, 200, `${op.operationId}: ${res.text}`);
    assertNoLeak(a, { text: res.text, sent: url }, `B lists ${op.operationId}`);
  }
  // Filters with A's values find nothing in B.
  for (const q of [`name=${encodeURIComponent(a.secrets[4]!)}`, `credentialsId=${a.params.credentialsId}`]) {
    const res = await call(s, 'GET', `/tenant/tenants/tenant-b/devices?${q}`, b.admin);
    assert.deepEqual(res.body.devices, [], q);
  }
  const events = await call(s, 'GET', `/tenant/tenants/tenant-b/auth-events?deviceName=${encodeURIComponent(a.secrets[4]!)}`, b.admin);
  assert.deepEqual(events.body.events, []);
  // The management tenant reads both.
  assert.equal((await call(s, 'GET', `/tenant/tenants/tenant-a/devices/${a.params.deviceId}`, s.management)).status, 200);
  assert.equal((await call(s, 'GET', `/tenant/tenants/tenant-b/devices/${b.params.deviceId}`, s.management)).status, 200);
});
