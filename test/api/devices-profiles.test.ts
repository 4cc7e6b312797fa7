import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { createCa, createDevice } from '../../src/certs/certs-service.js';
import { build, createTenant, type TestApp } from '../helpers/app.js';
import { opensslV1Certificate, withoutNewlines } from '../helpers/openssl.js';
import { call, pathOf, snapshotDatabase } from '../helpers/requests.js';

const PROFILES = '/tenant/tenants/acme/device-profiles';
const DEVICES = '/tenant/tenants/acme/devices';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

async function setup(t: Parameters<typeof build>[0]): Promise<TestApp & { admin: string }> {
  const s = await build(t);
  return { ...s, admin: await createTenant(s, 'acme') };
}

test('device profiles: every tenant has one default profile with the contract\'s defaults', async (t) => {
  const s = await setup(t);
  const globex = await createTenant(s, 'globex');
  const list = await call(s, 'GET', PROFILES, s.admin);
  assert.equal(list.status, 200);
  assert.equal(list.body.deviceProfiles.length, 1);
  const p = list.body.deviceProfiles[0];
  assert.deepEqual(Object.keys(p).sort(), ['acl', 'autoRegistration', 'clientIdPolicy', 'creationTime', 'default', 'id', 'identity', 'name', 'self']);
  assert.equal(p.default, true);
  assert.deepEqual(p.identity, { source: 'COMMON_NAME', pattern: '^(.+)$' });
  assert.equal(p.clientIdPolicy, 'MUST_MATCH_DEVICE_NAME');
  assert.deepEqual(p.autoRegistration, {});
  assert.deepEqual(p.acl, { publish: ['devices/{deviceName}/#'], subscribe: ['devices/{deviceName}/#'] });
  assert.match(p.creationTime, ISO);
  assert.equal(pathOf(p.self), `${PROFILES}/${p.id}`);
  assert.deepEqual((await call(s, 'GET', `${PROFILES}/${p.id}`, s.admin)).body, p);

  const other = await call(s, 'GET', '/tenant/tenants/globex/device-profiles', globex);
  assert.equal(other.body.deviceProfiles.length, 1);
  assert.notEqual(other.body.deviceProfiles[0].id, p.id, 'each tenant has its own');
});

