import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { createCa, createDevice, issueCertificate, type Credentials } from '../../src/certs/certs-service.js';
import { build, createTenant, type TestApp } from '../helpers/app.js';
import { guideCa, guideDevice, opensslSelfSignedCa, opensslV1Certificate, withoutNewlines } from '../helpers/openssl.js';
import { call, pathOf, snapshotDatabase } from '../helpers/requests.js';

const BASE = '/tenant/tenants/acme/trusted-certificates';

/** The base64 body of a PEM, without header lines or line breaks. */
function bodyOf(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}

function derOf(pem: string): Buffer {
  return Buffer.from(bodyOf(pem), 'base64');
}

async function setup(t: Parameters<typeof build>[0]): Promise<TestApp & { admin: string }> {
  const s = await build(t);
  return { ...s, admin: await createTenant(s, 'acme') };
}

const upload = (s: TestApp & { admin: string }, body: Record<string, unknown>, url = BASE) => call(s, 'POST', url, s.admin, body);

test('POST accepts the PEM with or without header lines and line breaks', async (t) => {
  const s = await setup(t);
  const cas = await Promise.all([1, 2, 3, 4, 5].map((i) => createCa({ cn: `Form CA ${i}` })));
  const forms: Array<[string, string]> = [
    ['PEM as written', cas[0]!.certPem],
    ['PEM without line breaks (the seed guide)', withoutNewlines(cas[1]!.certPem)],
    ['base64 body with line breaks', cas[2]!.certPem.split('\n').filter((l) => l && !l.startsWith('-----')).join('\n')],
    ['base64 body on one line', bodyOf(cas[3]!.certPem)],
    ['PEM with CRLF and literal \\n left over from JSON', cas[4]!.certPem.replace(/\n/g, '\\n\r\n')],
  ];
  for (const [i, [what, pem]] of forms.entries()) {
    const res = await upload(s, { status: 'ENABLED', certInPemFormat: pem });
    assert.equal(res.status, 201, `${what}: ${res.text}`);
    assert.equal(res.body.fingerprint, cas[i]!.fingerprintSha1, what);
    assert.equal(res.body.certInPemFormat, bodyOf(cas[i]!.certPem), what);
  }
});

test('POST takes autoRegistrationEnabled as a boolean or as "true"/"false"', async (t) => {
  const s = await setup(t);
  const cases: Array<[unknown, boolean]> = [[true, true], [false, false], ['true', true], ['false', false], [undefined, false]];
  for (const [value, expected] of cases) {
    const ca = await createCa({ cn: `AutoReg ${String(value)}` });
    const res = await upload(s, { status: 'ENABLED', certInPemFormat: ca.certPem, ...(value === undefined ? {} : { autoRegistrationEnabled: value }) });
    assert.equal(res.status, 201, String(value));
    assert.equal(res.body.autoRegistrationEnabled, expected, `autoRegistrationEnabled ${JSON.stringify(value)}`);
  }
  const ca = await createCa({ cn: 'AutoReg bad' });
  for (const value of ['yes', 'TRUE', 1, null]) {
    const res = await upload(s, { status: 'ENABLED', certInPemFormat: ca.certPem, autoRegistrationEnabled: value });
    assert.equal(res.status, 400, `autoRegistrationEnabled ${JSON.stringify(value)} is refused`);
  }
  assert.equal((await upload(s, { status: 'ON', certInPemFormat: ca.certPem })).status, 400);
  assert.equal((await upload(s, { certInPemFormat: ca.certPem })).status, 400, 'status is required');
});

