/**
 * The verifier's resolution, in order, through POST /verifier/v1/authenticate:
 * (1) a listed device credential, (2) a path to an enabled trusted certificate, (3) the tenant,
 * (4) the device name from the profile and the client id policy, (5) the device checks.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { build, type TestApp } from '../helpers/app.js';
import { createCa, createDevice, createIntermediate, type Credentials } from '../../src/certs/certs-service.js';
import {
  api,
  authenticate,
  credential,
  device,
  expectAllow,
  expectDeny,
  openssl,
  profile,
  tempDir,
  tenant,
  trust,
  updateDefaultProfile,
  updateTrusted,
  type AuthRequest,
  type Tenant,
} from './fixtures.js';

const DAY = 86_400_000;

interface Case {
  name: string;
  request: AuthRequest;
  /** `allow:<device name>` or `deny:<REASON>`. */
  expect: string;
  matchedBy?: 'DEVICE_CREDENTIALS' | 'TRUSTED_CERTIFICATE';
  tenantId?: string;
}

async function runCases(s: TestApp, cases: Case[]): Promise<void> {
  for (const c of cases) {
    const res = await authenticate(s, c.request);
    assert.equal(res.status, 200, `${c.name}: ${res.text}`);
    const got = res.body.result === 'allow' ? `allow:${res.body.device.name}` : `deny:${res.body.reason}`;
    assert.equal(got, c.expect, `${c.name}: ${res.text}`);
    if (c.matchedBy) assert.equal(res.body.matchedBy, c.matchedBy, c.name);
    if (c.tenantId) assert.equal(res.body.tenantId, c.tenantId, c.name);
  }
}

