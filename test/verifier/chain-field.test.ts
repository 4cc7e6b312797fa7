/**
 * One name for the presented chain: verify-cert-chain takes `certificateChain` as the verifier's
 * authenticate does (an array of PEM or base64 DER certificates leaf first, or one PEM bundle),
 * and still `chain` (a PEM bundle); a field of the wrong shape is a 400 that says what it should hold.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build } from '../helpers/app.js';
import { createCa, createDevice, createIntermediate } from '../../src/certs/certs-service.js';
import { api, tenant, trust } from './fixtures.js';

test('verify-cert-chain: certificateChain as an array, as a bundle, as base64 DER; chain still works; clear 400s', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const root = await createCa({ cn: 'Chain Root' });
  const ica = await createIntermediate({ issuer: root, cn: 'Chain Issuing' });
  await trust(s, acme, root.certPem);
  const leaf = await createDevice({ issuer: ica, cn: 'dev-chain' });
  const explain = (body: unknown) => api(s, 'POST', '/tenant/tenants/acme/trusted-certificates/verify-cert-chain', acme.auth, body);
  const der = (pem: string) => pem.replace(/-----[^-]+-----|\s/g, '');

  for (const [what, body] of [
    ['an array of PEM', { certificateChain: [leaf.certPem, ica.certPem] }],
    ['an array of base64 DER', { certificateChain: [der(leaf.certPem), der(ica.certPem)] }],
    ['one PEM bundle', { certificateChain: `${leaf.certPem}${ica.certPem}` }],
    ['the older chain field', { chain: `${leaf.certPem}${ica.certPem}` }],
  ] as const) {
    const res = await explain(body);
    assert.equal(res.status, 200, `${what}: ${res.text}`);
    assert.deepEqual([res.body.decision, res.body.successfullyValidated, res.body.subject], ['allow', true, 'CN=dev-chain'], what);
  }

  const cases: Array<[string, unknown, RegExp]> = [
    ['no chain', {}, /certificateChain.*array of PEM or base64 DER certificates, leaf first, or one PEM bundle/],
    ['both names', { certificateChain: [leaf.certPem], chain: leaf.certPem }, /once: `certificateChain` or `chain`/],
    ['a number', { certificateChain: 42 }, /certificateChain/],
    ['an empty array', { certificateChain: [] }, /at least the leaf/],
    ['chain as an array', { chain: [leaf.certPem] }, /`chain` must be one string, a PEM bundle/],
  ];
  for (const [what, body, message] of cases) {
    const res = await explain(body);
    assert.equal(res.status, 400, `${what}: ${res.text}`);
    assert.match(res.body.message, message, what);
  }
});
