/**
 * Revocation as the verifier sees it: serial holds through PUT settings/crl (with and
 * without issuerFingerprint; hex without case, leading zeros or separators), lifting a hold, and
 * CRLs made by `openssl ca -gencrl` imported as PEM or DER.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build } from '../helpers/app.js';
import { createCa, createDevice, createIntermediate } from '../../src/certs/certs-service.js';
import { api, expectAllow, expectDeny, opensslCrl, tenant, trust, updateDefaultProfile } from './fixtures.js';

const now = () => new Date().toISOString();

test('PUT settings/crl revokes serials for every CA or for one; hex compared without case, zeros or separators; DELETE lifts', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  const ca = await createCa({ cn: 'Acme CA' });
  const otherCa = await createCa({ cn: 'Acme Second CA' });
  const caFp = await trust(s, acme, ca.certPem);
  const otherFp = await trust(s, acme, otherCa.certPem);
  const base = '/tenant/tenants/acme/trusted-certificates/settings/crl';

  const cases: Array<{ name: string; serial: string; written: (serial: string) => string; issuerFingerprint?: string; revoked: boolean }> = [
    { name: 'deny/serial-as-printed', serial: '7F01AB23CD', written: (x) => x, revoked: true },
    { name: 'deny/serial-lowercase', serial: '7F01AB23CE', written: (x) => x.toLowerCase(), revoked: true },
    { name: 'deny/serial-leading-zeros', serial: '0A0B0C0D0E', written: (x) => `0000${x}`, revoked: true },
    { name: 'deny/serial-without-leading-zero', serial: '0A0B0C0D0F', written: (x) => x.replace(/^0+/, ''), revoked: true },
    { name: 'deny/serial-colon-separated', serial: '7F01AB23CF', written: (x) => x.match(/../g)!.join(':'), revoked: true },
    { name: 'deny/serial-0x-prefix', serial: '7F01AB23D0', written: (x) => `0x${x}`, revoked: true },
    { name: 'deny/serial-for-its-issuer', serial: '7F01AB23D1', written: (x) => x, issuerFingerprint: caFp, revoked: true },
    { name: 'deny/serial-for-its-issuer-uppercase-fingerprint', serial: '7F01AB23D2', written: (x) => x, issuerFingerprint: caFp.toUpperCase(), revoked: true },
    { name: 'allow/serial-for-another-issuer', serial: '7F01AB23D3', written: (x) => x, issuerFingerprint: otherFp, revoked: false },
  ];
  for (const c of cases) {
    const leaf = await createDevice({ issuer: ca, cn: `dev-${c.serial}`, serialNumber: c.serial });
    const req = { clientId: 'any', certificateChain: [leaf.certPem] };
    await expectAllow(s, req, `${c.name} (before)`);
    await expectAllow(s, req, `${c.name} (cached)`);
    const put = await api(s, 'PUT', base, acme.auth, {
      crls: [{ serialNumberInHex: c.written(c.serial), revocationDate: now(), ...(c.issuerFingerprint ? { issuerFingerprint: c.issuerFingerprint } : {}) }],
    });
    assert.equal(put.status, 200, `${c.name}: ${put.text}`);
    if (c.revoked) await expectDeny(s, req, 'CERTIFICATE_REVOKED', c.name);
    else await expectAllow(s, req, c.name);
  }

  const list = await api(s, 'GET', base, acme.auth);
  assert.equal(list.status, 200);
  const serials = list.body.crls.map((e: any) => e.serialNumberInHex);
  assert.ok(serials.includes('7f01ab23cd') && serials.includes('a0b0c0d0e'), `normalised serials: ${serials}`);
  const held = list.body.crls.find((e: any) => e.serialNumberInHex === '7f01ab23d2');
  assert.equal(held.issuerFingerprint, caFp);
  assert.equal(held.source, 'API');

  // Lifting a hold (in any spelling of the serial) allows the certificate again.
  const lifted = await createDevice({ issuer: ca, cn: 'dev-lift', serialNumber: '00C0FFEE' });
  const req = { clientId: 'any', certificateChain: [lifted.certPem] };
  assert.equal((await api(s, 'PUT', base, acme.auth, { crls: [{ serialNumberInHex: 'C0FFEE', revocationDate: now() }] })).status, 200);
  await expectDeny(s, req, 'CERTIFICATE_REVOKED', 'deny/held');
  const del = await api(s, 'DELETE', `${base}/0000c0ffee`, acme.auth);
  assert.equal(del.status, 204, del.text);
  await expectAllow(s, req, 'allow/hold-lifted');
  assert.equal((await api(s, 'DELETE', `${base}/c0ffee`, acme.auth)).status, 404, 'nothing left to lift');

  // Two holds on one serial, for every CA and for this CA: lifting one (`?issuerFingerprint=`) keeps the other.
  const twice = await createDevice({ issuer: ca, cn: 'dev-twice', serialNumber: '0BADC0DE' });
  const twiceReq = { clientId: 'any', certificateChain: [twice.certPem] };
  const holds = await api(s, 'PUT', base, acme.auth, {
    crls: [
      { serialNumberInHex: 'BADC0DE', revocationDate: now() },
      { serialNumberInHex: 'BADC0DE', revocationDate: now(), issuerFingerprint: caFp },
    ],
  });
  assert.equal(holds.status, 200, holds.text);
  assert.equal(holds.body.crls.filter((e: any) => e.serialNumberInHex === 'badc0de').length, 2);
  assert.equal((await api(s, 'DELETE', `${base}/badc0de?issuerFingerprint=${caFp}`, acme.auth)).status, 204);
  await expectDeny(s, twiceReq, 'CERTIFICATE_REVOKED', 'deny/other-hold-remains');
  assert.equal((await api(s, 'DELETE', `${base}/badc0de`, acme.auth)).status, 204);
  await expectAllow(s, twiceReq, 'allow/all-holds-lifted');

  // Revoking an intermediate's serial under its root refuses every leaf below it.
  const ica = await createIntermediate({ issuer: ca, cn: 'Acme Line 3' });
  const below = await createDevice({ issuer: ica, cn: 'dev-below' });
  const chain = { clientId: 'any', certificateChain: [below.certPem, ica.certPem] };
  await expectAllow(s, chain, 'allow/below-intermediate');
  assert.equal((await api(s, 'PUT', base, acme.auth, { crls: [{ serialNumberInHex: ica.serialNumberHex, revocationDate: now(), issuerFingerprint: caFp }] })).status, 200);
  await expectDeny(s, chain, 'CERTIFICATE_REVOKED', 'deny/intermediate-revoked');

  // Input errors.
  const unknownIssuer = await api(s, 'PUT', base, acme.auth, { crls: [{ serialNumberInHex: '01', revocationDate: now(), issuerFingerprint: 'ab'.repeat(20) }] });
  assert.equal(unknownIssuer.status, 422, unknownIssuer.text);
  const notHex = await api(s, 'PUT', base, acme.auth, { crls: [{ serialNumberInHex: 'xyz', revocationDate: now() }] });
  assert.equal(notHex.status, 400, notHex.text);
  const noDate = await api(s, 'PUT', base, acme.auth, { crls: [{ serialNumberInHex: '01' }] });
  assert.equal(noDate.status, 400, noDate.text);

  // Every hold is announced so listeners drop live sessions.
  assert.ok(s.published.some((e) => e.type === 'session-drop' && e.change.kind === 'serial' && e.change.serialHex === 'c0ffee'));
});

test('POST :fingerprint/crl imports a CRL signed by that CA (PEM or DER); anything else is a 422', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  const ca = await createCa({ cn: 'Acme CRL CA', key: 'rsa' });
  const fp = await trust(s, acme, ca.certPem);
  const ok1 = await createDevice({ issuer: ca, cn: 'ok-1' });
  const bad1 = await createDevice({ issuer: ca, cn: 'bad-1' });
  const bad2 = await createDevice({ issuer: ca, cn: 'bad-2' });
  const bad3 = await createDevice({ issuer: ca, cn: 'bad-3' });
  for (const leaf of [ok1, bad1, bad2, bad3]) await expectAllow(s, { clientId: 'x', certificateChain: [leaf.certPem] }, leaf.subject);
  const url = `/tenant/tenants/acme/trusted-certificates/${fp}/crl`;
  const post = (payload: string | Buffer, contentType: string) => api(s, 'POST', url, acme.auth, payload, { 'content-type': contentType });

  // PEM, as `openssl ca -gencrl` writes it.
  const pem = await opensslCrl(t, ca, [bad1.serialNumberHex]);
  const pemRes = await post(pem.toString('utf8'), 'application/x-pem-file');
  assert.equal(pemRes.status, 201, pemRes.text);
  assert.deepEqual(
    pemRes.body.crls.map((e: any) => [e.serialNumberInHex, e.issuerFingerprint, e.source]),
    [[bad1.serialNumberHex.toLowerCase().replace(/^0+/, ''), fp, 'CRL']],
  );
  await expectDeny(s, { clientId: 'x', certificateChain: [bad1.certPem] }, 'CERTIFICATE_REVOKED', 'deny/crl-pem');
  await expectAllow(s, { clientId: 'x', certificateChain: [ok1.certPem] }, 'allow/not-in-crl');

  // DER as application/pkix-crl.
  const der = await opensslCrl(t, ca, [bad1.serialNumberHex, bad2.serialNumberHex], 'DER');
  const derRes = await post(der, 'application/pkix-crl');
  assert.equal(derRes.status, 201, derRes.text);
  await expectDeny(s, { clientId: 'x', certificateChain: [bad2.certPem] }, 'CERTIFICATE_REVOKED', 'deny/crl-der');

  // PEM text sent as application/pkix-crl, as `curl --data-binary @crl.pem` with that type does.
  const pemAsPkix = await opensslCrl(t, ca, [bad3.serialNumberHex]);
  const pemAsPkixRes = await post(pemAsPkix, 'application/pkix-crl');
  assert.equal(pemAsPkixRes.status, 201, pemAsPkixRes.text);
  await expectDeny(s, { clientId: 'x', certificateChain: [bad3.certPem] }, 'CERTIFICATE_REVOKED', 'deny/crl-pem-as-pkix');

  // Without a CRL number, as `openssl ca -gencrl` makes it when the config has no `crlnumber`.
  const bad4 = await createDevice({ issuer: ca, cn: 'bad-4' });
  await expectAllow(s, { clientId: 'x', certificateChain: [bad4.certPem] }, bad4.subject);
  const unnumbered = await opensslCrl(t, ca, [bad4.serialNumberHex], 'PEM', { crlNumber: false });
  const unnumberedRes = await post(unnumbered.toString('utf8'), 'application/x-pem-file');
  assert.equal(unnumberedRes.status, 201, unnumberedRes.text);
  await expectDeny(s, { clientId: 'x', certificateChain: [bad4.certPem] }, 'CERTIFICATE_REVOKED', 'deny/crl-without-number');

  // Refused: a CRL with this CA's name but another key, another CA's CRL, garbage, nothing.
  const impostor = await createCa({ cn: 'Acme CRL CA', key: 'rsa' });
  const stranger = await createCa({ cn: 'Stranger CA' });
  const refused: Array<[string, string | Buffer, string]> = [
    ['fail/same-name-other-key', await opensslCrl(t, impostor, [ok1.serialNumberHex], 'DER'), 'application/pkix-crl'],
    ['fail/other-ca', (await opensslCrl(t, stranger, [ok1.serialNumberHex])).toString('utf8'), 'application/x-pem-file'],
    ['fail/garbage-der', Buffer.from('30820102deadbeef', 'hex'), 'application/pkix-crl'],
    ['fail/garbage-text', 'this is not a CRL', 'text/plain'],
    ['fail/certificate-not-crl', ca.certPem, 'application/x-pem-file'],
  ];
  for (const [name, body, type] of refused) {
    const res = await post(body, type);
    assert.equal(res.status, 422, `${name}: ${res.text}`);
    assert.equal(res.body.error, 'revocation/InvalidCrl', name);
  }
  await expectAllow(s, { clientId: 'x', certificateChain: [ok1.certPem] }, 'allow/refused-crls-revoked-nothing');

  const missing = await api(s, 'POST', `/tenant/tenants/acme/trusted-certificates/${'00'.repeat(20)}/crl`, acme.auth, der, { 'content-type': 'application/pkix-crl' });
  assert.equal(missing.status, 404, missing.text);

  // A serial revoked by a CRL can be lifted like any hold.
  const lift = await api(s, 'DELETE', `/tenant/tenants/acme/trusted-certificates/settings/crl/${bad1.serialNumberHex}`, acme.auth);
  assert.equal(lift.status, 204, lift.text);
  await expectAllow(s, { clientId: 'x', certificateChain: [bad1.certPem] }, 'allow/crl-entry-lifted');
});

test('a CRL of a trusted intermediate (ThingsBoard) revokes the devices below it', async (t) => {
  const s = await build(t);
  const tb = await tenant(s, 'tb');
  await updateDefaultProfile(s, tb, { clientIdPolicy: 'ANY' });
  const root = await createCa({ cn: 'TB Root' });
  const ica = await createIntermediate({ issuer: root, cn: 'TB Intermediate' });
  const fp = await trust(s, tb, ica.certPem);
  const leaf = await createDevice({ issuer: ica, cn: 'tb-1' });
  await expectAllow(s, { clientId: 'x', certificateChain: [leaf.certPem] });
  const crl = await opensslCrl(t, ica, [leaf.serialNumberHex], 'DER');
  const res = await api(s, 'POST', `/tenant/tenants/tb/trusted-certificates/${fp}/crl`, tb.auth, crl, { 'content-type': 'application/pkix-crl' });
  assert.equal(res.status, 201, res.text);
  await expectDeny(s, { clientId: 'x', certificateChain: [leaf.certPem, ica.certPem, root.certPem] }, 'CERTIFICATE_REVOKED');
});
