/**
 * Real clients with certificates made the way the seed guides make them: the openssl CLI for a
 * ThingsBoard-style root -> intermediate -> device chain (the intermediate trusted, the device a
 * version 1 certificate from `openssl x509 -req`), mosquitto_pub / mosquitto_sub sending the
 * chain file, and a PKCS#12 keystore as MQTT.fx sends it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { before, describe, test, type TestContext } from 'node:test';
import { toPkcs12 } from '../../src/certs/certs-service.js';
import {
  TestVerifier,
  collect,
  connect,
  device,
  execFileAsync,
  exited,
  hasMosquittoClients,
  spawnTool,
  startListener,
  tempDir,
  tenantPki,
  waitFor,
  writeFiles,
  type RunningListener,
} from './harness.js';

const openssl = (cwd: string, ...args: string[]) => execFileAsync('openssl', args, { cwd });

/** ThingsBoard's X.509 chain guide, step 2: root, intermediate, device (CN device123), chain.pem. */
async function thingsboardChain(dir: string, deviceCn: string): Promise<void> {
  await writeFiles(dir, {
    'v3.cnf': '[v3_ca]\nbasicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
  });
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'rootKey.pem');
  await openssl(dir, 'req', '-new', '-x509', '-sha256', '-key', 'rootKey.pem', '-subj', '/CN=company.com', '-days', '30', '-out', 'rootCert.pem');
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'intermediateKey.pem');
  await openssl(dir, 'req', '-new', '-sha256', '-key', 'intermediateKey.pem', '-subj', '/CN=group.company.com', '-out', 'intermediate.csr');
  await openssl(dir, 'x509', '-req', '-in', 'intermediate.csr', '-CA', 'rootCert.pem', '-CAkey', 'rootKey.pem', '-CAcreateserial',
    '-days', '30', '-sha256', '-extfile', 'v3.cnf', '-extensions', 'v3_ca', '-out', 'intermediateCert.pem');
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'deviceKey.pem');
  await openssl(dir, 'req', '-new', '-sha256', '-key', 'deviceKey.pem', '-subj', `/CN=${deviceCn}`, '-out', 'device.csr');
  await openssl(dir, 'x509', '-req', '-in', 'device.csr', '-CA', 'intermediateCert.pem', '-CAkey', 'intermediateKey.pem',
    '-CAcreateserial', '-days', '30', '-sha256', '-out', 'deviceCert.pem');
  const pem = async (f: string) => fs.readFile(path.join(dir, f), 'utf8');
  await writeFiles(dir, { 'chain.pem': (await pem('deviceCert.pem')) + (await pem('intermediateCert.pem')) + (await pem('rootCert.pem')) });
}

