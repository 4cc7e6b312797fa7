/**
 * The trust cache reads a tenant's devices at once when many of them connect for the first time,
 * and drops single devices when a change names them. Checked against a real database through a
 * repository that counts what is asked of it.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { build, type TestApp } from '../helpers/app.js';
import { otherConnection } from '../helpers/database.js';
import { createTrustCache, type TrustCacheOptions } from '../../src/verifier/trust-cache.js';
import { createVerifierRepository, type VerifierRepository } from '../../src/verifier/verifier-repository.js';
import { createCa, createDevice } from '../../src/certs/certs-service.js';
import { api, credential, device, eventually, expectAllow, tenant, trust, updateDefaultProfile, trustingTenant } from './fixtures.js';

const DEVICES = 60;
const name = (i: number) => `dev-${String(i).padStart(2, '0')}`;

interface World {
  s: TestApp;
  /** Device ids by name. */
  ids: Map<string, string>;
  calls: { lookups: number; pages: number; counts: number; byId: number; pinned: number };
  /** The cache's clock (ms); tests move it. */
  clock: { now: number };
  /** Makes the next device count fail. */
  failNextCount(): void;
  /** Holds the next page of devices until released (for changes made while a page is on its way). */
  holdPages(): { release(): void; reached: Promise<void> };
  cache(opts?: TrustCacheOptions): ReturnType<typeof createTrustCache>;
}

async function world(t: TestContext): Promise<World> {
  const s = await build(t);
  await tenant(s, 'acme');
  const profile = await s.prisma.deviceProfile.findFirstOrThrow({ where: { tenantId: 'acme', isDefault: true } });
  await s.prisma.device.createMany({
    data: Array.from({ length: DEVICES }, (_, i) => ({ tenantId: 'acme', name: name(i), deviceProfileId: profile.id })),
  });
  const ids = new Map((await s.prisma.device.findMany({ select: { id: true, name: true } })).map((d) => [d.name, d.id]));
  const real = createVerifierRepository(s.prisma);
  const calls = { lookups: 0, pages: 0, counts: 0, byId: 0, pinned: 0 };
  let hold: { gate: Promise<void>; reached: () => void } | undefined;
  let failCount = false;
  const clock = { now: 1_000_000 };
  const repository: VerifierRepository = {
    ...real,
    deviceByName: async (tenantId, name) => {
      calls.lookups++;
      return real.deviceByName(tenantId, name);
    },
    pinnedCredentialIds: async (deviceId) => {
      calls.pinned++;
      return real.pinnedCredentialIds(deviceId);
    },
    deviceById: async (id) => {
      calls.byId++;
      return real.deviceById(id);
    },
    deviceCount: async (tenantId) => {
      calls.counts++;
      if (failCount) {
        failCount = false;
        throw new Error('connection lost');
      }
      return real.deviceCount(tenantId);
    },
    devicesOfTenant: async (tenantId, after, limit) => {
      calls.pages++;
      const page = await real.devicesOfTenant(tenantId, after, limit);
      const h = hold;
      hold = undefined;
      if (h) {
        h.reached();
        await h.gate;
      }
      return page;
    },
  };
  return {
    s,
    ids,
    calls,
    clock,
    failNextCount: () => (failCount = true),
    holdPages() {
      let release!: () => void;
      let reached!: () => void;
      const reachedP = new Promise<void>((r) => (reached = r));
      hold = { gate: new Promise<void>((r) => (release = r)), reached };
      return { release, reached: reachedP };
    },
    cache: (opts = {}) => createTrustCache(repository, { preloadAfter: 5, preloadPage: 25, now: () => clock.now, ...opts }),
  };
}

/** Looks devices up one at a time, as separate first connections, and checks each answer. */
async function lookUp(w: World, cache: ReturnType<typeof createTrustCache>, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) {
    const d = await cache.deviceByName('acme', name(i));
    assert.equal(d?.id, w.ids.get(name(i)), name(i));
  }
}

/** A cache whose read of the tenant (one page) has left the database and is held before it arrives. */
async function pageOnItsWay(w: World): Promise<{ cache: ReturnType<typeof createTrustCache>; release(): void }> {
  const cache = w.cache({ preloadPage: 100 });
  const held = w.holdPages();
  await lookUp(w, cache, 0, 5);
  await held.reached;
  return { cache, release: held.release };
}

async function preloaded(w: World, pages: number): Promise<void> {
  await eventually(async () => w.calls.pages === pages, 2000, `${pages} page(s) of devices read`);
  // The last page is applied in the turn after it arrives.
  await new Promise((r) => setImmediate(r));
}

