/**
 * Hostile certificates at the API and the verifier: keys forged or crafted without a private key,
 * and uploads under which no device could ever pass. Each case is the request that used to be
 * accepted and the answer now; rejected writes change nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nameHash } from '../../src/pki/name-hash.js';
import { build, type TestApp } from '../helpers/app.js';
import {
  craftedKey,
  exponentOneKey,
  makeLeaf,
  makeRoot,
  offCurveP256Spki,
  rsaModulus,
  rsaSpki,
  sharedKey,
  type CertSpec,
  type TestCert,
} from '../helpers/pki-fixtures.js';
import { snapshotDatabase } from '../helpers/requests.js';
import { api, device, expectAllow, expectDeny, tenant, trust, updateDefaultProfile, type Tenant } from '../verifier/fixtures.js';

const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));

/** A 3,070-bit odd exponent, as the slow key had. */
function hugeExponent(): bigint {
  return (1n << 3069n) | BigInt('0x' + 'ab'.repeat(100)) | 1n;
}

async function setup(t: Parameters<typeof build>[0]): Promise<TestApp & { acme: Tenant }> {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  return { ...s, acme };
}

/** Stores a trusted certificate as an upload before these rules would have: straight into the table. */
async function storeUnchecked(s: TestApp, tenantId: string, ca: TestCert): Promise<string> {
  const c = ca.parsed;
  await s.prisma.trustedCertificate.create({
    data: {
      tenantId,
      fingerprint: c.sha1,
      sha256: c.sha256,
      subjectHash: nameHash(c.subjectName),
      name: 'stored before the key rules',
      status: 'ENABLED',
      autoRegistrationEnabled: true,
      certDer: Buffer.from(c.der),
      serialNumber: c.serialNumberHex,
      algorithmName: c.algorithmName,
      version: c.version,
      issuer: c.issuer,
      subject: c.subject,
      notBefore: c.notBefore,
      notAfter: c.notAfter,
    },
  });
  return c.sha1;
}

test('CA uploads with keys no CA may have are 422 WEAK_KEY, and change nothing', async (t) => {
  const s = await setup(t);
  const before = await snapshotDatabase(s.prisma);
  const cases: Array<[string, CertSpec, RegExp]> = [
    ['RSA exponent 1', { key: exponentOneKey() }, /RSA public exponent 1 is not accepted/],
    ['RSA exponent of 3,070 bits', { key: craftedKey('rsa', rsaSpki(rsaModulus(sharedKey('rsa')), hugeExponent())) }, /exponent of 3070 bits is not accepted/],
    ['even RSA exponent', { key: craftedKey('rsa', rsaSpki(rsaModulus(sharedKey('rsa')), 65536n)) }, /RSA public exponent 65536 is not accepted/],
    ['EC point off the curve', { key: craftedKey('ec', offCurveP256Spki()) }, /point is not on the curve P-256/],
  ];
  for (const [what, spec, message] of cases) {
    const res = await api(s, 'POST', '/tenant/tenants/acme/trusted-certificates', s.acme.auth, { status: 'ENABLED', certInPemFormat: makeRoot(spec).pem });
    assert.equal(res.status, 422, `${what}: ${res.text}`);
    assert.equal(res.body.error, 'trustedCertificate/NotAcceptable', what);
    assert.match(res.body.message, message, what);
    assert.ok(res.body.details.some((p: { code: string }) => p.code === 'WEAK_KEY'), `${what}: ${res.text}`);
  }
  // The bulk route applies the same rules, all or nothing.
  const bulk = await api(s, 'POST', '/tenant/tenants/acme/trusted-certificates/bulk', s.acme.auth, {
    certificates: [{ status: 'ENABLED', certInPemFormat: makeRoot().pem }, { status: 'ENABLED', certInPemFormat: makeRoot({ key: exponentOneKey() }).pem }],
  });
  assert.equal(bulk.status, 422, bulk.text);
  assert.deepEqual(await snapshotDatabase(s.prisma), before);
});

test('CA uploads under which no device could pass are 422 with the rule they break', async (t) => {
  const s = await setup(t);
  const before = await snapshotDatabase(s.prisma);
  const cases: Array<[string, CertSpec, RegExp]> = [
    ['empty keyUsage', { keyUsage: false, extensions: [{ oid: '2.5.29.15', critical: true, value: hex('030100') }] }, /keyUsage/],
    ['keyUsage with bits set in its unused bits', { keyUsage: false, extensions: [{ oid: '2.5.29.15', critical: true, value: hex('03020107') }] }, /malformed keyUsage extension/],
    ['keyUsage without keyCertSign', { keyUsage: ['digitalSignature', 'cRLSign'] }, /does not include keyCertSign/],
    ['critical nameConstraints that does not parse', { extensions: [{ oid: '2.5.29.30', critical: true, value: hex('ffff') }] }, /malformed nameConstraints extension/],
    ['duplicate extension', { extensions: [{ oid: '2.5.29.14', critical: false, value: hex('0414' + '22'.repeat(20)) }] }, /duplicate subjectKeyIdentifier extension \(RFC 5280 4\.2\)/],
    ['negative serial', { serial: Uint8Array.of(0xff, 0x01) }, /serial number is negative/],
    ['20 KB serial', { serial: new Uint8Array(20_000).fill(0x12) }, /serial number is 20000 octets long; at most 20/],
  ];
  for (const [what, spec, message] of cases) {
    const res = await api(s, 'POST', '/tenant/tenants/acme/trusted-certificates', s.acme.auth, { status: 'ENABLED', certInPemFormat: makeRoot(spec).pem });
    assert.equal(res.status, 422, `${what}: ${res.text}`);
    assert.equal(res.body.error, 'trustedCertificate/NotAcceptable', what);
    assert.match(res.body.message, message, what);
  }
  assert.deepEqual(await snapshotDatabase(s.prisma), before);
  // A CA within every rule, with a 20-octet serial, is still welcome.
  await trust(s, s.acme, makeRoot({ serial: new Uint8Array(20).fill(0x7f) }).pem);
});

