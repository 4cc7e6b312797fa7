/**
 * A CA certificate trusted by several tenants. A certificate is public, so anyone can upload
 * another tenant's CA: with no tenant hint, a connection goes to the single tenant that proved
 * possession of the CA key, else to the tenant that trusted the CA first; AMBIGUOUS_TENANT only
 * when several proved possession. An upload never changes how another tenant's devices are
 * decided; a hint (`username` tenant id, SNI `<tenantId>.`) still decides.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { build, type TestApp } from '../helpers/app.js';
import { createCa, createDevice, type Credentials } from '../../src/certs/certs-service.js';
import { api, expectAllow, expectDeny, tenant, trust, updateDefaultProfile, type AuthRequest, type Tenant } from './fixtures.js';

/** Both steps of proof of possession through the API, the code signed with the CA key. */
async function prove(s: TestApp, t: Tenant, fingerprint: string, ca: Credentials): Promise<void> {
  const base = `/tenant/tenants/${t.id}/trusted-certificates-pop/${fingerprint}`;
  const issued = await api(s, 'POST', `${base}/verification-code`, t.auth);
  assert.equal(issued.status, 200, issued.text);
  const code: string = issued.body.proofOfPossessionUnsignedVerificationCode;
  const signature = crypto.sign('sha256', Buffer.from(code, 'utf8'), ca.keyPem).toString('base64');
  const proved = await api(s, 'POST', `${base}/pop`, t.auth, { proofOfPossessionSignedVerificationCode: signature });
  assert.equal(proved.status, 200, proved.text);
  assert.equal(proved.body.proofOfPossessionValid, true);
}

function explain(s: TestApp, t: Tenant, chain: string) {
  return api(s, 'POST', `/tenant/tenants/${t.id}/trusted-certificates/verify-cert-chain`, t.auth, { chain });
}

function choiceStep(body: any): { ok: boolean; detail: string } {
  const step = body.trace.find((x: any) => x.step === 'tenant choice');
  assert.ok(step, `the trace states the tenant choice: ${JSON.stringify(body.trace)}`);
  return step;
}

