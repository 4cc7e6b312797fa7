/**
 * PUT /user/:tenantId/users/:userName {password?, roles?}: tenant admins change any user of their
 * tenant, every user its own password but not its own roles; another tenant's users are 404; a
 * new password works at once, the old one no longer, and the failed-login count of that login is
 * cleared.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { basic, build, createTenant } from '../helpers/app.js';
import { call } from '../helpers/requests.js';

test('users: PUT changes passwords and roles under the role rules', async (t) => {
  const s = await build(t, { authFailuresBeforeLockout: 3 });
  const acme = await createTenant(s, 'acme');
  const other = await createTenant(s, 'other');
  const make = async (userName: string, roles: string[]) =>
    assert.equal((await call(s, 'POST', '/user/acme/users', acme, { userName, password: `${userName}-pass-1`, roles })).status, 201);
  await make('reader', ['ROLE_READONLY']);
  await make('manager', ['ROLE_DEVICE_MANAGER']);
  const reader = basic('acme/reader', 'reader-pass-1');
  const manager = basic('acme/manager', 'manager-pass-1');

  // A tenant admin changes another user's roles and password.
  const changed = await call(s, 'PUT', '/user/acme/users/reader', acme, { roles: ['ROLE_DEVICE_MANAGER', 'ROLE_READONLY'] });
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  assert.deepEqual(changed.body.roles.sort(), ['ROLE_DEVICE_MANAGER', 'ROLE_READONLY']);
  assert.equal(changed.body.userName, 'reader');
  assert.ok(!JSON.stringify(changed.body).includes('pass'), 'no password or hash in the answer');
  assert.equal((await call(s, 'PUT', '/user/acme/users/reader', acme, { password: 'reader-pass-2' })).status, 200);
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', reader)).status, 401, 'the old password no longer works');
  const reader2 = basic('acme/reader', 'reader-pass-2');
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', reader2)).status, 200, 'the new one does');

  // Every user changes its own password, never its own roles; nobody else's without the admin role.
  assert.equal((await call(s, 'PUT', '/user/acme/users/manager', manager, { password: 'manager-pass-2' })).status, 200);
  const manager2 = basic('acme/manager', 'manager-pass-2');
  const ownRoles = await call(s, 'PUT', '/user/acme/users/manager', manager2, { roles: ['ROLE_TENANT_ADMIN'] });
  assert.equal(ownRoles.status, 403);
  assert.equal(ownRoles.body.error, 'user/OwnRoles');
  const adminOwnRoles = await call(s, 'PUT', '/user/acme/users/admin', acme, { roles: ['ROLE_READONLY'] });
  assert.equal(adminOwnRoles.status, 403, 'an admin cannot demote itself either');
  assert.equal((await call(s, 'PUT', '/user/acme/users/reader', manager2, { password: 'stolen-pass-1' })).status, 403);
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', reader2)).status, 200, 'nothing changed');

  // Other tenants' users do not exist for acme's admin; absent users are 404 too.
  assert.equal((await call(s, 'PUT', '/user/other/users/admin', acme, { password: 'hijacked-pass' })).status, 404);
  assert.equal((await call(s, 'GET', '/tenant/tenants/other', other)).status, 200, 'other\'s admin is untouched');
  assert.equal((await call(s, 'PUT', '/user/acme/users/nobody', acme, { password: 'whatever-pass' })).status, 404);

  // Bad bodies: nothing to change, unknown fields, short passwords, unknown roles, the management role.
  for (const body of [{}, { password: 'short' }, { roles: [] }, { roles: ['ROLE_ROOT'] }, { userName: 'renamed' }]) {
    const res = await call(s, 'PUT', '/user/acme/users/reader', acme, body);
    assert.equal(res.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error, 'validation/InvalidRequest');
  }
  const management = await call(s, 'PUT', '/user/acme/users/reader', acme, { roles: ['ROLE_TENANT_MANAGEMENT'] });
  assert.equal(management.status, 422);
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', reader2)).status, 200, 'bad bodies changed nothing');

  // The management admin changes users of its own tenant, and only reads other tenants.
  assert.equal((await call(s, 'PUT', '/user/acme/users/reader', s.management, { password: 'from-management' })).status, 403);
});

test('users: a new password clears the failed-login count, so a locked-out user gets in at once', async (t) => {
  const s = await build(t, { authFailuresBeforeLockout: 3 });
  const acme = await createTenant(s, 'acme');
  assert.equal((await call(s, 'POST', '/user/acme/users', acme, { userName: 'ops', password: 'ops-pass-1', roles: ['ROLE_READONLY'] })).status, 201);
  for (let i = 0; i < 3; i++) assert.equal((await call(s, 'GET', '/tenant/tenants/acme', basic('acme/ops', 'wrong-guess'))).status, 401);
  const locked = await call(s, 'GET', '/tenant/tenants/acme', basic('acme/ops', 'ops-pass-1'));
  assert.equal(locked.status, 429, 'locked out');

  assert.equal((await call(s, 'PUT', '/user/acme/users/ops', acme, { password: 'ops-pass-2' })).status, 200);
  assert.equal((await call(s, 'GET', '/tenant/tenants/acme', basic('acme/ops', 'ops-pass-2'))).status, 200, 'the new password works at once');
});

test('401 answers carry WWW-Authenticate: Basic for the API, Bearer for the verifier and a protected /metrics', async (t) => {
  const s = await build(t);
  const api = await call(s, 'GET', '/tenant/tenants');
  assert.equal(api.status, 401);
  assert.equal(api.headers['www-authenticate'], 'Basic realm="certgate"');
  const wrong = await call(s, 'GET', '/tenant/tenants', basic('management/admin', 'wrong'));
  assert.equal(wrong.headers['www-authenticate'], 'Basic realm="certgate"');
  const verifier = await call(s, 'POST', '/verifier/v1/authenticate', undefined, { clientId: 'x', certificateChain: ['x'] });
  assert.equal(verifier.status, 401);
  assert.equal(verifier.headers['www-authenticate'], 'Bearer realm="certgate"');
});
