/**
 * docs/walkthroughs.md, "4. mosquitto / eACM", run as written against a started certgate: the eACM
 * guide's openssl CA and client certificates, pre-registered devices (no auto-registration), and
 * mosquitto's per-user topic rules as device profiles.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { collect, connectDevice, suback } from '../helpers/mqtt-client.js';
import { apiOk, until } from '../helpers/service.js';
import { runWalkthrough, serviceForFile } from './harness.js';

const AUTH = 'eacm-demo/admin:eacm-demo-admin-pass';
const T = '/tenant/tenants/eacm-demo';

describe('walkthrough: mosquitto / eACM', () => {
  const env = serviceForFile();

  test('ok/eacm: per-user topic rules, registered devices only', async (t) => {
    const e = env();
    const http = e.service.httpUrl;
    const serverCa = await fs.readFile(e.service.serverCaPath);
    const run = await runWalkthrough(t, 'eacm', e);
    const tlsOf = async (user: string, certFile = `${user}.pem`) => ({
      port: e.service.mqttPort,
      serverCa,
      key: await fs.readFile(path.join(run.dir, `${user}.key`)),
      cert: await fs.readFile(path.join(run.dir, certFile)),
    });

    const devices = (await apiOk(http, 'GET', `${T}/devices?pageSize=10`, AUTH)).devices as Array<Record<string, any>>;
    assert.deepEqual(devices.map((d) => `${d.name} ${d.createdBy}`).sort(), ['HMI API', 'MyEACM API', 'SparkplugViewer API']);

    // The viewer may read but not write: its publish is refused (MQTT 5 PUBACK 0x87) and reaches
    // no one; MyEACM's goes through.
    const viewer = await connectDevice(t, { ...(await tlsOf('SparkplugViewer')), clientId: 'viewer-js', protocolVersion: 5 });
    const seen = collect(viewer);
    assert.deepEqual(await suback(viewer, { 'spBv1.0/#': { qos: 1 }, 'STATE/+': { qos: 1 }, 'HMI/#': { qos: 1 } }), [1, 1, 0x87]);
    await until(() => seen.some((m) => m.topic === 'STATE/hmi'), 5_000, 'the retained STATE/hmi');
    await assert.rejects(viewer.publishAsync('spBv1.0/plant1/NCMD/edge1', 'from the viewer', { qos: 1 }), { code: 0x87 });
    const eacm = await connectDevice(t, { ...(await tlsOf('MyEACM')), clientId: 'eacm-js' });
    await eacm.publishAsync('spBv1.0/plant1/NDATA/edge1', 'from MyEACM', { qos: 1 });
    await until(() => seen.some((m) => m.payload === 'from MyEACM'), 5_000, 'MyEACM\'s message');
    assert.equal(seen.some((m) => m.payload === 'from the viewer'), false, 'the viewer\'s publish was dropped');
    // A 3.1.1 client cannot be told: its publish is acknowledged and dropped.
    const viewer4 = await connectDevice(t, { ...(await tlsOf('SparkplugViewer')), clientId: 'viewer-311' });
    await viewer4.publishAsync('spBv1.0/plant1/NCMD/edge1', 'from the 3.1.1 viewer', { qos: 1 });
    await eacm.publishAsync('spBv1.0/plant1/NDATA/edge1', 'again from MyEACM', { qos: 1 });
    await until(() => seen.some((m) => m.payload === 'again from MyEACM'), 5_000, 'MyEACM\'s second message');
    assert.equal(seen.some((m) => m.payload === 'from the 3.1.1 viewer'), false);

    // HMI's first certificate (openssl) now that HMI is registered; a stranger is still refused.
    (await connectDevice(t, { ...(await tlsOf('HMI')), clientId: 'hmi-js' })).end(true);
    await until(async () => (await apiOk(http, 'GET', `${T}/auth-events?result=deny&pageSize=10`, AUTH)).events.length >= 1, 5_000, 'deny events');
    const denies = (await apiOk(http, 'GET', `${T}/auth-events?result=deny&pageSize=10`, AUTH)).events as Array<Record<string, any>>;
    assert.deepEqual(denies.map((d) => d.reason), ['DEVICE_NOT_FOUND'], 'HMI before it was registered');
  });
});
