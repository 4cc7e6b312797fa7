/**
 * A storm of first connections of one tenant: registrations are written in batches (one
 * transaction and one tenant lock per batch), so 1,000 new devices at once are all registered and
 * allowed, exactly once each, and the hourly quota still holds exactly under the same storm.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createCa, createDevice, type Credentials } from '../../src/certs/certs-service.js';
import { build } from '../helpers/app.js';
import { authenticate, profile, tenant, trust, trustingTenant } from './fixtures.js';

test('1,000 new devices of one tenant at once: all allowed, exactly 1,000 devices registered', { timeout: 300_000 }, async (t) => {
  const s = await build(t);
  const { ca } = await trustingTenant(s);
  const leaves: Credentials[] = [];
  for (let i = 0; i < 1_000; i++) leaves.push(await createDevice({ issuer: ca, cn: `storm-${String(i).padStart(4, '0')}` }));

  const started = performance.now();
  const replies = await Promise.all(
    leaves.map((leaf, i) => authenticate(s, { clientId: `storm-${String(i).padStart(4, '0')}`, certificateChain: [leaf.certPem] })),
  );
  const ms = Math.round(performance.now() - started);
  const allowed = replies.filter((r) => r.status === 200 && r.body.result === 'allow');
  const others = replies.filter((r) => !(r.status === 200 && r.body.result === 'allow'));
  console.log(`# 1,000 registrations at once through the verifier: ${allowed.length} allowed in ${ms} ms`);
  assert.deepEqual(others.map((r) => `${r.status} ${r.text}`).slice(0, 5), [], 'every decision an allow');
  assert.equal(new Set(allowed.map((r) => r.body.device.id)).size, 1_000, 'one device each');
  assert.equal(await s.prisma.device.count({ where: { tenantId: 'acme' } }), 1_000);
  assert.equal(await s.prisma.device.count({ where: { tenantId: 'acme', createdBy: 'AUTO_REGISTRATION' } }), 1_000);

  // Once more: every device is found, none registered again.
  const again = await Promise.all(
    leaves.slice(0, 100).map((leaf, i) => authenticate(s, { clientId: `storm-${String(i).padStart(4, '0')}`, certificateChain: [leaf.certPem] })),
  );
  assert.ok(again.every((r, i) => r.body.result === 'allow' && r.body.device.id === allowed[i]!.body.device.id));
  assert.equal(await s.prisma.device.count({ where: { tenantId: 'acme' } }), 1_000);
});

test('the hourly quota holds exactly in a storm: 300 new devices at once, a quota of 120, two processes', { timeout: 300_000 }, async (t) => {
  const a = await build(t);
  const b = await build(t, { sameDatabaseAs: a });
  const acme = await tenant(a, 'acme');
  const limited = await profile(a, acme, { clientIdPolicy: 'ANY', autoRegistration: { maxNewDevicesPerHour: 120 } });
  const ca = await createCa();
  await trust(a, acme, ca.certPem, { deviceProfileId: limited });
  const leaves: Credentials[] = [];
  for (let i = 0; i < 300; i++) leaves.push(await createDevice({ issuer: ca, cn: `q-${i}` }));

  const replies = await Promise.all(
    leaves.map((leaf, i) => authenticate(i % 2 ? b : a, { clientId: `q-${i}`, certificateChain: [leaf.certPem] })),
  );
  const allowed = replies.filter((r) => r.body.result === 'allow');
  const denied = replies.filter((r) => r.body.result === 'deny');
  assert.equal(allowed.length, 120, 'exactly the quota registered');
  assert.equal(denied.length, 180);
  assert.ok(denied.every((r) => r.body.reason === 'REGISTRATION_QUOTA_EXCEEDED'), JSON.stringify(denied.find((r) => r.body.reason !== 'REGISTRATION_QUOTA_EXCEEDED')?.body));
  assert.equal(await a.prisma.device.count({ where: { tenantId: 'acme' } }), 120);
});
