import assert from 'node:assert/strict';
import { test } from 'node:test';
import { basic, build, createTenant, MANAGEMENT_PASSWORD } from '../helpers/app.js';
import { call, pathOf, tenantRowCounts } from '../helpers/requests.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

const tenantBody = (id?: string) => ({
  ...(id ? { id } : {}),
  company: 'Acme Inc.',
  domain: 'acme.example.com',
  adminName: 'admin',
  adminPass: 'acme-admin-pass',
});

test('tenants: create answers 201 with the representation; ids given, generated or refused', async (t) => {
  const s = await build(t);

  const created = await call(s, 'POST', '/tenant/tenants', s.management, { ...tenantBody('acme'), adminEmail: 'ops@acme.example.com' });
  assert.equal(created.status, 201);
  assert.deepEqual(Object.keys(created.body).sort(), ['company', 'creationTime', 'domain', 'id', 'self', 'status']);
  assert.equal(created.body.id, 'acme');
  assert.equal(created.body.company, 'Acme Inc.');
  assert.equal(created.body.domain, 'acme.example.com');
  assert.equal(created.body.status, 'ACTIVE');
  assert.match(created.body.creationTime, ISO);
  assert.equal(pathOf(created.body.self), '/tenant/tenants/acme');
  assert.ok(!JSON.stringify(created.body).includes('acme-admin-pass'), 'the admin password is never echoed');

  const generated = await call(s, 'POST', '/tenant/tenants', s.management, tenantBody());
  assert.equal(generated.status, 201);
  assert.match(generated.body.id, /^t[0-9a-f]{8}$/);

  // The first administrator works at once.
  const admin = basic(`${generated.body.id}/admin`, 'acme-admin-pass');
  assert.equal((await call(s, 'GET', `/tenant/tenants/${generated.body.id}`, admin)).status, 200);

  for (const id of ['a', 'A-tenant', '1abc', 'ab_c', 'ab.c', '-ab', 'a'.repeat(33), 'tenant one']) {
    const res = await call(s, 'POST', '/tenant/tenants', s.management, tenantBody(id));
    assert.equal(res.status, 400, `id ${JSON.stringify(id)} is refused`);
    assert.equal(res.body.error, 'validation/InvalidRequest');
    assert.match(res.body.message, /id/);
  }
  for (const id of ['ab', 'a1', 'x-y-z', 'a'.repeat(32)]) {
    assert.equal((await call(s, 'POST', '/tenant/tenants', s.management, tenantBody(id))).status, 201, `id ${id} is accepted`);
  }

  const duplicate = await call(s, 'POST', '/tenant/tenants', s.management, tenantBody('acme'));
  assert.equal(duplicate.status, 409);
  assert.equal(duplicate.body.error, 'tenant/Duplicate');
  assert.match(duplicate.body.message, /acme/);
  const management = await call(s, 'POST', '/tenant/tenants', s.management, tenantBody('management'));
  assert.equal(management.status, 409, 'the management tenant id is taken');

  for (const missing of ['company', 'domain', 'adminName', 'adminPass'] as const) {
    const body: Record<string, unknown> = tenantBody('missing-field');
    delete body[missing];
    const res = await call(s, 'POST', '/tenant/tenants', s.management, body);
    assert.equal(res.status, 400, `${missing} is required`);
    assert.match(res.body.message, new RegExp(missing));
  }
  assert.equal((await call(s, 'POST', '/tenant/tenants', s.management, { ...tenantBody('short-pass'), adminPass: 'short' })).status, 400);
  assert.equal((await call(s, 'POST', '/tenant/tenants', s.management, { ...tenantBody('bad-mail'), adminEmail: 'not-an-email' })).status, 400);
});