test('the representation: Cumulocity fields, SHA-1 fingerprint of the DER, PEM body without header lines', async (t) => {
  const s = await setup(t);
  const ca = await createCa({ cn: 'Representation CA', org: 'Acme', country: 'DE', key: 'rsa', rsaBits: 2048 });
  const res = await upload(s, { name: 'acme-root', status: 'ENABLED', autoRegistrationEnabled: 'true', certInPemFormat: ca.certPem });
  assert.equal(res.status, 201);
  const c = res.body;
  const der = derOf(ca.certPem);
  const x509 = new crypto.X509Certificate(der);

  assert.deepEqual(
    Object.keys(c).sort(),
    [
      'algorithmName', 'autoRegistrationEnabled', 'certInPemFormat', 'fingerprint', 'issuer', 'name', 'notAfter', 'notBefore',
      'proofOfPossessionValid', 'self', 'serialNumber', 'status', 'subject', 'tenantCertificateAuthority', 'version',
    ],
  );
  assert.equal(c.fingerprint, crypto.createHash('sha1').update(der).digest('hex'));
  assert.match(c.fingerprint, /^[0-9a-f]{40}$/);
  assert.equal(c.certInPemFormat, der.toString('base64'));
  assert.ok(!c.certInPemFormat.includes('-----') && !/\s/.test(c.certInPemFormat));
  assert.equal(c.name, 'acme-root');
  assert.equal(c.status, 'ENABLED');
  assert.equal(c.autoRegistrationEnabled, true);
  assert.equal(c.version, 3);
  assert.equal(c.tenantCertificateAuthority, false);
  assert.equal(c.proofOfPossessionValid, false);
  assert.equal(c.algorithmName, 'SHA256withRSA');
  assert.equal(BigInt(`0x${c.serialNumber}`), BigInt(`0x${x509.serialNumber}`));
  assert.match(c.subject, /CN=Representation CA/);
  assert.match(c.subject, /O=Acme/);
  assert.equal(c.issuer, c.subject, 'self-signed');
  assert.equal(c.notBefore, new Date(x509.validFrom).toISOString());
  assert.equal(c.notAfter, new Date(x509.validTo).toISOString());
  assert.equal(pathOf(c.self), `${BASE}/${c.fingerprint}`);

  // The same representation from GET, and the name defaults to the CN.
  assert.deepEqual((await call(s, 'GET', pathOf(c.self), s.admin)).body, c);
  const ec = await createCa({ cn: 'Unnamed EC CA' });
  const unnamed = await upload(s, { status: 'DISABLED', certInPemFormat: ec.certPem });
  assert.equal(unnamed.body.name, 'Unnamed EC CA');
  assert.equal(unnamed.body.status, 'DISABLED');
  assert.equal(unnamed.body.algorithmName, 'SHA256withECDSA');
});

