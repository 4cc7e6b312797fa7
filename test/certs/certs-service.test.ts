/**
 * The certificate library in-process: what other tests build their PKI with.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, verify as nodeVerify } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  CertsError,
  assertUsableIssuer,
  certificatesFromPem,
  createCa,
  createDevice,
  createIntermediate,
  createServer,
  generateKeyPair,
  issueCertificate,
  keyMatchesCertificate,
  loadIssuer,
  readCertificate,
  signPopCode,
  spiffeUri,
  toPkcs12,
  type Credentials,
} from '../../src/certs/certs-service.js';
import { ipToBytes } from '../../src/certs/x509.js';
import { openssl, tempDir, toolResult } from './harness.js';

const DAY = 86_400_000;

async function write(dir: string, files: Record<string, string | Uint8Array>): Promise<void> {
  for (const [name, data] of Object.entries(files)) await fs.writeFile(path.join(dir, name), data);
}

function x509(c: Credentials): X509Certificate {
  return new X509Certificate(c.certPem);
}

describe('certs library: presets', () => {
  test('ok/chain: root, intermediate, device and server link up by signature and name', async () => {
    const ca = await createCa({ cn: 'Lib Root', org: 'Acme', pathLen: 1 });
    const int = await createIntermediate({ issuer: ca, cn: 'Lib Int', pathLen: 0 });
    const dev = await createDevice({ issuer: int, deviceId: 'dev-42', uriDomain: 'iot.example' });
    const srv = await createServer({ issuer: ca, dns: ['broker.example'], ip: ['127.0.0.1'] });

    assert.ok(x509(ca).verify(ca.publicKey));
    assert.ok(x509(int).verify(ca.publicKey));
    assert.ok(x509(dev).verify(int.publicKey));
    assert.ok(x509(srv).verify(ca.publicKey));
    assert.ok(x509(dev).checkIssued(x509(int)));
    assert.equal(x509(ca).ca, true);
    assert.equal(x509(int).ca, true);
    assert.equal(x509(dev).ca, false);
    assert.equal(x509(dev).subjectAltName, 'URI:spiffe://iot.example/device/dev-42');
    assert.deepEqual(x509(dev).keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.deepEqual(x509(srv).keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.equal(x509(srv).subjectAltName, 'DNS:broker.example, IP Address:127.0.0.1');

    assert.equal(dev.subject, 'CN=dev-42');
    assert.equal(dev.issuer, 'CN=Lib Int');
    assert.equal(ca.subject, 'CN=Lib Root,O=Acme');
    assert.equal(certificatesFromPem(dev.chainPem).length, 3);
    assert.deepEqual(dev.chainDer.map((d) => readCertificate(d).subject), ['CN=dev-42', 'CN=Lib Int', 'CN=Lib Root,O=Acme']);
    assert.equal(dev.fingerprintSha1, x509(dev).fingerprint.replace(/:/g, '').toLowerCase());
    assert.equal(dev.fingerprintSha256, x509(dev).fingerprint256.replace(/:/g, '').toLowerCase());
    assert.equal(dev.serialNumberHex, x509(dev).serialNumber.toUpperCase());

    const facts = readCertificate(int.certDer);
    assert.equal(facts.isCa, true);
    assert.equal(facts.pathLen, 0);
    assert.deepEqual(facts.keyUsage, ['keyCertSign', 'cRLSign']);
    assert.equal(readCertificate(ca.certDer).selfIssued, true);
    assert.equal(readCertificate(dev.certDer).keyUsage?.join(), 'digitalSignature');
  });

  test('ok/openssl-verify: openssl accepts an RSA chain made in-process', async (t) => {
    const dir = await tempDir(t);
    const ca = await createCa({ key: 'rsa' });
    const int = await createIntermediate({ issuer: ca, key: 'rsa', rsaBits: 3072 });
    const dev = await createDevice({ issuer: int, cn: 'rsa-dev', key: 'rsa' });
    await write(dir, { 'ca.crt': ca.certPem, 'int.crt': int.certPem, 'dev.crt': dev.certPem });
    assert.match(await openssl(dir, 'verify', '-CAfile', 'ca.crt', '-untrusted', 'int.crt', 'dev.crt'), /dev\.crt: OK/);
    // RFC 4055 5: the RSA signature AlgorithmIdentifier carries NULL parameters.
    assert.match(await openssl(dir, 'asn1parse', '-in', 'dev.crt'), /sha256WithRSAEncryption\n.*prim: NULL/);
  });

  test('ok/serials: 16 random positive octets, all different', async () => {
    const ca = await createCa();
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const d = await createDevice({ issuer: ca, cn: `d${i}` });
      assert.equal(d.serialNumberHex.length, 32);
      assert.ok(parseInt(d.serialNumberHex[0]!, 16) < 8);
      assert.notEqual(d.serialNumberHex.slice(0, 2), '00');
      serials.add(d.serialNumberHex);
    }
    assert.equal(serials.size, 20);
    const fixed = await createDevice({ issuer: ca, cn: 'fixed', serialNumber: 'FF01' });
    assert.equal(fixed.serialNumberHex, 'FF01');
    // Kept positive: DER INTEGER 00 FF 01.
    assert.ok(Buffer.from(fixed.certDer).includes(Buffer.from([0x02, 0x03, 0x00, 0xff, 0x01])));
  });
});

describe('certs library: options for tests of the verifier', () => {
  test('ok/validity-overrides: expired and not-yet-valid certificates as openssl sees them', async (t) => {
    const dir = await tempDir(t);
    const ca = await createCa();
    const expired = await createDevice({ issuer: ca, cn: 'old', notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
    const future = await createDevice({ issuer: ca, cn: 'new', notBefore: new Date(Date.now() + DAY), days: 10 });
    await write(dir, { 'ca.crt': ca.certPem, 'old.crt': expired.certPem, 'new.crt': future.certPem });
    const r1 = await toolResult(dir, 'openssl', 'verify', '-CAfile', 'ca.crt', 'old.crt');
    assert.match(r1.stdout + r1.stderr, /certificate has expired/);
    const r2 = await toolResult(dir, 'openssl', 'verify', '-CAfile', 'ca.crt', 'new.crt');
    assert.match(r2.stdout + r2.stderr, /certificate is not yet valid/);
    assert.equal(future.notAfter.getTime() - future.notBefore.getTime(), 10 * DAY);
    await assert.rejects(createCa({ notBefore: new Date(), notAfter: new Date(Date.now() - 1000) }), /ends before it starts|notAfter <= notBefore/);
  });

  test('ok/time-encoding: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5)', async (t) => {
    const dir = await tempDir(t);
    const ca = await createCa({ notAfter: new Date('2060-06-30T12:34:56.789Z') });
    await write(dir, { 'ca.crt': ca.certPem });
    const asn1 = await openssl(dir, 'asn1parse', '-in', 'ca.crt');
    assert.match(asn1, /UTCTIME/);
    assert.match(asn1, /GENERALIZEDTIME\s+:20600630123456Z/);
    assert.equal(ca.notAfter.toISOString(), '2060-06-30T12:34:56.000Z');
  });

  test('ok/v1-and-weak: version 1 leaves, SHA-1 signatures, RSA-1024 keys, no EKU', async (t) => {
    const dir = await tempDir(t);
    const ca = await createCa({ key: 'rsa' });
    const v1 = await createDevice({ issuer: ca, cn: 'v1-device', version: 1 });
    const sha1 = await createDevice({ issuer: ca, cn: 'sha1-device', signatureHash: 'SHA-1' });
    const weak = await createDevice({ issuer: ca, cn: 'weak-device', key: 'rsa', rsaBits: 1024, eku: null });
    await write(dir, { 'v1.crt': v1.certPem, 'sha1.crt': sha1.certPem, 'weak.crt': weak.certPem });
    const v1Text = await openssl(dir, 'x509', '-in', 'v1.crt', '-noout', '-text');
    assert.match(v1Text, /Version: 1 \(0x0\)/);
    assert.doesNotMatch(v1Text, /X509v3 extensions/);
    assert.match(await openssl(dir, 'x509', '-in', 'sha1.crt', '-noout', '-text'), /Signature Algorithm: sha1WithRSAEncryption/);
    const weakText = await openssl(dir, 'x509', '-in', 'weak.crt', '-noout', '-text');
    assert.match(weakText, /Public-Key: \(1024 bit\)/);
    assert.doesNotMatch(weakText, /Extended Key Usage/);
    assert.ok(x509(v1).verify(ca.publicKey));
  });

  test('ok/extensions: key usages, EKU, SANs and raw extensions as given', async (t) => {
    const dir = await tempDir(t);
    const ca = await createCa();
    const odd = await issueCertificate({
      issuer: ca,
      subject: { cn: 'odd', country: 'de', orgUnit: 'Ops', state: 'BY', locality: 'Munich' },
      basicConstraints: null,
      keyUsage: ['digitalSignature', 'decipherOnly', 'keyAgreement'],
      keyUsageCritical: false,
      extKeyUsage: ['clientAuth', 'serverAuth', '1.3.6.1.4.1.99999.1'],
      san: [
        { type: 'dns', value: '*.example.com' },
        { type: 'ip', value: '2001:db8::1' },
        { type: 'email', value: 'ops@example.com' },
        { type: 'uri', value: 'urn:device:odd' },
      ],
      // An unknown critical extension (OID under a private arc), for UNKNOWN_CRITICAL_EXTENSION tests.
      extraExtensions: [{ oid: '1.3.6.1.4.1.99999.2', critical: true, value: new Uint8Array([0x05, 0x00]) }],
      authorityKeyIdentifier: false,
    });
    await write(dir, { 'odd.crt': odd.certPem });
    const text = await openssl(dir, 'x509', '-in', 'odd.crt', '-noout', '-text');
    assert.doesNotMatch(text, /Basic Constraints/);
    assert.doesNotMatch(text, /Authority Key Identifier/);
    assert.match(text, /X509v3 Key Usage: \n\s+Digital Signature, Key Agreement, Decipher Only/);
    assert.match(text, /TLS Web Client Authentication, TLS Web Server Authentication, 1\.3\.6\.1\.4\.1\.99999\.1/);
    assert.match(text, /DNS:\*\.example\.com, IP Address:2001:DB8:0:0:0:0:0:1, email:ops@example\.com, URI:urn:device:odd/);
    assert.match(text, /1\.3\.6\.1\.4\.1\.99999\.2: critical/);
    assert.match(text, /Subject: C = DE, ST = BY, L = Munich, OU = Ops, CN = odd/);
  });

  test('ok/key-reuse: a new certificate for an existing key pair', async () => {
    const ca = await createCa();
    const keyPair = await generateKeyPair({ key: 'ec', curve: 'P-384' });
    const a = await createDevice({ issuer: ca, cn: 'rotating', keyPair });
    const b = await createDevice({ issuer: ca, cn: 'rotating', keyPair });
    assert.notEqual(a.fingerprintSha256, b.fingerprintSha256);
    assert.ok(x509(a).publicKey.equals(x509(b).publicKey));
    assert.equal(a.keyPem, b.keyPem);
    // A P-384 issuer signs with SHA-384.
    const ca384 = await createCa({ curve: 'P-384' });
    const d = await createDevice({ issuer: ca384, cn: 'x' });
    assert.equal(readCertificate(d.certDer).subject, 'CN=x');
    assert.ok(x509(d).verify(ca384.publicKey));
  });

  test('ok/ip-parsing', () => {
    assert.deepEqual([...ipToBytes('192.0.2.1')], [192, 0, 2, 1]);
    assert.deepEqual([...ipToBytes('::1')], [...Array(15).fill(0), 1]);
    assert.deepEqual([...ipToBytes('2001:db8::ff00:42:8329')], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0x42, 0x83, 0x29]);
    assert.deepEqual([...ipToBytes('::ffff:192.0.2.1')], [...Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 1]);
    assert.throws(() => ipToBytes('1.2.3'), CertsError);
  });

  test('ok/spiffe-uri', () => {
    assert.equal(spiffeUri('my.domain.name', 'myUniqueDeviceId'), 'spiffe://my.domain.name/device/myUniqueDeviceId');
    assert.equal(spiffeUri('d.example', 'a b/c'), 'spiffe://d.example/device/a%20b%2Fc');
    assert.throws(() => spiffeUri('bad/domain', 'x'), /not a host name/);
  });
});

describe('certs library: issuers', () => {
  test('fail/issuer-checks: each refusal has its code', async () => {
    const ca = await createCa({ cn: 'Checked', pathLen: 0 });
    const other = await createCa({ cn: 'Other' });
    const dev = await createDevice({ issuer: ca, cn: 'leaf' });
    const expired = await createCa({ notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
    const code = (fn: () => unknown) => {
      try {
        fn();
        return 'OK';
      } catch (err) {
        assert.ok(err instanceof CertsError, String(err));
        return err.code;
      }
    };
    assert.equal(code(() => assertUsableIssuer(ca)), 'OK');
    assert.equal(code(() => assertUsableIssuer({ ...ca, privateKey: other.privateKey })), 'KEY_MISMATCH');
    assert.equal(code(() => assertUsableIssuer(dev)), 'ISSUER_NOT_A_CA');
    assert.equal(code(() => assertUsableIssuer(expired)), 'ISSUER_EXPIRED');
    assert.equal(code(() => assertUsableIssuer(ca, { at: new Date(Date.now() - DAY) })), 'ISSUER_NOT_YET_VALID');
    assert.equal(code(() => assertUsableIssuer(ca, { issuingCa: {} })), 'ISSUER_PATH_LENGTH');
    assert.equal(keyMatchesCertificate(ca.privateKey, ca.certDer), true);
    assert.equal(keyMatchesCertificate(other.privateKey, ca.certDer), false);
    // The library itself signs with whatever it is given: tests need certificates a verifier must refuse.
    const bySomeoneElse = await createDevice({ issuer: { ...ca, privateKey: other.privateKey }, cn: 'forged' });
    assert.equal(x509(bySomeoneElse).verify(ca.publicKey), false);
  });

  test('ok/load-issuer: PEM bundle and a separate chain', async () => {
    const ca = await createCa();
    const int = await createIntermediate({ issuer: ca });
    const fromBundle = loadIssuer({ certPem: int.chainPem, keyPem: int.keyPem });
    assert.equal(fromBundle.chainDer.length, 2);
    assert.equal(fromBundle.facts.subject, 'CN=certgate Intermediate CA');
    const fromChain = loadIssuer({ certPem: int.certPem, keyPem: int.keyPem, chainPem: int.chainPem });
    assert.equal(fromChain.chainDer.length, 2);
    const dev = await createDevice({ issuer: fromChain, cn: 'd' });
    assert.equal(dev.chainDer.length, 3);
    assert.throws(() => loadIssuer({ certPem: 'nothing here', keyPem: int.keyPem }), /holds no PEM certificate/);
    assert.throws(() => loadIssuer({ certPem: int.certPem, keyPem: 'garbage' }), /not a readable PEM private key/);
  });
});

describe('certs library: PKCS#12 and proof of possession', () => {
  test('ok/pkcs12-rsa: OpenSSL 3 reads it; key and chain come back', async (t) => {
    const dir = await tempDir(t);
    const ca = await createCa({ key: 'rsa' });
    const dev = await createDevice({ issuer: ca, cn: 'p12-device', key: 'rsa' });
    await write(dir, { 'd.p12': await toPkcs12(dev, { password: 'pässwörd', friendlyName: 'devicekeyentry' }) });
    const info = await openssl(dir, 'pkcs12', '-info', '-in', 'd.p12', '-passin', 'pass:pässwörd', '-nodes');
    assert.match(info, /friendlyName: devicekeyentry/);
    assert.match(info, /subject=CN = p12-device/);
    assert.match(info, /subject=CN = certgate Root CA/);
    const keyPem = info.match(/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/)?.[0];
    assert.ok(keyPem);
    assert.ok(createPrivateKey(keyPem).equals(dev.privateKey));
    await assert.rejects(toPkcs12(dev, { password: '' }), /needs a password/);
  });

  test('ok/pop: signPopCode verifies with the CA public key (EC and RSA, PEM or KeyObject)', async () => {
    for (const key of ['ec', 'rsa'] as const) {
      const ca = await createCa({ key });
      const code = 'verification-code-123';
      for (const signer of [ca.keyPem, ca.privateKey]) {
        const sig = Buffer.from(signPopCode(signer, code), 'base64');
        assert.ok(nodeVerify('sha256', Buffer.from(code), x509(ca).publicKey, sig));
        assert.ok(!nodeVerify('sha256', Buffer.from(`${code}x`), x509(ca).publicKey, sig));
      }
    }
  });
});