test('device profiles: create, update and delete with their rules', async (t) => {
  const s = await setup(t);
  const original = (await call(s, 'GET', PROFILES, s.admin)).body.deviceProfiles[0];

  const full = await call(s, 'POST', PROFILES, s.admin, {
    name: 'spiffe',
    identity: { source: 'SAN_URI', pattern: '^([a-z0-9-]+)$', uriPrefix: 'spiffe://my.domain.name/device/' },
    clientIdPolicy: 'ANY',
    autoRegistration: { maxNewDevicesPerHour: 10 },
    acl: { publish: ['telemetry/{deviceName}', 'ids/{deviceId}/#'], subscribe: ['commands/{deviceName}/+'] },
  });
  assert.equal(full.status, 201, full.text);
  assert.equal(full.body.name, 'spiffe');
  assert.equal(full.body.default, false);
  assert.deepEqual(full.body.identity, { source: 'SAN_URI', pattern: '^([a-z0-9-]+)$', uriPrefix: 'spiffe://my.domain.name/device/' });
  assert.equal(full.body.clientIdPolicy, 'ANY');
  assert.deepEqual(full.body.autoRegistration, { maxNewDevicesPerHour: 10 });
  assert.deepEqual(full.body.acl, { publish: ['telemetry/{deviceName}', 'ids/{deviceId}/#'], subscribe: ['commands/{deviceName}/+'] });

  const minimal = await call(s, 'POST', PROFILES, s.admin, { name: 'minimal' });
  assert.equal(minimal.status, 201);
  assert.deepEqual(minimal.body.identity, { source: 'COMMON_NAME', pattern: '^(.+)$' });
  assert.equal(minimal.body.clientIdPolicy, 'MUST_MATCH_DEVICE_NAME');
  assert.deepEqual(minimal.body.acl, original.acl);

  const dup = await call(s, 'POST', PROFILES, s.admin, { name: 'minimal' });
  assert.equal(dup.status, 409);
  assert.equal(dup.body.error, 'deviceProfile/Duplicate');
  assert.equal((await call(s, 'PUT', `${PROFILES}/${full.body.id}`, s.admin, { name: 'minimal' })).status, 409, 'renaming onto a taken name');

  for (const [what, body] of [
    ['an unknown identity source', { name: 'x', identity: { source: 'EMAIL' } }],
    ['an unknown placeholder in a topic', { name: 'x', acl: { publish: ['t/{tenantId}'] } }],
    ['an unknown client id policy', { name: 'x', clientIdPolicy: 'SOMETIMES' }],
    ['a negative quota', { name: 'x', autoRegistration: { maxNewDevicesPerHour: -1 } }],
    ['an empty name', { name: '  ' }],
    ['an unknown field', { name: 'x', tenantId: 'globex' }],
  ] as const) {
    assert.equal((await call(s, 'POST', PROFILES, s.admin, body)).status, 400, what);
  }

  // Partial update: identity fields left out keep their values.
  const updated = await call(s, 'PUT', `${PROFILES}/${full.body.id}`, s.admin, {
    identity: { pattern: '^dev-(\\d+)$' },
    autoRegistration: { maxNewDevicesPerHour: null },
    acl: { subscribe: [] },
  });
  assert.equal(updated.status, 200);
  assert.deepEqual(updated.body.identity, { source: 'SAN_URI', pattern: '^dev-(\\d+)$', uriPrefix: 'spiffe://my.domain.name/device/' });
  assert.deepEqual(updated.body.autoRegistration, {});
  assert.deepEqual(updated.body.acl, { publish: ['telemetry/{deviceName}', 'ids/{deviceId}/#'], subscribe: [] });
  assert.equal(updated.body.clientIdPolicy, 'ANY');
  const sourceOnly = await call(s, 'PUT', `${PROFILES}/${full.body.id}`, s.admin, { identity: { source: 'SAN_DNS' } });
  assert.deepEqual(sourceOnly.body.identity, { source: 'SAN_DNS', pattern: '^dev-(\\d+)$', uriPrefix: 'spiffe://my.domain.name/device/' });
  const back = await call(s, 'PUT', `${PROFILES}/${full.body.id}`, s.admin, { identity: { source: 'SAN_URI' } });
  assert.equal(back.body.identity.source, 'SAN_URI');

  // `default: true` moves the default; it cannot be unset.
  assert.equal((await call(s, 'PUT', `${PROFILES}/${full.body.id}`, s.admin, { default: false })).status, 400);
  const moved = await call(s, 'PUT', `${PROFILES}/${full.body.id}`, s.admin, { default: true });
  assert.equal(moved.body.default, true);
  const defaults = (await call(s, 'GET', `${PROFILES}?pageSize=100`, s.admin)).body.deviceProfiles.filter((p: { default: boolean }) => p.default);
  assert.deepEqual(defaults.map((p: { id: string }) => p.id), [full.body.id], 'exactly one default');
  const createdDefault = await call(s, 'POST', PROFILES, s.admin, { name: 'new-default', default: true });
  assert.equal(createdDefault.body.default, true);
  assert.equal((await call(s, 'GET', `${PROFILES}/${full.body.id}`, s.admin)).body.default, false);

  // Deleting: the default is a 422, a profile in use a 409, others go.
  const isDefault = await call(s, 'DELETE', `${PROFILES}/${createdDefault.body.id}`, s.admin);
  assert.equal(isDefault.status, 422);
  assert.equal(isDefault.body.error, 'deviceProfile/IsDefault');
  const device = await call(s, 'POST', DEVICES, s.admin, { name: 'uses-minimal', deviceProfileId: minimal.body.id });
  assert.equal(device.status, 201);
  const inUse = await call(s, 'DELETE', `${PROFILES}/${minimal.body.id}`, s.admin);
  assert.equal(inUse.status, 409);
  assert.equal(inUse.body.error, 'deviceProfile/InUse');
  assert.equal((await call(s, 'DELETE', `${DEVICES}/${device.body.id}`, s.admin)).status, 204);
  assert.equal((await call(s, 'DELETE', `${PROFILES}/${minimal.body.id}`, s.admin)).status, 204);
  assert.equal((await call(s, 'GET', `${PROFILES}/${minimal.body.id}`, s.admin)).status, 404);
  assert.equal((await call(s, 'DELETE', `${PROFILES}/${minimal.body.id}`, s.admin)).status, 404);
  assert.equal((await call(s, 'GET', `${PROFILES}/not-a-uuid`, s.admin)).status, 404);
  assert.equal((await call(s, 'PUT', `${PROFILES}/${crypto.randomUUID()}`, s.admin, { name: 'x' })).status, 404);
});

