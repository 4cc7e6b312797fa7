/**
 * Auto-registration creates exactly one device when many first connections
 * of the same device arrive at once, in one process and across processes on one database; the
 * hourly quota holds under the same load.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build } from '../helpers/app.js';
import { createCa, createDevice } from '../../src/certs/certs-service.js';
import { authenticate, devicesNamed, profile, tenant, trust, updateDefaultProfile, type Reply, trustingTenant } from './fixtures.js';

function allowedDeviceIds(replies: Reply[]): Set<string> {
  for (const r of replies) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.result, 'allow', r.text);
  }
  return new Set(replies.map((r) => r.body.device.id));
}

test('50 simultaneous first connections of one new device register exactly one device', async (t) => {
  const s = await build(t);
  const { acme, ca } = await trustingTenant(s);
  const leaf = await createDevice({ issuer: ca, cn: 'storm-1' });

  const replies = await Promise.all(
    Array.from({ length: 50 }, (_, i) => authenticate(s, { clientId: `storm-1-${i}`, certificateChain: [leaf.certPem] })),
  );
  const ids = allowedDeviceIds(replies);
  assert.equal(ids.size, 1, 'every connection got the same device');
  const devices = await devicesNamed(s, acme, 'storm-1');
  assert.equal(devices.length, 1);
  assert.equal(devices[0].id, [...ids][0]);
  assert.equal(devices[0].createdBy, 'AUTO_REGISTRATION');
  assert.ok(replies.every((r) => r.body.device.autoRegistered === true));

  // Different leaves of one new device name (a rotation storm) also make one device.
  const leaves = await Promise.all(Array.from({ length: 10 }, () => createDevice({ issuer: ca, cn: 'storm-2' })));
  const rotated = await Promise.all(
    Array.from({ length: 50 }, (_, i) => authenticate(s, { clientId: 'storm-2', certificateChain: [leaves[i % 10]!.certPem] })),
  );
  assert.equal(allowedDeviceIds(rotated).size, 1);
  assert.equal((await devicesNamed(s, acme, 'storm-2')).length, 1);
});

test('two processes on one database register one device between them', async (t) => {
  const a = await build(t);
  const b = await build(t, { sameDatabaseAs: a });
  const acme = await tenant(a, 'acme');
  await updateDefaultProfile(a, acme, { clientIdPolicy: 'ANY' });
  const ca = await createCa();
  await trust(a, acme, ca.certPem);

  for (const name of ['twin-1', 'twin-2', 'twin-3']) {
    const leaf = await createDevice({ issuer: ca, cn: name });
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => authenticate(i % 2 ? b : a, { clientId: name, certificateChain: [leaf.certPem] })),
    );
    assert.equal(allowedDeviceIds(replies).size, 1, name);
    assert.equal((await devicesNamed(a, acme, name)).length, 1, name);
  }
});

test('the hourly registration quota holds when many new devices connect at once', async (t) => {
  const a = await build(t);
  const b = await build(t, { sameDatabaseAs: a });
  const acme = await tenant(a, 'acme');
  const limited = await profile(a, acme, { clientIdPolicy: 'ANY', autoRegistration: { maxNewDevicesPerHour: 3 } });
  const ca = await createCa();
  await trust(a, acme, ca.certPem, { deviceProfileId: limited });
  const leaves = await Promise.all(Array.from({ length: 12 }, (_, i) => createDevice({ issuer: ca, cn: `q-${i}` })));

  const replies = await Promise.all(
    leaves.flatMap((leaf, i) => [a, b].map((s) => authenticate(s, { clientId: `q-${i}`, certificateChain: [leaf.certPem] }))),
  );
  const allowed = new Set(replies.filter((r) => r.body.result === 'allow').map((r) => r.body.device.name));
  const denied = replies.filter((r) => r.body.result === 'deny');
  assert.equal(allowed.size, 3, `exactly the quota registered: ${[...allowed]}`);
  assert.ok(denied.every((r) => r.body.reason === 'REGISTRATION_QUOTA_EXCEEDED'), JSON.stringify(denied.map((r) => r.body)));
  const list = await a.app.inject({ method: 'GET', url: '/tenant/tenants/acme/devices?pageSize=100', headers: { authorization: acme.auth } });
  assert.equal(list.json().devices.length, 3);
});

test('a tenant deleted by another process before its notification arrives: registering denies, never a 503', async (t) => {
  const s = await build(t, { changeFeed: true });
  const { ca } = await trustingTenant(s);
  // The caches know the tenant, its trusted certificate and its profile.
  const first = await authenticate(s, { clientId: 'early', certificateChain: [(await createDevice({ issuer: ca, cn: 'early' })).certPem] });
  assert.equal(first.body.result, 'allow', first.text);

  // Deleted as another process would, whose notification has not reached this one yet.
  await s.prisma.tenant.delete({ where: { id: 'acme' } });
  const late = await createDevice({ issuer: ca, cn: 'late' });
  const reply = await authenticate(s, { clientId: 'late', certificateChain: [late.certPem] });
  assert.equal(reply.status, 200, reply.text);
  assert.equal(reply.body.result, 'deny', reply.text);
  assert.equal(reply.body.reason, 'NO_TRUSTED_ANCHOR', reply.text);
  assert.equal(await s.prisma.device.count({ where: { tenantId: 'acme' } }), 0);
});

test('a profile deleted by another process before its notification arrives: that registration denies, the next one uses the profile left', async (t) => {
  const s = await build(t, { changeFeed: true });
  const { acme } = await trustingTenant(s);
  const lineProfile = await profile(s, acme, { clientIdPolicy: 'ANY' });
  const lineCa = await createCa({ cn: 'Line CA' });
  await trust(s, acme, lineCa.certPem, { deviceProfileId: lineProfile });
  const leaf = await createDevice({ issuer: lineCa, cn: 'line-1' });
  const req = { clientId: 'line-1', certificateChain: [leaf.certPem] };
  // The caches learn the trusted certificate and its profile from an explanation (nothing registered).
  const explained = await s.app.inject({
    method: 'POST',
    url: '/tenant/tenants/acme/trusted-certificates/verify-cert-chain',
    headers: { authorization: acme.auth },
    payload: { chain: leaf.certPem },
  });
  assert.equal(explained.json().device.wouldBeRegistered, true, explained.body);

  // Deleted as another process would, whose notification has not reached this one yet: the
  // trusted certificate falls back to the tenant's default profile.
  await s.prisma.deviceProfile.delete({ where: { id: lineProfile } });
  const refused = await authenticate(s, req);
  assert.equal(refused.status, 200, refused.text);
  assert.deepEqual([refused.body.result, refused.body.reason], ['deny', 'DEVICE_NOT_FOUND'], refused.text);
  assert.match(refused.body.message, /profile was deleted/);
  assert.equal(await s.prisma.device.count({ where: { tenantId: 'acme', name: 'line-1' } }), 0);

  // What this process knew of the tenant was dropped: the next attempt registers under the default profile.
  const allowed = await authenticate(s, req);
  assert.equal(allowed.body.result, 'allow', allowed.text);
  const device = await s.prisma.device.findUniqueOrThrow({ where: { id: allowed.body.device.id }, include: { deviceProfile: true } });
  assert.equal(device.deviceProfile.isDefault, true);
});
