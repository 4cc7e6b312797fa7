import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CrlParseError, normalizeSerialHex, parseCrl, verifyCrlSignature } from '../../src/pki/index.js';
import { makeCrl, makeIntermediate, makeRoot, sharedKey } from '../helpers/pki-fixtures.js';

const root = makeRoot();
const ica = makeIntermediate(root);

describe('parseCrl', () => {
  const crl = makeCrl({ issuer: ica, revoked: [{ serialHex: '00ab' }, { serialHex: '0102' }], crlNumber: 7 });

  for (const [name, input] of [
    ['PEM', crl.pem],
    ['DER', crl.der],
    ['base64 DER', Buffer.from(crl.der).toString('base64')],
  ] as const) {
    it(`reads ${name}`, () => {
      const p = parseCrl(input);
      assert.equal(p.issuer, ica.parsed.subject);
      assert.deepEqual(p.revoked.map((r) => r.serialHex), ['ab', '102']);
      assert.equal(p.crlNumberHex, '7');
      assert.equal(p.authorityKeyId, ica.parsed.subjectKeyId);
      assert.deepEqual(p.defects, []);
    });
  }

  it('rejects garbage with CrlParseError', () => {
    for (const bad of ['', 'nope', ica.pem, Buffer.from('x').toString('base64'), crl.der.subarray(0, 20)]) {
      assert.throws(() => parseCrl(bad as string | Uint8Array), CrlParseError);
    }
  });

  it('every truncation and 2000 random corruptions either parse or throw CrlParseError', () => {
    const der = makeCrl({ issuer: ica, revoked: [{ serialHex: '0a' }, { serialHex: '0b' }] }).der;
    const attempt = (bytes: Uint8Array) => {
      try {
        const p = parseCrl(bytes);
        verifyCrlSignature(p, ica.parsed);
      } catch (e) {
        if (!(e instanceof CrlParseError)) throw e;
      }
    };
    for (let n = 0; n < der.length; n++) attempt(der.subarray(0, n));
    for (let i = 0; i < 2000; i++) {
      const copy = new Uint8Array(der);
      copy[Math.floor(Math.random() * copy.length)] = Math.floor(Math.random() * 256);
      attempt(copy);
    }
  });

  it('records a missing or critical CRL number as a defect (RFC 5280 5.2.3)', () => {
    assert.match(parseCrl(makeCrl({ issuer: ica, crlNumber: false }).der).defects[0], /no cRLNumber/);
    assert.match(parseCrl(makeCrl({ issuer: ica, crlNumberCritical: true }).der).defects[0], /must not be critical/);
  });
});

describe('verifyCrlSignature', () => {
  it('returns the revoked serials of a CRL signed by the CA', () => {
    const r = verifyCrlSignature(parseCrl(makeCrl({ issuer: ica, revoked: [{ serialHex: '0a0b' }] }).pem), ica.parsed);
    assert.deepEqual(r, { ok: true, revokedSerials: ['a0b'] });
  });

  const failures = [
    { name: 'fail/signed-by-another-key', crl: () => makeCrl({ issuer: ica, signingKey: sharedKey('ec', 'other') }), ca: () => ica, reason: 'SIGNATURE_INVALID' },
    { name: 'fail/issued-by-another-ca', crl: () => makeCrl({ issuer: root }), ca: () => ica, reason: 'SIGNATURE_INVALID' },
    { name: 'fail/ca-without-crlsign', crl: () => makeCrl({ issuer: caNoCrlSign }), ca: () => caNoCrlSign, reason: 'KEY_USAGE_INVALID' },
    { name: 'fail/sha1-signature', crl: () => makeCrl({ issuer: ica, signatureHash: 'SHA-1' }), ca: () => ica, reason: 'WEAK_SIGNATURE_ALGORITHM' },
    { name: 'fail/no-crl-number', crl: () => makeCrl({ issuer: ica, crlNumber: false }), ca: () => ica, reason: 'MALFORMED_CERTIFICATE' },
  ];
  const caNoCrlSign = makeIntermediate(root, { subject: 'CN=No CRL sign', keyUsage: ['keyCertSign'] });
  for (const f of failures) {
    it(f.name, () => {
      const r = verifyCrlSignature(parseCrl(f.crl().der), f.ca().parsed);
      assert.ok(!r.ok);
      assert.equal(r.reason, f.reason);
    });
  }

  it('accepts a CA without keyUsage (RFC 5280 6.3.3 (f) applies only when present)', () => {
    const noKu = makeIntermediate(root, { subject: 'CN=No KU', keyUsage: false });
    assert.ok(verifyCrlSignature(parseCrl(makeCrl({ issuer: noKu }).der), noKu.parsed).ok);
  });
});

describe('normalizeSerialHex', () => {
  for (const [input, want] of [
    ['00AB', 'ab'],
    ['0x0ab', 'ab'],
    [' 1F ', '1f'],
    ['000', '0'],
  ]) {
    it(`${JSON.stringify(input)} -> ${want}`, () => assert.equal(normalizeSerialHex(input), want));
  }
});
