import assert from 'node:assert/strict';
import { X509Certificate, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  CertificateParseError,
  OID,
  parseCertificate,
  splitPemBundle,
  toPem,
  toPemBody,
} from '../../src/pki/index.js';
import { makeCert, makeIntermediate, makeLeaf, makeRoot, sharedKey } from '../helpers/pki-fixtures.js';

const root = makeRoot({ subject: 'CN=Acme Root CA,O=Acme\\, Inc.,C=DE' });
const ica = makeIntermediate(root, { subject: 'CN=Acme Devices CA,O=Acme', pathLen: 0 });
const leaf = makeLeaf(ica, {
  subject: 'CN=dev1,O=Acme',
  serial: Uint8Array.of(0x00, 0x9a, 0x01),
  san: { dns: ['dev1.acme.com'], uri: ['spiffe://acme.com/device/dev1'], email: ['dev1@acme.com'], ip: ['192.0.2.7', '2001:db8::7'] },
});

describe('parseCertificate: accepted forms', () => {
  const body = toPemBody(leaf.der);
  const forms: [string, string | Uint8Array][] = [
    ['PEM', leaf.pem],
    ['PEM without line breaks', leaf.pem.replace(/\n/g, '')],
    ['PEM with CRLF line breaks', leaf.pem.replace(/\n/g, '\r\n')],
    ['body without BEGIN/END lines', body],
    ['body with line breaks', body.replace(/(.{64})/g, '$1\n')],
    ['body with literal \\n left over from JSON', body.replace(/(.{64})/g, '$1\\n')],
    ['PEM with surrounding text', `subject=CN=dev1\n${leaf.pem}\ntrailing notes`],
    ['PEM with tabs, spaces and blank lines in the body', leaf.pem.replace(/\n/g, ' \t\n\n')],
    ['PEM without its END line', leaf.pem.replace(/-----END CERTIFICATE-----\n$/, '')],
    ['PEM labelled X509 CERTIFICATE', leaf.pem.replaceAll(' CERTIFICATE-----', ' X509 CERTIFICATE-----')],
    ['PEM followed by its private key', `${leaf.pem}${leaf.key.privateKeyPem}`],
    ['body with non-breaking spaces and a byte order mark', `\ufeff${body.replace(/(.{64})/g, '$1\u00a0')}`],
    ['body with a literal \r\n', body.replace(/(.{64})/g, '$1\\r\\n')],
    ['DER bytes', leaf.der],
    ['PEM as bytes', new TextEncoder().encode(leaf.pem)],
  ];
  for (const [name, input] of forms) {
    it(name, () => assert.equal(parseCertificate(input).sha256, leaf.parsed.sha256));
  }
});

describe('parseCertificate: fields', () => {
  const c = leaf.parsed;
  const node = new X509Certificate(Buffer.from(leaf.der));

  it('fingerprints are lowercase hex SHA-1 and SHA-256 of the DER', () => {
    assert.equal(c.sha1, node.fingerprint.replace(/:/g, '').toLowerCase());
    assert.equal(c.sha256, node.fingerprint256.replace(/:/g, '').toLowerCase());
  });

  it('serial number is lowercase hex without leading zeros', () => {
    assert.equal(c.serialNumberHex, '9a01');
  });

  it('names read most specific first with RFC 4514 escaping', () => {
    assert.equal(c.subject, 'CN=dev1,O=Acme');
    assert.equal(c.issuer, 'CN=Acme Devices CA,O=Acme');
    assert.equal(root.parsed.subject, 'CN=Acme Root CA,O=Acme\\, Inc.,C=DE');
    assert.equal(c.commonName, 'dev1');
    assert.deepEqual(Buffer.from(c.issuerDer), Buffer.from(ica.parsed.subjectDer));
  });

  it('validity matches the encoding', () => {
    assert.equal(c.notBefore.getTime(), new Date(node.validFrom).getTime());
    assert.equal(c.notAfter.getTime(), new Date(node.validTo).getTime());
  });

  it('algorithm and key', () => {
    assert.equal(c.version, 3);
    assert.equal(c.algorithmName, 'SHA256withECDSA');
    assert.deepEqual([c.publicKey.algorithm, c.publicKey.curve, c.publicKey.bits], ['EC', 'P-256', 256]);
    const rsa = makeLeaf(ica, { key: sharedKey('rsa') }).parsed;
    assert.deepEqual([rsa.publicKey.algorithm, rsa.publicKey.bits], ['RSA', 2048]);
    assert.equal(makeRoot({ key: sharedKey('rsa'), signatureHash: 'SHA-384' }).parsed.algorithmName, 'SHA384withRSA');
    assert.equal(makeRoot({ key: sharedKey('rsa'), rsaPss: true }).parsed.algorithmName, 'RSASSA-PSS');
    assert.equal(makeRoot({ key: 'ed25519' }).parsed.algorithmName, 'Ed25519');
    assert.equal(makeRoot({ signatureHash: 'SHA-1' }).parsed.algorithmName, 'SHA1withECDSA');
  });

  it('extensions', () => {
    assert.deepEqual(ica.parsed.basicConstraints, { ca: true, pathLen: 0, critical: true });
    assert.deepEqual([...ica.parsed.keyUsage!].sort(), ['cRLSign', 'keyCertSign']);
    assert.equal(c.basicConstraints, undefined);
    assert.deepEqual([...c.keyUsage!], ['digitalSignature']);
    assert.deepEqual(c.extKeyUsage, [OID.clientAuth]);
    assert.equal(c.authorityKeyId?.keyId, ica.parsed.subjectKeyId);
    assert.match(c.subjectKeyId!, /^[0-9a-f]{40}$/);
    assert.deepEqual(c.san.dns, ['dev1.acme.com']);
    assert.deepEqual(c.san.uri, ['spiffe://acme.com/device/dev1']);
    assert.deepEqual(c.san.email, ['dev1@acme.com']);
    assert.deepEqual(c.san.ip, ['192.0.2.7', '2001:db8::7']);
    assert.deepEqual(c.criticalExtensions, ['2.5.29.15']);
    assert.deepEqual(c.defects, []);
    assert.equal(c.selfIssued, false);
    assert.equal(root.parsed.selfIssued, true);
  });

  it('name constraints', () => {
    const nc = makeIntermediate(root, { nameConstraints: { permitted: { dns: ['acme.com'], ip: ['10.0.0.0/8'] }, excluded: { email: ['.evil.com'] } } }).parsed.nameConstraints!;
    assert.equal(nc.critical, true);
    assert.deepEqual(nc.permitted.map((g) => g.type), ['dns', 'ip']);
    assert.deepEqual(nc.excluded, [{ type: 'email', value: '.evil.com' }]);
  });

  it('tbs, signature and spki are the signed parts', () => {
    assert.equal(c.tbs[0], 0x30);
    assert.deepEqual(Buffer.from(c.spki), Buffer.from(leaf.key.spki));
    assert.ok(c.signature.length > 60);
  });

  it('version 1 certificates have no extensions', () => {
    const v1 = makeLeaf(ica, { version: 1 }).parsed;
    assert.equal(v1.version, 1);
    assert.equal(v1.extensions.length, 0);
    assert.equal(v1.keyUsage, undefined);
    assert.deepEqual(v1.defects, []);
  });

  it('records profile defects instead of throwing', () => {
    const dup = makeCert({ issuer: ica, extensions: [{ oid: '2.5.29.17', critical: false, value: Uint8Array.of(0x30, 0x03, 0x82, 0x01, 0x61) }], san: { dns: ['b'] } }).parsed;
    assert.match(dup.defects[0].message, /duplicate subjectAltName/);
    const emptyEku = makeLeaf(ica, { extKeyUsage: [] }).parsed;
    assert.equal(emptyEku.defects[0].reason, 'EXTENDED_KEY_USAGE_INVALID');
    const unknown = makeLeaf(ica, { unknownCriticalExtension: true }).parsed;
    assert.equal(unknown.defects[0].reason, 'UNKNOWN_CRITICAL_EXTENSION');
  });
});

