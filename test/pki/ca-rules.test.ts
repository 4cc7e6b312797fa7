import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { anchorProfileWarnings, checkTrustedCaRules, checkWeakness, type ProblemCode } from '../../src/pki/index.js';
import { makeCert, makeIntermediate, makeRoot, sharedKey, type CertSpec } from '../helpers/pki-fixtures.js';

const DAY = 86_400_000;

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
  ];
  for (const c of cases) {
    it(c.name, () => {
      const problems = checkTrustedCaRules(makeRoot(c.spec).parsed);
      assert.deepEqual(problems.map((p) => p.code), c.want);
      for (const p of problems) assert.ok(p.message.length > 10, 'each problem has a human message');
    });
  }

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