test('rule 1: a leaf listed as an ACTIVE API credential names its device; CA status and revocation still apply', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa({ cn: 'Acme Devices CA' });
  const fingerprint = await trust(s, acme, ca.certPem, { autoRegistrationEnabled: false });
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });

  // The CN says nothing about the device: the credential alone names it.
  const listedLeaf = await createDevice({ issuer: ca, cn: 'factory-serial-0042' });
  const pumpId = await device(s, acme, { name: 'pump-7' });
  await credential(s, acme, pumpId, listedLeaf.certPem);

  // Listed, but issued by a CA nobody trusts.
  const rogueCa = await createCa({ cn: 'Rogue CA' });
  const rogueLeaf = await createDevice({ issuer: rogueCa, cn: 'pump-8' });
  const pump8 = await device(s, acme, { name: 'pump-8' });
  await credential(s, acme, pump8, rogueLeaf.certPem);

  // Self-signed leaves: one listed through the API, one expired, one nobody listed.
  const selfSigned = await createCa({ cn: 'sensor-self', basicConstraints: null, keyUsage: ['digitalSignature'] });
  const sensorId = await device(s, acme, { name: 'sensor-1' });
  await credential(s, acme, sensorId, selfSigned.certPem);
  const expiredSelf = await createCa({
    cn: 'sensor-old',
    basicConstraints: null,
    keyUsage: ['digitalSignature'],
    notBefore: new Date(Date.now() - 10 * DAY),
    notAfter: new Date(Date.now() - DAY),
  });
  const oldId = await device(s, acme, { name: 'sensor-old' });
  await credential(s, acme, oldId, expiredSelf.certPem);
  const strangerSelf = await createCa({ cn: 'stranger', basicConstraints: null, keyUsage: ['digitalSignature'] });

  await runCases(s, [
    { name: 'allow/api-credential-ca-issued', request: { clientId: 'x', certificateChain: [listedLeaf.certPem] }, expect: 'allow:pump-7', matchedBy: 'DEVICE_CREDENTIALS' },
    { name: 'allow/api-credential-with-chain', request: { clientId: 'x', certificateChain: [listedLeaf.certPem, ca.certPem] }, expect: 'allow:pump-7', matchedBy: 'DEVICE_CREDENTIALS' },
    { name: 'deny/api-credential-untrusted-issuer', request: { clientId: 'x', certificateChain: [rogueLeaf.certPem] }, expect: 'deny:NO_TRUSTED_ANCHOR' },
    { name: 'allow/self-signed-pinned-through-api', request: { clientId: 'x', certificateChain: [selfSigned.certPem] }, expect: 'allow:sensor-1', matchedBy: 'DEVICE_CREDENTIALS' },
    { name: 'deny/self-signed-pinned-expired', request: { clientId: 'x', certificateChain: [expiredSelf.certPem] }, expect: 'deny:CERTIFICATE_EXPIRED' },
    { name: 'deny/self-signed-unlisted', request: { clientId: 'x', certificateChain: [strangerSelf.certPem] }, expect: 'deny:NO_TRUSTED_ANCHOR' },
  ]);
  const allow = await expectAllow(s, { clientId: 'x', certificateChain: [listedLeaf.certPem] });
  assert.equal(allow.device.id, pumpId);
  assert.equal(allow.device.autoRegistered, false);
  assert.equal(allow.trustedCertificateFingerprint, fingerprint, 'the CA the path was validated to');
  const self = await expectAllow(s, { clientId: 'x', certificateChain: [selfSigned.certPem] });
  assert.equal(self.trustedCertificateFingerprint, undefined, 'a pinned self-signed leaf has no CA');

  // The CA's status still applies to a listed leaf.
  await updateTrusted(s, acme, fingerprint, { status: 'DISABLED' });
  await expectDeny(s, { clientId: 'x', certificateChain: [listedLeaf.certPem] }, 'TRUSTED_CERTIFICATE_DISABLED', 'deny/api-credential-ca-disabled');
  await updateTrusted(s, acme, fingerprint, { status: 'ENABLED' });
  await expectAllow(s, { clientId: 'x', certificateChain: [listedLeaf.certPem] }, 'allow/api-credential-ca-enabled-again');

  // So does revocation of its serial.
  const put = await api(s, 'PUT', `/tenant/tenants/acme/trusted-certificates/settings/crl`, acme.auth, {
    crls: [{ serialNumberInHex: listedLeaf.serialNumberHex, revocationDate: new Date().toISOString() }],
  });
  assert.equal(put.status, 200, put.text);
  await expectDeny(s, { clientId: 'x', certificateChain: [listedLeaf.certPem] }, 'CERTIFICATE_REVOKED', 'deny/api-credential-serial-revoked');

  // A credential set to REVOKED is refused even for a self-signed leaf.
  const revoke = await api(s, 'PUT', `/tenant/tenants/acme/devices/${sensorId}/credentials/${selfSigned.fingerprintSha256}`, acme.auth, { status: 'REVOKED' });
  assert.equal(revoke.status, 200, revoke.text);
  await expectDeny(s, { clientId: 'x', certificateChain: [selfSigned.certPem] }, 'CERTIFICATE_REVOKED', 'deny/credential-revoked');
});

test('rule 1: an OBSERVED credential never bypasses the CA checks', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa({ cn: 'Acme CA' });
  const fingerprint = await trust(s, acme, ca.certPem);
  const leaf = await createDevice({ issuer: ca, cn: 'meter-1' });

  const first = await expectAllow(s, { clientId: 'meter-1', certificateChain: [leaf.certPem] });
  assert.equal(first.matchedBy, 'TRUSTED_CERTIFICATE');
  await s.app.verifier.flush();
  const creds = await api(s, 'GET', `/tenant/tenants/acme/devices/${first.device.id}/credentials`, acme.auth);
  assert.deepEqual(creds.body.credentials.map((c: any) => [c.credentialsId, c.source]), [[leaf.fingerprintSha256, 'OBSERVED']]);

  // Other writes make every process read the credential again: the leaf now matches rule (1).
  await device(s, acme, { name: 'unrelated' });
  const again = await expectAllow(s, { clientId: 'meter-1', certificateChain: [leaf.certPem] });
  assert.equal(again.device.id, first.device.id);

  await updateTrusted(s, acme, fingerprint, { status: 'DISABLED' });
  await expectDeny(s, { clientId: 'meter-1', certificateChain: [leaf.certPem] }, 'TRUSTED_CERTIFICATE_DISABLED', 'deny/observed-ca-disabled');
  await updateTrusted(s, acme, fingerprint, { status: 'ENABLED' });

  const put = await api(s, 'PUT', `/tenant/tenants/acme/trusted-certificates/settings/crl`, acme.auth, {
    crls: [{ serialNumberInHex: leaf.serialNumberHex, revocationDate: new Date().toISOString(), issuerFingerprint: fingerprint }],
  });
  assert.equal(put.status, 200, put.text);
  await expectDeny(s, { clientId: 'meter-1', certificateChain: [leaf.certPem] }, 'CERTIFICATE_REVOKED', 'deny/observed-revoked');

  const del = await api(s, 'DELETE', `/tenant/tenants/acme/trusted-certificates/${fingerprint}`, acme.auth);
  assert.equal(del.status, 204);
  await expectDeny(s, { clientId: 'meter-1', certificateChain: [leaf.certPem] }, 'NO_TRUSTED_ANCHOR', 'deny/observed-ca-deleted');
});

