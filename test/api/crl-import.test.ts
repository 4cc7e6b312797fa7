/**
 * CRL import against hostile and large input: CRLs out of their validity window (RFC 5280 6.3.3),
 * serials longer than 20 octets (RFC 5280 4.1.2.2) in a CRL or in the JSON holds, and a signed CRL
 * of 100,000 entries imported in seconds while another tenant's devices are decided promptly.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build, type TestApp } from '../helpers/app.js';
import { makeCrl, makeLargeCrl, makeLeaf, makeRoot } from '../helpers/pki-fixtures.js';
import { snapshotDatabase } from '../helpers/requests.js';
import { api, authenticate, expectAllow, expectDeny, tenant, trust, updateDefaultProfile, type Tenant } from '../verifier/fixtures.js';

const HOUR = 3600_000;
const DAY = 24 * HOUR;

async function setup(t: Parameters<typeof build>[0]): Promise<TestApp & { acme: Tenant }> {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  return { ...s, acme };
}

function postCrl(s: TestApp, t: Tenant, fingerprint: string, body: Uint8Array | string, type = 'application/pkix-crl') {
  return s.app.inject({
    method: 'POST',
    url: `/tenant/tenants/${t.id}/trusted-certificates/${fingerprint}/crl`,
    headers: { authorization: t.auth, 'content-type': type },
    payload: typeof body === 'string' ? body : Buffer.from(body),
  });
}

test('CRLs outside their validity window are 422 and change nothing (RFC 5280 6.3.3)', async (t) => {
  const s = await setup(t);
  const ca = makeRoot({ subject: 'CN=Window CA' });
  const fp = await trust(s, s.acme, ca.pem);
  const before = await snapshotDatabase(s.prisma);
  const cases: Array<[string, Parameters<typeof makeCrl>[0], RegExp]> = [
    ['expired: nextUpdate an hour ago', { issuer: ca, thisUpdate: new Date(Date.now() - 8 * DAY), nextUpdate: new Date(Date.now() - HOUR) }, /CRL is out of date: its nextUpdate was .* \(RFC 5280 6\.3\.3\)/],
    ['not yet valid: thisUpdate tomorrow', { issuer: ca, thisUpdate: new Date(Date.now() + DAY), nextUpdate: new Date(Date.now() + 8 * DAY) }, /CRL is not valid yet: its thisUpdate is .* \(RFC 5280 6\.3\.3\)/],
  ];
  for (const [what, spec, message] of cases) {
    const res = await postCrl(s, s.acme, fp, makeCrl({ ...spec, revoked: [{ serialHex: '0badc0de' }] }).der);
    assert.equal(res.statusCode, 422, `${what}: ${res.body}`);
    assert.equal(res.json().error, 'revocation/InvalidCrl', what);
    assert.match(res.json().message, message, what);
  }
  assert.deepEqual(await snapshotDatabase(s.prisma), before);
  // A current CRL, even one written by an issuer whose clock runs a minute ahead, is imported.
  const current = await postCrl(s, s.acme, fp, makeCrl({ issuer: ca, thisUpdate: new Date(Date.now() + 60_000), revoked: [{ serialHex: '0badc0de' }] }).der);
  assert.equal(current.statusCode, 201, current.body);
});

test('serials longer than 20 octets are 422, in a CRL and in PUT settings/crl (RFC 5280 4.1.2.2)', async (t) => {
  const s = await setup(t);
  const ca = makeRoot({ subject: 'CN=Serial CA' });
  const fp = await trust(s, s.acme, ca.pem);
  const before = await snapshotDatabase(s.prisma);
  // The CRL: one entry with a 5,000-octet serial (an index row too big: a 500 before).
  for (const [what, serialHex] of [
    ['5,000 octets', '7f'.repeat(5000)],
    ['21 octets', '01' + '00'.repeat(20)],
  ] as const) {
    const res = await postCrl(s, s.acme, fp, makeCrl({ issuer: ca, revoked: [{ serialHex: '01' }, { serialHex }] }).der);
    assert.equal(res.statusCode, 422, `${what}: ${res.body}`);
    assert.equal(res.json().error, 'revocation/InvalidCrl');
    assert.match(res.json().message, new RegExp(`entry 1: serial number of ${serialHex.length / 2} octets; at most 20 are allowed \\(RFC 5280 4\\.1\\.2\\.2\\)`));
  }
  const base = '/tenant/tenants/acme/trusted-certificates/settings/crl';
  const revocationDate = new Date().toISOString();
  for (const [what, serial] of [
    ['21 octets', '01' + '00'.repeat(20)],
    ['5,000 octets', 'ab'.repeat(5000)],
    ['5,000 octets with colons', 'ab:'.repeat(4999) + 'ab'],
  ] as const) {
    const res = await api(s, 'PUT', base, s.acme.auth, { crls: [{ serialNumberInHex: '0a', revocationDate }, { serialNumberInHex: serial, revocationDate }] });
    assert.equal(res.status, 422, `${what}: ${res.text}`);
    assert.equal(res.body.error, 'revocation/InvalidSerial');
    assert.match(res.body.message, /^crls\[1\]\.serialNumberInHex: serial number of \d+ octets; at most 20 are allowed/);
  }
  assert.deepEqual(await snapshotDatabase(s.prisma), before);
  // 20 octets, with leading zeros and a sign octet, are fine: they are compared by value.
  for (const serial of ['7f'.repeat(20), '00' + 'ff'.repeat(20), '0000' + '12'.repeat(20)]) {
    const res = await api(s, 'PUT', base, s.acme.auth, { crls: [{ serialNumberInHex: serial, revocationDate }] });
    assert.equal(res.status, 200, `${serial}: ${res.text}`);
  }
  const imported = await postCrl(s, s.acme, fp, makeCrl({ issuer: ca, revoked: [{ serialHex: '00' + 'ee'.repeat(20) }] }).der);
  assert.equal(imported.statusCode, 201, imported.body);
});

test('a signed CRL of 100,000 entries imports in seconds while another tenant is decided promptly', async (t) => {
  const s = await setup(t);
  const ca = makeRoot({ subject: 'CN=Large CRL CA' });
  const fp = await trust(s, s.acme, ca.pem);
  const serialOf = (i: number) => '7e' + i.toString(16).padStart(30, '0');
  const revokedLeaf = makeLeaf(ca, { subject: 'CN=revoked-42', serial: new Uint8Array(Buffer.from(serialOf(42), 'hex')) });
  const keptLeaf = makeLeaf(ca, { subject: 'CN=kept', serial: new Uint8Array(Buffer.from('7f' + '00'.repeat(15), 'hex')) });
  await expectAllow(s, { clientId: 'revoked-42', certificateChain: [revokedLeaf.pem] }, 'before the CRL');

  // Another tenant with its own CA and device, decided once so its decision is warm.
  const other = await tenant(s, 'other');
  await updateDefaultProfile(s, other, { clientIdPolicy: 'ANY' });
  const otherCa = makeRoot({ subject: 'CN=Other Tenant CA' });
  await trust(s, other, otherCa.pem);
  const otherLeaf = makeLeaf(otherCa, { subject: 'CN=other-device' });
  const otherRequest = { clientId: 'other-device', certificateChain: [otherLeaf.pem] };
  await expectAllow(s, otherRequest, 'other tenant, warm-up');

  const crl = makeLargeCrl(ca, 100_000, { serialOf });
  assert.ok(crl.pem.length > 4_000_000, `a PEM of ${crl.pem.length} octets, beyond the general body limit`);

  const published = s.published.length;
  let done = false;
  const started = Date.now();
  const importing = postCrl(s, s.acme, fp, crl.pem, 'application/x-pem-file').finally(() => (done = true));
  // Decisions for the other tenant while the import runs: each answers well within 2 s.
  const waits: number[] = [];
  while (!done) {
    const t0 = Date.now();
    const res = await authenticate(s, otherRequest);
    waits.push(Date.now() - t0);
    assert.equal(res.body.result, 'allow', res.text);
  }
  const res = await importing;
  const took = Date.now() - started;
  assert.equal(res.statusCode, 201, res.body.slice(0, 500));
  // The answer names the CA's first 2,000 holds; GET settings/crl lists them all.
  assert.equal(res.json().crls.length, 2_000);
  assert.deepEqual(res.json().crls[0], { serialNumberInHex: serialOf(0).replace(/^0+/, ''), revocationDate: res.json().crls[0].revocationDate, issuerFingerprint: fp, source: 'CRL' });
  assert.ok(waits.length >= 1);
  assert.ok(Math.max(...waits) < 2_000, `decisions for another tenant during the import took ${waits.join(', ')} ms`);
  assert.ok(took < 30_000, `the import took ${took} ms`);
  t.diagnostic(`import of 100,000 entries: ${took} ms; ${waits.length} decisions for another tenant meanwhile, slowest ${Math.max(...waits)} ms`);

  assert.equal(await s.prisma.revokedSerial.count({ where: { tenantId: 'acme', issuerFingerprint: fp, source: 'CRL' } }), 100_000);
  const events = s.published.slice(published);
  assert.ok(events.some((e) => e.type === 'invalidate' && e.tenantId === 'acme' && e.what === 'revocations'), 'verifiers are told the revocations changed');
  // Every newly revoked serial closes its sessions: a few hundred serials per change.
  const drops = events.flatMap((e) => (e.type === 'session-drop' && e.change.kind === 'serials' ? [e.change] : []));
  assert.equal(new Set(drops.flatMap((c) => c.serialHexes)).size, 100_000);
  assert.ok(drops.every((c) => c.tenantId === 'acme' && c.issuerFingerprint === fp));
  assert.ok(drops.length <= 1_000, `${drops.length} changes`);
  assert.ok(events.every((e) => Buffer.byteLength(JSON.stringify(e)) < 7_900), 'each change fits in one NOTIFY payload');
  await expectDeny(s, { clientId: 'revoked-42', certificateChain: [revokedLeaf.pem] }, 'CERTIFICATE_REVOKED', 'a serial of the CRL');
  await expectAllow(s, { clientId: 'kept', certificateChain: [keptLeaf.pem] }, 'a serial not in the CRL');

  // The same CRL again: nothing new is held, so no session is named; the count stays.
  const again = s.published.length;
  const second = await postCrl(s, s.acme, fp, crl.der);
  assert.equal(second.statusCode, 201);
  assert.equal(await s.prisma.revokedSerial.count({ where: { tenantId: 'acme' } }), 100_000);
  assert.equal(s.published.slice(again).filter((e) => e.type === 'session-drop').length, 0);
});

test('12 CRL imports at once: all land, and another tenant\'s requests and decisions answer promptly meanwhile', async (t) => {
  const s = await setup(t);
  const ca = makeRoot({ subject: 'CN=Busy CRL CA' });
  const fp = await trust(s, s.acme, ca.pem);
  const other = await tenant(s, 'other');
  await updateDefaultProfile(s, other, { clientIdPolicy: 'ANY' });
  const otherCa = makeRoot({ subject: 'CN=Quiet Tenant CA' });
  await trust(s, other, otherCa.pem);
  const otherRequest = { clientId: 'quiet-device', certificateChain: [makeLeaf(otherCa, { subject: 'CN=quiet-device' }).pem] };
  await expectAllow(s, otherRequest, 'other tenant, warm-up');

  // Twelve CRLs of the same CA with 8,000 serials each, 4,000 of them shared with the next one,
  // listed in ascending order in half of them and descending in the others: writers that locked
  // rows in the order of their CRL would deadlock.
  const serialOf = (k: number) => (i: number) => '5a' + (k * 4_000 + (k % 2 ? 7_999 - i : i)).toString(16).padStart(10, '0');
  const crls = Array.from({ length: 12 }, (_, k) => makeLargeCrl(ca, 8_000, { serialOf: serialOf(k), crlNumber: k + 1 }));
  let pending = crls.length;
  const imports = crls.map((crl) => postCrl(s, s.acme, fp, crl.der).finally(() => pending--));
  const waits: number[] = [];
  while (pending > 0) {
    let t0 = Date.now();
    const decision = await authenticate(s, otherRequest);
    waits.push(Date.now() - t0);
    assert.equal(decision.body.result, 'allow', decision.text);
    t0 = Date.now();
    const read = await api(s, 'GET', '/tenant/tenants/other/trusted-certificates', other.auth);
    waits.push(Date.now() - t0);
    assert.equal(read.status, 200, read.text);
  }
  for (const res of await Promise.all(imports)) assert.equal(res.statusCode, 201, res.body.slice(0, 300));
  assert.ok(Math.max(...waits) < 2_000, `another tenant's requests during the imports took up to ${Math.max(...waits)} ms`);
  t.diagnostic(`${waits.length} requests of another tenant during 12 imports, slowest ${Math.max(...waits)} ms`);
  assert.equal(await s.prisma.revokedSerial.count({ where: { tenantId: 'acme' } }), 11 * 4_000 + 8_000);
});
