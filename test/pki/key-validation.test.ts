/**
 * Keys are validated before they are trusted: RSA exponent and modulus bounds, EC points on their
 * named curve. Each `fail/...` case is a key an attacker can put in a certificate without holding
 * any private key (or one that only makes each check slow), and what certgate answers now.
 */
import assert from 'node:assert/strict';
import { createECDH, createPublicKey, generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  checkCredentialRules,
  checkKeyStrength,
  checkTrustedCaRules,
  MAX_RSA_BITS,
  parseCertificate,
  SignatureCache,
  validatePath,
  verifyProofOfPossession,
} from '../../src/pki/index.js';
import {
  craftedKey,
  exponentOneKey,
  makeCert,
  makeLeaf,
  makeRoot,
  offCurveP256Spki,
  rsaModulus,
  rsaSpki,
  sharedKey,
  type TestKey,
} from '../helpers/pki-fixtures.js';

/** An RSA key with the modulus of a real 2048-bit key and exponent `e` (signatures are not needed). */
function rsaWithExponent(e: bigint): TestKey {
  return craftedKey('rsa', rsaSpki(rsaModulus(sharedKey('rsa')), e));
}

/** A random odd modulus of exactly `bits` bits (no factors known: only its size matters here). */
function randomModulus(bits: number): bigint {
  const bytes = randomBytes(Math.ceil(bits / 8));
  const v = BigInt('0x' + bytes.toString('hex')) | 1n;
  return (v >> BigInt(bytes.length * 8 - bits)) | (1n << BigInt(bits - 1)) | 1n;
}

function keyProblem(key: TestKey): string | null {
  return checkKeyStrength(parseCertificate(makeRoot({ key }).der).publicKey)?.message ?? null;
}

describe('RSA public exponent and modulus', () => {
  const cases: Array<{ name: string; e: bigint; ok: boolean }> = [
    { name: 'ok/e-65537', e: 65537n, ok: true },
    { name: 'ok/e-3', e: 3n, ok: true },
    { name: 'ok/e-2^32-1', e: 2n ** 32n - 1n, ok: true },
    { name: 'fail/e-1', e: 1n, ok: false },
    { name: 'fail/e-2-even', e: 2n, ok: false },
    { name: 'fail/e-65536-even', e: 65536n, ok: false },
    { name: 'fail/e-2^32+1-too-large', e: 2n ** 32n + 1n, ok: false },
    // The issue's slow key: a ~3,070-bit exponent made one check cost 120 times 65537's.
    { name: 'fail/e-3070-bits', e: randomModulus(3070), ok: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const problem = keyProblem(rsaWithExponent(c.e));
      if (c.ok) assert.equal(problem, null);
      else assert.match(problem ?? '', /RSA public exponent .* is not accepted: it must be odd, at least 3 and below 2\^32/);
    });
  }

  it('fail/e-3070-bits names the size of the exponent, not its value', () => {
    assert.match(keyProblem(rsaWithExponent(randomModulus(3070))) ?? '', /exponent of 3070 bits/);
  });

  it(`ok/modulus-${MAX_RSA_BITS}-bits and fail/modulus-${MAX_RSA_BITS + 8}-bits (bounded cost per check)`, () => {
    assert.equal(keyProblem(craftedKey('rsa', rsaSpki(randomModulus(MAX_RSA_BITS), 65537n))), null);
    assert.match(keyProblem(craftedKey('rsa', rsaSpki(randomModulus(MAX_RSA_BITS + 8), 65537n))) ?? '', /larger than the supported maximum of 8192/);
    assert.match(keyProblem(craftedKey('rsa', rsaSpki(randomModulus(16384), 65537n))) ?? '', /16384 bits is larger/);
  });

  it('fail/modulus-even', () => {
    assert.match(keyProblem(craftedKey('rsa', rsaSpki(randomModulus(2048) - 1n, 65537n))) ?? '', /RSA modulus is even/);
  });
});

