/**
 * Revocation and disabling take effect for the next request on every process (issue 3): two apps
 * on one database, each with its own PostgreSQL LISTEN feed. App B's caches are warm; app A makes
 * the change; B decides differently on a request shortly after, with no timer involved (B's
 * decision cache would otherwise keep the answer for `cacheTtlSeconds`).
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { build, type TestApp } from '../helpers/app.js';
import { createCa, createDevice, type Credentials } from '../../src/certs/certs-service.js';
import {
  api,
  authenticate,
  credential,
  device,
  eventually,
  expectAllow,
  tenant,
  trust,
  updateDefaultProfile,
  type AuthRequest,
  type Tenant,
} from './fixtures.js';

/** How long B may take to see A's change: notification latency, not a cache expiry. */
const WITHIN_MS = 2000;

interface World {
  a: TestApp;
  b: TestApp;
  acme: Tenant;
  ca: Credentials;
  fingerprint: string;
}

async function world(t: TestContext): Promise<World> {
  const a = await build(t, { changeFeed: true });
  const b = await build(t, { changeFeed: true, sameDatabaseAs: a });
  const acme = await tenant(a, 'acme');
  await updateDefaultProfile(a, acme, { clientIdPolicy: 'ANY' });
  const ca = await createCa({ cn: 'Acme CA' });
  const fingerprint = await trust(a, acme, ca.certPem);
  return { a, b, acme, ca, fingerprint };
}

/** B allows `req` three times, so its decision cache (which keeps a decision from the second time it is asked) holds it; then A changes something. */
async function warm(w: World, req: AuthRequest): Promise<void> {
  const first = await expectAllow(w.b, req, 'B before the change');
  const second = await expectAllow(w.b, req, 'B before the change, again');
  const third = await expectAllow(w.b, req, 'B before the change, cached');
  assert.equal(second.device.id, first.device.id);
  assert.equal(third.device.id, first.device.id);
}

async function deniedOnB(w: World, req: AuthRequest, reason: string, what: string): Promise<void> {
  let last = '';
  const ms = await eventually(
    async () => {
      const res = await authenticate(w.b, req);
      assert.equal(res.status, 200, res.text);
      last = res.text;
      return res.body.result === 'deny' && res.body.reason === reason;
    },
    WITHIN_MS,
    () => `${what}: B denies with ${reason} (last answer ${last})`,
  );
  assert.ok(ms < WITHIN_MS, `${what}: ${ms} ms`);
}

async function allowedOnB(w: World, req: AuthRequest, what: string): Promise<void> {
  await eventually(async () => (await authenticate(w.b, req)).body.result === 'allow', WITHIN_MS, `${what}: B allows again`);
}