describe('MQTT listener: mosquitto clients, openssl certificates, PKCS#12', async () => {
  let mosquitto = false;
  before(async () => {
    mosquitto = await hasMosquittoClients();
  });

  const setup = async (t: TestContext) => {
    const dir = await tempDir(t);
    await thingsboardChain(dir, 'device123');
    // Trust only the intermediate, as the ThingsBoard guide does (step 3).
    const intermediatePem = await fs.readFile(path.join(dir, 'intermediateCert.pem'), 'utf8');
    const verifier = new TestVerifier();
    verifier.trustPem('tb', intermediatePem);
    const l = await startListener(t, verifier);
    await writeFiles(dir, { 'server-ca.pem': l.caPem });
    return { dir, verifier, l, intermediatePem };
  };

  const tlsArgs = (l: RunningListener, cert?: string) => [
    '-h', 'localhost', '-p', String(l.port), '--cafile', 'server-ca.pem',
    ...(cert ? ['--cert', cert, '--key', 'deviceKey.pem'] : []),
  ];

  test('ok/mosquitto-chain: mosquitto_pub --cert chain.pem sends its intermediates; mosquitto_sub receives', async (t) => {
    if (!mosquitto) return t.skip('mosquitto-clients not installed');
    const { dir, verifier, l, intermediatePem } = await setup(t);
    for (const v of ['mqttv311', 'mqttv5']) {
      const sub = spawnTool('mosquitto_sub', [...tlsArgs(l, 'chain.pem'), '-V', v, '-i', `device123-sub-${v}`, '-t', 'devices/device123/#', '-C', '1', '-W', '10', '-v'], dir);
      await waitFor(() => l.listener.stats.sessions === 1, 5_000, 'mosquitto_sub to connect');
      const pub = spawnTool('mosquitto_pub', [...tlsArgs(l, 'chain.pem'), '-V', v, '-i', 'device123', '-t', 'devices/device123/telemetry', '-m', `{"temperature":25}`, '-q', '1'], dir);
      assert.equal(await exited(pub), 0, pub.output());
      assert.equal(await exited(sub), 0, sub.output());
      assert.equal(sub.output().trim(), 'devices/device123/telemetry {"temperature":25}');
      await waitFor(() => l.listener.stats.sessions === 0, 2_000, 'sessions to end');
    }
    const req = verifier.requests.at(-1)!;
    assert.equal(req.certificateChain.length, 3, 'leaf, intermediate and root as sent');
    assert.equal(Buffer.from(req.certificateChain[1]!, 'base64').equals(new X509Certificate(intermediatePem).raw), true);
    assert.equal(req.sni, 'localhost');
  });

  test('ok/mosquitto-leaf-and-intermediate: the leaf alone, or leaf + intermediate, as the device sends them', async (t) => {
    if (!mosquitto) return t.skip('mosquitto-clients not installed');
    const { dir, verifier, l } = await setup(t);
    const pub = spawnTool('mosquitto_pub', [...tlsArgs(l, 'deviceCert.pem'), '-i', 'device123', '-t', 'devices/device123/x', '-m', 'hi'], dir);
    assert.equal(await exited(pub), 0, pub.output());
    assert.equal(verifier.requests.at(-1)!.certificateChain.length, 1);
    // Leaf + intermediate, the usual device chain file.
    const pem = async (f: string) => fs.readFile(path.join(dir, f), 'utf8');
    await writeFiles(dir, { 'chain2.pem': (await pem('deviceCert.pem')) + (await pem('intermediateCert.pem')) });
    const pub2 = spawnTool('mosquitto_pub', [...tlsArgs(l, 'chain2.pem'), '-V', 'mqttv5', '-i', 'device123', '-t', 'devices/device123/x', '-m', 'hi'], dir);
    assert.equal(await exited(pub2), 0, pub2.output());
    const chain = verifier.requests.at(-1)!.certificateChain.map((b) => new X509Certificate(Buffer.from(b, 'base64')).subject);
    assert.deepEqual(chain, ['CN=device123', 'CN=group.company.com']);
  });

  test('fail/mosquitto-refused: untrusted and missing certificates are "not authorised" in 3.1.1 and 5', async (t) => {
    if (!mosquitto) return t.skip('mosquitto-clients not installed');
    const { dir, l } = await setup(t);
    // A self-signed device certificate nobody trusts.
    await openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'strangerKey.pem',
      '-out', 'stranger.pem', '-subj', '/CN=stranger', '-days', '2');
    for (const v of ['mqttv311', 'mqttv5']) {
      const untrusted = spawnTool('mosquitto_pub', ['-h', 'localhost', '-p', String(l.port), '--cafile', 'server-ca.pem',
        '--cert', 'stranger.pem', '--key', 'strangerKey.pem', '-V', v, '-t', 'x', '-m', 'x'], dir);
      assert.notEqual(await exited(untrusted), 0);
      assert.match(untrusted.output(), /not authori[sz]ed/i);
      const anonymous = spawnTool('mosquitto_pub', [...tlsArgs(l), '-V', v, '-t', 'x', '-m', 'x'], dir);
      assert.notEqual(await exited(anonymous), 0);
      assert.match(anonymous.output(), /not authori[sz]ed/i);
    }
  });

  test('ok/pkcs12: an MQTT.fx-style PKCS#12 keystore (key + chain) connects', async (t) => {
    const acme = await tenantPki('acme');
    const dev = await device(acme.intermediate, 'dev1');
    const verifier = new TestVerifier();
    verifier.trust('acme', acme.root);
    const l = await startListener(t, verifier);
    const pfx = Buffer.from(await toPkcs12({ certDer: dev.certDer, chainDer: dev.chainDer, privateKey: dev.privateKey }, { password: 'keystore-pw' }));
    const client = await connect(t, l, { pfx, passphrase: 'keystore-pw', clientId: 'dev1' });
    const got = collect(client);
    await client.subscribeAsync('devices/dev1/#', { qos: 1 });
    await client.publishAsync('devices/dev1/echo', 'ping', { qos: 1 });
    await waitFor(() => got.length === 1);
    assert.ok(verifier.requests.at(-1)!.certificateChain.length >= 2, 'the keystore chain reached the verifier');
  });
});
