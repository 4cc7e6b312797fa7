/**
 * `certgate certs` end to end: the command makes files, openssl and keytool judge them.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { describe, test } from 'node:test';
import { createCa, issueCertificate } from '../../src/certs/certs-service.js';
import {
  bundleSubjects,
  certgate,
  certs,
  hasKeytool,
  openssl,
  tempDir,
  tool,
  toolResult,
  x509Text,
} from './harness.js';

describe('certgate certs: chains openssl accepts', () => {
  test('ok/root-intermediate-device: chain verifies, extensions as asked, p12 readable', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca', '--cn', 'Acme Root', '--org', 'Acme', '--country', 'us');
    await certs(dir, 'intermediate', '--cn', 'Acme Devices', '--path-len', '0');
    const out = await certs(
      dir,
      'device',
      '--device-id',
      'myUniqueDeviceId',
      '--uri-domain',
      'my.domain.name',
      '--ca-cert',
      'intermediate.crt',
      '--ca-key',
      'intermediate.key',
      '--p12',
      '--password',
      'keystore-pw',
    );
    assert.match(out, /created device certificate CN=myUniqueDeviceId/);
    assert.match(out, /sha1 +[0-9a-f]{40}/);

    assert.match(
      await openssl(dir, 'verify', '-CAfile', 'ca.crt', '-untrusted', 'intermediate.crt', 'myUniqueDeviceId.crt'),
      /myUniqueDeviceId\.crt: OK/,
    );
    // The chain file is leaf to root, the root included; its intermediates complete the path.
    assert.deepEqual(await bundleSubjects(dir, 'myUniqueDeviceId.chain.pem'), [
      'CN=myUniqueDeviceId',
      'CN=Acme Devices',
      'CN=Acme Root,O=Acme,C=US',
    ]);
    assert.match(
      await openssl(dir, 'verify', '-CAfile', 'ca.crt', '-untrusted', 'myUniqueDeviceId.chain.pem', 'myUniqueDeviceId.crt'),
      /: OK/,
    );

    const root = await x509Text(dir, 'ca.crt');
    assert.match(root, /Version: 3 \(0x2\)/);
    assert.match(root, /X509v3 Basic Constraints: critical\s+CA:TRUE\n/);
    assert.match(root, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    assert.match(root, /X509v3 Subject Key Identifier/);
    assert.match(root, /X509v3 Authority Key Identifier/);
    assert.match(root, /Subject: C = US, O = Acme, CN = Acme Root/);
    assert.match(root, /ASN1 OID: prime256v1/);
    assert.match(root, /Signature Algorithm: ecdsa-with-SHA256/);

    const intermediate = await x509Text(dir, 'intermediate.crt');
    assert.match(intermediate, /CA:TRUE, pathlen:0/);
    assert.match(intermediate, /Issuer: C = US, O = Acme, CN = Acme Root/);

    const device = await x509Text(dir, 'myUniqueDeviceId.crt');
    assert.match(device, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(device, /Key Usage: critical\s+Digital Signature\n/);
    assert.match(device, /Extended Key Usage:\s+TLS Web Client Authentication/);
    assert.match(device, /Subject Alternative Name:\s+URI:spiffe:\/\/my\.domain\.name\/device\/myUniqueDeviceId/);
    assert.match(device, /Subject: CN = myUniqueDeviceId/);
    // 16 random octets, positive.
    const serial = new X509Certificate(await fs.readFile(path.join(dir, 'myUniqueDeviceId.crt'))).serialNumber;
    assert.equal(serial.length, 32);
    assert.ok(parseInt(serial[0]!, 16) < 8, 'serial is positive');

    // Key: PKCS#8 PEM, owner-only.
    const keyFile = path.join(dir, 'myUniqueDeviceId.key');
    assert.match(await fs.readFile(keyFile, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal((await fs.stat(keyFile)).mode & 0o777, 0o600);
    assert.equal((await fs.stat(path.join(dir, 'myUniqueDeviceId.p12'))).mode & 0o777, 0o600);

    // PKCS#12: OpenSSL 3 reads it without the legacy provider, and the key in it is the key.
    const info = await openssl(dir, 'pkcs12', '-info', '-nokeys', '-in', 'myUniqueDeviceId.p12', '-passin', 'pass:keystore-pw');
    assert.match(info, /MAC: sha256/);
    assert.match(info, /PBES2, PBKDF2, AES-256-CBC/);
    assert.match(info, /friendlyName: myUniqueDeviceId/);
    assert.equal(info.match(/subject=/g)?.length, 3);
    const p12Key = await openssl(dir, 'pkcs12', '-in', 'myUniqueDeviceId.p12', '-passin', 'pass:keystore-pw', '-nocerts', '-nodes');
    assert.equal(
      createPrivateKey(p12Key).export({ type: 'pkcs8', format: 'pem' }),
      createPrivateKey(await fs.readFile(keyFile)).export({ type: 'pkcs8', format: 'pem' }),
    );
    const wrong = await toolResult(dir, 'openssl', 'pkcs12', '-info', '-nokeys', '-in', 'myUniqueDeviceId.p12', '-passin', 'pass:nope');
    assert.notEqual(wrong.code, 0);
  });

  test('ok/p12-keytool: Java reads the keystore as a PrivateKeyEntry with its chain', { skip: !hasKeytool && 'keytool not installed' }, async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca', '--key', 'rsa');
    await certs(dir, 'device', '--cn', 'deviceCert', '--name', 'device', '--key', 'rsa', '--p12', '--password', 'changeit', '--alias', 'devicekeyentry');
    const list = await tool(dir, 'keytool', '-list', '-v', '-keystore', 'device.p12', '-storetype', 'PKCS12', '-storepass', 'changeit');
    assert.match(list, /Alias name: devicekeyentry/);
    assert.match(list, /Entry type: PrivateKeyEntry/);
    assert.match(list, /Certificate chain length: 2/);
    assert.match(list, /Owner: CN=deviceCert/);
    // The seed guide converts the keystore to JKS next; that must work too.
    await tool(dir, 'keytool', '-importkeystore', '-srckeystore', 'device.p12', '-srcstoretype', 'PKCS12', '-srcstorepass', 'changeit',
      '-destkeystore', 'device.jks', '-deststoretype', 'JKS', '-deststorepass', 'changeit', '-noprompt');
  });

  test('ok/server: serverAuth with DNS and IP SANs; a real mutual TLS handshake with a device', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca');
    await certs(dir, 'server', '--cn', 'mqtt.example.com', '--dns', 'mqtt.example.com', '--dns', 'localhost', '--ip', '127.0.0.1', '--ip', '::1');
    await certs(dir, 'device', '--device-id', 'dev-7', '--uri-domain', 'example.com');
    const text = await x509Text(dir, 'server.crt');
    assert.match(text, /TLS Web Server Authentication/);
    assert.match(text, /DNS:mqtt\.example\.com, DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
    assert.match(await openssl(dir, 'verify', '-CAfile', 'ca.crt', '-purpose', 'sslserver', 'server.crt'), /OK/);
    assert.match(await openssl(dir, 'verify', '-CAfile', 'ca.crt', '-purpose', 'sslclient', 'dev-7.crt'), /OK/);

    const read = (f: string) => fs.readFile(path.join(dir, f));
    const server = tls.createServer({
      key: await read('server.key'),
      cert: await read('server.crt'),
      ca: await read('ca.crt'),
      requestCert: true,
      rejectUnauthorized: true,
    });
    const peer = new Promise<string | undefined>((resolve) =>
      server.on('secureConnection', (s) => {
        resolve(s.getPeerCertificate().subject?.CN as string | undefined);
        s.end();
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const port = (server.address() as { port: number }).port;
    const client = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: await read('ca.crt'),
      key: await read('dev-7.key'),
      cert: await read('dev-7.chain.pem'),
    });
    await new Promise<void>((resolve, reject) => client.on('secureConnect', resolve).on('error', reject));
    assert.equal(client.authorized, true);
    assert.equal(await peer, 'dev-7');
    client.destroy();
  });

  test('ok/server-defaults: without names it is for localhost', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca');
    await certs(dir, 'server');
    const text = await x509Text(dir, 'server.crt');
    assert.match(text, /Subject: CN = localhost/);
    assert.match(text, /DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
  });

  test('ok/rsa: --key rsa --rsa-bits 3072, sha256WithRSAEncryption, keyEncipherment on RSA leaves', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca', '--rsa-bits', '3072', '--days', '30');
    await certs(dir, 'device', '--cn', 'rsa-device', '--key', 'rsa');
    const ca = await x509Text(dir, 'ca.crt');
    assert.match(ca, /Public-Key: \(3072 bit\)/);
    assert.match(ca, /Signature Algorithm: sha256WithRSAEncryption/);
    const device = await x509Text(dir, 'rsa-device.crt');
    assert.match(device, /Public-Key: \(2048 bit\)/);
    assert.match(device, /Digital Signature, Key Encipherment/);
    assert.match(await openssl(dir, 'verify', '-CAfile', 'ca.crt', 'rsa-device.crt'), /OK/);
    const days = (new X509Certificate(await fs.readFile(path.join(dir, 'ca.crt'))).validToDate.getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 29.9 && days <= 30, `30 days, got ${days}`);
  });

  test('ok/amqtt-spellings: --org-name, --output-dir, --ca-crt, --uri', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca', '--country', 'US', '--state', 'NY', '--locality', 'NY', '--org-name', "My Org's Name", '--cn', 'my.domain.name', '--output-dir', 'pki');
    await certs(dir, 'device', '--country', 'US', '--org-name', "My Org's Name", '--device-id', 'myUniqueDeviceId', '--uri', 'my.domain.name',
      '--output-dir', 'pki', '--ca-crt', 'pki/ca.crt', '--ca-key', 'pki/ca.key');
    const text = await x509Text(path.join(dir, 'pki'), 'myUniqueDeviceId.crt');
    assert.match(text, /Subject: C = US, O = My Org's Name, CN = myUniqueDeviceId/);
    assert.match(text, /URI:spiffe:\/\/my\.domain\.name\/device\/myUniqueDeviceId/);
    assert.match(await x509Text(path.join(dir, 'pki'), 'ca.crt'), /Subject: C = US, ST = NY, L = NY, O = My Org's Name, CN = my\.domain\.name/);
  });

  test('ok/openssl-keys: CAs whose keys openssl genrsa, ecparam and genrsa -aes256 made', async (t) => {
    const dir = await tempDir(t);
    const ext = ['-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'];
    await openssl(dir, 'genrsa', '-traditional', '-out', 'rsa.key', '2048');
    await openssl(dir, 'req', '-new', '-x509', '-key', 'rsa.key', '-subj', '/CN=RSA CA', '-days', '30', '-out', 'rsa.crt', ...ext);
    assert.match(await fs.readFile(path.join(dir, 'rsa.key'), 'utf8'), /BEGIN RSA PRIVATE KEY/);
    await certs(dir, 'device', '--cn', 'd-rsa', '--ca-cert', 'rsa.crt', '--ca-key', 'rsa.key');
    assert.match(await openssl(dir, 'verify', '-CAfile', 'rsa.crt', 'd-rsa.crt'), /OK/);

    await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-out', 'ec.key');
    await openssl(dir, 'req', '-new', '-x509', '-key', 'ec.key', '-subj', '/CN=EC CA', '-days', '30', '-out', 'ec.crt', ...ext);
    assert.match(await fs.readFile(path.join(dir, 'ec.key'), 'utf8'), /BEGIN EC PARAMETERS[\s\S]+BEGIN EC PRIVATE KEY/);
    await certs(dir, 'device', '--cn', 'd-ec', '--ca-cert', 'ec.crt', '--ca-key', 'ec.key');
    assert.match(await openssl(dir, 'verify', '-CAfile', 'ec.crt', 'd-ec.crt'), /OK/);

    // The Cumulocity guide: openssl genrsa -aes256 -out caKey.pem 4096 (2048 here, for speed).
    await openssl(dir, 'genrsa', '-aes256', '-passout', 'pass:ca-pass', '-out', 'caKey.pem', '2048');
    await openssl(dir, 'req', '-new', '-x509', '-key', 'caKey.pem', '-passin', 'pass:ca-pass', '-subj', '/CN=Enc CA', '-days', '30', '-out', 'caCert.pem', ...ext);
    const noPassword = await certgate(dir, 'certs', 'device', '--cn', 'd-enc', '--ca-cert', 'caCert.pem', '--ca-key', 'caKey.pem');
    assert.equal(noPassword.code, 2);
    assert.match(noPassword.stderr, /caKey\.pem is encrypted; give --ca-key-password/);
    const badPassword = await certgate(dir, 'certs', 'device', '--cn', 'd-enc', '--ca-cert', 'caCert.pem', '--ca-key', 'caKey.pem', '--ca-key-password', 'nope');
    assert.equal(badPassword.code, 2);
    assert.match(badPassword.stderr, /wrong password/);
    await certs(dir, 'device', '--cn', 'd-enc', '--ca-cert', 'caCert.pem', '--ca-key', 'caKey.pem', '--ca-key-password', 'ca-pass');
    assert.match(await openssl(dir, 'verify', '-CAfile', 'caCert.pem', 'd-enc.crt'), /OK/);
  });
});

describe('certgate certs pop', () => {
  for (const key of ['ec', 'rsa'] as const) {
    test(`ok/pop-${key}: the signature verifies with openssl dgst against the CA certificate`, async (t) => {
      const dir = await tempDir(t);
      await certs(dir, 'ca', '--key', key);
      const code = 'YzNiNDBiZjAtOWIyZi00ZTFhLWJmMjAtNjQ1N2I4YWE2ZTE2';
      const out = await certs(dir, 'pop', '--ca-key', 'ca.key', '--code', code, '--ca-cert', 'ca.crt');
      assert.match(out, /^[A-Za-z0-9+/]+=*\n$/);
      await fs.writeFile(path.join(dir, 'sig.bin'), Buffer.from(out.trim(), 'base64'));
      await fs.writeFile(path.join(dir, 'code.txt'), code);
      await fs.writeFile(path.join(dir, 'pub.pem'), await openssl(dir, 'x509', '-pubkey', '-in', 'ca.crt', '-noout'));
      assert.match(
        await openssl(dir, 'dgst', '-sha256', '-verify', 'pub.pem', '-signature', 'sig.bin', 'code.txt'),
        /Verified OK/,
      );
    });
  }

  test('fail/pop-key-mismatch: --ca-cert of another CA is refused', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca');
    await certs(dir, 'ca', '--name', 'other');
    const r = await certgate(dir, 'certs', 'pop', '--ca-key', 'other.key', '--code', 'abc', '--ca-cert', 'ca.crt');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /does not match/);
    assert.equal(r.stdout, '');
  });
});

describe('certgate certs: refusals (exit 2, one line)', () => {
  /** Runs a command that must be refused; checks the one-line message and that nothing was written. */
  async function refused(dir: string, args: string[], message: RegExp): Promise<void> {
    const before = (await fs.readdir(dir)).sort();
    const r = await certgate(dir, 'certs', ...args);
    assert.equal(r.code, 2, `exit 2 for ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.deepEqual((await fs.readdir(dir)).sort(), before, 'nothing written');
  }

  test('fail/missing-ca: no CA certificate or key', async (t) => {
    const dir = await tempDir(t);
    await refused(dir, ['device', '--cn', 'd'], /CA certificate not found: .*ca\.crt \(give --ca-cert\)/);
    await certs(dir, 'ca');
    await fs.rm(path.join(dir, 'ca.key'));
    await refused(dir, ['device', '--cn', 'd'], /CA key not found: .*ca\.key \(give --ca-key\)/);
  });

  test('fail/key-mismatch: CA key of another CA', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca');
    await certs(dir, 'ca', '--name', 'other');
    await refused(dir, ['device', '--cn', 'd', '--ca-key', 'other.key'], /CA key .*other\.key does not match the CA certificate .*ca\.crt/);
  });

  test('fail/expired-ca and fail/not-yet-valid-ca', async (t) => {
    const dir = await tempDir(t);
    const day = 86_400_000;
    const expired = await createCa({ cn: 'Old CA', notBefore: new Date(Date.now() - 400 * day), notAfter: new Date(Date.now() - day) });
    await fs.writeFile(path.join(dir, 'old.crt'), expired.certPem);
    await fs.writeFile(path.join(dir, 'old.key'), expired.keyPem);
    await refused(dir, ['device', '--cn', 'd', '--ca-cert', 'old.crt', '--ca-key', 'old.key'], /CA certificate "CN=Old CA" expired on \d{4}-/);
    // The same through the command: --not-after in the past makes an expired CA.
    await certs(dir, 'ca', '--name', 'past', '--not-before', '2020-01-01', '--not-after', '2021-01-01T00:00:00Z');
    await refused(dir, ['intermediate', '--ca-cert', 'past.crt', '--ca-key', 'past.key'], /expired on 2021-01-01/);
    await certs(dir, 'ca', '--name', 'future', '--not-before', '2099-01-01', '--days', '10');
    await refused(dir, ['device', '--cn', 'd', '--ca-cert', 'future.crt', '--ca-key', 'future.key'], /not valid before 2099-01-01/);
  });

  test('fail/not-a-ca: a device certificate, or a CA without keyCertSign, cannot issue', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca');
    await certs(dir, 'device', '--cn', 'leaf');
    await refused(dir, ['device', '--cn', 'd', '--ca-cert', 'leaf.crt', '--ca-key', 'leaf.key'], /"CN=leaf" is not a CA: it lacks basicConstraints CA:true/);
    const odd = await issueCertificate({
      subject: { cn: 'No Sign CA' },
      basicConstraints: { ca: true },
      keyUsage: ['digitalSignature', 'cRLSign'],
    });
    await fs.writeFile(path.join(dir, 'odd.crt'), odd.certPem);
    await fs.writeFile(path.join(dir, 'odd.key'), odd.keyPem);
    await refused(dir, ['device', '--cn', 'd', '--ca-cert', 'odd.crt', '--ca-key', 'odd.key'], /keyUsage lacks keyCertSign/);
  });

  test('fail/path-length: no CA below a pathlen:0 CA, no pathlen beyond the issuer', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca', '--path-len', '1');
    await refused(dir, ['intermediate', '--path-len', '1'], /path length 1 exceeds .* \(0\)/);
    await certs(dir, 'intermediate', '--path-len', '0');
    await refused(dir, ['intermediate', '--name', 'sub', '--ca-cert', 'intermediate.crt', '--ca-key', 'intermediate.key'], /pathlen:0 and may not sign another CA/);
    // A device under the pathlen:0 intermediate is fine.
    await certs(dir, 'device', '--cn', 'd', '--ca-cert', 'intermediate.crt', '--ca-key', 'intermediate.key');
  });

  test('fail/overwrite: existing files are kept unless --force', async (t) => {
    const dir = await tempDir(t);
    await certs(dir, 'ca');
    const crt = await fs.readFile(path.join(dir, 'ca.crt'), 'utf8');
    await refused(dir, ['ca'], /ca\.key already exists; use --force to overwrite/);
    assert.equal(await fs.readFile(path.join(dir, 'ca.crt'), 'utf8'), crt);
    // Only the keystore would be new: still refused, since the others exist.
    await refused(dir, ['ca', '--p12', '--password', 'x'], /already exists/);
    await fs.chmod(path.join(dir, 'ca.key'), 0o644);
    await certs(dir, 'ca', '--force');
    assert.notEqual(await fs.readFile(path.join(dir, 'ca.crt'), 'utf8'), crt);
    assert.equal((await fs.stat(path.join(dir, 'ca.key'))).mode & 0o777, 0o600);
  });

  test('fail/bad-options', async (t) => {
    const dir = await tempDir(t);
    await refused(dir, ['ca', '--key', 'dsa'], /--key must be ec or rsa/);
    await refused(dir, ['ca', '--rsa-bits', '1024'], /--rsa-bits must be 2048, 3072 or 4096/);
    await refused(dir, ['ca', '--key', 'ec', '--rsa-bits', '2048'], /--rsa-bits goes with --key rsa/);
    await refused(dir, ['ca', '--country', 'USA'], /two-letter/);
    await refused(dir, ['ca', '--days', '0'], /--days must be a whole number >= 1/);
    await refused(dir, ['ca', '--not-after', 'tomorrow'], /ISO 8601/);
    await refused(dir, ['ca', '--frobnicate'], /Unknown option '--frobnicate' \(see --help\)/);
    await refused(dir, ['ca', '--name', '../escape'], /not a plain file name/);
    await refused(dir, ['ca', '--p12'], /--p12 needs --password or --password-file/);
    await certs(dir, 'ca');
    await refused(dir, ['device'], /give --cn or --device-id/);
    await refused(dir, ['device', '--cn', 'd', '--uri-domain', 'x.example'], /--uri-domain needs --device-id/);
    await refused(dir, ['device', '--cn', 'a/b'], /cannot be a file name; give --name/);
    await refused(dir, ['server', '--ip', '300.1.1.1'], /not an IP address/);
    await refused(dir, ['pop', '--ca-key', 'ca.key'], /give --code/);
    await refused(dir, ['nonsense'], /unknown command "nonsense"/);
  });

  test('ok/password-file and help', async (t) => {
    const dir = await tempDir(t);
    await fs.writeFile(path.join(dir, 'pw.txt'), 'from-a-file\n');
    await certs(dir, 'ca', '--password-file', 'pw.txt');
    assert.match(await openssl(dir, 'pkcs12', '-info', '-nokeys', '-in', 'ca.p12', '-passin', 'pass:from-a-file'), /subject=/);

    const help = await certgate(dir, 'certs', 'device', '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--device-id ID/);
    assert.match(help.stdout, /--uri-domain DOMAIN/);
    for (const sub of ['ca', 'intermediate', 'server', 'pop']) {
      const r = await certgate(dir, 'certs', sub, '--help');
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`Usage: certgate certs ${sub}`));
    }
    const top = await certgate(dir, 'certs');
    assert.equal(top.code, 2);
    assert.match(top.stderr, /Usage: certgate certs <command>/);
    const main = await certgate(dir, '--help');
    assert.equal(main.code, 0);
    assert.match(main.stdout, /certs +make CA/);
  });
});