const cases: Array<{ name: string; reason: string; change: (w: World, leaf: Credentials, deviceId: string) => Promise<void>; undo?: (w: World, leaf: Credentials, deviceId: string) => Promise<void> }> = [
  {
    name: 'deny/ca-disabled-on-other-process',
    reason: 'TRUSTED_CERTIFICATE_DISABLED',
    change: async (w) => assert.equal((await api(w.a, 'PUT', `/tenant/tenants/acme/trusted-certificates/${w.fingerprint}`, w.acme.auth, { status: 'DISABLED' })).status, 200),
    undo: async (w) => assert.equal((await api(w.a, 'PUT', `/tenant/tenants/acme/trusted-certificates/${w.fingerprint}`, w.acme.auth, { status: 'ENABLED' })).status, 200),
  },
  {
    name: 'deny/serial-revoked-on-other-process',
    reason: 'CERTIFICATE_REVOKED',
    change: async (w, leaf) =>
      assert.equal(
        (await api(w.a, 'PUT', '/tenant/tenants/acme/trusted-certificates/settings/crl', w.acme.auth, {
          crls: [{ serialNumberInHex: leaf.serialNumberHex, revocationDate: new Date().toISOString() }],
        })).status,
        200,
      ),
    undo: async (w, leaf) => assert.equal((await api(w.a, 'DELETE', `/tenant/tenants/acme/trusted-certificates/settings/crl/${leaf.serialNumberHex}`, w.acme.auth)).status, 204),
  },
  {
    name: 'deny/tenant-suspended-on-other-process',
    reason: 'TENANT_SUSPENDED',
    change: async (w) => assert.equal((await api(w.a, 'PUT', '/tenant/tenants/acme', w.a.management, { status: 'SUSPENDED' })).status, 200),
    undo: async (w) => assert.equal((await api(w.a, 'PUT', '/tenant/tenants/acme', w.a.management, { status: 'ACTIVE' })).status, 200),
  },
  {
    name: 'deny/device-disabled-on-other-process',
    reason: 'DEVICE_DISABLED',
    change: async (w, _leaf, id) => assert.equal((await api(w.a, 'PUT', `/tenant/tenants/acme/devices/${id}`, w.acme.auth, { status: 'DISABLED' })).status, 200),
    undo: async (w, _leaf, id) => assert.equal((await api(w.a, 'PUT', `/tenant/tenants/acme/devices/${id}`, w.acme.auth, { status: 'ACTIVE' })).status, 200),
  },
  {
    name: 'deny/device-pinned-on-other-process',
    reason: 'CREDENTIALS_NOT_PINNED',
    change: async (w, _leaf, id) => assert.equal((await api(w.a, 'PUT', `/tenant/tenants/acme/devices/${id}`, w.acme.auth, { pinCredentials: true })).status, 200),
    undo: async (w, _leaf, id) => assert.equal((await api(w.a, 'PUT', `/tenant/tenants/acme/devices/${id}`, w.acme.auth, { pinCredentials: false })).status, 200),
  },
  {
    name: 'deny/ca-deleted-on-other-process',
    reason: 'NO_TRUSTED_ANCHOR',
    change: async (w) => assert.equal((await api(w.a, 'DELETE', `/tenant/tenants/acme/trusted-certificates/${w.fingerprint}`, w.acme.auth)).status, 204),
  },
];

test('a change made through process A denies on process B by the next request, without waiting for a cache expiry', async (t) => {
  const w = await world(t);
  for (const c of cases) {
    const leaf = await createDevice({ issuer: w.ca, cn: `dev-${c.name.split('/')[1]}` });
    const req = { clientId: 'any', certificateChain: [leaf.certPem] };
    await warm(w, req);
    const deviceId = (await expectAllow(w.a, req, c.name)).device.id;
    await c.change(w, leaf, deviceId);
    await deniedOnB(w, req, c.reason, c.name);
    if (c.undo) {
      await c.undo(w, leaf, deviceId);
      await allowedOnB(w, req, c.name);
    }
  }
});

test('credential changes through process A reach process B: a revoked credential, a newly pinned certificate', async (t) => {
  const w = await world(t);
  const leaf = await createDevice({ issuer: w.ca, cn: 'listed' });
  const deviceId = await device(w.a, w.acme, { name: 'plc-1' });
  const credentialsId = await credential(w.a, w.acme, deviceId, leaf.certPem);
  const req = { clientId: 'any', certificateChain: [leaf.certPem] };
  await warm(w, req);
  assert.equal((await expectAllow(w.b, req)).device.name, 'plc-1');

  const revoke = await api(w.a, 'PUT', `/tenant/tenants/acme/devices/${deviceId}/credentials/${credentialsId}`, w.acme.auth, { status: 'REVOKED' });
  assert.equal(revoke.status, 200, revoke.text);
  await deniedOnB(w, req, 'CERTIFICATE_REVOKED', 'deny/credential-revoked-on-other-process');

  // B first looks a new leaf up (no credential yet), then A lists it for a device. B's look-up is
  // refused (no device name in the CN): an allow would record the leaf as a sighting of a device of
  // its own, written behind, and listing it afterwards could race that write.
  const moved = await createDevice({ issuer: w.ca, cn: 'wanderer#1' });
  const movedReq = { clientId: 'any', certificateChain: [moved.certPem] };
  await deniedOnB(w, movedReq, 'IDENTITY_NOT_FOUND', 'no device name in the CN');
  const gw = await device(w.a, w.acme, { name: 'gw-9' });
  await credential(w.a, w.acme, gw, moved.certPem);
  await eventually(async () => (await authenticate(w.b, movedReq)).body.device?.name === 'gw-9', WITHIN_MS, 'B maps the leaf to its listed device');
});