test('device profiles: ACL deny rules are stored, returned, partly updated and validated', async (t) => {
  const s = await setup(t);
  const created = await call(s, 'POST', PROFILES, s.admin, {
    name: 'deny',
    acl: { publish: ['#'], subscribe: ['#'], deny: { subscribe: ['test/nosubscribe', 'devices/{deviceName}/secret/+'] } },
  });
  assert.equal(created.status, 201, created.text);
  assert.deepEqual(created.body.acl, {
    publish: ['#'],
    subscribe: ['#'],
    deny: { publish: [], subscribe: ['test/nosubscribe', 'devices/{deviceName}/secret/+'] },
  });
  assert.deepEqual((await call(s, 'GET', `${PROFILES}/${created.body.id}`, s.admin)).body.acl, created.body.acl);

  // A list left out keeps its stored value; allow lists alone leave the deny rules alone.
  const publishToo = await call(s, 'PUT', `${PROFILES}/${created.body.id}`, s.admin, { acl: { deny: { publish: ['ctl/#'] } } });
  assert.equal(publishToo.status, 200, publishToo.text);
  assert.deepEqual(publishToo.body.acl.deny, { publish: ['ctl/#'], subscribe: ['test/nosubscribe', 'devices/{deviceName}/secret/+'] });
  const allowOnly = await call(s, 'PUT', `${PROFILES}/${created.body.id}`, s.admin, { acl: { publish: ['a/#'] } });
  assert.deepEqual(allowOnly.body.acl, { publish: ['a/#'], subscribe: ['#'], deny: publishToo.body.acl.deny });

  // Emptied: the profile is an allow-list again and reads as one without deny rules.
  const cleared = await call(s, 'PUT', `${PROFILES}/${created.body.id}`, s.admin, { acl: { deny: { publish: [], subscribe: [] } } });
  assert.deepEqual(cleared.body.acl, { publish: ['a/#'], subscribe: ['#'] });
  const none = await call(s, 'POST', PROFILES, s.admin, { name: 'plain', acl: { publish: ['x'], subscribe: ['y'] } });
  assert.deepEqual(none.body.acl, { publish: ['x'], subscribe: ['y'] }, 'a profile written without deny rules reads as before');

  for (const [what, acl] of [
    ['`#` not last', { deny: { subscribe: ['a/#/b'] } }],
    ['`+` inside a level', { deny: { publish: ['a/b+'] } }],
    ['an empty filter', { deny: { subscribe: [''] } }],
    ['an unknown placeholder', { deny: { subscribe: ['t/{tenantId}'] } }],
    ['NUL', { deny: { publish: ['a\u0000b'] } }],
    ['a string for a list', { deny: { subscribe: 'test/nosubscribe' } }],
    ['an unknown deny field', { deny: { read: ['a'] } }],
    ['51 filters', { deny: { subscribe: Array.from({ length: 51 }, (_, i) => `t/${i}`) } }],
    ['`#` not last in an allow filter', { publish: ['#/a'] }],
  ] as const) {
    for (const [method, path, body] of [
      ['POST', PROFILES, { name: 'bad', acl }],
      ['PUT', `${PROFILES}/${created.body.id}`, { acl }],
    ] as const) {
      const res = await call(s, method, path, s.admin, body);
      assert.equal(res.status, 400, `${method} ${what}: ${res.text}`);
      for (const key of ['error', 'message', 'info']) assert.equal(typeof res.body[key], 'string', `${what}: error body has "${key}"`);
    }
  }
  assert.deepEqual((await call(s, 'GET', `${PROFILES}/${created.body.id}`, s.admin)).body.acl, cleared.body.acl, 'nothing stored by a 400');
});

