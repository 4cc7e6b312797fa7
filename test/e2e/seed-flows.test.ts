/**
 * The seed flows end to end, with `certgate api` and `certgate mqtt` in separate processes and the
 * real verifier behind the listener: a Cumulocity-style CA with CN = client id, a ThingsBoard-style
 * chain trusting only the intermediate with a CN regex, an amqtt-style SAN URI device, all made
 * with the openssl CLI; two tenants' `dev1` on the same topic never see each other; lastConnectedAt.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { collect, connectDevice, refusedWith, suback } from '../helpers/mqtt-client.js';
import { apiOk, until } from '../helpers/service.js';
import {
  amqttCa,
  authEvents,
  createTenant,
  cumulocityCa,
  cumulocityDevice,
  mosquitto,
  splitForFile,
  thingsboardChain,
  tlsOf,
  trust,
} from './harness.js';

describe('e2e: seed flows through certgate mqtt -> certgate api', () => {
  const env = splitForFile();

  test('ok/cumulocity: CA from caConfig.cnf, CN = client id, auto-registration, mosquitto and MQTT.js', async (t) => {
    const s = env();
    const tenant = await createTenant(s.http, 'c8y');
    const ca = await cumulocityCa(s.dir, 'Cumulocity e2e CA');
    await trust(s.http, tenant, ca.certPem, { autoRegistrationEnabled: 'true' });
    const dev = await cumulocityDevice(ca, 'device001');

    const sub = mosquitto('mosquitto_sub', s, dev, ['-i', 'device001', '-t', 'devices/device001/#', '-C', '1', '-W', '20', '-v']);
    await until(async () => (await apiOk(s.http, 'GET', `${tenant.base}/devices`, tenant.auth)).devices.length === 1, 10_000, 'registration');
    const [registered] = (await apiOk(s.http, 'GET', `${tenant.base}/devices`, tenant.auth)).devices;
    assert.equal(registered.createdBy, 'AUTO_REGISTRATION');
    // Wait for the subscription's session, then publish as the same device from MQTT.js (`d:` prefix).
    await authEvents(s.http, tenant, 'result=allow', 1);
    const pub = await connectDevice(t, { ...(await tlsOf(s, dev)), clientId: 'd:device001', protocolVersion: 5 });
    await pub.publishAsync('devices/device001/measurement', '{"c8y_Temperature":21}', { qos: 1 });
    assert.equal(await sub.exited, 0, sub.output());
    assert.equal(sub.output().trim(), 'devices/device001/measurement {"c8y_Temperature":21}');

    // The client id must be the CN: mosquitto (3.1.1: 5) and MQTT.js (5: 0x87).
    const wrong = mosquitto('mosquitto_pub', s, dev, ['-i', 'device002', '-t', 'devices/device001/x', '-m', 'x']);
    assert.notEqual(await wrong.exited, 0);
    assert.match(wrong.output(), /not authori[sz]ed/i);
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, dev)), clientId: 'not-the-cn', protocolVersion: 5 }), 0x87);
    const denies = await authEvents(s.http, tenant, 'result=deny', 2);
    assert.deepEqual(denies.map((e) => e.reason), ['CLIENT_ID_MISMATCH', 'CLIENT_ID_MISMATCH']);
    assert.equal((await apiOk(s.http, 'GET', `${tenant.base}/devices`, tenant.auth)).devices.length, 1, 'still exactly one device');
  });

  test('ok/thingsboard: only the intermediate trusted, device name from the CN by regex', async (t) => {
    const s = env();
    const tenant = await createTenant(s.http, 'tb');
    const chain = await thingsboardChain(s.dir);
    const profile = await apiOk(s.http, 'POST', `${tenant.base}/device-profiles`, tenant.auth, {
      name: 'X.509 chain',
      identity: { source: 'COMMON_NAME', pattern: '^(.+)\\.group\\.company\\.com$' },
      clientIdPolicy: 'ANY',
    });
    await trust(s.http, tenant, chain.intermediatePem, { autoRegistrationEnabled: true, deviceProfileId: profile.id });
    const dev = await chain.device('device123.group.company.com');

    // The full chain (leaf, intermediate, root), as ThingsBoard's chain.pem; any client id.
    const client = await connectDevice(t, { ...(await tlsOf(s, dev)), clientId: 'tb-client-1' });
    const got = collect(client);
    assert.deepEqual(await suback(client, { 'devices/device123/#': { qos: 1 }, 'devices/other/#': { qos: 1 } }), [1, 128]);
    const pub = mosquitto('mosquitto_pub', s, dev, ['-q', '1', '-t', 'devices/device123/telemetry', '-m', '{"temperature":25}']);
    assert.equal(await pub.exited, 0, pub.output());
    await until(() => got.length === 1, 5_000, 'the telemetry');
    assert.deepEqual(got, [{ topic: 'devices/device123/telemetry', payload: '{"temperature":25}' }]);
    // Leaf alone: the intermediate is the trusted anchor, so nothing else is needed.
    (await connectDevice(t, { ...(await tlsOf(s, dev, false)), clientId: 'tb-client-2' })).end(true);

    const devices = (await apiOk(s.http, 'GET', `${tenant.base}/devices`, tenant.auth)).devices as Array<Record<string, any>>;
    assert.deepEqual(devices.map((d) => `${d.name} ${d.deviceProfileId === profile.id}`), ['device123 true']);

    // Signed by the untrusted root: no anchor. A CN outside the regex: no identity.
    const rootSigned = await chain.device('device9.group.company.com', 'root');
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, rootSigned)), clientId: 'x' }), 5);
    const stranger = await chain.device('sensor.elsewhere.example');
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, stranger)), clientId: 'x' }), 5);
    const denies = await authEvents(s.http, tenant, 'result=deny', 1);
    assert.deepEqual(denies.map((e) => e.reason), ['IDENTITY_NOT_FOUND'], 'the root-signed device reached no tenant');
  });

  test('ok/amqtt: SAN URI spiffe://my.domain.name/device/<id>, client id = id', async (t) => {
    const s = env();
    const tenant = await createTenant(s.http, 'amqtt');
    const ca = await amqttCa(s.dir, 'my.domain.name');
    const profile = await apiOk(s.http, 'POST', `${tenant.base}/device-profiles`, tenant.auth, {
      name: 'amqtt',
      identity: { source: 'SAN_URI', uriPrefix: 'spiffe://my.domain.name/device/', pattern: '^(.+)$' },
      clientIdPolicy: 'MUST_MATCH_DEVICE_NAME',
    });
    await trust(s.http, tenant, ca.certPem, { autoRegistrationEnabled: true, deviceProfileId: profile.id });
    const dev = await ca.device('myUniqueDeviceId', 'CN ignored by the profile');

    const client = await connectDevice(t, { ...(await tlsOf(s, dev, false)), clientId: 'myUniqueDeviceId', protocolVersion: 5 });
    const got = collect(client);
    await client.subscribeAsync('devices/myUniqueDeviceId/#', { qos: 1 });
    const pub = mosquitto('mosquitto_pub', s, dev, ['-V', 'mqttv5', '-i', 'd:myUniqueDeviceId', '-q', '1', '-t', 'devices/myUniqueDeviceId/up', '-m', 'hi']);
    assert.equal(await pub.exited, 0, pub.output());
    await until(() => got.length === 1, 5_000, 'the message');
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, dev)), clientId: 'CN ignored by the profile' }), 5);

    const devices = (await apiOk(s.http, 'GET', `${tenant.base}/devices`, tenant.auth)).devices as Array<Record<string, any>>;
    assert.deepEqual(devices.map((d) => d.name), ['myUniqueDeviceId']);
    // A certificate of the same CA without the SAN URI names no device under this profile.
    const plain = await ca.device('plain', 'plain', { san: false });
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, plain)), clientId: 'plain' }), 5);
    const denies = await authEvents(s.http, tenant, 'result=deny', 2);
    assert.deepEqual(denies.map((e) => e.reason), ['IDENTITY_NOT_FOUND', 'CLIENT_ID_MISMATCH']);
  });

  test('ok/tenant-isolation: each tenant\'s dev1 on devices/dev1/x sees only its own tenant\'s messages', async (t) => {
    const s = env();
    const a = await createTenant(s.http, 'iso-a');
    const b = await createTenant(s.http, 'iso-b');
    const caA = await cumulocityCa(s.dir, 'Tenant A CA');
    const caB = await cumulocityCa(s.dir, 'Tenant B CA');
    await trust(s.http, a, caA.certPem);
    await trust(s.http, b, caB.certPem);
    const devA = await cumulocityDevice(caA, 'dev1');
    const devB = await cumulocityDevice(caB, 'dev1');

    // A subscriber and a publisher per tenant, all named dev1, all on devices/dev1/x.
    const subA = await connectDevice(t, { ...(await tlsOf(s, devA)), clientId: 'dev1' });
    const subB = await connectDevice(t, { ...(await tlsOf(s, devB)), clientId: 'dev1', protocolVersion: 5 });
    const gotA = collect(subA);
    const gotB = collect(subB);
    await subA.subscribeAsync('devices/dev1/#', { qos: 1 });
    await subB.subscribeAsync('devices/dev1/#', { qos: 1 });
    const pubA = mosquitto('mosquitto_pub', s, devA, ['-i', 'd:dev1', '-q', '1', '-t', 'devices/dev1/x', '-m', 'from A']);
    const pubB = await connectDevice(t, { ...(await tlsOf(s, devB)), clientId: 'd:dev1' });
    await pubB.publishAsync('devices/dev1/x', 'from B', { qos: 1, retain: true });
    assert.equal(await pubA.exited, 0, pubA.output());
    await until(() => gotA.length >= 1 && gotB.length >= 1, 5_000, 'both tenants\' messages');
    // Give a leaked copy time to arrive before concluding there is none.
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(gotA.map((m) => `${m.topic} ${m.payload}`), ['devices/dev1/x from A']);
    assert.deepEqual(gotB.map((m) => `${m.topic} ${m.payload}`), ['devices/dev1/x from B']);
    // Retained messages are per tenant too: a fresh subscriber in A does not get B's.
    const late = mosquitto('mosquitto_sub', s, devA, ['-i', 'd:dev1', '-t', 'devices/dev1/#', '-C', '1', '-W', '2', '-v']);
    assert.equal(await late.exited, 27, `timed out with nothing retained in A: ${late.output()}`);
    const lateB = mosquitto('mosquitto_sub', s, devB, ['-i', 'd:dev1', '-t', 'devices/dev1/#', '-C', '1', '-W', '10', '-v']);
    assert.equal(await lateB.exited, 0, lateB.output());
    assert.equal(lateB.output().trim(), 'devices/dev1/x from B');

    // The two dev1 are different devices of different tenants.
    const [d1a] = (await apiOk(s.http, 'GET', `${a.base}/devices?name=dev1`, a.auth)).devices;
    const [d1b] = (await apiOk(s.http, 'GET', `${b.base}/devices?name=dev1`, b.auth)).devices;
    assert.notEqual(d1a.id, d1b.id);
  });

  test('ok/last-connected: lastConnectedAt is set shortly after a connection and follows reconnects', async (t) => {
    const s = env();
    const tenant = await createTenant(s.http, 'seen');
    const ca = await cumulocityCa(s.dir, 'Last seen CA');
    await trust(s.http, tenant, ca.certPem);
    const dev = await cumulocityDevice(ca, 'sensor-7');
    const device = async () => (await apiOk(s.http, 'GET', `${tenant.base}/devices?name=sensor-7`, tenant.auth)).devices[0] as Record<string, any> | undefined;

    const before = Date.now();
    (await connectDevice(t, { ...(await tlsOf(s, dev)), clientId: 'sensor-7' })).end(true);
    await until(async () => Boolean((await device())?.lastConnectedAt), 5_000, 'lastConnectedAt');
    const first = Date.parse((await device())!.lastConnectedAt);
    assert.ok(first >= before - 1_000 && first <= Date.now(), `lastConnectedAt ${new Date(first).toISOString()} is this connection`);

    // A burst of reconnects: the latest one is what is recorded (it is stamped when the listener
    // accepts it, which may be a moment after the client saw its CONNACK).
    let lastStarted = 0;
    for (let i = 0; i < 5; i++) {
      lastStarted = Date.now();
      (await connectDevice(t, { ...(await tlsOf(s, dev)), clientId: 'sensor-7' })).end(true);
    }
    await until(async () => Date.parse((await device())!.lastConnectedAt) >= lastStarted, 5_000, 'the last connection as lastConnectedAt');
    const latest = Date.parse((await device())!.lastConnectedAt);
    assert.ok(latest > first && latest <= Date.now(), `lastConnectedAt ${new Date(latest).toISOString()} is the last connection`);
  });
});