test('rule 1: client id policy and pinning for listed credentials', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa();
  await trust(s, acme, ca.certPem, { autoRegistrationEnabled: false });
  const listed = await createDevice({ issuer: ca, cn: 'gw-1' });
  const other = await createDevice({ issuer: ca, cn: 'gw-1' });
  const gw = await device(s, acme, { name: 'gw-1', pinCredentials: true });
  await credential(s, acme, gw, listed.certPem);

  await runCases(s, [
    { name: 'allow/pinned-listed', request: { clientId: 'gw-1', certificateChain: [listed.certPem] }, expect: 'allow:gw-1', matchedBy: 'DEVICE_CREDENTIALS' },
    { name: 'allow/pinned-listed-d-prefix', request: { clientId: 'd:gw-1', certificateChain: [listed.certPem] }, expect: 'allow:gw-1' },
    { name: 'deny/listed-client-id-mismatch', request: { clientId: 'gw-2', certificateChain: [listed.certPem] }, expect: 'deny:CLIENT_ID_MISMATCH' },
    { name: 'deny/pinned-unlisted-same-cn', request: { clientId: 'gw-1', certificateChain: [other.certPem] }, expect: 'deny:CREDENTIALS_NOT_PINNED' },
  ]);
});

/** ThingsBoard's X.509 chain: root -> intermediate -> device, only the intermediate trusted. */
async function thingsboard(s: TestApp): Promise<{ t: Tenant; root: Credentials; ica: Credentials; leaf: Credentials; fingerprint: string }> {
  const t = await tenant(s, 'tb');
  const root = await createCa({ cn: 'ThingsBoard Root' });
  const ica = await createIntermediate({ issuer: root, cn: 'ThingsBoard Intermediate' });
  const leaf = await createDevice({ issuer: ica, cn: 'device-abc' });
  const profileId = await profile(s, t, { identity: { source: 'COMMON_NAME', pattern: '^device-(.+)$' }, clientIdPolicy: 'ANY' });
  const fingerprint = await trust(s, t, ica.certPem, { deviceProfileId: profileId });
  return { t, root, ica, leaf, fingerprint };
}

