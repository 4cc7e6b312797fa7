import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CrlParseError, crlTimeProblem, normalizeSerialHex, parseCrl, serialLengthProblem, verifyCrlSignature } from '../../src/pki/index.js';
import { makeCrl, makeIntermediate, makeLargeCrl, makeRoot, sharedKey } from '../helpers/pki-fixtures.js';

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

describe('CRL validity window and serial lengths (RFC 5280 6.3.3, 4.1.2.2)', () => {
  const now = new Date('2026-06-01T12:00:00Z');
  const at = (iso: string) => new Date(iso);
  const cases: Array<{ name: string; thisUpdate: string; nextUpdate?: string; skewMs?: number; want: RegExp | null }> = [
    { name: 'ok/current', thisUpdate: '2026-06-01T00:00:00Z', nextUpdate: '2026-06-08T00:00:00Z', want: null },
    { name: 'ok/no-next-update', thisUpdate: '2026-06-01T00:00:00Z', want: null },
    { name: 'ok/next-update-this-second', thisUpdate: '2026-06-01T00:00:00Z', nextUpdate: '2026-06-01T12:00:00Z', want: null },
    { name: 'fail/expired', thisUpdate: '2026-05-01T00:00:00Z', nextUpdate: '2026-06-01T11:59:59Z', want: /out of date: its nextUpdate was 2026-06-01T11:59:59.000Z/ },
    { name: 'fail/not-yet-valid', thisUpdate: '2026-06-01T12:00:01Z', nextUpdate: '2026-06-08T00:00:00Z', want: /not valid yet: its thisUpdate is 2026-06-01T12:00:01.000Z/ },
    { name: 'ok/issuer-clock-ahead-within-skew', thisUpdate: '2026-06-01T12:04:00Z', skewMs: 300_000, want: null },
    { name: 'fail/issuer-clock-ahead-beyond-skew', thisUpdate: '2026-06-01T12:06:00Z', skewMs: 300_000, want: /not valid yet/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const problem = crlTimeProblem({ thisUpdate: at(c.thisUpdate), ...(c.nextUpdate ? { nextUpdate: at(c.nextUpdate) } : {}) }, now, c.skewMs);
      if (c.want === null) assert.equal(problem, null);
      else assert.match(problem ?? '', c.want);
    });
  }

  it('serials: 20 octets by value pass, 21 do not', () => {
    assert.equal(serialLengthProblem('ff'.repeat(20)), null);
    assert.equal(serialLengthProblem(normalizeSerialHex('00' + 'ff'.repeat(20))), null);
    assert.match(serialLengthProblem('1' + '00'.repeat(20)) ?? '', /serial number of 21 octets; at most 20 are allowed \(RFC 5280 4\.1\.2\.2\)/);
    assert.match(serialLengthProblem('ab'.repeat(5000)) ?? '', /5000 octets/);
  });

  it('a CRL of 100,000 entries reads whole, serials as the registry keeps them', () => {
    const big = makeLargeCrl(ica, 100_000, { serialOf: (i) => (i % 2 ? '00ff' : '7e') + i.toString(16).padStart(8, '0') });
    for (const input of [big.der, big.pem]) {
      const p = parseCrl(input);
      assert.equal(p.revoked.length, 100_000);
      assert.equal(p.revoked[0]!.serialHex, '7e00000000');
      assert.equal(p.revoked[1]!.serialHex, 'ff00000001');
      assert.equal(p.revoked[99_999]!.serialHex, 'ff0001869f');
      const check = verifyCrlSignature(p, ica.parsed);
      assert.equal(check.ok, true);
    }
  });
});