test('device profiles: patterns are compiled as RE2 at write time; invalid, non-RE2 and too large ones are 422', async (t) => {
  const s = await setup(t);
  const profile = await call(s, 'POST', PROFILES, s.admin, { name: 'checked', identity: { pattern: '^device-([0-9]+)$' } });
  assert.equal(profile.status, 201);

  const before = await snapshotDatabase(s.prisma);
  const cases: Array<[string, RegExp]> = [
    ['([a-z', /invalid regular expression/],
    ['*abc', /invalid regular expression/],
    ['^(a|\\1a)*$', /RE2 syntax is required.*backreference `\\1`/],
    ['^(?=dev)(.+)$', /RE2 syntax is required.*lookaround `\(\?=`/],
    ['a{99999999999}', /too large/],
  ];
  for (const [pattern, message] of cases) {
    const created = await call(s, 'POST', PROFILES, s.admin, { name: `p-${pattern}`, identity: { pattern } });
    assert.equal(created.status, 422, `create with ${pattern}`);
    assert.equal(created.body.error, 'deviceProfile/InvalidPattern');
    assert.match(created.body.message, /^identity\.pattern /);
    assert.match(created.body.message, message, pattern);
    const updated = await call(s, 'PUT', `${PROFILES}/${profile.body.id}`, s.admin, { identity: { pattern } });
    assert.equal(updated.status, 422, `update with ${pattern}`);
  }
  assert.deepEqual(await snapshotDatabase(s.prisma), before, 'refused patterns change nothing');
  assert.equal((await call(s, 'GET', `${PROFILES}/${profile.body.id}`, s.admin)).body.identity.pattern, '^device-([0-9]+)$');

  // Shapes that backtrack catastrophically elsewhere are linear in RE2, so they are accepted.
  for (const pattern of ['^(.+)$', '^([^.]+)\\.example\\.com$', 'CN-(\\d{1,8})', '(a+)+$', '^(\\w+\\s?)*$']) {
    assert.equal((await call(s, 'PUT', `${PROFILES}/${profile.body.id}`, s.admin, { identity: { pattern } })).status, 200, pattern);
  }
});