test('POST refuses what cannot be trusted with a 422 that says why, and stores nothing', async (t) => {
  const s = await setup(t);
  const root = await createCa({ cn: 'Rule Root' });
  const now = Date.now();
  const day = 86_400_000;
  const [caFalse, noBasicConstraints, noKeyCertSign, expired, device, other] = await Promise.all([
    issueCertificate({ subject: { cn: 'CA false' }, basicConstraints: { ca: false }, keyUsage: ['keyCertSign'] }),
    issueCertificate({ subject: { cn: 'No basicConstraints' }, basicConstraints: null, keyUsage: ['keyCertSign'] }),
    issueCertificate({ subject: { cn: 'No keyCertSign' }, basicConstraints: { ca: true }, keyUsage: ['digitalSignature', 'cRLSign'] }),
    createCa({ cn: 'Expired CA', notBefore: new Date(now - 400 * day), notAfter: new Date(now - day) }),
    createDevice({ issuer: root, cn: 'device-1' }),
    createCa({ cn: 'Second CA' }),
  ]);
  const [rsa1024, sha1, v1] = await Promise.all([
    opensslSelfSignedCa(t, { cn: 'RSA 1024 CA', rsaBits: 1024 }),
    opensslSelfSignedCa(t, { cn: 'SHA-1 CA', digest: 'sha1' }),
    opensslV1Certificate(t, 'Version 1 CA'),
  ]);
  const privateKey = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

  const cases: Array<[string, string, RegExp, string]> = [
    ['text that is not PEM', 'this is not a certificate', /not one X\.509 certificate/, 'trustedCertificate/InvalidCertificate'],
    ['a PEM with a broken body', '-----BEGIN CERTIFICATE-----\nMIIBAAAA!!!!\n-----END CERTIFICATE-----\n', /not one X\.509 certificate/, 'trustedCertificate/InvalidCertificate'],
    ['a truncated certificate', root.certPem.slice(0, 200) + '\n-----END CERTIFICATE-----\n', /not one X\.509 certificate/, 'trustedCertificate/InvalidCertificate'],
    ['base64 that is not DER', Buffer.from('hello world, not DER at all').toString('base64'), /not one X\.509 certificate/, 'trustedCertificate/InvalidCertificate'],
    ['a private key', privateKey, /not one X\.509 certificate/, 'trustedCertificate/InvalidCertificate'],
    ['two certificates', root.certPem + other.certPem, /one certificate, found 2/, 'trustedCertificate/InvalidCertificate'],
    ['basicConstraints CA:false', caFalse.certPem, /not a CA.*CA:true/, 'trustedCertificate/NotAcceptable'],
    ['no basicConstraints', noBasicConstraints.certPem, /not a CA.*no basicConstraints/, 'trustedCertificate/NotAcceptable'],
    ['keyUsage without keyCertSign', noKeyCertSign.certPem, /keyUsage.*keyCertSign/, 'trustedCertificate/NotAcceptable'],
    ['an expired CA', expired.certPem, /expired/, 'trustedCertificate/NotAcceptable'],
    ['a device certificate', device.certPem, /not a CA/, 'trustedCertificate/NotAcceptable'],
    ['an RSA-1024 key (openssl)', rsa1024, /RSA key of 1024 bits/, 'trustedCertificate/NotAcceptable'],
    ['a SHA-1 signature (openssl -sha1)', sha1, /SHA1 signatures are not accepted/, 'trustedCertificate/NotAcceptable'],
    ['an X.509 v1 certificate (openssl x509 -req)', v1, /version 1.*version 3/, 'trustedCertificate/NotAcceptable'],
  ];
  const before = await snapshotDatabase(s.prisma);
  for (const [what, pem, message, error] of cases) {
    const res = await upload(s, { status: 'ENABLED', certInPemFormat: pem });
    assert.equal(res.status, 422, `${what}: ${res.text}`);
    assert.equal(res.body.error, error, what);
    assert.match(res.body.message, message, what);
    assert.match(res.body.message, /^certInPemFormat /, `${what}: the message names the field`);
  }
  // A v1 certificate is also not a CA: every broken rule is listed, each with its code.
  const v1res = await upload(s, { status: 'ENABLED', certInPemFormat: v1 });
  assert.deepEqual(v1res.body.details.map((d: { code: string }) => d.code).sort(), ['NOT_A_CA', 'UNSUPPORTED_VERSION']);
  assert.deepEqual(await snapshotDatabase(s.prisma), before, 'nothing was stored');

  // A device profile of another tenant, or of none, is refused too.
  const globex = await createTenant(s, 'globex');
  const foreign = (await call(s, 'GET', '/tenant/tenants/globex/device-profiles', globex)).body.deviceProfiles[0].id;
  const good = await createCa({ cn: 'Good CA' });
  for (const deviceProfileId of [foreign, crypto.randomUUID(), 'not-a-uuid']) {
    const badProfile = await upload(s, { status: 'ENABLED', certInPemFormat: good.certPem, deviceProfileId });
    assert.equal(badProfile.status, 422, deviceProfileId);
    assert.equal(badProfile.body.error, 'trustedCertificate/UnknownProfile');
  }
});