test('changes that allow reach process B too: a CA uploaded, a device created, a profile changed; a tenant deleted denies', async (t) => {
  const w = await world(t);
  const api2 = (method: 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown) => api(w.a, method, url, w.acme.auth, body);

  // B first finds no anchor for a new vendor's leaf; A trusts the vendor.
  const vendor = await createCa({ cn: 'New Vendor CA' });
  const vendorLeaf = await createDevice({ issuer: vendor, cn: 'vendor-1' });
  const vendorReq = { clientId: 'any', certificateChain: [vendorLeaf.certPem] };
  await deniedOnB(w, vendorReq, 'NO_TRUSTED_ANCHOR', 'before the upload');
  const vendorFp = await trust(w.a, w.acme, vendor.certPem, { autoRegistrationEnabled: false });
  await deniedOnB(w, vendorReq, 'DEVICE_NOT_FOUND', 'deny/device-not-found-after-upload-on-other-process');

  // A registers the device B did not find.
  await device(w.a, w.acme, { name: 'vendor-1' });
  await allowedOnB(w, vendorReq, 'allow/device-created-on-other-process');

  // A changes the profile's identity rule: B extracts names the new way. (A leaf seen before is a
  // credential of its device by now and keeps naming it, as in ThingsBoard: take a new one.)
  const profiles = await api(w.a, 'GET', '/tenant/tenants/acme/device-profiles', w.acme.auth);
  const defaultId = profiles.body.deviceProfiles.find((p: { default: boolean }) => p.default).id;
  assert.equal((await api2('PUT', `/tenant/tenants/acme/device-profiles/${defaultId}`, { identity: { pattern: '^dev-(.+)$' } })).status, 200);
  const another = await createDevice({ issuer: vendor, cn: 'vendor-1' });
  await deniedOnB(w, { clientId: 'any', certificateChain: [another.certPem] }, 'IDENTITY_NOT_FOUND', 'deny/profile-changed-on-other-process');

  // A turns auto-registration on for the vendor: B registers new devices.
  const newcomer = await createDevice({ issuer: vendor, cn: 'dev-42' });
  const newcomerReq = { clientId: 'any', certificateChain: [newcomer.certPem] };
  await deniedOnB(w, newcomerReq, 'DEVICE_NOT_FOUND', 'before auto-registration');
  assert.equal((await api2('PUT', `/tenant/tenants/acme/trusted-certificates/${vendorFp}`, { autoRegistrationEnabled: true })).status, 200);
  await allowedOnB(w, newcomerReq, 'allow/auto-registration-enabled-on-other-process');
  assert.equal((await authenticate(w.b, newcomerReq)).body.device.name, '42');

  // A deletes the tenant: everything of it is gone on B as well.
  assert.equal((await api(w.a, 'DELETE', '/tenant/tenants/acme', w.a.management)).status, 204);
  await deniedOnB(w, newcomerReq, 'NO_TRUSTED_ANCHOR', 'deny/tenant-deleted-on-other-process');
});

test('a device renamed through process A answers to its new name on B, and its old name is free for a new device', async (t) => {
  const w = await world(t);
  const first = await createDevice({ issuer: w.ca, cn: 'meter-7' });
  const firstReq = { clientId: 'any', certificateChain: [first.certPem] };
  await warm(w, firstReq);
  const id = (await expectAllow(w.b, firstReq)).device.id;
  // The leaf is recorded as an OBSERVED credential of the device: from then on it names the device by id.
  await w.b.app.verifier.flush();
  const renamed = await api(w.a, 'PUT', `/tenant/tenants/acme/devices/${id}`, w.acme.auth, { name: 'meter-7b' });
  assert.equal(renamed.status, 200, renamed.text);
  // The listed leaf names the device by its id: B answers with the new name.
  await eventually(async () => (await authenticate(w.b, firstReq)).body.device?.name === 'meter-7b', WITHIN_MS, 'B names the device meter-7b');
  // A new leaf for the old name registers a new device there, not the renamed one.
  const second = await createDevice({ issuer: w.ca, cn: 'meter-7' });
  const again = await expectAllow(w.b, { clientId: 'any', certificateChain: [second.certPem] }, 'a new leaf for meter-7');
  assert.equal(again.device.name, 'meter-7');
  assert.notEqual(again.device.id, id);
});