test('devices: CRUD, unique names per tenant, profile checks and filters', async (t) => {
  const s = await setup(t);
  const globex = await createTenant(s, 'globex');
  const defaultProfile = (await call(s, 'GET', PROFILES, s.admin)).body.deviceProfiles[0].id;
  const sensors = await call(s, 'POST', PROFILES, s.admin, { name: 'sensors' });

  const created = await call(s, 'POST', DEVICES, s.admin, { name: 'dev-1' });
  assert.equal(created.status, 201);
  const d = created.body;
  assert.deepEqual(Object.keys(d).sort(), ['createdBy', 'creationTime', 'deviceProfileId', 'id', 'name', 'pinCredentials', 'self', 'status']);
  assert.match(d.id, /^[0-9a-f-]{36}$/);
  assert.equal(d.name, 'dev-1');
  assert.equal(d.deviceProfileId, defaultProfile, 'the default profile when none is given');
  assert.equal(d.status, 'ACTIVE');
  assert.equal(d.createdBy, 'API');
  assert.equal(d.pinCredentials, false);
  assert.match(d.creationTime, ISO);
  assert.equal(pathOf(d.self), `${DEVICES}/${d.id}`);
  assert.deepEqual((await call(s, 'GET', `${DEVICES}/${d.id}`, s.admin)).body, d);

  const second = await call(s, 'POST', DEVICES, s.admin, { name: 'dev-2', deviceProfileId: sensors.body.id, status: 'DISABLED', pinCredentials: true });
  assert.equal(second.status, 201);
  assert.equal(second.body.deviceProfileId, sensors.body.id);
  assert.equal(second.body.status, 'DISABLED');
  assert.equal(second.body.pinCredentials, true);

  const dup = await call(s, 'POST', DEVICES, s.admin, { name: 'dev-1' });
  assert.equal(dup.status, 409);
  assert.equal(dup.body.error, 'device/Duplicate');
  assert.equal((await call(s, 'POST', '/tenant/tenants/globex/devices', globex, { name: 'dev-1' })).status, 201, 'names are unique per tenant only');

  const globexProfile = (await call(s, 'GET', '/tenant/tenants/globex/device-profiles', globex)).body.deviceProfiles[0].id;
  for (const deviceProfileId of [globexProfile, crypto.randomUUID(), 'nope']) {
    const res = await call(s, 'POST', DEVICES, s.admin, { name: 'dev-x', deviceProfileId });
    assert.equal(res.status, 422, `profile ${deviceProfileId}`);
    assert.equal(res.body.error, 'device/UnknownProfile');
  }
  for (const name of ['a/b', 'a+b', 'a#', '', '   ', 'x'.repeat(257)]) {
    assert.equal((await call(s, 'POST', DEVICES, s.admin, { name })).status, 400, `name ${JSON.stringify(name)}`);
  }
  assert.equal((await call(s, 'POST', DEVICES, s.admin, { name: 'dev-x', status: 'BROKEN' })).status, 400);
  assert.equal((await call(s, 'POST', DEVICES, s.admin, { name: 'dev-x', createdBy: 'AUTO_REGISTRATION' })).status, 400);

  const byName = await call(s, 'GET', `${DEVICES}?name=dev-2`, s.admin);
  assert.deepEqual(byName.body.devices.map((x: { id: string }) => x.id), [second.body.id]);
  assert.deepEqual((await call(s, 'GET', `${DEVICES}?name=dev`, s.admin)).body.devices, [], 'the name filter is exact');
  assert.deepEqual((await call(s, 'GET', `${DEVICES}?name=nobody`, s.admin)).body.devices, []);

  // Update.
  s.published.length = 0;
  const renamed = await call(s, 'PUT', `${DEVICES}/${d.id}`, s.admin, { name: 'dev-1-renamed', deviceProfileId: sensors.body.id });
  assert.equal(renamed.status, 200);
  assert.equal(renamed.body.name, 'dev-1-renamed');
  assert.equal(renamed.body.deviceProfileId, sensors.body.id);
  assert.equal((await call(s, 'PUT', `${DEVICES}/${d.id}`, s.admin, { name: 'dev-2' })).status, 409);
  assert.equal((await call(s, 'PUT', `${DEVICES}/${d.id}`, s.admin, { deviceProfileId: globexProfile })).status, 422);
  assert.equal((await call(s, 'PUT', `${DEVICES}/${d.id}`, s.admin, { id: crypto.randomUUID() })).status, 400);
  assert.equal((await call(s, 'PUT', `${DEVICES}/${crypto.randomUUID()}`, s.admin, { name: 'x' })).status, 404);
  assert.equal((await call(s, 'GET', `${DEVICES}/not-a-uuid`, s.admin)).status, 404);

  const drops = () => s.published.filter((e) => e.type === 'session-drop' && e.change.kind === 'device' && e.change.deviceId === d.id);
  s.published.length = 0;
  await call(s, 'PUT', `${DEVICES}/${d.id}`, s.admin, { status: 'DISABLED' });
  assert.equal(drops().length, 1, 'disabling a device closes its sessions');
  s.published.length = 0;
  await call(s, 'PUT', `${DEVICES}/${d.id}`, s.admin, { status: 'ACTIVE' });
  assert.equal(drops().length, 0, 'enabling closes nothing');
  s.published.length = 0;
  await call(s, 'PUT', `${DEVICES}/${d.id}`, s.admin, { pinCredentials: true });
  assert.equal(drops().length, 1, 'pinning closes its sessions');

  s.published.length = 0;
  assert.equal((await call(s, 'DELETE', `${DEVICES}/${d.id}`, s.admin)).status, 204);
  assert.equal(drops().length, 1, 'deleting closes its sessions');
  assert.equal((await call(s, 'GET', `${DEVICES}/${d.id}`, s.admin)).status, 404);
  assert.equal((await call(s, 'DELETE', `${DEVICES}/${d.id}`, s.admin)).status, 404);
});