test('a shared CA: the first tenant keeps its devices when another uploads its CA; possession decides; hints still decide', async (t) => {
  const s = await build(t);
  const alpha = await tenant(s, 'alpha');
  const beta = await tenant(s, 'beta');
  for (const x of [alpha, beta]) await updateDefaultProfile(s, x, { clientIdPolicy: 'ANY' });
  const ca = await createCa({ cn: 'Alpha Devices CA' });
  // A fresh leaf per request: a leaf that authenticated once is a credential of its device and is
  // found as such (rule 1), whichever tenants trust its CA.
  const leaf = async (cn: string, extra: Partial<AuthRequest> = {}): Promise<AuthRequest> => ({
    clientId: cn,
    certificateChain: [(await createDevice({ issuer: ca, cn })).certPem],
    ...extra,
  });
  const expectTenant = async (req: AuthRequest, tenantId: string, what: string) => {
    const body = await expectAllow(s, req, what);
    assert.equal(body.tenantId, tenantId, `${what}: ${JSON.stringify(body)}`);
    return body;
  };

  // ok/single-tenant: alpha trusts its CA; its device connects, twice (the second from the decision cache).
  const alphaFp = await trust(s, alpha, ca.certPem);
  const pump = await leaf('pump-1');
  const first = await expectTenant(pump, 'alpha', 'ok/single-tenant');
  await expectTenant(pump, 'alpha', 'ok/single-tenant-again');
  const alone = await explain(s, alpha, (await leaf('pump-1')).certificateChain[0]!);
  assert.deepEqual([alone.body.decision, choiceStep(alone.body).ok], ['allow', true], alone.text);

  // ok/upload-without-possession: beta uploads alpha's CA certificate. Alpha's devices stay alpha's:
  // the same certificate, a rotated one, a device never seen before (before this rule: AMBIGUOUS_TENANT).
  const betaFp = await trust(s, beta, ca.certPem);
  await expectTenant(pump, 'alpha', 'ok/upload-without-possession/same-leaf');
  const rotated = await expectTenant(await leaf('pump-1'), 'alpha', 'ok/upload-without-possession/rotated');
  assert.equal(rotated.device.id, first.device.id, 'the same device');
  await expectTenant(await leaf('pump-2'), 'alpha', 'ok/upload-without-possession/new-device');
  // Beta's own devices name beta.
  await expectTenant(await leaf('valve-1', { username: 'beta' }), 'beta', 'ok/hint-username');
  await expectTenant(await leaf('valve-2', { sni: 'beta.mqtt.example.com' }), 'beta', 'ok/hint-sni');
  await expectTenant(await leaf('valve-3', { username: 'gamma' }), 'alpha', 'ok/hint-unknown-tenant');

  // The explanations say where a connection with no hint goes, and name no other tenant.
  const forAlpha = await explain(s, alpha, (await leaf('pump-3')).certificateChain[0]!);
  const alphaStep = choiceStep(forAlpha.body);
  assert.equal(alphaStep.ok, true, alphaStep.detail);
  assert.match(alphaStep.detail, /1 other tenant.*goes to tenant alpha.*trusted the certificate first/);
  const forBeta = await explain(s, beta, (await leaf('valve-4')).certificateChain[0]!);
  assert.equal(forBeta.body.decision, 'allow', 'beta\'s own decision, as if named');
  const betaStep = choiceStep(forBeta.body);
  assert.equal(betaStep.ok, false, betaStep.detail);
  assert.match(betaStep.detail, /goes to another tenant.*trusted the certificate first.*name it as username or in SNI/);
  assert.ok(!JSON.stringify(forBeta.body).includes('alpha'), `the other tenant is not named: ${forBeta.text}`);

  // ok/possession-beta: beta proves possession of the CA key, alpha never did: beta gets connections with no hint.
  await prove(s, beta, betaFp, ca);
  await expectTenant(await leaf('pump-4'), 'beta', 'ok/possession-beta');
  await expectTenant(await leaf('pump-5', { username: 'alpha' }), 'alpha', 'ok/possession-beta/hint-alpha');
  assert.match(choiceStep((await explain(s, beta, (await leaf('valve-5')).certificateChain[0]!)).body).detail, /goes to tenant beta: it alone proved possession/);

  // fail/both-proved: alpha proves possession too: only a hint decides.
  await prove(s, alpha, alphaFp, ca);
  const ambiguous = await expectDeny(s, await leaf('pump-6'), 'AMBIGUOUS_TENANT', 'fail/both-proved');
  assert.match(ambiguous.message, /proved possession/);
  await expectTenant(await leaf('pump-7', { username: 'alpha' }), 'alpha', 'ok/both-proved/hint-username');
  await expectTenant(await leaf('pump-8', { sni: 'beta.mqtt.example.com' }), 'beta', 'ok/both-proved/hint-sni');
  const both = choiceStep((await explain(s, alpha, (await leaf('pump-9')).certificateChain[0]!)).body);
  assert.equal(both.ok, false);
  assert.match(both.detail, /AMBIGUOUS_TENANT/);

  // Every decision is on record under the tenant it went to.
  await s.app.verifier.flush();
  const events = await s.prisma.authEvent.findMany({ where: { deviceName: 'pump-2' }, select: { tenantId: true, result: true } });
  assert.deepEqual(events, [{ tenantId: 'alpha', result: 'allow' }]);
});

test('a shared CA: the tenant that trusted it first wins whichever uploads come later', async (t) => {
  const s = await build(t);
  const tenants = [await tenant(s, 'zulu'), await tenant(s, 'alpha'), await tenant(s, 'mike')];
  const ca = await createCa({ cn: 'Shared CA' });
  for (const x of tenants) {
    await updateDefaultProfile(s, x, { clientIdPolicy: 'ANY' });
    // Uploaded in this order: zulu first, although its id sorts last.
    await trust(s, x, ca.certPem);
  }
  const dev = await createDevice({ issuer: ca, cn: 'meter-1' });
  const body = await expectAllow(s, { clientId: 'meter-1', certificateChain: [dev.certPem] });
  assert.equal(body.tenantId, 'zulu');
});