test('the seed guide\'s openssl CA uploads as the guide shows; its device certificate is refused', async (t) => {
  const s = await setup(t);
  const ca = await guideCa(t);
  const res = await upload(s, {
    status: 'ENABLED',
    name: 'certificateName',
    autoRegistrationEnabled: 'true',
    certInPemFormat: withoutNewlines(ca.certPem),
  });
  assert.equal(res.status, 201, res.text);
  assert.equal(res.body.name, 'certificateName');
  assert.equal(res.body.autoRegistrationEnabled, true);
  assert.equal(res.body.version, 3);
  assert.equal(res.body.algorithmName, 'SHA256withRSA');
  assert.match(res.body.subject, /CN=certgate guide CA/);
  assert.equal(res.body.fingerprint, crypto.createHash('sha1').update(derOf(ca.certPem)).digest('hex'));

  const device = await guideDevice(ca, 'guide-device-1');
  const refused = await upload(s, { status: 'ENABLED', certInPemFormat: withoutNewlines(device.certPem) });
  assert.equal(refused.status, 422);
  assert.match(refused.body.message, /not a CA/);
});

test('the same CA twice in a tenant is a 409; another tenant may trust it too', async (t) => {
  const s = await setup(t);
  const globex = await createTenant(s, 'globex');
  const ca = await createCa({ cn: 'Shared CA' });
  assert.equal((await upload(s, { status: 'ENABLED', certInPemFormat: ca.certPem })).status, 201);

  const before = await snapshotDatabase(s.prisma);
  for (const pem of [ca.certPem, withoutNewlines(ca.certPem), bodyOf(ca.certPem)]) {
    const dup = await upload(s, { status: 'DISABLED', name: 'again', certInPemFormat: pem });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.error, 'trustedCertificate/Duplicate');
    assert.match(dup.body.message, new RegExp(ca.fingerprintSha1));
  }
  assert.deepEqual(await snapshotDatabase(s.prisma), before);

  const other = await call(s, 'POST', '/tenant/tenants/globex/trusted-certificates', globex, { status: 'ENABLED', certInPemFormat: ca.certPem });
  assert.equal(other.status, 201);
  assert.equal(other.body.fingerprint, ca.fingerprintSha1);
});

