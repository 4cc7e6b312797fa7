/**
 * A device provisioned through one process connects at once through another: the credential the
 * API just listed is not yet in the other process's caches (its notification is on the way), and
 * the refusal that those caches alone would give is checked against the database first.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createCa } from '../../src/certs/certs-service.js';
import { build } from '../helpers/app.js';
import { credential, device, expectAllow, tenant, trust } from './fixtures.js';

test('ok/credential-listed-on-other-process: the next request on B allows the device A just provisioned', async (t) => {
  const a = await build(t, { changeFeed: true });
  const b = await build(t, { changeFeed: true, sameDatabaseAs: a });
  const acme = await tenant(a, 'acme');
  // B's caches are warm: a device of a trusted CA authenticated there already.
  const ca = await createCa({ cn: 'Acme CA' });
  await trust(a, acme, ca.certPem);
  const warm = await createCa({ cn: 'warm-up' });
  const warmId = await device(a, acme, { name: 'warm-up' });
  await credential(a, acme, warmId, warm.certPem);
  await expectAllow(b, { clientId: 'warm-up', certificateChain: [warm.certPem] }, 'warm-up on B');

  for (let i = 0; i < 5; i++) {
    // ThingsBoard's single-certificate strategy: a self-signed certificate listed for a device.
    const leaf = await createCa({ cn: `sensor-${i}` });
    const id = await device(a, acme, { name: `sensor-${i}` });
    await credential(a, acme, id, leaf.certPem);
    const d = await expectAllow(b, { clientId: `sensor-${i}`, certificateChain: [leaf.certPem] }, `sensor-${i} on B right after A listed it`);
    assert.equal(d.device.id, id);
    assert.equal(d.matchedBy, 'DEVICE_CREDENTIALS');
  }
});
