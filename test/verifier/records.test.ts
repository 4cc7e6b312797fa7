/**
 * What the verifier writes down: observed leaves as OBSERVED credentials with first and last
 * sighting, every decision as a tenant auth event, filterable by device name,
 * result and time, and decisions counted in /metrics by result and reason.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { build } from '../helpers/app.js';
import { otherConnection } from '../helpers/database.js';
import { createCa, createDevice } from '../../src/certs/certs-service.js';
import { createPrismaClient } from '../../src/db/prisma.js';
import { createVerifierRepository, encodeAuthEvent, type ObservedLeaf } from '../../src/verifier/verifier-repository.js';
import { createTrustCache } from '../../src/verifier/trust-cache.js';
import { createVerifier } from '../../src/verifier/verifier-service.js';
import { api, credential, device, expectAllow, expectDeny, sleep, tenant, trust, trustingTenant } from './fixtures.js';

test('leaves that authenticate are recorded: OBSERVED credentials for CA-issued leaves, sightings for listed ones', async (t) => {
  const s = await build(t);
  const { acme, ca } = await trustingTenant(s);
  const v1 = await createDevice({ issuer: ca, cn: 'meter-1' });
  const v2 = await createDevice({ issuer: ca, cn: 'meter-1' });
  const req = (leaf: typeof v1) => ({ clientId: 'meter-1', certificateChain: [leaf.certPem, ca.certPem] });
  const credentials = async (deviceId: string) => {
    await s.app.verifier.flush();
    const res = await api(s, 'GET', `/tenant/tenants/acme/devices/${deviceId}/credentials?pageSize=100`, acme.auth);
    assert.equal(res.status, 200, res.text);
    return new Map<string, any>(res.body.credentials.map((c: any) => [c.credentialsId, c]));
  };

  const first = await expectAllow(s, req(v1));
  const id = first.device.id;
  let seen = await credentials(id);
  assert.equal(seen.size, 1);
  const c1 = seen.get(v1.fingerprintSha256);
  assert.equal(c1.source, 'OBSERVED');
  assert.equal(c1.status, 'ACTIVE');
  assert.equal(c1.serialNumber, v1.serialNumberHex.toLowerCase().replace(/^0+/, ''));
  assert.equal(c1.firstSeenAt, c1.lastSeenAt);
  assert.match(c1.subject, /CN=meter-1/);

  // A rotated certificate of the same device is a second record: the rotation history.
  await sleep(20);
  await expectAllow(s, req(v2));
  seen = await credentials(id);
  assert.deepEqual([...seen.keys()].sort(), [v1.fingerprintSha256, v2.fingerprintSha256].sort());

  // The old certificate comes back later; by now the verifier knows it as a credential (rule 1).
  await device(s, acme, { name: 'unrelated' });
  await sleep(20);
  await expectAllow(s, req(v1));
  seen = await credentials(id);
  const again = seen.get(v1.fingerprintSha256);
  assert.equal(again.firstSeenAt, c1.firstSeenAt, 'first sighting kept');
  assert.ok(again.lastSeenAt > c1.lastSeenAt, `last sighting moves on: ${again.lastSeenAt} > ${c1.lastSeenAt}`);

  // A certificate listed through the API stays an API credential and gets its sightings too.
  const listed = await createDevice({ issuer: ca, cn: 'plc' });
  const plc = await device(s, acme, { name: 'plc' });
  await credential(s, acme, plc, listed.certPem);
  await expectAllow(s, { clientId: 'plc', certificateChain: [listed.certPem] });
  const plcCreds = await credentials(plc);
  assert.equal(plcCreds.size, 1);
  const apiCred = plcCreds.get(listed.fingerprintSha256);
  assert.equal(apiCred.source, 'API');
  assert.ok(apiCred.lastSeenAt, 'an API credential records when it was last used');

  // Denied leaves are not recorded.
  const stranger = await createDevice({ issuer: await createCa(), cn: 'meter-1' });
  await expectDeny(s, req(stranger), 'NO_TRUSTED_ANCHOR');
  assert.equal((await credentials(id)).size, 2);
});

test('auth events: every decision, newest first, filterable by deviceName, result and since; per tenant', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const other = await tenant(s, 'other');
  const ca = await createCa();
  await trust(s, acme, ca.certPem, { autoRegistrationEnabled: false });
  await device(s, acme, { name: 'dev-a' });
  const a = await createDevice({ issuer: ca, cn: 'dev-a' });
  const b = await createDevice({ issuer: ca, cn: 'dev-b' });

  await expectAllow(s, { clientId: 'dev-a', certificateChain: [a.certPem] });
  await expectDeny(s, { clientId: 'dev-b', certificateChain: [b.certPem] }, 'DEVICE_NOT_FOUND');
  await expectDeny(s, { clientId: 'wrong', certificateChain: [a.certPem] }, 'CLIENT_ID_MISMATCH');
  await s.app.verifier.flush();
  await sleep(10);
  const since = new Date().toISOString();
  await sleep(10);
  await expectAllow(s, { clientId: 'd:dev-a', certificateChain: [a.certPem] });
  await s.app.verifier.flush();

  const events = async (query: string, auth = acme.auth) => {
    const res = await api(s, 'GET', `/tenant/tenants/acme/auth-events?pageSize=100${query}`, auth);
    return res;
  };
  const all = await events('');
  assert.equal(all.status, 200, all.text);
  assert.deepEqual(
    all.body.events.map((e: any) => [e.result, e.reason ?? null, e.deviceName ?? null, e.clientId]),
    [
      ['allow', null, 'dev-a', 'd:dev-a'],
      ['deny', 'CLIENT_ID_MISMATCH', 'dev-a', 'wrong'],
      ['deny', 'DEVICE_NOT_FOUND', 'dev-b', 'dev-b'],
      ['allow', null, 'dev-a', 'dev-a'],
    ],
  );
  const [latest] = all.body.events;
  assert.equal(latest.fingerprint, a.fingerprintSha256);
  assert.match(latest.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(all.body.events.every((e: any) => typeof e.message === 'string' && e.message.length > 0));

  // Denials are filed under the device the certificate names, so "why can't dev-b connect?" is one query.
  assert.deepEqual((await events('&deviceName=dev-a')).body.events.map((e: any) => e.clientId), ['d:dev-a', 'wrong', 'dev-a']);
  assert.deepEqual((await events('&result=deny')).body.events.map((e: any) => e.reason), ['CLIENT_ID_MISMATCH', 'DEVICE_NOT_FOUND']);
  assert.deepEqual((await events('&deviceName=dev-b&result=deny')).body.events.map((e: any) => e.reason), ['DEVICE_NOT_FOUND']);
  assert.deepEqual((await events(`&since=${encodeURIComponent(since)}`)).body.events.map((e: any) => e.clientId), ['d:dev-a']);
  assert.deepEqual((await events('&deviceName=dev-b&result=allow')).body.events, []);

  const paged = await api(s, 'GET', '/tenant/tenants/acme/auth-events?pageSize=1&currentPage=2&withTotalPages=true', acme.auth);
  assert.equal(paged.status, 200);
  assert.equal(paged.body.events.length, 1);
  assert.equal(paged.body.events[0].clientId, 'wrong');
  assert.deepEqual(paged.body.statistics, { currentPage: 2, pageSize: 1, totalPages: 4 });

  assert.equal((await events('&result=maybe')).status, 400);
  assert.equal((await events('&since=yesterday')).status, 400);
  // Another tenant's admin sees nothing of acme's, and acme's events stay out of its own list.
  assert.equal((await events('', other.auth)).status, 404);
  const own = await api(s, 'GET', '/tenant/tenants/other/auth-events', other.auth);
  assert.deepEqual(own.body.events, []);
  // The management tenant reads every tenant.
  assert.equal((await events('', s.management)).body.events.length, 4);
});

test('/metrics counts verifier decisions by result and reason, and answers from the decision cache', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa();
  await trust(s, acme, ca.certPem, { autoRegistrationEnabled: false });
  await device(s, acme, { name: 'm1' });
  const known = await createDevice({ issuer: ca, cn: 'm1' });
  const unknown = await createDevice({ issuer: ca, cn: 'm2' });
  for (let i = 0; i < 3; i++) await expectAllow(s, { clientId: 'm1', certificateChain: [known.certPem] });
  for (let i = 0; i < 2; i++) await expectDeny(s, { clientId: 'm2', certificateChain: [unknown.certPem] }, 'DEVICE_NOT_FOUND');
  await expectDeny(s, { clientId: 'm2', certificateChain: ['bm90IGEgY2VydGlmaWNhdGU='] }, 'MALFORMED_CERTIFICATE');

  const res = await s.app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(res.statusCode, 200);
  const value = (labels: string) => {
    const line = res.body.split('\n').find((l) => l.startsWith(`certgate_verifier_decisions_total{${labels}}`));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  assert.equal(value('result="allow",reason=""'), 3);
  assert.equal(value('result="deny",reason="DEVICE_NOT_FOUND"'), 2);
  assert.equal(value('result="deny",reason="MALFORMED_CERTIFICATE"'), 1);
  assert.match(res.body, /certgate_verifier_duration_seconds_count\{result="allow"\} 3/);
  // A chain's decision is kept from its first request on: m1's second and third allows and m2's
  // second deny are answered from the cache; the unreadable chain is decided once.
  assert.match(res.body, /certgate_verifier_cache_total\{result="hit"\} 3\n/);
  assert.match(res.body, /certgate_verifier_cache_total\{result="miss"\} 3\n/);
});

test('a batch of auth events keeps the events of live tenants when one tenant was deleted meanwhile', async (t) => {
  const s = await build(t);
  await tenant(s, 'acme');
  const repository = createVerifierRepository(s.prisma);
  const row = (tenantId: string) => ({ tenantId, time: new Date(), result: 'deny', reason: 'NO_TRUSTED_ANCHOR', message: `for ${tenantId}` });
  await repository.insertAuthEvents([encodeAuthEvent(row('deleted-meanwhile')), encodeAuthEvent(row('acme'))]);
  const stored = await s.prisma.authEvent.findMany({ select: { tenantId: true, message: true } });
  assert.deepEqual(stored, [{ tenantId: 'acme', message: 'for acme' }]);
});

test('every decision is logged at debug with tenant, device, client id, result and time (the caller logs it at info); nothing is gathered at info', async (t) => {
  const s = await build(t);
  const { ca } = await trustingTenant(s);
  const leaf = await createDevice({ issuer: ca, cn: 'logged-1' });
  const decisions = async (level: string) => {
    const lines: string[] = [];
    const logger = pino({ level }, { write: (l: string) => void lines.push(l) });
    const repository = createVerifierRepository(s.prisma);
    const verifier = createVerifier({ repository, cache: createTrustCache(repository), publisher: { publish: async () => {} }, logger });
    await verifier.authenticate({ clientId: 'logged-1', certificateChain: [leaf.certPem] });
    await verifier.authenticate({ clientId: 'x', certificateChain: ['not a certificate'] });
    await verifier.close();
    return lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'auth decision');
  };
  const info = await decisions('debug');
  assert.equal(info.length, 2);
  assert.deepEqual(
    [info[0].tenantId, info[0].deviceName, info[0].clientId, info[0].result, typeof info[0].responseTimeMs],
    ['acme', 'logged-1', 'logged-1', 'allow', 'number'],
  );
  assert.deepEqual([info[1].result, info[1].reason, info[1].clientId], ['deny', 'MALFORMED_CERTIFICATE', 'x']);
  assert.deepEqual(await decisions('info'), []);
});

test('auth events keep every character of what was presented: tabs, line breaks, backslashes; a NUL becomes U+FFFD', async (t) => {
  const s = await build(t);
  await tenant(s, 'acme');
  const repository = createVerifierRepository(s.prisma);
  const clientIds = ['tab\there', 'line\nbreak\r\n', 'back\\slash\\N', '\\N', 'nul\u0000inside', 'ünïcödé ✓'];
  const row = (clientId: string, i: number) => ({ tenantId: 'acme', time: new Date(1_700_000_000_000 + i), result: 'deny', reason: undefined, message: `#${i}`, clientId });
  await repository.insertAuthEvents(clientIds.map((c, i) => encodeAuthEvent(row(c, i))));
  const stored = await s.prisma.authEvent.findMany({ orderBy: { time: 'asc' }, select: { clientId: true, reason: true, deviceId: true, time: true } });
  assert.deepEqual(
    stored.map((e) => e.clientId),
    clientIds.map((c) => c.replace('\u0000', '\ufffd')),
  );
  assert.ok(stored.every((e) => e.reason === null && e.deviceId === null));
  assert.deepEqual(stored.map((e) => e.time.getTime()), clientIds.map((_, i) => 1_700_000_000_000 + i));
});

test('a tenant deleted takes its auth events with it, also while a batch for it is being written', async (t) => {
  const s = await build(t);
  const repository = createVerifierRepository(s.prisma);
  const row = (tenantId: string) => encodeAuthEvent({ tenantId, time: new Date(), result: 'allow', message: `for ${tenantId}` });
  await tenant(s, 'keep');
  for (let i = 0; i < 8; i++) {
    const id = `gone-${i}`;
    await tenant(s, id);
    await repository.insertAuthEvents([row(id)]);
    // The deletion and a batch for the tenant race: whichever goes first, nothing of it stays.
    await Promise.all([
      repository.insertAuthEvents(Array.from({ length: 200 }, (_, n) => row(n % 2 ? id : 'keep'))),
      s.prisma.tenant.delete({ where: { id } }),
    ]);
  }
  const left = await s.prisma.authEvent.groupBy({ by: ['tenantId'], _count: true });
  assert.deepEqual(left.map((g) => [g.tenantId, g._count]), [['keep', 800]]);
  // A tenant made again under a deleted one's id starts with no events.
  await tenant(s, 'gone-0');
  assert.equal(await s.prisma.authEvent.count({ where: { tenantId: 'gone-0' } }), 0);
});

/** A sighting of tenant acme's device `deviceId` presenting the certificate `c`, as the verifier batches them. */
function sightingOf(c: { fingerprintSha256: string; certDer: Uint8Array }, deviceId: string, seenAt: Date): ObservedLeaf {
  return {
    credentialsId: c.fingerprintSha256,
    tenantId: 'acme',
    deviceId,
    certDer: c.certDer,
    subject: `CN=${deviceId}`,
    issuer: 'CN=test CA',
    serialNumber: '01',
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter: new Date(Date.now() + 86_400_000),
    seenAt,
  };
}

