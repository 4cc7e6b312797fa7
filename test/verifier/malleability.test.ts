/**
 * A device credential revoked through the API stays revoked for re-encoded copies of the same
 * certificate: an ECDSA signature (r, s) is equally valid as (r, n - s), which gives the same
 * signed content a different DER and so a different SHA-256 (credentialsId).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import * as asn1js from 'asn1js';
import { build } from '../helpers/app.js';
import { createCa, createDevice } from '../../src/certs/certs-service.js';
import { api, credential, devicesNamed, expectAllow, expectDeny, tenant, trust, updateDefaultProfile } from './fixtures.js';

// Order of the P-256 group (SEC 2, 2.4.2).
const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

function bigintToDer(n: bigint): Uint8Array {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) & 0x80) hex = `00${hex}`;
  return Buffer.from(hex, 'hex');
}

/** The same certificate with its ECDSA signature's s replaced by n - s. */
function malleate(certDer: Uint8Array): Uint8Array {
  const cert = asn1js.fromBER(certDer).result as asn1js.Sequence;
  const [tbs, alg, sigBits] = cert.valueBlock.value as [asn1js.Sequence, asn1js.Sequence, asn1js.BitString];
  const sig = asn1js.fromBER(sigBits.valueBlock.valueHexView).result as asn1js.Sequence;
  const [r, s] = sig.valueBlock.value as [asn1js.Integer, asn1js.Integer];
  const sValue = BigInt(`0x${Buffer.from(s.valueBlock.valueHexView).toString('hex')}`);
  const flipped = new asn1js.Sequence({
    value: [new asn1js.Integer({ valueHex: r.valueBlock.valueHexView }), new asn1js.Integer({ valueHex: bigintToDer(P256_N - sValue) })],
  });
  const out = new asn1js.Sequence({ value: [tbs, alg, new asn1js.BitString({ valueHex: flipped.toBER() })] });
  return new Uint8Array(out.toBER());
}

test('a revoked device credential is refused in every encoding of the certificate', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  await updateDefaultProfile(s, acme, { clientIdPolicy: 'ANY' });
  const ca = await createCa({ cn: 'Acme EC CA', key: 'ec' });
  await trust(s, acme, ca.certPem);
  const leaf = await createDevice({ issuer: ca, cn: 'sensor-9', key: 'ec' });
  const twin = malleate(leaf.certDer);
  const twinB64 = Buffer.from(twin).toString('base64');

  // The twin is a different DER whose signature still verifies with the CA key.
  assert.notEqual(crypto.createHash('sha256').update(twin).digest('hex'), leaf.fingerprintSha256);
  assert.ok(new crypto.X509Certificate(Buffer.from(twin)).verify(new crypto.X509Certificate(ca.certPem).publicKey));
  await expectAllow(s, { clientId: 'x', certificateChain: [twinB64] }, 'allow/twin-before-revocation');

  const [registered] = await devicesNamed(s, acme, 'sensor-9');
  const sensorId: string = registered.id;
  await credential(s, acme, sensorId, leaf.certPem);
  const revoke = await api(s, 'PUT', `/tenant/tenants/acme/devices/${sensorId}/credentials/${leaf.fingerprintSha256}`, acme.auth, {
    status: 'REVOKED',
  });
  assert.equal(revoke.status, 200, revoke.text);

  await expectDeny(s, { clientId: 'x', certificateChain: [leaf.certPem] }, 'CERTIFICATE_REVOKED', 'deny/revoked-credential');
  await expectDeny(s, { clientId: 'x', certificateChain: [twinB64] }, 'CERTIFICATE_REVOKED', 'deny/revoked-credential-reencoded');

  const reactivate = await api(s, 'PUT', `/tenant/tenants/acme/devices/${sensorId}/credentials/${leaf.fingerprintSha256}`, acme.auth, {
    status: 'ACTIVE',
  });
  assert.equal(reactivate.status, 200, reactivate.text);
  await expectAllow(s, { clientId: 'x', certificateChain: [twinB64] }, 'allow/twin-after-reactivation');
});
