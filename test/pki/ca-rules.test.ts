import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { anchorProfileWarnings, checkTrustedCaRules, checkWeakness, type ProblemCode } from '../../src/pki/index.js';
import { makeCert, makeIntermediate, makeRoot, sharedKey, type CertSpec } from '../helpers/pki-fixtures.js';

const DAY = 86_400_000;
const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));

describe('checkTrustedCaRules (upload rules)', () => {
  const cases: { name: string; spec: CertSpec; want: ProblemCode[] }[] = [
    { name: 'pass/ec-root', spec: {}, want: [] },
    { name: 'pass/rsa-2048-root', spec: { key: sharedKey('rsa') }, want: [] },
    { name: 'pass/root-without-key-usage', spec: { keyUsage: false }, want: [] },
    { name: 'pass/ed25519-root', spec: { key: 'ed25519' }, want: [] },
    { name: 'fail/version-1', spec: { version: 1 }, want: ['UNSUPPORTED_VERSION', 'NOT_A_CA'] },
    { name: 'fail/ca-false', spec: { basicConstraints: { ca: false, critical: true }, keyUsage: ['digitalSignature'] }, want: ['NOT_A_CA', 'KEY_USAGE_INVALID'] },
    { name: 'fail/no-basic-constraints', spec: { basicConstraints: false, keyUsage: false }, want: ['NOT_A_CA'] },
    { name: 'fail/key-usage-without-keycertsign', spec: { keyUsage: ['digitalSignature', 'cRLSign'] }, want: ['KEY_USAGE_INVALID'] },
    { name: 'fail/expired', spec: { notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) }, want: ['CERTIFICATE_EXPIRED'] },
    { name: 'fail/rsa-1024', spec: { key: sharedKey('rsa-1024') }, want: ['WEAK_KEY'] },
    { name: 'fail/dsa', spec: { key: sharedKey('dsa') }, want: ['WEAK_KEY', 'WEAK_SIGNATURE_ALGORITHM'] },
    { name: 'fail/sha1-signature', spec: { signatureHash: 'SHA-1' }, want: ['WEAK_SIGNATURE_ALGORITHM'] },
    { name: 'fail/sha1-rsa-signature', spec: { key: sharedKey('rsa'), signatureHash: 'SHA-1' }, want: ['WEAK_SIGNATURE_ALGORITHM'] },
    { name: 'fail/p192', spec: { key: 'ec-p192' }, want: ['WEAK_KEY'] },
    // Uploads that could never work: each fails every path through the CA, or breaks RFC 5280 4.1.2.2.
    { name: 'fail/key-usage-empty', spec: { keyUsage: false, extensions: [{ oid: '2.5.29.15', critical: true, value: hex('030100') }] }, want: ['KEY_USAGE_INVALID'] },
    { name: 'fail/key-usage-unused-bits-set', spec: { keyUsage: false, extensions: [{ oid: '2.5.29.15', critical: true, value: hex('03020107') }] }, want: ['KEY_USAGE_INVALID'] },
    { name: 'fail/key-usage-unused-bits-over-7', spec: { keyUsage: false, extensions: [{ oid: '2.5.29.15', critical: true, value: hex('03020806') }] }, want: ['KEY_USAGE_INVALID'] },
    { name: 'fail/critical-name-constraints-garbage', spec: { extensions: [{ oid: '2.5.29.30', critical: true, value: hex('0500') }] }, want: ['NAME_CONSTRAINTS_VIOLATED'] },
    { name: 'fail/critical-name-constraints-truncated', spec: { extensions: [{ oid: '2.5.29.30', critical: true, value: hex('3005a003') }] }, want: ['NAME_CONSTRAINTS_VIOLATED'] },
    { name: 'fail/duplicate-extension', spec: { extensions: [{ oid: '2.5.29.14', critical: false, value: hex('0414' + '11'.repeat(20)) }] }, want: ['MALFORMED_CERTIFICATE'] },
    { name: 'fail/negative-serial', spec: { serial: Uint8Array.of(0x80, 0x01) }, want: ['MALFORMED_CERTIFICATE'] },
    { name: 'fail/serial-21-octets', spec: { serial: new Uint8Array(21).fill(0x11) }, want: ['MALFORMED_CERTIFICATE'] },
    { name: 'fail/serial-20-kb', spec: { serial: new Uint8Array(20_000).fill(0x11) }, want: ['MALFORMED_CERTIFICATE'] },
    { name: 'fail/serial-zero', spec: { serial: 0 }, want: ['MALFORMED_CERTIFICATE'] },
    { name: 'pass/serial-20-octets', spec: { serial: new Uint8Array(20).fill(0x7f) }, want: [] },
    { name: 'fail/root-basic-constraints-not-critical', spec: { basicConstraints: { ca: true, critical: false } }, want: ['NOT_A_CA'] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const problems = checkTrustedCaRules(makeRoot(c.spec).parsed);
      assert.deepEqual(problems.map((p) => p.code), c.want);
      for (const p of problems) assert.ok(p.message.length > 10, 'each problem has a human message');
    });
  }

  it('names the rule each refusal breaks', () => {
    const message = (spec: CertSpec) => checkTrustedCaRules(makeRoot(spec).parsed).map((p) => p.message).join('; ');
    assert.match(message({ serial: Uint8Array.of(0x80, 0x01) }), /serial number is negative \(RFC 5280 4\.1\.2\.2\)/);
    assert.match(message({ serial: new Uint8Array(21).fill(0x11) }), /serial number is 21 octets long; at most 20/);
    assert.match(message({ extensions: [{ oid: '2.5.29.14', critical: false, value: hex('0414' + '11'.repeat(20)) }] }), /duplicate subjectKeyIdentifier extension \(RFC 5280 4\.2\)/);
    assert.match(message({ keyUsage: false, extensions: [{ oid: '2.5.29.15', critical: true, value: hex('03020107') }] }), /malformed keyUsage extension: BIT STRING has non-zero unused bits/);
    assert.match(message({ extensions: [{ oid: '2.5.29.30', critical: true, value: hex('0500') }] }), /malformed nameConstraints extension/);
  });

  it('explains a weak key with its size', () => {
    const [p] = checkTrustedCaRules(makeRoot({ key: sharedKey('rsa-1024') }).parsed);
    assert.match(p.message, /1024 bits/);
  });

  it('intermediates are acceptable trusted certificates', () => {
    assert.deepEqual(checkTrustedCaRules(makeIntermediate(makeRoot(), { pathLen: 0 }).parsed), []);
  });

  it('checkWeakness can skip the self-signature of an anchor', () => {
    const sha1Root = makeRoot({ signatureHash: 'SHA-1' }).parsed;
    assert.equal(checkWeakness(sha1Root).length, 1);
    assert.equal(checkWeakness(sha1Root, { signature: false }).length, 0);
  });

  it('anchorProfileWarnings lists defects that would fail every path', () => {
    assert.deepEqual(anchorProfileWarnings(makeRoot().parsed), []);
    const [w] = anchorProfileWarnings(makeRoot({ basicConstraints: { ca: true, critical: false } }).parsed);
    assert.match(w, /basicConstraints .* not critical/);
  });
});