test('GET list pages as Cumulocity does; GET, PUT and DELETE by fingerprint', async (t) => {
  const s = await setup(t);
  const cas: Credentials[] = [];
  for (let i = 1; i <= 7; i++) cas.push(await createCa({ cn: `List CA ${i}` }));
  const bulk = await upload(s, { certificates: cas.map((c) => ({ status: 'ENABLED', certInPemFormat: c.certPem })) }, `${BASE}/bulk`);
  assert.equal(bulk.status, 201);

  const page1 = await call(s, 'GET', BASE, s.admin);
  assert.equal(page1.status, 200);
  assert.equal(page1.body.certificates.length, 5);
  assert.deepEqual(page1.body.statistics, { currentPage: 1, pageSize: 5 });
  assert.ok(page1.body.next);
  const page2 = await call(s, 'GET', pathOf(page1.body.next), s.admin);
  assert.equal(page2.body.certificates.length, 2);
  assert.ok(page2.body.prev);
  const listed = [...page1.body.certificates, ...page2.body.certificates].map((c: { fingerprint: string }) => c.fingerprint);
  assert.deepEqual([...listed].sort(), cas.map((c) => c.fingerprintSha1).sort(), 'every certificate once across the pages');
  const totals = await call(s, 'GET', `${BASE}?pageSize=2&currentPage=2&withTotalPages=true`, s.admin);
  assert.deepEqual(totals.body.statistics, { currentPage: 2, pageSize: 2, totalPages: 4 });
  assert.equal((await call(s, 'GET', `${BASE}?pageSize=2001`, s.admin)).status, 400);

  const fp = cas[0]!.fingerprintSha1;
  const one = await call(s, 'GET', `${BASE}/${fp}`, s.admin);
  assert.equal(one.status, 200);
  assert.equal(one.body.fingerprint, fp);
  assert.equal((await call(s, 'GET', `${BASE}/${fp.toUpperCase()}`, s.admin)).body.fingerprint, fp, 'fingerprints match without case');
  const missing = await call(s, 'GET', `${BASE}/${'0'.repeat(40)}`, s.admin);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error, 'trustedCertificate/NotFound');

  const profile = await call(s, 'POST', '/tenant/tenants/acme/device-profiles', s.admin, { name: 'by-ca' });
  const updated = await call(s, 'PUT', `${BASE}/${fp}`, s.admin, {
    name: 'renamed',
    status: 'DISABLED',
    autoRegistrationEnabled: 'true',
    deviceProfileId: profile.body.id,
  });
  assert.equal(updated.status, 200);
  assert.equal(updated.body.name, 'renamed');
  assert.equal(updated.body.status, 'DISABLED');
  assert.equal(updated.body.autoRegistrationEnabled, true);
  assert.equal(updated.body.deviceProfileId, profile.body.id);
  assert.equal(updated.body.certInPemFormat, one.body.certInPemFormat);
  const partial = await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { autoRegistrationEnabled: false });
  assert.equal(partial.body.name, 'renamed', 'fields left out keep their value');
  assert.equal(partial.body.autoRegistrationEnabled, false);
  const cleared = await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { deviceProfileId: null });
  assert.equal(cleared.body.deviceProfileId, undefined);

  assert.equal((await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { certInPemFormat: cas[1]!.certPem })).status, 400, 'the certificate itself cannot change');
  assert.equal((await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { fingerprint: 'ab' })).status, 400);
  assert.equal((await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { deviceProfileId: crypto.randomUUID() })).status, 422);
  assert.equal((await call(s, 'PUT', `${BASE}/${'0'.repeat(40)}`, s.admin, { name: 'x' })).status, 404);

  // Deleting a profile a trusted certificate points at leaves the certificate without one.
  await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { deviceProfileId: profile.body.id });
  assert.equal((await call(s, 'DELETE', `/tenant/tenants/acme/device-profiles/${profile.body.id}`, s.admin)).status, 204);
  assert.equal((await call(s, 'GET', `${BASE}/${fp}`, s.admin)).body.deviceProfileId, undefined);

  const deleted = await call(s, 'DELETE', `${BASE}/${fp}`, s.admin);
  assert.equal(deleted.status, 204);
  assert.equal(deleted.text, '');
  assert.equal((await call(s, 'GET', `${BASE}/${fp}`, s.admin)).status, 404);
  assert.equal((await call(s, 'DELETE', `${BASE}/${fp}`, s.admin)).status, 404);
  assert.equal((await call(s, 'GET', `${BASE}?pageSize=100`, s.admin)).body.certificates.length, 6);
});