/** Once `pages` pages were read, the devices from `from` on come from the cache, none asked for. */
async function restFromRead(w: World, cache: ReturnType<typeof createTrustCache>, pages: number, from: number): Promise<void> {
  await preloaded(w, pages);
  const lookups = w.calls.lookups;
  await lookUp(w, cache, from, DEVICES);
  assert.equal(w.calls.lookups, lookups, 'the rest came from the read');
}

test('preload/after-storm: after five devices found one by one, the rest of the tenant is read in pages and asked for no more', async (t) => {
  const w = await world(t);
  const cache = w.cache();
  await lookUp(w, cache, 0, 5);
  assert.equal(w.calls.lookups, 5);
  await preloaded(w, 3); // 60 devices in pages of 25
  assert.equal(w.calls.counts, 1);

  await lookUp(w, cache, 5, DEVICES);
  for (let i = 0; i < DEVICES; i++) assert.equal((await cache.deviceById('acme', w.ids.get(name(i))!))?.name, name(i));
  assert.deepEqual([w.calls.lookups, w.calls.byId], [5, 0], 'every device came from the pages');

  // A device created after the read is not hidden by it: it is looked up.
  const profile = await w.s.prisma.deviceProfile.findFirstOrThrow({ where: { tenantId: 'acme', isDefault: true } });
  const late = await w.s.prisma.device.create({ data: { tenantId: 'acme', name: 'late-1', deviceProfileId: profile.id } });
  assert.equal((await cache.deviceByName('acme', 'late-1'))?.id, late.id);
  assert.equal(w.calls.lookups, 6);
  assert.equal(w.calls.pages, 3, 'read once');
});

test('preload/too-large: a tenant with more devices than the cache holds is not read at once', async (t) => {
  const w = await world(t);
  const cache = w.cache({ maxDevices: DEVICES - 1 });
  await lookUp(w, cache, 0, 5);
  await eventually(async () => w.calls.counts === 1, 2000, 'devices counted');
  await lookUp(w, cache, 5, 20);
  assert.equal(w.calls.pages, 0);
  assert.equal(w.calls.lookups, 20);
});

test('preload/storm-window: devices found one by one count towards a read only within a minute of each other', async (t) => {
  const w = await world(t);
  const cache = w.cache();
  await lookUp(w, cache, 0, 4);
  w.clock.now += 61_000;
  await lookUp(w, cache, 4, 8);
  assert.equal(w.calls.counts, 0, 'four, then four more a minute later: no storm');
  await lookUp(w, cache, 8, 9);
  await restFromRead(w, cache, 3, 9);
});

test('preload/retry-later: a failed read is reported, lookups carry on, and the next storm five minutes later reads again', async (t) => {
  const w = await world(t);
  const errors: unknown[] = [];
  const cache = w.cache({ onError: (err) => errors.push(err) });
  w.failNextCount();
  await lookUp(w, cache, 0, 5);
  await eventually(async () => errors.length === 1, 2000, 'the failure reported');
  assert.match(String(errors[0]), /connection lost/);
  await lookUp(w, cache, 5, 15);
  assert.deepEqual([w.calls.counts, w.calls.pages, w.calls.lookups], [1, 0, 15], 'no second try within five minutes');
  w.clock.now += 5 * 60_000 + 1;
  await lookUp(w, cache, 15, 20);
  await restFromRead(w, cache, 3, 20);
});

test('preload/changed-while-loading: a device changed while its page was on its way is looked up afresh', async (t) => {
  const w = await world(t);
  const { cache, release } = await pageOnItsWay(w);
  // The page was read; now the device is disabled and the change arrives before the page does.
  const changed = w.ids.get(name(10))!;
  await w.s.prisma.device.update({ where: { id: changed }, data: { status: 'DISABLED' } });
  cache.apply({ type: 'invalidate', tenantId: 'acme', what: 'devices', devices: [{ id: changed, name: name(10) }] });
  release();
  await preloaded(w, 1);

  assert.equal((await cache.deviceByName('acme', name(10)))?.status, 'DISABLED');
  assert.equal(w.calls.lookups, 6, 'the changed device was looked up');
  assert.equal((await cache.deviceById('acme', changed))?.status, 'DISABLED');
  assert.equal(w.calls.byId, 1);
  await lookUp(w, cache, 11, 20);
  assert.equal(w.calls.lookups, 6, 'the others came from the page');
});