test('a CA with RSA exponent 1 stored before the rule: its forged leaf is denied WEAK_KEY, its forged proof of possession is 422', async (t) => {
  const s = await setup(t);
  const key = exponentOneKey();
  const root = makeRoot({ key, subject: 'CN=Exponent One CA' });
  const fp = await storeUnchecked(s, 'acme', root);
  // A leaf made without any private key: its signature is the padded digest of its TBS.
  const forged = makeLeaf(root, { subject: 'CN=forged-device' });
  await expectDeny(s, { clientId: 'forged-device', certificateChain: [forged.pem] }, 'WEAK_KEY', 'leaf alone');
  await expectDeny(s, { clientId: 'forged-device', certificateChain: [forged.pem, root.pem] }, 'WEAK_KEY', 'leaf and CA');
  assert.equal(await s.prisma.device.count({ where: { tenantId: 'acme' } }), 0, 'nothing was auto-registered');

  const code = await api(s, 'POST', `/tenant/tenants/acme/trusted-certificates-pop/${fp}/verification-code`, s.acme.auth);
  assert.equal(code.status, 200, code.text);
  const signature = Buffer.from(key.sign!(Buffer.from(code.body.proofOfPossessionUnsignedVerificationCode, 'utf8'), 'sha256')).toString('base64');
  const pop = await api(s, 'POST', `/tenant/tenants/acme/trusted-certificates-pop/${fp}/pop`, s.acme.auth, { proofOfPossessionSignedVerificationCode: signature });
  assert.equal(pop.status, 422, pop.text);
  assert.equal(pop.body.error, 'trustedCertificate/WeakKey');
  assert.match(pop.body.message, /RSA public exponent 1/);
  const row = await s.prisma.trustedCertificate.findFirstOrThrow({ where: { fingerprint: fp } });
  assert.equal(row.popValid, false);
});

test('presented chains with crafted keys are denied WEAK_KEY', async (t) => {
  const s = await setup(t);
  const root = makeRoot({ subject: 'CN=Honest CA' });
  await trust(s, s.acme, root.pem);
  await expectAllow(s, { clientId: 'dev-ok', certificateChain: [makeLeaf(root, { subject: 'CN=dev-ok' }).pem] }, 'a real leaf');
  const offCurve = makeLeaf(root, { subject: 'CN=dev-off-curve', key: craftedKey('ec', offCurveP256Spki()) });
  await expectDeny(s, { clientId: 'dev-off-curve', certificateChain: [offCurve.pem] }, 'WEAK_KEY', 'leaf off the curve');
  const slowIca = makeRoot({
    subject: 'CN=Slow ICA',
    key: craftedKey('rsa', rsaSpki(rsaModulus(sharedKey('rsa')), hugeExponent())),
  });
  const underSlow = makeLeaf(slowIca, { subject: 'CN=dev-slow' });
  // The slow intermediate, issued by the honest CA, presented with a leaf it "signed".
  const ica = makeLeafAsCa(root, slowIca);
  await expectDeny(s, { clientId: 'dev-slow', certificateChain: [underSlow.pem, ica.pem] }, 'WEAK_KEY', 'intermediate with a huge exponent');
});

/** `template`'s subject and key as an intermediate CA certificate issued by `issuer`. */
function makeLeafAsCa(issuer: TestCert, template: TestCert): TestCert {
  return makeLeaf(issuer, {
    subject: template.subject,
    key: template.key,
    basicConstraints: { ca: true, critical: true },
    keyUsage: ['keyCertSign', 'cRLSign'],
    extKeyUsage: false,
  });
}

test('device credentials: crafted keys, bad serials and duplicate extensions are 422', async (t) => {
  const s = await setup(t);
  const root = makeRoot();
  const id = await device(s, s.acme, { name: 'dev-1' });
  const before = await snapshotDatabase(s.prisma);
  const cases: Array<[string, TestCert, RegExp]> = [
    ['RSA exponent 1', makeLeaf(root, { key: exponentOneKey() }), /RSA public exponent 1 is not accepted/],
    ['EC point off the curve', makeLeaf(root, { key: craftedKey('ec', offCurveP256Spki()) }), /not on the curve P-256/],
    ['negative serial', makeLeaf(root, { serial: Uint8Array.of(0x80, 0x00, 0x01) }), /serial number is negative/],
    ['21-octet serial', makeLeaf(root, { serial: new Uint8Array(21).fill(0x01) }), /21 octets long/],
    ['duplicate extension', makeLeaf(root, { extensions: [{ oid: '2.5.29.37', critical: false, value: hex('300a06082b06010505070302') }] }), /duplicate extendedKeyUsage/],
  ];
  for (const [what, cert, message] of cases) {
    const res = await api(s, 'POST', `/tenant/tenants/acme/devices/${id}/credentials`, s.acme.auth, { credentialsType: 'X509_CERTIFICATE', credentialsValue: cert.pem });
    assert.equal(res.status, 422, `${what}: ${res.text}`);
    assert.equal(res.body.error, 'credentials/NotAcceptable', what);
    assert.match(res.body.message, message, what);
  }
  assert.deepEqual(await snapshotDatabase(s.prisma), before);
  const ok = await api(s, 'POST', `/tenant/tenants/acme/devices/${id}/credentials`, s.acme.auth, { credentialsType: 'X509_CERTIFICATE', credentialsValue: makeLeaf(root).pem });
  assert.equal(ok.status, 201, ok.text);
});