test('listener processes writing lastConnectedAt and sightings for the same devices at once never deadlock', async (t) => {
  const s = await build(t);
  await tenant(s, 'acme');
  const profile = await s.prisma.deviceProfile.findFirstOrThrow({ where: { tenantId: 'acme', isDefault: true } });
  // A fleet large enough that PostgreSQL reaches a batch's devices by index, in the batch's order.
  await s.prisma.device.createMany({
    data: Array.from({ length: 3000 }, (_, i) => ({ tenantId: 'acme', name: `meter-${i}`, deviceProfileId: profile.id })),
  });
  await s.prisma.$executeRawUnsafe('ANALYZE "Device"');
  const devices = await s.prisma.device.findMany({ where: { tenantId: 'acme' }, select: { id: true }, orderBy: { name: 'asc' }, take: 300 });
  // Two processes: two clients, each with its own connection pool.
  const other = createPrismaClient(s.databaseUrl, 2);
  t.after(() => other.$disconnect());
  const [a, b] = [createVerifierRepository(s.prisma), createVerifierRepository(other)];
  const ca = await createCa();
  const leaves = await Promise.all(devices.slice(0, 40).map((d, i) => createDevice({ issuer: ca, cn: `meter-${i}` }).then((c) => ({ c, d }))));
  const observed = (at: Date) => leaves.map(({ c, d }) => sightingOf(c, d.id, at));
  let last = new Date(0);
  for (let round = 0; round < 20; round++) {
    last = new Date(Date.now() + round * 1000);
    // The same devices in opposite orders: the order in which a careless join would lock them.
    const forward = new Map(devices.map((d) => [d.id, last] as const));
    const backward = new Map([...forward].reverse());
    const sightings = observed(last);
    await Promise.all([
      a.touchDevices(forward),
      b.touchDevices(backward),
      a.recordObserved(sightings),
      b.recordObserved([...sightings].reverse()),
    ]);
  }
  const touched = await s.prisma.device.findMany({ where: { tenantId: 'acme' }, select: { lastConnectedAt: true } });
  assert.equal(touched.filter((d) => d.lastConnectedAt).length, 300);
  for (const d of touched.filter((x) => x.lastConnectedAt)) assert.equal(d.lastConnectedAt?.getTime(), last.getTime());
  const seen = await s.prisma.deviceCredential.findMany({ where: { tenantId: 'acme' }, select: { lastSeenAt: true, source: true } });
  assert.equal(seen.length, 40);
  for (const c of seen) {
    assert.equal(c.source, 'OBSERVED');
    assert.equal(c.lastSeenAt?.getTime(), last.getTime());
  }
});