test('tenants: only the management tenant creates, lists and deletes them', async (t) => {
  const s = await build(t);
  const acme = await createTenant(s, 'acme');
  await createTenant(s, 'globex');

  assert.equal((await call(s, 'POST', '/tenant/tenants', acme, tenantBody('other'))).status, 403);
  const list = await call(s, 'GET', '/tenant/tenants', acme);
  assert.equal(list.status, 403);
  assert.equal(list.body.error, 'security/Forbidden');
  assert.equal((await call(s, 'DELETE', '/tenant/tenants/acme', acme)).status, 403, 'a tenant admin cannot delete its own tenant');
  assert.equal((await call(s, 'DELETE', '/tenant/tenants/globex', acme)).status, 404, 'nor see another tenant');
  assert.equal((await call(s, 'GET', '/tenant/tenants/globex', acme)).status, 404);

  const all = await call(s, 'GET', '/tenant/tenants?pageSize=100', s.management);
  assert.equal(all.status, 200);
  assert.deepEqual(all.body.tenants.map((x: { id: string }) => x.id).sort(), ['acme', 'globex', 'management']);
  // The management tenant may read every tenant.
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', s.management)).body.id, 'acme');
  assert.equal((await call(s, 'GET', '/tenant/tenants/nope', s.management)).status, 404);
  assert.equal((await call(s, 'DELETE', '/tenant/tenants/nope', s.management)).status, 404);

  assert.equal((await call(s, 'DELETE', '/tenant/tenants/management', s.management)).status, 403, 'the management tenant stays');
});

test('tenants: PUT changes company and domain; only management suspends, and suspension locks the tenant out', async (t) => {
  const s = await build(t);
  const acme = await createTenant(s, 'acme');

  const renamed = await call(s, 'PUT', '/tenant/tenants/acme', acme, { company: 'Acme GmbH', domain: 'acme.example.de' });
  assert.equal(renamed.status, 200);
  assert.equal(renamed.body.company, 'Acme GmbH');
  assert.equal(renamed.body.domain, 'acme.example.de');
  assert.equal(renamed.body.status, 'ACTIVE');

  const selfSuspend = await call(s, 'PUT', '/tenant/tenants/acme', acme, { status: 'SUSPENDED' });
  assert.equal(selfSuspend.status, 403);
  assert.equal(selfSuspend.body.error, 'security/Forbidden');
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', acme)).body.status, 'ACTIVE');

  assert.equal((await call(s, 'PUT', '/tenant/tenants/acme', acme, { status: 'PAUSED' })).status, 400);
  assert.equal((await call(s, 'PUT', '/tenant/tenants/acme', acme, { id: 'other' })).status, 400, 'the id cannot change');

  s.published.length = 0;
  const suspended = await call(s, 'PUT', '/tenant/tenants/acme', s.management, { status: 'SUSPENDED' });
  assert.equal(suspended.status, 200);
  assert.equal(suspended.body.status, 'SUSPENDED');
  assert.ok(
    s.published.some((e) => e.type === 'session-drop' && e.change.kind === 'tenant' && e.change.tenantId === 'acme'),
    'suspending closes the tenant\'s MQTT sessions',
  );

  const locked = await call(s, 'GET', '/tenant/tenants/acme', acme);
  assert.equal(locked.status, 401);
  assert.equal(locked.body.error, 'security/TenantSuspended');
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', s.management)).body.status, 'SUSPENDED');

  assert.equal((await call(s, 'PUT', '/tenant/tenants/management', s.management, { status: 'SUSPENDED' })).status, 403);

  const active = await call(s, 'PUT', '/tenant/tenants/acme', s.management, { status: 'ACTIVE' });
  assert.equal(active.body.status, 'ACTIVE');
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', acme)).status, 200);
  assert.equal((await call(s, 'PUT', '/tenant/tenants/nope', s.management, { company: 'x' })).status, 404);
});