test('credentials: SHA-256 ids, one device per certificate across the service, filters, revoke and delete', async (t) => {
  const s = await setup(t);
  const globex = await createTenant(s, 'globex');
  const ca = await createCa({ cn: 'Credentials CA' });
  const [leaf, leaf2] = await Promise.all([createDevice({ issuer: ca, cn: 'dev-1' }), createDevice({ issuer: ca, cn: 'dev-1b' })]);
  const dev1 = (await call(s, 'POST', DEVICES, s.admin, { name: 'dev-1' })).body;
  const dev2 = (await call(s, 'POST', DEVICES, s.admin, { name: 'dev-2' })).body;
  const foreign = (await call(s, 'POST', '/tenant/tenants/globex/devices', globex, { name: 'dev-1' })).body;
  const creds = (id: string) => `${DEVICES}/${id}/credentials`;

  const added = await call(s, 'POST', creds(dev1.id), s.admin, { credentialsType: 'X509_CERTIFICATE', credentialsValue: leaf.certPem });
  assert.equal(added.status, 201, added.text);
  const c = added.body;
  const der = new crypto.X509Certificate(leaf.certPem).raw;
  assert.equal(c.credentialsId, crypto.createHash('sha256').update(der).digest('hex'));
  assert.match(c.credentialsId, /^[0-9a-f]{64}$/);
  assert.equal(c.credentialsType, 'X509_CERTIFICATE');
  assert.equal(c.deviceId, dev1.id);
  assert.equal(c.certInPemFormat, der.toString('base64'));
  assert.match(c.subject, /CN=dev-1/);
  assert.match(c.issuer, /CN=Credentials CA/);
  assert.equal(BigInt(`0x${c.serialNumber}`), BigInt(`0x${leaf.serialNumberHex}`));
  assert.equal(c.notBefore, leaf.notBefore.toISOString());
  assert.equal(c.notAfter, leaf.notAfter.toISOString());
  assert.equal(c.status, 'ACTIVE');
  assert.equal(c.source, 'API');
  assert.equal(pathOf(c.self), `${creds(dev1.id)}/${c.credentialsId}`);

  // Header lines and line breaks are optional here too.
  const second = await call(s, 'POST', creds(dev1.id), s.admin, { credentialsType: 'X509_CERTIFICATE', credentialsValue: withoutNewlines(leaf2.certPem) });
  assert.equal(second.status, 201);

  const before = await snapshotDatabase(s.prisma);
  const sameDevice = await call(s, 'POST', creds(dev1.id), s.admin, { credentialsType: 'X509_CERTIFICATE', credentialsValue: leaf.certPem });
  assert.equal(sameDevice.status, 409);
  assert.equal(sameDevice.body.error, 'credentials/Duplicate');
  assert.equal((await call(s, 'POST', creds(dev2.id), s.admin, { credentialsType: 'X509_CERTIFICATE', credentialsValue: leaf.certPem })).status, 409);
  const otherTenant = await call(s, 'POST', `/tenant/tenants/globex/devices/${foreign.id}/credentials`, globex, {
    credentialsType: 'X509_CERTIFICATE',
    credentialsValue: leaf.certPem,
  });
  assert.equal(otherTenant.status, 409, 'a certificate belongs to at most one device across the whole service');
  assert.ok(!otherTenant.text.includes(dev1.id) && !otherTenant.text.includes('acme'), 'the conflict does not say whose it is');

  for (const [what, value] of [
    ['garbage', 'not a certificate'],
    ['a broken PEM', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'],
    ['two certificates', leaf.certPem + leaf2.certPem],
  ] as const) {
    const res = await call(s, 'POST', creds(dev2.id), s.admin, { credentialsType: 'X509_CERTIFICATE', credentialsValue: value });
    assert.equal(res.status, 422, what);
    assert.equal(res.body.error, 'credentials/InvalidCertificate');
    assert.match(res.body.message, /^credentialsValue /);
  }
  assert.equal((await call(s, 'POST', creds(dev2.id), s.admin, { credentialsType: 'PASSWORD', credentialsValue: leaf.certPem })).status, 400);
  assert.equal((await call(s, 'POST', creds(crypto.randomUUID()), s.admin, { credentialsType: 'X509_CERTIFICATE', credentialsValue: leaf.certPem })).status, 404);
  assert.deepEqual(await snapshotDatabase(s.prisma), before, 'refused credentials change nothing');

  // A version 1 leaf from `openssl x509 -req` (the seed guides') is a valid device credential.
  const v1 = await opensslV1Certificate(t, 'dev-2');
  assert.equal((await call(s, 'POST', creds(dev2.id), s.admin, { credentialsType: 'X509_CERTIFICATE', credentialsValue: v1 })).status, 201);

  const listed = await call(s, 'GET', creds(dev1.id), s.admin);
  assert.equal(listed.status, 200);
  assert.deepEqual(listed.body.credentials.map((x: { credentialsId: string }) => x.credentialsId).sort(), [c.credentialsId, second.body.credentialsId].sort());
  assert.deepEqual(listed.body.statistics, { currentPage: 1, pageSize: 5 });

  const byCredential = await call(s, 'GET', `${DEVICES}?credentialsId=${c.credentialsId}`, s.admin);
  assert.deepEqual(byCredential.body.devices.map((x: { id: string }) => x.id), [dev1.id]);
  assert.deepEqual((await call(s, 'GET', `${DEVICES}?credentialsId=${c.credentialsId.toUpperCase()}`, s.admin)).body.devices.length, 1);
  assert.deepEqual((await call(s, 'GET', `${DEVICES}?credentialsId=${'0'.repeat(64)}`, s.admin)).body.devices, []);
  assert.deepEqual((await call(s, 'GET', `/tenant/tenants/globex/devices?credentialsId=${c.credentialsId}`, globex)).body.devices, [], 'filters stay in the tenant');

  assert.equal((await call(s, 'GET', `${creds(dev1.id)}/${c.credentialsId}`, s.admin)).body.credentialsId, c.credentialsId);
  assert.equal((await call(s, 'GET', `${creds(dev2.id)}/${c.credentialsId}`, s.admin)).status, 404, 'only under its own device');

  s.published.length = 0;
  const revoked = await call(s, 'PUT', `${creds(dev1.id)}/${c.credentialsId}`, s.admin, { status: 'REVOKED' });
  assert.equal(revoked.status, 200);
  assert.equal(revoked.body.status, 'REVOKED');
  assert.ok(s.published.some((e) => e.type === 'session-drop' && e.change.kind === 'device' && e.change.deviceId === dev1.id));

  const deleted = await call(s, 'DELETE', `${creds(dev1.id)}/${c.credentialsId}`, s.admin);
  assert.equal(deleted.status, 204);
  assert.equal((await call(s, 'GET', `${creds(dev1.id)}/${c.credentialsId}`, s.admin)).status, 404);
  assert.equal((await call(s, 'DELETE', `${creds(dev1.id)}/${c.credentialsId}`, s.admin)).status, 404);

  // Once removed, the certificate may be given to another device; deleting a device frees its certificates.
  assert.equal((await call(s, 'POST', creds(dev2.id), s.admin, { credentialsType: 'X509_CERTIFICATE', credentialsValue: leaf.certPem })).status, 201);
  assert.equal((await call(s, 'DELETE', `${DEVICES}/${dev2.id}`, s.admin)).status, 204);
  assert.equal(
    (await call(s, 'POST', `/tenant/tenants/globex/devices/${foreign.id}/credentials`, globex, { credentialsType: 'X509_CERTIFICATE', credentialsValue: leaf.certPem })).status,
    201,
  );
});