const unpadded = toPemBody(leaf.der).replace(/=+$/, '');

describe('parseCertificate: hostile input', () => {
  const garbage: [string, string | Uint8Array][] = [
    ['empty string', ''],
    ['whitespace', '   \n '],
    ['plain text', 'hello world'],
    ['not base64', 'MIIB$$$$'],
    ['a backslash that is not a line break', unpadded.replace(/^(.{8})/, '$1\\x')],
    ['digits after padding', `${unpadded}==QQ==`],
    ['three padding characters', `${unpadded}===`],
    // Digits to a length of 4k + 1, which no base64 text has.
    ['one digit too many', unpadded + 'Q'.repeat((5 - (unpadded.length % 4)) % 4)],
    ['padding only', '=='],
    ['characters beyond ASCII that are not space', unpadded.replace(/^(.{8})/, '$1\u00e9')],
    ['base64 of non-DER', Buffer.from('just some text').toString('base64')],
    ['empty bytes', new Uint8Array(0)],
    ['random bytes', randomBytes(300)],
    ['SEQUENCE header only', Uint8Array.of(0x30, 0x82, 0xff, 0xff)],
    ['indefinite length', Uint8Array.of(0x30, 0x80, 0x00, 0x00)],
    ['private key PEM', leaf.key.privateKeyPem],
    ['DER with trailing data', Uint8Array.from([...leaf.der, 0x00])],
    ['serial number not minimally encoded', makeLeaf(ica, { serial: Uint8Array.of(0x00, 0x01) }).der],
    ['two certificates', leaf.pem + ica.pem],
    ['a private key before the certificate', leaf.key.privateKeyPem + leaf.pem],
  ];
  for (const [name, input] of garbage) {
    it(`rejects ${name} with CertificateParseError`, () => {
      assert.throws(() => parseCertificate(input), CertificateParseError);
    });
  }

  it('every truncation and 3000 random corruptions either parse or throw CertificateParseError', () => {
    const der = leaf.der;
    const attempt = (bytes: Uint8Array) => {
      try {
        parseCertificate(bytes);
      } catch (e) {
        if (!(e instanceof CertificateParseError)) throw e;
      }
    };
    for (let n = 0; n < der.length; n++) attempt(der.subarray(0, n));
    for (let i = 0; i < 3000; i++) {
      const copy = new Uint8Array(der);
      const flips = 1 + (i % 4);
      for (let f = 0; f < flips; f++) copy[Math.floor(Math.random() * copy.length)] = Math.floor(Math.random() * 256);
      attempt(copy);
    }
  });
});

describe('PEM helpers', () => {
  it('splitPemBundle keeps file order and ignores other blocks', () => {
    const bundle = `${leaf.pem}\n${leaf.key.privateKeyPem}\n${ica.pem}${root.pem}`;
    const parts = splitPemBundle(bundle);
    assert.equal(parts.length, 3);
    assert.deepEqual(parts.map((p) => parseCertificate(p).sha1), [leaf.parsed.sha1, ica.parsed.sha1, root.parsed.sha1]);
  });

  it('toPemBody is base64 without header lines; toPem round-trips', () => {
    const body = toPemBody(leaf.der);
    assert.doesNotMatch(body, /-----|\n/);
    assert.equal(parseCertificate(toPem(leaf.der)).sha256, leaf.parsed.sha256);
    assert.match(toPem(leaf.der), /^-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END CERTIFICATE-----\n$/);
  });
});