test('tenants: DELETE removes everything the tenant owns and nothing of others', async (t) => {
  const s = await build(t);
  const acme = await createTenant(s, 'acme');
  const globex = await createTenant(s, 'globex');
  for (const auth of [acme, globex]) {
    const tenant = auth === acme ? 'acme' : 'globex';
    assert.equal((await call(s, 'POST', `/user/${tenant}/users`, auth, { userName: 'reader', password: 'reader-pass-1', roles: ['ROLE_READONLY'] })).status, 201);
    const profile = await call(s, 'POST', `/tenant/tenants/${tenant}/device-profiles`, auth, { name: 'sensors' });
    assert.equal(profile.status, 201);
    assert.equal((await call(s, 'POST', `/tenant/tenants/${tenant}/devices`, auth, { name: 'dev-1', deviceProfileId: profile.body.id })).status, 201);
  }
  const before = await tenantRowCounts(s.prisma, 'acme');
  assert.equal(before.Tenant, 1);
  assert.equal(before.User, 2);
  assert.equal(before.DeviceProfile, 2);
  assert.equal(before.Device, 1);
  const globexBefore = await tenantRowCounts(s.prisma, 'globex');

  s.published.length = 0;
  const res = await call(s, 'DELETE', '/tenant/tenants/acme', s.management);
  assert.equal(res.status, 204);
  assert.equal(res.text, '');
  assert.ok(s.published.some((e) => e.type === 'session-drop' && e.change.kind === 'tenant' && e.change.tenantId === 'acme'));

  const after = await tenantRowCounts(s.prisma, 'acme');
  for (const [table, n] of Object.entries(after)) assert.equal(n, 0, `${table} keeps no row of the deleted tenant`);
  assert.deepEqual(await tenantRowCounts(s.prisma, 'globex'), globexBefore);
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', s.management)).status, 404);
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', acme)).status, 401, 'its users are gone');
  assert.equal((await call(s, 'DELETE', '/tenant/tenants/acme', s.management)).status, 404);
  // The id is free again.
  assert.equal((await call(s, 'POST', '/tenant/tenants', s.management, tenantBody('acme'))).status, 201);
});

test('users: tenant admins create, list and delete users; nobody else may', async (t) => {
  const s = await build(t);
  const acme = await createTenant(s, 'acme');

  const created = await call(s, 'POST', '/user/acme/users', acme, {
    userName: 'alice',
    password: 'alice-password',
    roles: ['ROLE_DEVICE_MANAGER', 'ROLE_DEVICE_MANAGER'],
    email: 'alice@acme.example.com',
  });
  assert.equal(created.status, 201);
  assert.deepEqual(Object.keys(created.body).sort(), ['creationTime', 'email', 'id', 'roles', 'self', 'userName']);
  assert.equal(created.body.userName, 'alice');
  assert.deepEqual(created.body.roles, ['ROLE_DEVICE_MANAGER'], 'repeated roles are stored once');
  assert.equal(pathOf(created.body.self), '/user/acme/users/alice');
  assert.ok(!created.text.includes('alice-password') && !created.text.includes('scrypt'), 'no password or hash in responses');

  const dup = await call(s, 'POST', '/user/acme/users', acme, { userName: 'alice', password: 'another-pass', roles: ['ROLE_READONLY'] });
  assert.equal(dup.status, 409);
  assert.equal(dup.body.error, 'user/Duplicate');

  const mgmtRole = await call(s, 'POST', '/user/acme/users', acme, { userName: 'boss', password: 'boss-password', roles: ['ROLE_TENANT_MANAGEMENT'] });
  assert.equal(mgmtRole.status, 422, 'ROLE_TENANT_MANAGEMENT exists only in the management tenant');
  assert.equal(mgmtRole.body.error, 'user/InvalidRole');

  for (const [what, body] of [
    ['a slash in the name', { userName: 'a/b', password: 'password-1', roles: ['ROLE_READONLY'] }],
    ['a colon in the name', { userName: 'a:b', password: 'password-1', roles: ['ROLE_READONLY'] }],
    ['a short password', { userName: 'bob', password: 'short', roles: ['ROLE_READONLY'] }],
    ['no roles', { userName: 'bob', password: 'password-1', roles: [] }],
    ['an unknown role', { userName: 'bob', password: 'password-1', roles: ['ROLE_GOD'] }],
    ['no password', { userName: 'bob', roles: ['ROLE_READONLY'] }],
  ] as const) {
    assert.equal((await call(s, 'POST', '/user/acme/users', acme, body)).status, 400, what);
  }

  const alice = basic('acme/alice', 'alice-password');
  assert.equal((await call(s, 'GET', '/user/acme/users', alice)).status, 403, 'device managers do not see users');
  assert.equal((await call(s, 'POST', '/user/acme/users', alice, { userName: 'eve', password: 'eve-password', roles: ['ROLE_TENANT_ADMIN'] })).status, 403);
  assert.equal((await call(s, 'DELETE', '/user/acme/users/admin', alice)).status, 403);

  const list = await call(s, 'GET', '/user/acme/users', acme);
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.users.map((u: { userName: string }) => u.userName), ['admin', 'alice']);
  assert.ok(!list.text.includes('passwordHash') && !list.text.includes('scrypt'));

  const selfDelete = await call(s, 'DELETE', '/user/acme/users/admin', acme);
  assert.equal(selfDelete.status, 422);
  assert.equal(selfDelete.body.error, 'user/SelfDelete');
  assert.equal((await call(s, 'DELETE', '/user/acme/users/nobody', acme)).status, 404);

  const deleted = await call(s, 'DELETE', '/user/acme/users/alice', acme);
  assert.equal(deleted.status, 204);
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', alice)).status, 401, 'a deleted user cannot log in');

  // The management admin reads other tenants' users but does not change them.
  assert.equal((await call(s, 'GET', '/user/acme/users', s.management)).status, 200);
  assert.equal((await call(s, 'POST', '/user/acme/users', s.management, { userName: 'm', password: 'password-1', roles: ['ROLE_READONLY'] })).status, 403);
});

