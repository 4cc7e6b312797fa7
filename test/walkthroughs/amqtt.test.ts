/**
 * docs/walkthroughs.md, "3. amqtt", run as written against a started certgate: amqtt's
 * ca_creds / device_creds options on `certgate certs`, a SAN_URI profile with amqtt's
 * `spiffe://<uri_domain>/device/<id>` rule, the client id bound to the device id.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { collect, connectDevice, refusedWith } from '../helpers/mqtt-client.js';
import { apiOk, until } from '../helpers/service.js';
import { runWalkthrough, serviceForFile } from './harness.js';

const AUTH = 'amqtt-demo/admin:amqtt-demo-admin-pass';
const T = '/tenant/tenants/amqtt-demo';

describe('walkthrough: amqtt', () => {
  const env = serviceForFile();

  test('ok/amqtt: SAN URI identity, client id = device id, auto-registration', async (t) => {
    const e = env();
    const http = e.service.httpUrl;
    const serverCa = await fs.readFile(e.service.serverCaPath);
    const run = await runWalkthrough(t, 'amqtt', e);
    const file = (f: string) => fs.readFile(path.join(run.dir, f));

    const devices = (await apiOk(http, 'GET', `${T}/devices?pageSize=10`, AUTH)).devices as Array<Record<string, any>>;
    assert.deepEqual(devices.map((d) => `${d.name} ${d.createdBy}`).sort(), ['myUniqueDeviceId AUTO_REGISTRATION', 'sensor-42 AUTO_REGISTRATION']);
    // The CN of sensor-42's certificate played no part: the SAN URI named it.
    const s42 = devices.find((d) => d.name === 'sensor-42')!;
    const creds = async () => (await apiOk(http, 'GET', `${T}/devices/${s42.id}/credentials`, AUTH)).credentials as Array<Record<string, any>>;
    await until(async () => (await creds()).length === 1, 5_000, 'the observed credential');
    assert.match((await creds())[0].subject, /CN=Boiler room sensor/);

    // MQTT.js as amqtt's MQTTClient would connect: key + crt, client id = device id; MQTT 5.
    const tls = { port: e.service.mqttPort, serverCa, key: await file('myUniqueDeviceId.key'), cert: await file('myUniqueDeviceId.crt') };
    const client = await connectDevice(t, { ...tls, clientId: 'myUniqueDeviceId', protocolVersion: 5 });
    const got = collect(client);
    await client.subscribeAsync('devices/myUniqueDeviceId/#', { qos: 1 });
    await client.publishAsync('devices/myUniqueDeviceId/status', 'up', { qos: 1 });
    await until(() => got.length === 1, 5_000, 'the message');
    assert.equal(await refusedWith(t, { ...tls, clientId: 'sensor-42', protocolVersion: 5 }), 0x87, 'another device\'s id');
    await until(async () => (await apiOk(http, 'GET', `${T}/auth-events?result=deny&pageSize=10`, AUTH)).events.length >= 2, 5_000, 'deny events');
    const denies = (await apiOk(http, 'GET', `${T}/auth-events?result=deny&pageSize=10`, AUTH)).events as Array<Record<string, any>>;
    assert.deepEqual(denies.map((d) => `${d.clientId} ${d.reason}`), ['sensor-42 CLIENT_ID_MISMATCH', 'someone-else CLIENT_ID_MISMATCH']);
  });
});
