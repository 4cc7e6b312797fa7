/**
 * Which profile's client id rule applies: a registered device answers to its
 * own profile, a device that auto-registration would create to the anchor's profile, and a wrong
 * client id never creates a device.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { build } from '../helpers/app.js';
import { createCa, createDevice } from '../../src/certs/certs-service.js';
import { device, devicesNamed, expectAllow, expectDeny, profile, tenant, trust } from './fixtures.js';

test('the client id rule comes from the device profile of a registered device, else from the anchor', async (t) => {
  const s = await build(t);
  const acme = await tenant(s, 'acme');
  const ca = await createCa({ cn: 'Acme Fleet CA' });
  // The CA's profile is the tenant default: the client id must be the device name.
  await trust(s, acme, ca.certPem, { autoRegistrationEnabled: true });
  const anyClientId = await profile(s, acme, { name: 'gateways', clientIdPolicy: 'ANY' });
  await device(s, acme, { name: 'gw-1', deviceProfileId: anyClientId });

  const gateway = await createDevice({ issuer: ca, cn: 'gw-1' });
  await expectAllow(s, { clientId: 'gw-1/modbus', certificateChain: [gateway.certPem] }, 'allow/registered-device-own-profile-any');

  const sensor = await createDevice({ issuer: ca, cn: 'sensor-1' });
  await expectDeny(s, { clientId: 'not-sensor-1', certificateChain: [sensor.certPem] }, 'CLIENT_ID_MISMATCH', 'deny/new-device-anchor-profile');
  assert.deepEqual(await devicesNamed(s, acme, 'sensor-1'), [], 'a refused client id registers nothing');
  await expectAllow(s, { clientId: 'sensor-1', certificateChain: [sensor.certPem] }, 'allow/new-device-right-client-id');
  assert.equal((await devicesNamed(s, acme, 'sensor-1')).length, 1);
});