test('roles: READONLY reads only; DEVICE_MANAGER writes devices and profiles but only reads trusted certificates', async (t) => {
  const s = await build(t);
  const acme = await createTenant(s, 'acme');
  for (const [userName, role] of [['reader', 'ROLE_READONLY'], ['devman', 'ROLE_DEVICE_MANAGER']] as const) {
    assert.equal((await call(s, 'POST', '/user/acme/users', acme, { userName, password: `${userName}-password`, roles: [role] })).status, 201);
  }
  const reader = basic('acme/reader', 'reader-password');
  const devman = basic('acme/devman', 'devman-password');
  const device = await call(s, 'POST', '/tenant/tenants/acme/devices', acme, { name: 'existing' });
  const profiles = await call(s, 'GET', '/tenant/tenants/acme/device-profiles', acme);
  const defaultProfile = profiles.body.deviceProfiles[0].id;
  const certBody = { status: 'ENABLED', certInPemFormat: 'MIIB' };

  // READONLY: every GET of its tenant, no write.
  for (const url of [
    '/tenant/tenants/acme',
    '/tenant/tenants/acme/devices',
    `/tenant/tenants/acme/devices/${device.body.id}`,
    `/tenant/tenants/acme/devices/${device.body.id}/credentials`,
    '/tenant/tenants/acme/device-profiles',
    `/tenant/tenants/acme/device-profiles/${defaultProfile}`,
    '/tenant/tenants/acme/trusted-certificates',
  ]) {
    assert.equal((await call(s, 'GET', url, reader)).status, 200, `READONLY reads ${url}`);
  }
  const writes: Array<[string, string, unknown]> = [
    ['POST', '/tenant/tenants/acme/devices', { name: 'new' }],
    ['PUT', `/tenant/tenants/acme/devices/${device.body.id}`, { status: 'DISABLED' }],
    ['DELETE', `/tenant/tenants/acme/devices/${device.body.id}`, undefined],
    ['POST', '/tenant/tenants/acme/device-profiles', { name: 'p' }],
    ['PUT', `/tenant/tenants/acme/device-profiles/${defaultProfile}`, { name: 'renamed' }],
    ['POST', '/tenant/tenants/acme/trusted-certificates', certBody],
    ['PUT', '/tenant/tenants/acme', { company: 'Renamed' }],
  ];
  for (const [method, url, body] of writes) {
    const res = await call(s, method as 'POST', url, reader, body);
    assert.equal(res.status, 403, `READONLY may not ${method} ${url}`);
    assert.equal(res.body.error, 'security/Forbidden');
  }
  assert.equal((await call(s, 'GET', '/user/acme/users', reader)).status, 403);

  // DEVICE_MANAGER: devices and profiles read and write, trusted certificates read only.
  const made = await call(s, 'POST', '/tenant/tenants/acme/devices', devman, { name: 'by-devman' });
  assert.equal(made.status, 201);
  assert.equal((await call(s, 'PUT', `/tenant/tenants/acme/devices/${made.body.id}`, devman, { status: 'DISABLED' })).body.status, 'DISABLED');
  const profile = await call(s, 'POST', '/tenant/tenants/acme/device-profiles', devman, { name: 'devman-profile' });
  assert.equal(profile.status, 201);
  assert.equal((await call(s, 'PUT', `/tenant/tenants/acme/device-profiles/${profile.body.id}`, devman, { clientIdPolicy: 'ANY' })).status, 200);
  assert.equal((await call(s, 'DELETE', `/tenant/tenants/acme/device-profiles/${profile.body.id}`, devman)).status, 204);
  assert.equal((await call(s, 'DELETE', `/tenant/tenants/acme/devices/${made.body.id}`, devman)).status, 204);
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme/trusted-certificates', devman)).status, 200);
  assert.equal((await call(s, 'POST', '/tenant/tenants/acme/trusted-certificates', devman, certBody)).status, 403);
  assert.equal((await call(s, 'POST', '/tenant/tenants/acme/trusted-certificates/bulk', devman, { certificates: [certBody] })).status, 403);
  assert.equal((await call(s, 'PUT', '/tenant/tenants/acme/trusted-certificates/00', devman, { status: 'DISABLED' })).status, 403);
  assert.equal((await call(s, 'DELETE', '/tenant/tenants/acme/trusted-certificates/00', devman)).status, 403);
  assert.equal((await call(s, 'PUT', '/tenant/tenants/acme', devman, { company: 'Renamed' })).status, 403);
  assert.equal((await call(s, 'GET', '/user/acme/users', devman)).status, 403);
  assert.equal((await call(s, 'POST', '/user/acme/users', devman, { userName: 'x', password: 'password-1', roles: ['ROLE_READONLY'] })).status, 403);
});

