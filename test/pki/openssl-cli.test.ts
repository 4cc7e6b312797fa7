/**
 * Certificates made the way the seed guides make them, with the openssl command line:
 * `openssl req -x509` for the CA and `openssl x509 -req` (X.509 v1, no extensions) for devices.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { checkTrustedCaRules, extractIdentity, parseCertificate, validatePath, verifyProofOfPossession } from '../../src/pki/index.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('certificates made with the openssl CLI', { skip: !hasOpenssl() && 'openssl not installed' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'certgate-openssl-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');

  // CA (EC P-256), then an EC device and an RSA device, each signed with `openssl x509 -req`.
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=Seed Guide CA/O=Acme', '-days', '30');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'dev.key', '-out', 'dev.csr', '-subj', '/CN=device-7');
  run('x509', '-req', '-in', 'dev.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'dev.crt', '-days', '10');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rsa.key', '-out', 'rsa.csr', '-subj', '/CN=device-rsa');
  run('x509', '-req', '-in', 'rsa.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'rsa.crt', '-days', '10');
  writeFileSync(join(dir, 'ext.cnf'), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://acme.com/device/device-9\n');
  run('x509', '-req', '-in', 'dev.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'v3.crt', '-days', '10', '-extfile', 'ext.cnf');

  const ca = parseCertificate(read('ca.crt'));

  it('the CA passes the trusted-certificate upload rules', () => {
    assert.deepEqual(checkTrustedCaRules(ca), []);
    // `-subj /CN=.../O=...` encodes CN first; RFC 4514 writes the last RDN first.
    assert.equal(ca.subject, 'O=Acme,CN=Seed Guide CA');
  });

  it('accepts the CA pasted without line breaks or BEGIN/END lines', () => {
    const body = read('ca.crt').replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, '');
    assert.equal(parseCertificate(body).sha1, ca.sha1);
  });

  for (const file of ['dev.crt', 'rsa.crt']) {
    it(`validates the v1 device certificate ${file}`, () => {
      const leaf = parseCertificate(read(file));
      assert.equal(leaf.version, 1);
      const r = validatePath({ leaf, presented: [leaf], anchors: [ca] });
      assert.ok(r.ok, r.ok ? '' : `${r.reason}: ${r.detail}`);
    });
  }

  it('validates a v3 device certificate with extensions from an extfile and extracts its SPIFFE id', () => {
    const leaf = parseCertificate(read('v3.crt'));
    assert.equal(leaf.version, 3);
    assert.ok(validatePath({ leaf, presented: [], anchors: [ca] }).ok);
    assert.equal(extractIdentity(leaf, { source: 'SAN_URI', pattern: '^(.+)$', uriPrefix: 'spiffe://acme.com/device/' }), 'device-9');
  });

  it('verifies a proof of possession made with `openssl dgst -sha256 -sign`', () => {
    const code = 'pop-code-6f1d2c';
    writeFileSync(join(dir, 'code.txt'), code);
    for (const [keyFile, certFile] of [['ca.key', 'ca.crt'], ['rsa.key', 'rsa.crt']]) {
      const sig = run('dgst', '-sha256', '-sign', keyFile, 'code.txt').toString('base64');
      const cert = parseCertificate(read(certFile));
      assert.equal(verifyProofOfPossession(cert, code, sig), true, certFile);
      assert.equal(verifyProofOfPossession(cert, code + 'x', sig), false);
      assert.equal(verifyProofOfPossession(cert, code, 'not base64!'), false);
    }
  });

  it('agrees with `openssl x509 -fingerprint` and `-serial`', () => {
    const leaf = parseCertificate(read('dev.crt'));
    const fp = run('x509', '-in', 'dev.crt', '-noout', '-fingerprint', '-sha1').toString();
    assert.equal(fp.split('=')[1].trim().replace(/:/g, '').toLowerCase(), leaf.sha1);
    const serial = run('x509', '-in', 'dev.crt', '-noout', '-serial').toString();
    assert.equal(serial.split('=')[1].trim().toLowerCase().replace(/^0+/, ''), leaf.serialNumberHex);
  });
});