test('bulk upload is all or nothing', async (t) => {
  const s = await setup(t);
  const now = Date.now();
  const [a, b, c, existing] = await Promise.all(['Bulk A', 'Bulk B', 'Bulk C', 'Bulk existing'].map((cn) => createCa({ cn })));
  const expired = await createCa({ cn: 'Bulk expired', notBefore: new Date(now - 10 * 86_400_000), notAfter: new Date(now - 86_400_000) });
  assert.equal((await upload(s, { status: 'ENABLED', certInPemFormat: existing!.certPem })).status, 201);
  const item = (ca: Credentials, extra: Record<string, unknown> = {}) => ({ status: 'ENABLED', certInPemFormat: ca.certPem, ...extra });

  const before = await snapshotDatabase(s.prisma);
  const invalid = await upload(s, { certificates: [item(a!), item(expired), item(b!)] }, `${BASE}/bulk`);
  assert.equal(invalid.status, 422);
  assert.match(invalid.body.message, /certificates\[1\]\.certInPemFormat.*expired/);
  const broken = await upload(s, { certificates: [item(a!), { status: 'ENABLED', certInPemFormat: 'garbage' }] }, `${BASE}/bulk`);
  assert.equal(broken.status, 422);
  assert.match(broken.body.message, /certificates\[1\]/);
  const duplicateOfStored = await upload(s, { certificates: [item(a!), item(b!), item(existing!)] }, `${BASE}/bulk`);
  assert.equal(duplicateOfStored.status, 409);
  assert.match(duplicateOfStored.body.message, new RegExp(existing!.fingerprintSha1));
  const duplicateInRequest = await upload(s, { certificates: [item(a!), item(b!), item(a!, { name: 'again' })] }, `${BASE}/bulk`);
  assert.equal(duplicateInRequest.status, 409);
  const unknownProfile = await upload(s, { certificates: [item(a!), item(b!, { deviceProfileId: crypto.randomUUID() })] }, `${BASE}/bulk`);
  assert.equal(unknownProfile.status, 422);
  assert.equal((await upload(s, { certificates: [] }, `${BASE}/bulk`)).status, 400);
  assert.equal((await upload(s, { certificates: [item(a!), { status: 'ENABLED' }] }, `${BASE}/bulk`)).status, 400);
  assert.deepEqual(await snapshotDatabase(s.prisma), before, 'a refused bulk stores nothing');

  const ok = await upload(s, { certificates: [item(a!, { name: 'first' }), item(b!, { autoRegistrationEnabled: 'true' }), item(c!)] }, `${BASE}/bulk`);
  assert.equal(ok.status, 201);
  assert.deepEqual(Object.keys(ok.body), ['certificates']);
  assert.deepEqual(ok.body.certificates.map((x: { fingerprint: string }) => x.fingerprint), [a!.fingerprintSha1, b!.fingerprintSha1, c!.fingerprintSha1]);
  assert.equal(ok.body.certificates[0].name, 'first');
  assert.equal(ok.body.certificates[1].autoRegistrationEnabled, true);
  assert.equal((await call(s, 'GET', `${BASE}?pageSize=100`, s.admin)).body.certificates.length, 4);
});

test('disabling or deleting a trusted certificate publishes a session drop; other changes do not', async (t) => {
  const s = await setup(t);
  const ca = await createCa({ cn: 'Session CA' });
  const fp = ca.fingerprintSha1;
  assert.equal((await upload(s, { status: 'ENABLED', certInPemFormat: ca.certPem })).status, 201);
  const drops = () =>
    s.published.filter((e) => e.type === 'session-drop' && e.change.kind === 'trusted-certificate' && e.change.tenantId === 'acme' && e.change.fingerprint === fp);
  const invalidations = () => s.published.filter((e) => e.type === 'invalidate' && e.tenantId === 'acme' && e.what === 'trusted-certificates');

  s.published.length = 0;
  await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { name: 'renamed', autoRegistrationEnabled: true });
  assert.equal(drops().length, 0, 'a rename closes no session');
  assert.equal(invalidations().length, 1, 'but caches learn of it');

  s.published.length = 0;
  await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { status: 'DISABLED' });
  assert.equal(drops().length, 1, 'disabling closes the sessions that depend on it');

  s.published.length = 0;
  await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { status: 'DISABLED' });
  await call(s, 'PUT', `${BASE}/${fp}`, s.admin, { status: 'ENABLED' });
  assert.equal(drops().length, 0, 'staying disabled or enabling closes nothing');

  s.published.length = 0;
  assert.equal((await call(s, 'DELETE', `${BASE}/${fp}`, s.admin)).status, 204);
  assert.equal(drops().length, 1, 'deleting closes the sessions that depend on it');

  s.published.length = 0;
  assert.equal((await call(s, 'DELETE', `${BASE}/${fp}`, s.admin)).status, 404);
  assert.equal(s.published.length, 0, 'a refused request publishes nothing');
});