test('rule 2: a path to an enabled trusted certificate; a trusted intermediate is an anchor; any order, extra certificates', async (t) => {
  const s = await build(t);
  const { root, ica, leaf, fingerprint } = await thingsboard(s);
  const stranger = await createCa({ cn: 'Unrelated CA' });
  const expired = await createDevice({ issuer: ica, cn: 'device-old', notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
  const v1 = await createDevice({ issuer: ica, cn: 'device-v1', version: 1 });
  const foreign = await createDevice({ issuer: stranger, cn: 'device-abc' });
  const c = (...chain: Credentials[]) => ({ clientId: 'anything', certificateChain: chain.map((x) => x.certPem) });

  await runCases(s, [
    { name: 'allow/leaf-only', request: c(leaf), expect: 'allow:abc', matchedBy: 'TRUSTED_CERTIFICATE', tenantId: 'tb' },
    { name: 'allow/leaf-intermediate-root', request: c(leaf, ica, root), expect: 'allow:abc' },
    { name: 'allow/reversed-order', request: c(leaf, root, ica), expect: 'allow:abc' },
    { name: 'allow/extra-certificates', request: c(leaf, stranger, ica, root), expect: 'allow:abc' },
    { name: 'allow/base64-der', request: { clientId: 'x', certificateChain: [Buffer.from(leaf.certDer).toString('base64')] }, expect: 'allow:abc' },
    { name: 'allow/v1-leaf', request: c(v1), expect: 'allow:v1' },
    { name: 'deny/expired-leaf', request: c(expired), expect: 'deny:CERTIFICATE_EXPIRED' },
    { name: 'deny/unrelated-ca', request: c(foreign), expect: 'deny:NO_TRUSTED_ANCHOR' },
    { name: 'deny/intermediate-as-leaf', request: c(ica, root), expect: 'deny:NO_TRUSTED_ANCHOR' },
  ]);
  const body = await expectAllow(s, c(leaf));
  assert.equal(body.trustedCertificateFingerprint, fingerprint);
  assert.equal(body.device.autoRegistered, true);

  // The tenant that trusts only the root needs the intermediate presented (leaf first, any order after).
  const other = await tenant(s, 'rooted');
  const otherRoot = await createCa({ cn: 'Rooted Root' });
  const otherIca = await createIntermediate({ issuer: otherRoot, cn: 'Rooted Intermediate' });
  await trust(s, other, otherRoot.certPem);
  await updateDefaultProfile(s, other, { clientIdPolicy: 'ANY' });
  const rootLeaf = await createDevice({ issuer: otherIca, cn: 'rooted-1' });
  await runCases(s, [
    { name: 'deny/root-trusted-intermediate-missing', request: c(rootLeaf), expect: 'deny:NO_TRUSTED_ANCHOR' },
    { name: 'allow/root-trusted-intermediate-presented', request: c(rootLeaf, otherRoot, otherIca), expect: 'allow:rooted-1', tenantId: 'rooted' },
  ]);
});

test('rule 2: the seed guides\' openssl CA (uploaded without line breaks) and an X.509 v1 leaf from `openssl x509 -req`', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  const dir = await tempDir(t);
  const cnf = '[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always,issuer\nbasicConstraints=critical,CA:true\nkeyUsage=digitalSignature,cRLSign,keyCertSign\n';
  await fs.writeFile(path.join(dir, 'ca.cnf'), cnf);
  await openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-sha256', '-config', 'ca.cnf', '-extensions', 'v3_ca', '-subj', '/O=certgate tests/CN=openssl guide CA');
  await openssl(dir, 'req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'dev.key', '-out', 'dev.csr', '-subj', '/CN=guide-device-1');
  await openssl(dir, 'x509', '-req', '-in', 'dev.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '30', '-sha256', '-out', 'dev.crt');
  const caPem = await fs.readFile(path.join(dir, 'ca.crt'), 'utf8');
  const devPem = await fs.readFile(path.join(dir, 'dev.crt'), 'utf8');
  assert.match((await openssl(dir, 'x509', '-in', 'dev.crt', '-noout', '-text')).toString(), /Version: 1 \(0x0\)/);

  await trust(s, acme, caPem.replace(/\r?\n/g, ''));
  const allow = await expectAllow(s, { clientId: 'guide-device-1', certificateChain: [devPem, caPem] }, 'allow/openssl-v1-leaf');
  assert.equal(allow.device.name, 'guide-device-1');
});

test('rule 2: disabled trusted certificate', async (t) => {
  const s = await build(t);
  const { t: tb, leaf, fingerprint } = await thingsboard(s);
  await updateTrusted(s, tb, fingerprint, { status: 'DISABLED' });
  await expectDeny(s, { clientId: 'x', certificateChain: [leaf.certPem] }, 'TRUSTED_CERTIFICATE_DISABLED', 'deny/disabled-ca');
  const none = await api(s, 'GET', `/tenant/tenants/tb/devices?pageSize=100`, tb.auth);
  assert.equal(none.body.devices.length, 0, 'nothing registered for a disabled CA');
});

test('rule 3: two tenants trusting one CA: username or SNI names one, else the tenant that trusted it first', async (t) => {
  const s = await build(t);
  const ca = await createCa({ cn: 'Shared Vendor CA' });
  const one = await tenant(s, 'alpha');
  const two = await tenant(s, 'beta');
  await trust(s, one, ca.certPem);
  const betaFp = await trust(s, two, ca.certPem);
  // A fresh leaf per case: once a leaf authenticated it is a credential of that tenant's device (rule 1).
  const r = async (extra: Partial<AuthRequest> = {}) => ({
    clientId: 'shared-1',
    certificateChain: [(await createDevice({ issuer: ca, cn: 'shared-1' })).certPem],
    ...extra,
  });

  await runCases(s, [
    // Nobody proved possession of the CA key: the tenant that trusted it first (shared-ca.test.ts has the rest).
    { name: 'allow/no-hint-first-tenant', request: await r(), expect: 'allow:shared-1', tenantId: 'alpha' },
    { name: 'allow/unknown-hint-first-tenant', request: await r({ username: 'gamma', sni: 'gamma.mqtt.example.com' }), expect: 'allow:shared-1', tenantId: 'alpha' },
    { name: 'allow/sni-single-label', request: await r({ sni: 'alpha' }), expect: 'allow:shared-1', tenantId: 'alpha' },
    { name: 'allow/username-hint', request: await r({ username: 'beta' }), expect: 'allow:shared-1', tenantId: 'beta' },
    { name: 'allow/cumulocity-login-hint', request: await r({ username: 'beta/device_shared-1' }), expect: 'allow:shared-1', tenantId: 'beta' },
    { name: 'allow/sni-hint', request: await r({ sni: 'alpha.mqtt.example.com' }), expect: 'allow:shared-1', tenantId: 'alpha' },
    { name: 'allow/username-over-sni', request: await r({ username: 'alpha', sni: 'beta.mqtt.example.com' }), expect: 'allow:shared-1', tenantId: 'alpha' },
  ]);
  // The hint chose a tenant each time: one device per tenant.
  const a = await expectAllow(s, await r({ username: 'alpha' }));
  const b = await expectAllow(s, await r({ username: 'beta' }));
  assert.notEqual(a.device.id, b.device.id);

  // One of the two disables the CA: the other one is the only candidate left, hint or not.
  await updateTrusted(s, two, betaFp, { status: 'DISABLED' });
  await runCases(s, [{ name: 'allow/other-tenant-disabled', request: await r({ username: 'beta' }), expect: 'allow:shared-1', tenantId: 'alpha' }]);
});

test('rule 4: device name from the profile (CN regex, SAN URI, SAN DNS) and the client id policy', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');

  const cnCa = await createCa({ cn: 'CN CA' });
  const cnProfile = await profile(s, acme, { identity: { source: 'COMMON_NAME', pattern: '^device-(.+)$' }, clientIdPolicy: 'MUST_MATCH_DEVICE_NAME' });
  await trust(s, acme, cnCa.certPem, { deviceProfileId: cnProfile });

  const uriCa = await createCa({ cn: 'amqtt CA' });
  const uriProfile = await profile(s, acme, {
    identity: { source: 'SAN_URI', pattern: '^(.+)$', uriPrefix: 'spiffe://my.domain.name/device/' },
    clientIdPolicy: 'ANY',
  });
  await trust(s, acme, uriCa.certPem, { deviceProfileId: uriProfile });

  const dnsCa = await createCa({ cn: 'DNS CA' });
  const dnsProfile = await profile(s, acme, { identity: { source: 'SAN_DNS', pattern: '^([^.]+)\\.devices\\.example\\.com$' }, clientIdPolicy: 'ANY' });
  await trust(s, acme, dnsCa.certPem, { deviceProfileId: dnsProfile });

  const cnLeaf = await createDevice({ issuer: cnCa, cn: 'device-boiler-3' });
  const cnNoMatch = await createDevice({ issuer: cnCa, cn: 'boiler-4' });
  const uriLeaf = await createDevice({ issuer: uriCa, cn: 'ignored-cn', deviceId: 'robot-9', uriDomain: 'my.domain.name' });
  const uriOtherDomain = await createDevice({ issuer: uriCa, cn: 'robot-10', deviceId: 'robot-10', uriDomain: 'other.domain' });
  const uriNone = await createDevice({ issuer: uriCa, cn: 'robot-11' });
  const dnsLeaf = await createDevice({ issuer: dnsCa, cn: 'x', extraSan: [{ type: 'dns', value: 'www.example.com' }, { type: 'dns', value: 'sensor-7.devices.example.com' }] });
  const dnsNone = await createDevice({ issuer: dnsCa, cn: 'sensor-8', extraSan: [{ type: 'dns', value: 'sensor-8.other.example.com' }] });
  const topicName = await createDevice({ issuer: cnCa, cn: 'device-a/b' });

  await runCases(s, [
    { name: 'allow/cn-regex-group', request: { clientId: 'boiler-3', certificateChain: [cnLeaf.certPem] }, expect: 'allow:boiler-3' },
    { name: 'allow/client-id-d-prefix', request: { clientId: 'd:boiler-3', certificateChain: [cnLeaf.certPem] }, expect: 'allow:boiler-3' },
    { name: 'deny/client-id-is-cn-not-name', request: { clientId: 'device-boiler-3', certificateChain: [cnLeaf.certPem] }, expect: 'deny:CLIENT_ID_MISMATCH' },
    { name: 'deny/client-id-empty', request: { clientId: '', certificateChain: [cnLeaf.certPem] }, expect: 'deny:CLIENT_ID_MISMATCH' },
    { name: 'deny/cn-regex-no-match', request: { clientId: 'boiler-4', certificateChain: [cnNoMatch.certPem] }, expect: 'deny:IDENTITY_NOT_FOUND' },
    { name: 'deny/name-not-usable-in-topics', request: { clientId: 'a/b', certificateChain: [topicName.certPem] }, expect: 'deny:IDENTITY_NOT_FOUND' },
    { name: 'allow/san-uri-spiffe', request: { clientId: 'whatever', certificateChain: [uriLeaf.certPem] }, expect: 'allow:robot-9' },
    { name: 'deny/san-uri-other-prefix', request: { clientId: 'robot-10', certificateChain: [uriOtherDomain.certPem] }, expect: 'deny:IDENTITY_NOT_FOUND' },
    { name: 'deny/san-uri-absent', request: { clientId: 'robot-11', certificateChain: [uriNone.certPem] }, expect: 'deny:IDENTITY_NOT_FOUND' },
    { name: 'allow/san-dns', request: { clientId: 'any', certificateChain: [dnsLeaf.certPem] }, expect: 'allow:sensor-7' },
    { name: 'deny/san-dns-no-match', request: { clientId: 'any', certificateChain: [dnsNone.certPem] }, expect: 'deny:IDENTITY_NOT_FOUND' },
  ]);
});

test('rule 5: device checks: not found, disabled, pinned, tenant suspended, registration quota', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa({ cn: 'Manual CA' });
  const manualFp = await trust(s, acme, ca.certPem, { autoRegistrationEnabled: false });
  const leaf = (cn: string, issuer = ca) => createDevice({ issuer, cn });
  const r = async (cn: string, issuer = ca) => ({ clientId: cn, certificateChain: [(await leaf(cn, issuer)).certPem] });

  await device(s, acme, { name: 'known' });
  await device(s, acme, { name: 'off', status: 'DISABLED' });
  await device(s, acme, { name: 'pinned', pinCredentials: true });

  const quotaCa = await createCa({ cn: 'Quota CA' });
  const quotaProfile = await profile(s, acme, { autoRegistration: { maxNewDevicesPerHour: 2 } });
  await trust(s, acme, quotaCa.certPem, { deviceProfileId: quotaProfile });

  await runCases(s, [
    { name: 'deny/device-not-found-without-auto-registration', request: await r('unknown'), expect: 'deny:DEVICE_NOT_FOUND' },
    { name: 'allow/device-registered-through-api', request: await r('known'), expect: 'allow:known' },
    { name: 'deny/device-disabled', request: await r('off'), expect: 'deny:DEVICE_DISABLED' },
    { name: 'deny/credentials-not-pinned', request: await r('pinned'), expect: 'deny:CREDENTIALS_NOT_PINNED' },
    { name: 'allow/quota-first', request: await r('q1', quotaCa), expect: 'allow:q1' },
    { name: 'allow/quota-second', request: await r('q2', quotaCa), expect: 'allow:q2' },
    { name: 'deny/quota-exceeded', request: await r('q3', quotaCa), expect: 'deny:REGISTRATION_QUOTA_EXCEEDED' },
    { name: 'allow/quota-existing-device', request: await r('q1', quotaCa), expect: 'allow:q1' },
  ]);
  const known = await expectAllow(s, await r('known'));
  assert.equal(known.device.autoRegistered, false);
  assert.equal((await api(s, 'GET', `/tenant/tenants/acme/devices?name=q3`, acme.auth)).body.devices.length, 0);

  // A quota applies to its own profile: the other CA's devices are counted apart.
  await updateTrusted(s, acme, manualFp, { autoRegistrationEnabled: true });
  await runCases(s, [{ name: 'allow/other-profile-not-limited', request: await r('unknown'), expect: 'allow:unknown' }]);

  const suspend = await api(s, 'PUT', '/tenant/tenants/acme', s.management, { status: 'SUSPENDED' });
  assert.equal(suspend.status, 200, suspend.text);
  await runCases(s, [
    { name: 'deny/tenant-suspended', request: await r('known'), expect: 'deny:TENANT_SUSPENDED' },
    { name: 'deny/tenant-suspended-new-device', request: await r('brand-new'), expect: 'deny:TENANT_SUSPENDED' },
  ]);
  assert.equal((await api(s, 'GET', `/tenant/tenants/acme/devices?name=brand-new`, s.management)).body.devices.length, 0);
});

test('EMQX HTTP authenticator: the allow body carries result, is_superuser, client_attrs and acl rules', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa();
  const p = await profile(s, acme, {
    clientIdPolicy: 'ANY',
    acl: { publish: ['t/{deviceName}/up', 'id/{deviceId}/#'], subscribe: ['t/{deviceName}/down'] },
  });
  await trust(s, acme, ca.certPem, { deviceProfileId: p });
  const leaf = await createDevice({ issuer: ca, cn: 'emqx-1' });
  const res = await authenticate(s, { clientId: 'emqx-1', certificateChain: [leaf.certPem] });
  assert.equal(res.status, 200);
  const id = res.body.device.id;
  assert.deepEqual(res.body, {
    result: 'allow',
    is_superuser: false,
    tenantId: 'acme',
    device: { id, name: 'emqx-1', autoRegistered: true },
    matchedBy: 'TRUSTED_CERTIFICATE',
    trustedCertificateFingerprint: ca.fingerprintSha1,
    acl: [
      { permission: 'allow', action: 'publish', topic: 't/emqx-1/up' },
      { permission: 'allow', action: 'publish', topic: `id/${id}/#` },
      { permission: 'allow', action: 'subscribe', topic: 't/emqx-1/down' },
      { permission: 'deny', action: 'all', topic: '#' },
    ],
    client_attrs: { tenant_id: 'acme', device_id: id, device_name: 'emqx-1' },
    cacheTtlSeconds: res.body.cacheTtlSeconds,
    expire_at: Math.floor(leaf.notAfter.getTime() / 1000),
  });
  assert.ok(Number.isInteger(res.body.cacheTtlSeconds) && res.body.cacheTtlSeconds > 0);
  for (const v of Object.values(res.body.client_attrs)) assert.equal(typeof v, 'string', 'EMQX client_attrs are strings');

  const deny = await authenticate(s, { clientId: 'x', certificateChain: [(await createDevice({ issuer: await createCa(), cn: 'x' })).certPem] });
  assert.equal(deny.status, 200, 'EMQX reads deny from the body of a 200');
  assert.deepEqual(Object.keys(deny.body).sort(), ['message', 'reason', 'result']);
  assert.equal(deny.body.result, 'deny');
});
