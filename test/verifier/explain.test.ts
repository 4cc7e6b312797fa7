/**
 * verify-cert-chain: the decision the verifier would make for the tenant in the
 * path, explained step by step, with no side effects.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build, type TestApp } from '../helpers/app.js';
import { createCa, createDevice, createIntermediate } from '../../src/certs/certs-service.js';
import { api, credential, device, expectAllow, expectDeny, profile, tenant, trust, type Tenant } from './fixtures.js';

const explainUrl = (tenantId: string) => `/tenant/tenants/${tenantId}/trusted-certificates/verify-cert-chain`;

function explain(s: TestApp, t: Tenant, body?: Record<string, unknown>, headers: Record<string, string> = {}) {
  return api(s, 'POST', explainUrl(t.id), t.auth, body, headers);
}

async function rowCounts(s: TestApp): Promise<Record<string, number>> {
  await s.app.verifier.flush();
  const [devices, credentials, events] = await Promise.all([s.prisma.device.count(), s.prisma.deviceCredential.count(), s.prisma.authEvent.count()]);
  return { devices, credentials, events };
}

test('verify-cert-chain explains an allow step by step, from the body or the X-Cumulocity-Client-Cert-Chain header, and changes nothing', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const root = await createCa({ cn: 'Acme Root' });
  const ica = await createIntermediate({ issuer: root, cn: 'Acme Issuing' });
  await trust(s, acme, root.certPem);
  const leaf = await createDevice({ issuer: ica, cn: 'dev-1' });
  const before = await rowCounts(s);

  const fromBody = await explain(s, acme, { chain: `${leaf.certPem}${ica.certPem}` });
  assert.equal(fromBody.status, 200, fromBody.text);
  const b = fromBody.body;
  assert.equal(b.successfullyValidated, true);
  assert.equal(b.decision, 'allow');
  assert.equal(b.tenantId, 'acme');
  assert.match(b.subject, /CN=dev-1/);
  assert.match(b.issuer, /CN=Acme Issuing/);
  assert.deepEqual(b.device, { id: '', name: 'dev-1', wouldBeRegistered: true });
  assert.equal(b.reason, undefined);
  const steps = b.trace.map((x: any) => x.step);
  for (const expected of ['parse', 'anchor', 'revocation', 'tenant', 'identity', 'device', 'decision']) {
    assert.ok(steps.includes(expected), `trace has a ${expected} step: ${steps.join(', ')}`);
  }
  assert.equal(steps.filter((x: string) => x === 'signature').length, 2, `a signature step per link: ${steps.join(', ')}`);
  assert.ok(steps.includes('validity') && steps.includes('key-usage'), `validity and extensions: ${steps.join(', ')}`);
  assert.ok(b.trace.every((x: any) => x.ok === true && typeof x.detail === 'string' && x.detail.length > 0));

  // The header: no line breaks allowed, so the PEM blocks arrive on one line.
  const oneLine = `${leaf.certPem}${ica.certPem}`.replace(/\r?\n/g, '');
  const fromHeader = await explain(s, acme, undefined, { 'x-cumulocity-client-cert-chain': oneLine });
  assert.equal(fromHeader.status, 200, fromHeader.text);
  assert.equal(fromHeader.body.decision, 'allow');
  assert.deepEqual(fromHeader.body.trace.map((x: any) => x.step), steps);
  const spaced = `${leaf.certPem} ${ica.certPem}`.replace(/\r?\n/g, ' ');
  assert.equal((await explain(s, acme, {}, { 'x-cumulocity-client-cert-chain': spaced })).body.decision, 'allow');

  // Nothing was registered, recorded or logged as an auth event.
  assert.deepEqual(await rowCounts(s), before);
  const devices = await api(s, 'GET', '/tenant/tenants/acme/devices', acme.auth);
  assert.deepEqual(devices.body.devices, []);

  // An existing device is named with its id.
  const id = await device(s, acme, { name: 'dev-1' });
  const known = await explain(s, acme, { chain: `${leaf.certPem}${ica.certPem}` });
  assert.deepEqual(known.body.device, { id, name: 'dev-1', wouldBeRegistered: false });

  // Input errors.
  assert.equal((await explain(s, acme, {})).status, 400, 'no chain at all');
  assert.equal((await explain(s, acme, { chain: leaf.certPem, extra: 1 })).status, 400, 'unknown field');
  const garbage = await explain(s, acme, { chain: 'not a certificate' });
  assert.equal(garbage.status, 200, garbage.text);
  assert.deepEqual([garbage.body.decision, garbage.body.reason, garbage.body.successfullyValidated], ['deny', 'MALFORMED_CERTIFICATE', false]);
});

test('verify-cert-chain explains denials: which step failed, and whether the chain itself was trusted', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa({ cn: 'Acme CA' });
  const fp = await trust(s, acme, ca.certPem, { autoRegistrationEnabled: false });
  const unknownDevice = await createDevice({ issuer: ca, cn: 'ghost' });
  const revoked = await createDevice({ issuer: ca, cn: 'revoked' });
  const stranger = await createDevice({ issuer: await createCa({ cn: 'Other CA' }), cn: 'x' });
  assert.equal(
    (await api(s, 'PUT', '/tenant/tenants/acme/trusted-certificates/settings/crl', acme.auth, {
      crls: [{ serialNumberInHex: revoked.serialNumberHex, revocationDate: new Date().toISOString() }],
    })).status,
    200,
  );
  await device(s, acme, { name: 'revoked' });
  await device(s, acme, { name: 'named' });
  const named = await createDevice({ issuer: ca, cn: 'named' });

  const cases: Array<{ name: string; body: Record<string, unknown>; reason?: string; validated: boolean; failedStep?: string }> = [
    { name: 'deny/device-not-found', body: { chain: unknownDevice.certPem }, reason: 'DEVICE_NOT_FOUND', validated: true, failedStep: 'device' },
    { name: 'deny/revoked', body: { chain: revoked.certPem }, reason: 'CERTIFICATE_REVOKED', validated: false, failedStep: 'revocation' },
    { name: 'deny/untrusted', body: { chain: stranger.certPem }, reason: 'NO_TRUSTED_ANCHOR', validated: false, failedStep: 'anchor' },
    { name: 'deny/client-id-mismatch', body: { chain: named.certPem, clientId: 'other' }, reason: 'CLIENT_ID_MISMATCH', validated: true, failedStep: 'client id' },
    { name: 'allow/client-id-matches', body: { chain: named.certPem, clientId: 'd:named' }, validated: true },
    { name: 'allow/client-id-not-given', body: { chain: named.certPem }, validated: true },
  ];
  for (const c of cases) {
    const res = await explain(s, acme, c.body);
    assert.equal(res.status, 200, `${c.name}: ${res.text}`);
    assert.equal(res.body.decision, c.reason ? 'deny' : 'allow', `${c.name}: ${res.text}`);
    assert.equal(res.body.reason, c.reason, c.name);
    assert.equal(res.body.successfullyValidated, c.validated, c.name);
    if (c.failedStep) {
      const failed = res.body.trace.filter((x: any) => !x.ok).map((x: any) => x.step);
      assert.ok(failed.includes(c.failedStep), `${c.name}: failed steps ${failed.join(', ')}`);
      assert.equal(typeof res.body.message, 'string');
    }
  }

  const disable = await api(s, 'PUT', `/tenant/tenants/acme/trusted-certificates/${fp}`, acme.auth, { status: 'DISABLED' });
  assert.equal(disable.status, 200);
  const disabled = await explain(s, acme, { chain: named.certPem });
  assert.equal(disabled.body.reason, 'TRUSTED_CERTIFICATE_DISABLED');
  assert.ok(disabled.body.trace.some((x: any) => !x.ok), 'the trace shows what failed');
});

test('verify-cert-chain decides for the tenant in the path only', async (t) => {
  const s = await build(t);
  const alpha = await tenant(s, 'alpha');
  const beta = await tenant(s, 'beta');
  const gamma = await tenant(s, 'gamma');
  const ca = await createCa({ cn: 'Shared CA' });
  await trust(s, alpha, ca.certPem);
  await trust(s, beta, ca.certPem);
  const leaf = await createDevice({ issuer: ca, cn: 'shared' });

  // Two tenants trust the CA; each one's explanation is about itself, never AMBIGUOUS_TENANT.
  for (const t2 of [alpha, beta]) {
    const res = await explain(s, t2, { chain: leaf.certPem });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.decision, 'allow', res.text);
    assert.equal(res.body.tenantId, t2.id);
  }
  const none = await explain(s, gamma, { chain: leaf.certPem });
  assert.deepEqual([none.body.decision, none.body.reason, none.body.tenantId], ['deny', 'NO_TRUSTED_ANCHOR', 'gamma']);
  assert.ok(!JSON.stringify(none.body).includes('alpha'), 'another tenant is not named');

  // A certificate listed for beta's device tells alpha nothing about beta.
  const listed = await createDevice({ issuer: ca, cn: 'listed-in-beta' });
  const betaDevice = await device(s, beta, { name: 'beta-only' });
  await credential(s, beta, betaDevice, listed.certPem);
  const fromAlpha = await explain(s, alpha, { chain: listed.certPem });
  assert.equal(fromAlpha.body.decision, 'allow');
  assert.equal(fromAlpha.body.device.name, 'listed-in-beta', 'resolved by alpha\'s own rules');
  assert.ok(!JSON.stringify(fromAlpha.body).includes(betaDevice));
  const fromBeta = await explain(s, beta, { chain: listed.certPem });
  assert.deepEqual(fromBeta.body.device, { id: betaDevice, name: 'beta-only', wouldBeRegistered: false });

  // A user of another tenant gets 404, the management tenant may look.
  const cross = await api(s, 'POST', explainUrl('alpha'), beta.auth, { chain: leaf.certPem });
  assert.equal(cross.status, 404, cross.text);
  const mgmt = await api(s, 'POST', explainUrl('alpha'), s.management, { chain: leaf.certPem });
  assert.equal(mgmt.status, 200, mgmt.text);
});

test('verify-cert-chain explains denials of listed certificates (rule 1) with the step that failed', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa({ cn: 'Acme CA' });
  const fp = await trust(s, acme, ca.certPem, { autoRegistrationEnabled: false });
  const listed = await createDevice({ issuer: ca, cn: 'plc-1' });
  const plc = await device(s, acme, { name: 'plc-1', pinCredentials: true });
  await credential(s, acme, plc, listed.certPem);
  const expiredSelf = await createCa({
    cn: 'old-sensor',
    basicConstraints: null,
    keyUsage: ['digitalSignature'],
    notBefore: new Date(Date.now() - 10 * 86_400_000),
    notAfter: new Date(Date.now() - 86_400_000),
  });
  const sensor = await device(s, acme, { name: 'old-sensor' });
  await credential(s, acme, sensor, expiredSelf.certPem);

  const failedSteps = async (body: Record<string, unknown>, reason: string) => {
    const res = await explain(s, acme, body);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.reason, reason, res.text);
    return res.body.trace.filter((x: any) => !x.ok).map((x: any) => x.step);
  };
  assert.deepEqual(await failedSteps({ chain: listed.certPem, clientId: 'plc-2' }, 'CLIENT_ID_MISMATCH'), ['client id']);
  assert.deepEqual(await failedSteps({ chain: expiredSelf.certPem }, 'CERTIFICATE_EXPIRED'), ['validity']);
  assert.equal((await api(s, 'PUT', `/tenant/tenants/acme/trusted-certificates/${fp}`, acme.auth, { status: 'DISABLED' })).status, 200);
  assert.ok((await failedSteps({ chain: listed.certPem }, 'TRUSTED_CERTIFICATE_DISABLED')).includes('anchor'));
});

test('verify-cert-chain tells when auto-registration would exceed the hourly quota, as the verifier would deny', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa();
  const limited = await profile(s, acme, { clientIdPolicy: 'ANY', autoRegistration: { maxNewDevicesPerHour: 1 } });
  await trust(s, acme, ca.certPem, { deviceProfileId: limited });
  const first = await createDevice({ issuer: ca, cn: 'first' });
  const second = await createDevice({ issuer: ca, cn: 'second' });

  const before = await explain(s, acme, { chain: second.certPem });
  assert.deepEqual(before.body.device, { id: '', name: 'second', wouldBeRegistered: true });
  await expectAllow(s, { clientId: 'first', certificateChain: [first.certPem] });
  const after = await explain(s, acme, { chain: second.certPem });
  assert.deepEqual([after.body.decision, after.body.reason, after.body.successfullyValidated], ['deny', 'REGISTRATION_QUOTA_EXCEEDED', true]);
  await expectDeny(s, { clientId: 'second', certificateChain: [second.certPem] }, 'REGISTRATION_QUOTA_EXCEEDED', 'the verifier agrees');
});