test('preload/dropped-while-loading: when the tenant\'s devices change as a whole, a page on its way is thrown away', async (t) => {
  const w = await world(t);
  const { cache, release } = await pageOnItsWay(w);
  cache.apply({ type: 'invalidate', tenantId: 'acme', what: 'devices' });
  release();
  await preloaded(w, 1);
  await lookUp(w, cache, 5, 9);
  assert.equal(w.calls.lookups, 9, 'nothing of the page was kept');
  // Counting starts again: five more found one by one read the tenant again.
  await lookUp(w, cache, 9, 10);
  await restFromRead(w, cache, 2, 10);
});

test('invalidate/one-device: a change that names its devices drops those alone, under every name they had', async (t) => {
  const w = await world(t);
  const cache = w.cache();
  await lookUp(w, cache, 0, 5);
  await preloaded(w, 3);
  const renamed = w.ids.get(name(30))!;
  const other = w.ids.get(name(31))!;
  await cache.pinnedCredentialIds(renamed);
  await cache.pinnedCredentialIds(other);
  await w.s.prisma.device.update({ where: { id: renamed }, data: { name: 'dev-30-renamed' } });
  cache.apply({
    type: 'invalidate',
    tenantId: 'acme',
    what: 'devices',
    devices: [
      { id: renamed, name: name(30) },
      { id: renamed, name: 'dev-30-renamed' },
    ],
  });
  assert.equal(await cache.deviceByName('acme', name(30)), null, 'the old name is free');
  assert.equal((await cache.deviceByName('acme', 'dev-30-renamed'))?.id, renamed);
  assert.equal((await cache.deviceById('acme', renamed))?.name, 'dev-30-renamed');
  assert.deepEqual([w.calls.lookups, w.calls.byId], [7, 1]);
  await cache.pinnedCredentialIds(renamed);
  await cache.pinnedCredentialIds(other);
  assert.equal(w.calls.pinned, 3, 'the pinned set of the changed device alone was read again');
  await lookUp(w, cache, 31, DEVICES);
  assert.equal(w.calls.lookups, 7, 'the other devices stayed');
});

test('events/device-changes: each change names the device under the name it had right before it and the one it has after', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  const named = () =>
    s.published.flatMap((e) => (e.type === 'invalidate' && e.what === 'devices' ? [e.devices?.map((d) => d.name) ?? ['(all)']] : []));
  const id = await device(s, acme, { name: 'a' });
  const url = `/tenant/tenants/acme/devices/${id}`;
  assert.equal((await api(s, 'PUT', url, acme.auth, { name: 'b' })).status, 200);

  // Another process renames the device while a change through this one has read it and waits
  // for it: the change names the name the other process gave, not the one it read.
  const other = await otherConnection(t, s.databaseUrl);
  const behindRename = async (name: string, change: () => Promise<{ status: number }>, status: number) => {
    await other.query('BEGIN');
    await other.query('UPDATE "Device" SET name = $2 WHERE id = $1', [id, name]);
    const changing = change();
    await other.waiters(1, 'the change waiting for the device');
    await other.query('COMMIT');
    assert.equal((await changing).status, status);
  };
  await behindRename('x', () => api(s, 'PUT', url, acme.auth, { name: 'c' }), 200);
  await behindRename('y', () => api(s, 'DELETE', url, acme.auth), 204);
  assert.deepEqual(named(), [['a'], ['a', 'b'], ['x', 'c'], ['y']]);

  // Auto-registration names the device it created.
  const ca = await createCa();
  await trust(s, acme, ca.certPem);
  const leaf = await createDevice({ issuer: ca, cn: 'auto-1' });
  const allowed = await expectAllow(s, { clientId: 'any', certificateChain: [leaf.certPem] });
  const last = s.published.at(-1)!;
  assert.deepEqual(last, { type: 'invalidate', tenantId: 'acme', what: 'devices', devices: [{ id: allowed.device.id, name: 'auto-1' }] });
});

test('invalidate/device-deleted: a certificate listed for a deleted device no longer names it; the CA registers a new one', async (t) => {
  const s = await build(t);
  const { acme, ca } = await trustingTenant(s);
  const leaf = await createDevice({ issuer: ca, cn: 'meter-9' });
  const id = await device(s, acme, { name: 'plc-9' });
  await credential(s, acme, id, leaf.certPem);
  const req = { clientId: 'any', certificateChain: [leaf.certPem] };
  for (let i = 0; i < 3; i++) assert.equal((await expectAllow(s, req)).device.id, id);
  assert.equal((await api(s, 'DELETE', `/tenant/tenants/acme/devices/${id}`, acme.auth)).status, 204);
  const after = await expectAllow(s, req, 'after the delete');
  assert.equal(after.device.name, 'meter-9');
  assert.notEqual(after.device.id, id);
});
