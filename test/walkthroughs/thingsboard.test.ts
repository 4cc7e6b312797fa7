/**
 * docs/walkthroughs.md, "2. ThingsBoard", run as written against a started certgate: the guide's
 * root -> intermediate -> device chain with only the intermediate trusted, the device name from the
 * CN by regex, the guide's mosquitto_pub command, certgate certs, and a single pinned certificate.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { collect, connectDevice, refusedWith, suback } from '../helpers/mqtt-client.js';
import { apiOk, until } from '../helpers/service.js';
import { runWalkthrough, serviceForFile } from './harness.js';

const AUTH = 'tb-demo/admin:tb-demo-admin-pass';
const T = '/tenant/tenants/tb-demo';

describe('walkthrough: ThingsBoard', () => {
  const env = serviceForFile();

  test('ok/thingsboard: chain trusting the intermediate, CN regex, auto-registration, pinned certificate', async (t) => {
    const e = env();
    const http = e.service.httpUrl;
    const serverCa = await fs.readFile(e.service.serverCaPath);
    const file = (dir: string, f: string) => fs.readFile(path.join(dir, f));

    const run = await runWalkthrough(t, 'thingsboard', e, {
      hooks: [
        {
          // The same chain with MQTT.js: any client id (the profile's policy), the device's own
          // topic and ThingsBoard's telemetry topic; topics outside the profile's ACL are not.
          when: 'cat telemetry.txt',
          after: async (_out, dir) => {
            const tls = { port: e.service.mqttPort, serverCa, key: await file(dir, 'deviceKey.pem'), cert: await file(dir, 'chain.pem') };
            const sub = await connectDevice(t, { ...tls, clientId: 'dashboard-of-device123' });
            const got = collect(sub);
            const granted = await suback(sub, { 'devices/device123/#': { qos: 1 }, 'devices/device456/#': { qos: 1 } });
            assert.deepEqual(granted, [1, 128], 'another device\'s topic is refused');
            const pub = await connectDevice(t, { ...tls, clientId: 'any-id', protocolVersion: 5 });
            await pub.publishAsync('devices/device123/attributes', '{"fw":"1.0"}', { qos: 1 });
            await until(() => got.length === 1, 5_000, 'the message');
            assert.deepEqual(got, [{ topic: 'devices/device123/attributes', payload: '{"fw":"1.0"}' }]);
            sub.end(true);
            pub.end(true);
          },
        },
      ],
    });

    // Trusting the intermediate only: the root itself is not a trusted certificate.
    const certs = (await apiOk(http, 'GET', `${T}/trusted-certificates?pageSize=10`, AUTH)).certificates as Array<Record<string, any>>;
    assert.deepEqual(certs.map((c) => c.subject), ['CN=group.company.com', 'CN=group.company.com']);
    const devices = (await apiOk(http, 'GET', `${T}/devices?pageSize=10`, AUTH)).devices as Array<Record<string, any>>;
    assert.deepEqual(devices.map((d) => `${d.name} ${d.createdBy}`).sort(), [
      'device123 AUTO_REGISTRATION',
      'device456 AUTO_REGISTRATION',
      'my-sensor API',
    ]);
    const profiles = (await apiOk(http, 'GET', `${T}/device-profiles?pageSize=10`, AUTH)).deviceProfiles as Array<Record<string, any>>;
    const chainProfile = profiles.find((p) => p.name === 'X.509 chain')!;
    assert.equal(chainProfile.identity.pattern, '^(.+)\\.group\\.company\\.com$');
    for (const name of ['device123', 'device456']) {
      assert.equal(devices.find((d) => d.name === name)!.deviceProfileId, chainProfile.id, `${name} got the chain's profile`);
    }
    // Refusals, each for its reason.
    await until(async () => (await apiOk(http, 'GET', `${T}/auth-events?result=deny&pageSize=10`, AUTH)).events.length >= 1, 5_000, 'deny events');
    const reasons = ((await apiOk(http, 'GET', `${T}/auth-events?result=deny&pageSize=10`, AUTH)).events as Array<Record<string, any>>).map((ev) => ev.reason);
    assert.deepEqual(reasons, ['IDENTITY_NOT_FOUND'], 'the CN outside the regex; the root-signed device belongs to no tenant');
    // The pinned self-signed certificate: only with its device's name as the client id.
    const tls = { port: e.service.mqttPort, serverCa, key: await file(run.dir, 'key.pem'), cert: await file(run.dir, 'cert.pem') };
    (await connectDevice(t, { ...tls, clientId: 'my-sensor' })).end(true);
    assert.equal(await refusedWith(t, { ...tls, clientId: 'not-my-sensor' }), 5);
  });
});