/** Tenant acme with devices meter-kept and meter-gone, and a batch of one sighting of each. */
async function twoDeviceSightings(t: Parameters<typeof build>[0]) {
  const s = await build(t);
  await tenant(s, 'acme');
  const profile = await s.prisma.deviceProfile.findFirstOrThrow({ where: { tenantId: 'acme', isDefault: true } });
  const [kept, gone] = await Promise.all(
    ['meter-kept', 'meter-gone'].map((name) => s.prisma.device.create({ data: { tenantId: 'acme', name, deviceProfileId: profile.id } })),
  );
  const ca = await createCa();
  const batch = await Promise.all([kept!, gone!].map(async (d) => sightingOf(await createDevice({ issuer: ca, cn: d.name }), d.id, new Date())));
  return { s, kept: kept!, gone: gone!, batch };
}

test('a sighting whose device was deleted meanwhile is skipped; the rest of its batch is recorded', async (t) => {
  const { s, kept, gone, batch } = await twoDeviceSightings(t);
  await s.prisma.device.delete({ where: { id: gone.id } });
  await createVerifierRepository(s.prisma).recordObserved(batch);
  const rows = await s.prisma.deviceCredential.findMany({ where: { tenantId: 'acme' }, select: { deviceId: true, source: true } });
  assert.deepEqual(rows, [{ deviceId: kept.id, source: 'OBSERVED' }]);
});

test('a device deleted while its sightings wait for it drops out of the batch; the rest is recorded', async (t) => {
  const { s, kept, gone, batch } = await twoDeviceSightings(t);
  // Another process deletes one of the devices and has not committed yet.
  const deleter = await otherConnection(t, s.databaseUrl);
  await deleter.query('BEGIN');
  await deleter.query('DELETE FROM "Device" WHERE id = $1', [gone.id]);
  const recording = createVerifierRepository(s.prisma).recordObserved(batch);
  // The batch waits for the deleted device's lock...
  await deleter.waiters(1, 'the sighting batch waiting for the device being deleted');
  // ...and once the delete commits, goes on without that sighting instead of failing.
  await deleter.query('COMMIT');
  await recording;
  const rows = await s.prisma.deviceCredential.findMany({ where: { tenantId: 'acme' }, select: { deviceId: true } });
  assert.deepEqual(rows, [{ deviceId: kept.id }]);
});