test('authentication: every kind of bad credentials is a 401 with the error shape', async (t) => {
  const s = await build(t);
  await createTenant(s, 'acme');
  const raw = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;
  const cases: Array<[string, string | undefined]> = [
    ['no Authorization header', undefined],
    ['a Bearer token', 'Bearer abc.def'],
    ['Basic without a colon', raw('acme/admin')],
    ['a login without tenant', raw('admin:tenant-admin-pass')],
    ['an empty user name', raw('acme/:tenant-admin-pass')],
    ['an empty tenant', raw('/admin:tenant-admin-pass')],
    ['a wrong password', basic('acme/admin', 'wrong-password')],
    ['an empty password', basic('acme/admin', '')],
    ['an unknown user', basic('acme/nobody', 'tenant-admin-pass')],
    ['an unknown tenant', basic('nowhere/admin', 'tenant-admin-pass')],
    ['another tenant\'s name for the management admin', basic('acme/admin', MANAGEMENT_PASSWORD)],
    ['garbage after Basic', 'Basic %%%%'],
  ];
  for (const [what, auth] of cases) {
    const res = await call(s, 'GET', '/tenant/tenants/acme', auth);
    assert.equal(res.status, 401, what);
    assert.match(res.body.error, /^security\//, what);
    assert.equal(typeof res.body.message, 'string');
    assert.equal(typeof res.body.info, 'string');
  }
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', basic('acme/admin', 'tenant-admin-pass'))).status, 200);
  assert.equal((await call(s, 'GET', '/tenant/tenants', basic('management/admin', MANAGEMENT_PASSWORD))).status, 200);
});

test('authentication: repeated failures are answered 429 until the lockout ends, per login', async (t) => {
  const s = await build(t, { authFailuresBeforeLockout: 3 });
  const acme = await createTenant(s, 'acme');
  const wrong = basic('acme/admin', 'wrong-password');

  for (let i = 1; i <= 3; i++) assert.equal((await call(s, 'GET', '/tenant/tenants/acme', wrong)).status, 401, `failure ${i}`);
  const limited = await call(s, 'GET', '/tenant/tenants/acme', wrong);
  assert.equal(limited.status, 429);
  assert.equal(limited.body.error, 'security/TooManyRequests');
  assert.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After tells when to try again');

  // Even the right password waits: the lockout must not become a password oracle.
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', acme)).status, 429);

  // Other logins are not affected.
  assert.equal((await call(s, 'GET', '/tenant/tenants', s.management)).status, 200);

  // Failures below the limit are forgotten after a success.
  const s2 = await build(t, { authFailuresBeforeLockout: 3 });
  const globex = await createTenant(s2, 'globex');
  const globexWrong = basic('globex/admin', 'wrong-password');
  for (let round = 0; round < 3; round++) {
    assert.equal((await call(s2, 'GET', '/tenant/tenants/globex', globexWrong)).status, 401);
    assert.equal((await call(s2, 'GET', '/tenant/tenants/globex', globexWrong)).status, 401);
    assert.equal((await call(s2, 'GET', '/tenant/tenants/globex', globex)).status, 200, `round ${round}: a success resets the count`);
  }
});

test('paging: pageSize default 5 and max 2000, currentPage, withTotalPages, next and prev links', async (t) => {
  const s = await build(t);
  const acme = await createTenant(s, 'acme');
  for (let i = 1; i <= 7; i++) {
    assert.equal((await call(s, 'POST', '/tenant/tenants/acme/devices', acme, { name: `dev-${i}` })).status, 201);
  }

  const first = await call(s, 'GET', '/tenant/tenants/acme/devices', acme);
  assert.equal(first.status, 200);
  assert.equal(first.body.devices.length, 5);
  assert.deepEqual(first.body.statistics, { currentPage: 1, pageSize: 5 });
  assert.deepEqual(first.body.devices.map((d: { name: string }) => d.name), ['dev-1', 'dev-2', 'dev-3', 'dev-4', 'dev-5']);
  assert.equal(first.body.prev, undefined);
  assert.match(pathOf(first.body.self), /^\/tenant\/tenants\/acme\/devices\?/);
  assert.ok(first.body.next, 'a full page links to the next one');
  const nextUrl = new URL(first.body.next);
  assert.equal(nextUrl.searchParams.get('currentPage'), '2');
  assert.equal(nextUrl.searchParams.get('pageSize'), '5');

  const second = await call(s, 'GET', pathOf(first.body.next), acme);
  assert.equal(second.status, 200);
  assert.deepEqual(second.body.devices.map((d: { name: string }) => d.name), ['dev-6', 'dev-7']);
  assert.equal(second.body.statistics.currentPage, 2);
  assert.equal(second.body.next, undefined, 'a short page is the last');
  assert.ok(second.body.prev);
  assert.equal(new URL(second.body.prev).searchParams.get('currentPage'), '1');

  const totals = await call(s, 'GET', '/tenant/tenants/acme/devices?pageSize=3&withTotalPages=true', acme);
  assert.deepEqual(totals.body.statistics, { currentPage: 1, pageSize: 3, totalPages: 3 });
  const last = await call(s, 'GET', '/tenant/tenants/acme/devices?pageSize=3&currentPage=3&withTotalPages=true', acme);
  assert.equal(last.body.devices.length, 1);
  assert.equal(last.body.next, undefined);
  const beyond = await call(s, 'GET', '/tenant/tenants/acme/devices?currentPage=9', acme);
  assert.equal(beyond.status, 200);
  assert.deepEqual(beyond.body.devices, []);

  const max = await call(s, 'GET', '/tenant/tenants/acme/devices?pageSize=2000', acme);
  assert.equal(max.status, 200);
  assert.equal(max.body.devices.length, 7);
  assert.equal(max.body.next, undefined);

  for (const q of ['pageSize=2001', 'pageSize=0', 'pageSize=-1', 'pageSize=abc', 'pageSize=2.5', 'currentPage=0', 'currentPage=x', 'withTotalPages=yes']) {
    const res = await call(s, 'GET', `/tenant/tenants/acme/devices?${q}`, acme);
    assert.equal(res.status, 400, q);
    assert.equal(res.body.error, 'validation/InvalidRequest', q);
  }

  // The same paging on every collection.
  for (const [url, key] of [
    ['/tenant/tenants', 'tenants'],
    ['/user/acme/users', 'users'],
    ['/tenant/tenants/acme/device-profiles', 'deviceProfiles'],
    ['/tenant/tenants/acme/trusted-certificates', 'certificates'],
  ] as const) {
    const auth = url === '/tenant/tenants' ? s.management : acme;
    const res = await call(s, 'GET', `${url}?pageSize=1&withTotalPages=true`, auth);
    assert.equal(res.status, 200, url);
    assert.ok(Array.isArray(res.body[key]), `${url} holds ${key}`);
    assert.equal(res.body.statistics.pageSize, 1);
    assert.equal(typeof res.body.statistics.totalPages, 'number');
    assert.equal((await call(s, 'GET', `${url}?pageSize=2001`, auth)).status, 400, url);
  }
});
