/**
 * docs/walkthroughs.md, "1. Cumulocity / MindSphere", run as written against a started certgate:
 * the guide's openssl CA, the guide's upload body, auto-registration, client id = CN, the
 * keystore (connected here with MQTT.js, as MQTT.fx would), certgate certs, revocation.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { closedWithin, collect, connectDevice, refusedWith } from '../helpers/mqtt-client.js';
import { apiOk, until } from '../helpers/service.js';
import { runWalkthrough, serviceForFile } from './harness.js';

const AUTH = 'c8y-demo/admin:c8y-demo-admin-pass';
const T = '/tenant/tenants/c8y-demo';

describe('walkthrough: Cumulocity / MindSphere', () => {
  const env = serviceForFile();

  test('ok/cumulocity: trusted CA, auto-registration, client id = CN, keystore, revocation', async (t) => {
    const e = env();
    const http = e.service.httpUrl;
    const serverCa = await fs.readFile(e.service.serverCaPath);
    const keystore = (dir: string) => fs.readFile(path.join(dir, 'caCertificate/deviceCertificates/deviceKeystore.pkcs12'));
    const denies = (n: number) =>
      until(async () => (await apiOk(http, 'GET', `${T}/auth-events?result=deny&pageSize=10`, AUTH)).events.length >= n, 5_000, `${n} deny events`);
    let live: MqttClient | undefined;
    let liveClosed: Promise<number> | undefined;

    const run = await runWalkthrough(t, 'cumulocity', e, {
      hooks: [
        {
          // Before the device first connects: nothing registered yet.
          when: '-i device001 -t devices/device001/temperature -m 21.5',
          before: async () => {
            assert.deepEqual((await apiOk(http, 'GET', `${T}/devices`, AUTH)).devices, []);
          },
        },
        { when: '-i some-other-id', after: () => denies(1).then(() => undefined) },
        {
          // MQTT.fx's way in: the PKCS#12 keystore, here with MQTT.js over MQTT 5.
          when: 'openssl pkcs12 -export',
          after: async (_out, dir) => {
            const client = await connectDevice(t, {
              port: e.service.mqttPort,
              serverCa,
              pfx: await keystore(dir),
              passphrase: 'keystore-pass',
              clientId: 'device001',
              protocolVersion: 5,
            });
            const got = collect(client);
            await client.subscribeAsync('devices/device001/#', { qos: 1 });
            await until(() => got.some((m) => m.topic === 'devices/device001/temperature' && m.payload === '21.5'), 5_000, 'the retained message');
            await client.publishAsync('devices/device001/echo', 'from MQTT.js', { qos: 1 });
            await until(() => got.some((m) => m.payload === 'from MQTT.js'), 5_000, 'the echo');
            client.end(true);
          },
        },
        {
          // Revocation closes live sessions too: one is open while the CRL is uploaded.
          when: '-revoke deviceCertificates/deviceCert.pem',
          before: async (dir) => {
            live = await connectDevice(t, { port: e.service.mqttPort, serverCa, pfx: await keystore(dir), passphrase: 'keystore-pass', clientId: 'd:device001' });
            liveClosed = closedWithin(live);
          },
          after: async () => {
            const ms = await liveClosed!;
            assert.ok(ms < 10_000, `closed after ${ms} ms`);
          },
        },
      ],
    });

    // The revoked certificate is refused to MQTT.js as well (MQTT 5: 0x87 not authorized).
    const code = await refusedWith(t, {
      port: e.service.mqttPort,
      serverCa,
      pfx: await keystore(run.dir),
      passphrase: 'keystore-pass',
      clientId: 'device001',
      protocolVersion: 5,
    });
    assert.equal(code, 0x87);

    const list = async () => (await apiOk(http, 'GET', `${T}/devices?pageSize=10`, AUTH)).devices as Array<Record<string, any>>;
    assert.deepEqual((await list()).map((d) => `${d.name} ${d.createdBy} ${d.status}`).sort(), [
      'device001 AUTO_REGISTRATION ACTIVE',
      'device002 AUTO_REGISTRATION ACTIVE',
      'device003 AUTO_REGISTRATION ACTIVE',
    ]);
    // lastConnectedAt is written in batches, about a second after the connection.
    await until(async () => (await list()).every((d) => d.lastConnectedAt), 5_000, 'lastConnectedAt of every device');
    // Every leaf that authenticated is recorded as an OBSERVED credential of its device.
    const d1 = (await list()).find((d) => d.name === 'device001')!;
    const creds = (await apiOk(http, 'GET', `${T}/devices/${d1.id}/credentials`, AUTH)).credentials as Array<Record<string, any>>;
    assert.deepEqual(creds.map((c) => `${c.source} ${c.subject}`), ['OBSERVED CN=device001']);
    const certs = (await apiOk(http, 'GET', `${T}/trusted-certificates?pageSize=10`, AUTH)).certificates as Array<Record<string, any>>;
    assert.deepEqual(certs.map((c) => c.name).sort(), ['certificateName', 'second CA']);
    const revoked = (await apiOk(http, 'GET', `${T}/trusted-certificates/settings/crl`, AUTH)).crls as Array<Record<string, any>>;
    assert.deepEqual(revoked.map((r) => r.source).sort(), ['API', 'CRL']);
  });
});
