/**
 * The session kill switch: a SessionChange closes the matching live sessions
 * within 5 seconds and leaves every other session alone.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { SessionChange } from '../../src/verifier/verifier-types.js';
import { TestVerifier, collect, connect, device, refused, sleep, startListener, tenantPki, waitFor } from './harness.js';

const closedWithin = (client: MqttClient): Promise<number> => {
  const start = Date.now();
  return new Promise((resolve) => client.once('close', () => resolve(Date.now() - start)));
};

describe('MQTT listener: kill switch', async () => {
  const acme = await tenantPki('acme');
  const globex = await tenantPki('globex');
  const dev1 = await device(acme.intermediate, 'dev1');
  const dev2 = await device(acme.intermediate, 'dev2');
  // Straight under the root: the root is both anchor and issuer.
  const dev3 = await device(acme.root, 'dev3');
  const other = await device(globex.intermediate, 'dev1');

  const setup = async (t: TestContext) => {
    const verifier = new TestVerifier();
    verifier.trust('acme', acme.root);
    verifier.trust('globex', globex.root);
    const l = await startListener(t, verifier);
    const c1 = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1', protocolVersion: 5 });
    const c2 = await connect(t, l, { creds: dev2, chain: true, clientId: 'dev2' });
    const c3 = await connect(t, l, { creds: dev3, clientId: 'dev3' });
    const cg = await connect(t, l, { creds: other, chain: true, clientId: 'dev1' });
    return { verifier, l, c1, c2, c3, cg };
  };

  const cases: Array<{ name: string; change: SessionChange; drops: Array<'c1' | 'c2' | 'c3' | 'cg'> }> = [
    { name: 'device', change: { kind: 'device', tenantId: 'acme', deviceId: 'acme:dev1' }, drops: ['c1'] },
    { name: 'tenant', change: { kind: 'tenant', tenantId: 'acme' }, drops: ['c1', 'c2', 'c3'] },
    {
      name: 'trusted-certificate (anchor)',
      change: { kind: 'trusted-certificate', tenantId: 'acme', fingerprint: acme.root.fingerprintSha1.toUpperCase() },
      drops: ['c1', 'c2', 'c3'],
    },
    {
      name: 'trusted-certificate (presented intermediate)',
      change: { kind: 'trusted-certificate', tenantId: 'acme', fingerprint: acme.intermediate.fingerprintSha1 },
      drops: ['c1', 'c2'],
    },
    {
      name: 'serial of a leaf, any issuer',
      change: { kind: 'serial', tenantId: 'acme', serialHex: `00${dev2.serialNumberHex}` },
      drops: ['c2'],
    },
    {
      name: 'serial of a leaf, its issuer named',
      change: { kind: 'serial', tenantId: 'acme', serialHex: dev2.serialNumberHex, issuerFingerprint: acme.intermediate.fingerprintSha1 },
      drops: ['c2'],
    },
    {
      name: 'serial of a leaf issued by the anchor',
      change: { kind: 'serial', tenantId: 'acme', serialHex: dev3.serialNumberHex.toLowerCase(), issuerFingerprint: acme.root.fingerprintSha1 },
      drops: ['c3'],
    },
    {
      name: 'serials of an imported CRL (many in one change)',
      change: { kind: 'serials', tenantId: 'acme', serialHexes: ['0badc0de', dev2.serialNumberHex, `00${dev3.serialNumberHex}`] },
      drops: ['c2', 'c3'],
    },
    {
      name: 'serials of an imported CRL, its issuer named',
      change: { kind: 'serials', tenantId: 'acme', serialHexes: [dev2.serialNumberHex, dev3.serialNumberHex], issuerFingerprint: acme.intermediate.fingerprintSha1 },
      drops: ['c2'],
    },
    {
      name: 'serial of the intermediate',
      change: { kind: 'serial', tenantId: 'acme', serialHex: acme.intermediate.serialNumberHex, issuerFingerprint: acme.root.fingerprintSha1 },
      drops: ['c1', 'c2'],
    },
  ];

  for (const c of cases) {
    test(`ok/drop-${c.name}: closes ${c.drops.join(', ')} within 5 s, nothing else`, async (t) => {
      const s = await setup(t);
      const all = { c1: s.c1, c2: s.c2, c3: s.c3, cg: s.cg };
      const waits = c.drops.map((k) => closedWithin(all[k]));
      s.l.changes.emit(c.change);
      const times = await Promise.all(waits);
      for (const ms of times) assert.ok(ms < 5_000, `closed after ${ms} ms`);
      await sleep(100);
      for (const [k, client] of Object.entries(all)) {
        assert.equal(client.connected, !c.drops.includes(k as keyof typeof all), `${k} connected`);
      }
      assert.equal(s.l.listener.stats.sessionsKilled, c.drops.length);
    });
  }

  test('ok/no-match: a serial with another issuer or another tenant closes nothing', async (t) => {
    const s = await setup(t);
    s.l.changes.emit({ kind: 'serial', tenantId: 'acme', serialHex: dev2.serialNumberHex, issuerFingerprint: globex.root.fingerprintSha1 });
    s.l.changes.emit({ kind: 'device', tenantId: 'globex', deviceId: 'acme:dev1' });
    s.l.changes.emit({ kind: 'trusted-certificate', tenantId: 'globex', fingerprint: acme.root.fingerprintSha1 });
    await sleep(200);
    assert.equal([s.c1, s.c2, s.c3, s.cg].every((c) => c.connected), true);
  });

  test('ok/no-will-after-kill: a killed session does not publish its will; MQTT 5 hears 0x98', async (t) => {
    const s = await setup(t);
    const got = collect(s.c2);
    await s.c2.subscribeAsync('devices/dev2/#', { qos: 1 });
    const withWill = await connect(t, s.l, {
      creds: dev2,
      chain: true,
      clientId: 'dev2-will',
      protocolVersion: 5,
      will: { topic: 'devices/dev2/status', payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    const reason = new Promise<number | undefined>((r) => withWill.once('disconnect', (p) => r(p.reasonCode)));
    s.l.changes.emit({ kind: 'device', tenantId: 'acme', deviceId: 'acme:dev2' });
    assert.equal(await reason, 0x98);
    await sleep(200);
    assert.deepEqual(got, []);
  });

  test('ok/change-during-connect: a change that lands while the verifier decides is not missed', async (t) => {
    const s = await setup(t);
    s.verifier.delayMs = 300;
    const attempt = refused(t, s.l, { creds: dev1, chain: true, clientId: 'dev1-again' });
    await waitFor(() => s.verifier.requests.length === 5, 2_000, 'the CONNECT to reach the verifier');
    s.verifier.disabled.add('dev1');
    s.l.changes.emit({ kind: 'device', tenantId: 'acme', deviceId: 'acme:dev1' });
    assert.equal(await attempt, 5);
    assert.equal(s.verifier.requests.length, 6, 'decided a second time');
  });
});