describe('EC points on their named curve', () => {
  for (const [curve, name] of [
    ['prime256v1', 'P-256'],
    ['secp384r1', 'P-384'],
    ['secp521r1', 'P-521'],
    ['brainpoolP256r1', 'brainpoolP256r1'],
    ['brainpoolP384r1', 'brainpoolP384r1'],
    ['brainpoolP512r1', 'brainpoolP512r1'],
  ] as const) {
    it(`ok/${name} keys from the generator, fail/${name} with y changed`, () => {
      for (let i = 0; i < 5; i++) {
        const spki = new Uint8Array(generateKeyPairSync('ec', { namedCurve: curve }).publicKey.export({ type: 'spki', format: 'der' }));
        assert.equal(keyProblem(craftedKey('ec', spki)), null, `${name} key ${i}`);
        const off = new Uint8Array(spki);
        off[off.length - 1] ^= 0x01;
        assert.match(keyProblem(craftedKey('ec', off)) ?? '', new RegExp(`not on the curve ${name}`), `${name} key ${i} off the curve`);
      }
    });
  }

  it('fail/p256-off-curve: refused by certgate, and by OpenSSL when the key is imported', () => {
    const spki = offCurveP256Spki();
    assert.match(keyProblem(craftedKey('ec', spki)) ?? '', /EC public key point is not on the curve P-256/);
    // Node (OpenSSL 3) refuses the point on import too; certgate does not rely on that, since it
    // stores and judges keys it never imports (an uploaded CA that signs nothing yet).
    assert.throws(() => createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }));
  });

  it('fail/point-at-infinity and fail/coordinate-beyond-the-field', () => {
    const spki = sharedKey('ec').spki;
    // SEQUENCE { AlgorithmIdentifier (21 octets from offset 2), BIT STRING { point } }
    const withPoint = (point: Uint8Array) => {
      const bitString = Uint8Array.from([0x03, point.length + 1, 0x00, ...point]);
      const inner = Uint8Array.from([...spki.subarray(2, 2 + 21), ...bitString]);
      return Uint8Array.from([0x30, inner.length, ...inner]);
    };
    assert.match(keyProblem(craftedKey('ec', withPoint(Uint8Array.of(0x00)))) ?? '', /point at infinity/);
    const beyond = Uint8Array.from([0x04, ...new Uint8Array(32).fill(0xff), ...new Uint8Array(32).fill(0xff)]);
    assert.match(keyProblem(craftedKey('ec', withPoint(beyond))) ?? '', /not elements of the field/);
  });

  it('ok/compressed-point and fail/compressed-x-not-on-curve', () => {
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const compressed = new Uint8Array(ecdh.getPublicKey(undefined, 'compressed'));
    const spki = sharedKey('ec').spki;
    const withPoint = (point: Uint8Array) => {
      const bitString = Uint8Array.from([0x03, point.length + 1, 0x00, ...point]);
      const inner = Uint8Array.from([...spki.subarray(2, 2 + 21), ...bitString]);
      return Uint8Array.from([0x30, inner.length, ...inner]);
    };
    assert.equal(keyProblem(craftedKey('ec', withPoint(compressed))), null);
    // About half of all x have no y on the curve: of x = 1..32, some are points and some not.
    const verdicts = Array.from({ length: 32 }, (_, i) => {
      const x = new Uint8Array(33);
      x[0] = 0x02;
      x[32] = i + 1;
      return keyProblem(craftedKey('ec', withPoint(x)));
    });
    assert.ok(verdicts.some((v) => v === null), 'some x = 1..32 are on the curve');
    assert.ok(verdicts.some((v) => v !== null && /not on the curve P-256/.test(v)), 'some x = 1..32 are not');
  });
});

describe('forged trust with an RSA exponent of 1', () => {
  const code = 'verification-code-0123456789';

  it('the forgery is real: crypto.verify accepts a signature written without a private key', () => {
    const key = exponentOneKey();
    const forged = key.sign!(Buffer.from(code), 'sha256');
    const keyObject = createPublicKey({ key: Buffer.from(key.spki), format: 'der', type: 'spki' });
    assert.equal(verify('sha256', Buffer.from(code), keyObject, forged), true);
  });

  it('fail/upload: a CA with e = 1 is refused WEAK_KEY', () => {
    const problems = checkTrustedCaRules(makeRoot({ key: exponentOneKey() }).parsed);
    assert.deepEqual(problems.map((p) => p.code), ['WEAK_KEY']);
    assert.match(problems[0]!.message, /RSA public exponent 1 is not accepted/);
  });

  it('fail/path: a leaf forged under a trusted e = 1 CA is denied WEAK_KEY, not allowed', () => {
    const root = makeRoot({ key: exponentOneKey() });
    const leaf = makeLeaf(root, { subject: 'CN=forged' });
    const cache = new SignatureCache();
    // The leaf's signature does verify with the CA's key: only the key rule stands in the way.
    assert.equal(cache.verify(root.parsed, leaf.parsed), true);
    const r = validatePath({ leaf: leaf.parsed, anchors: [root.parsed], signatureCache: cache });
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.reason, 'WEAK_KEY');
    assert.match(!r.ok ? r.detail : '', /RSA public exponent 1/);
  });

  it('fail/pop: proof of possession forged with e = 1 is refused', () => {
    const key = exponentOneKey();
    const root = makeRoot({ key });
    const forged = Buffer.from(key.sign!(Buffer.from(code, 'utf8'), 'sha256')).toString('base64');
    assert.equal(verifyProofOfPossession(root.parsed, code, forged), false);
  });

  it('fail/credential: a device certificate with e = 1 is refused', () => {
    const leaf = makeLeaf(makeRoot(), { key: exponentOneKey() });
    assert.deepEqual(checkCredentialRules(leaf.parsed).map((p) => p.code), ['WEAK_KEY']);
  });
});

describe('crafted keys in presented chains', () => {
  it('fail/leaf-off-curve: a leaf whose EC point is off the curve is denied WEAK_KEY', () => {
    const root = makeRoot();
    const leaf = makeLeaf(root, { key: craftedKey('ec', offCurveP256Spki()) });
    const r = validatePath({ leaf: leaf.parsed, anchors: [root.parsed], signatureCache: new SignatureCache() });
    assert.equal(!r.ok && r.reason, 'WEAK_KEY');
  });

  it('fail/intermediate-huge-exponent: an intermediate with a 3,070-bit exponent is denied WEAK_KEY without checking its signatures', () => {
    const root = makeRoot();
    const slow = craftedKey('rsa', rsaSpki(rsaModulus(sharedKey('rsa')), randomModulus(3070)));
    const ica = makeCert({ issuer: root, subject: 'CN=slow ICA', key: slow, basicConstraints: { ca: true, critical: true }, keyUsage: ['keyCertSign'] });
    const leaf = makeLeaf(ica);
    const cache = new SignatureCache();
    const r = validatePath({ leaf: leaf.parsed, presented: [ica.parsed], anchors: [root.parsed], signatureCache: cache });
    assert.equal(!r.ok && r.reason, 'WEAK_KEY');
    assert.equal(cache.has(ica.parsed, leaf.parsed), false, 'the slow key was never used for a check');
  });
});
