/**
 * Tenant isolation and the ACL: two tenants each with a device `dev1` on the same
 * topics never see each other's messages, retained messages or wills; denied publications are
 * dropped and denied subscriptions get 0x80 / 0x87.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { TestVerifier, collect, connect, device, sleep, startListener, suback, tenantPki, waitFor } from './harness.js';

describe('MQTT listener: tenants and ACL', async () => {
  const acme = await tenantPki('acme');
  const globex = await tenantPki('globex');
  const acmeDev1 = await device(acme.intermediate, 'dev1');
  const acmeDev2 = await device(acme.intermediate, 'dev2');
  const globexDev1 = await device(globex.intermediate, 'dev1');

  const setup = async (t: TestContext) => {
    // dev2 may also read dev1's topics, so a second device of the same tenant can watch.
    const verifier = new TestVerifier({
      acl: (name) => (name === 'dev2' ? [{ permission: 'allow', action: 'subscribe', topic: 'devices/+/#' }] : []),
    });
    verifier.trust('acme', acme.root);
    verifier.trust('globex', globex.root);
    return startListener(t, verifier);
  };

  test('ok/isolation: same client id and topic in two tenants; each sees only its own', async (t) => {
    const l = await setup(t);
    const a = await connect(t, l, { creds: acmeDev1, chain: true, clientId: 'dev1' });
    const g = await connect(t, l, { creds: globexDev1, chain: true, clientId: 'dev1', protocolVersion: 5 });
    const watcher = await connect(t, l, { creds: acmeDev2, chain: true, clientId: 'dev2' });
    const gotA = collect(a);
    const gotG = collect(g);
    const gotW = collect(watcher);
    await a.subscribeAsync('devices/dev1/#', { qos: 1 });
    await g.subscribeAsync('devices/dev1/#', { qos: 1 });
    await watcher.subscribeAsync('devices/+/x', { qos: 1 });

    await a.publishAsync('devices/dev1/x', 'from acme', { qos: 1 });
    await g.publishAsync('devices/dev1/x', 'from globex', { qos: 0 });
    await waitFor(() => gotA.length >= 1 && gotG.length >= 1 && gotW.length >= 1);
    await sleep(100);
    assert.deepEqual(gotA.map((m) => m.payload), ['from acme']);
    assert.deepEqual(gotG.map((m) => m.payload), ['from globex']);
    assert.deepEqual(gotW.map((m) => [m.topic, m.payload]), [['devices/dev1/x', 'from acme']]);
    // Neither connection took the other over: client ids are per tenant.
    assert.equal(a.connected && g.connected, true);
    assert.equal(l.listener.stats.sessions, 3);
  });

  test('ok/retained-per-tenant: a retained message is delivered to its own tenant only', async (t) => {
    const l = await setup(t);
    const a = await connect(t, l, { creds: acmeDev1, chain: true, clientId: 'dev1' });
    await a.publishAsync('devices/dev1/state', 'acme-state', { qos: 1, retain: true });
    const g = await connect(t, l, { creds: globexDev1, chain: true, clientId: 'dev1' });
    const gotG = collect(g);
    await g.subscribeAsync('devices/dev1/#', { qos: 1 });
    const w = await connect(t, l, { creds: acmeDev2, chain: true, clientId: 'dev2', protocolVersion: 5 });
    const gotW = collect(w);
    await w.subscribeAsync('devices/dev1/state', { qos: 1 });
    await waitFor(() => gotW.length === 1);
    await sleep(100);
    assert.deepEqual(gotG, []);
    assert.deepEqual(gotW, [{ topic: 'devices/dev1/state', payload: 'acme-state', retain: true, qos: 1 }]);

    // An empty retained payload clears it (MQTT 3.3.1.3).
    await a.publishAsync('devices/dev1/state', '', { qos: 1, retain: true });
    const w2 = await connect(t, l, { creds: acmeDev2, chain: true, clientId: 'dev2b' });
    const gotW2 = collect(w2);
    await w2.subscribeAsync('devices/dev1/state', { qos: 1 });
    await sleep(150);
    assert.deepEqual(gotW2, []);
  });

  test('ok/will-per-tenant: a will reaches its own tenant only, and not after a DISCONNECT', async (t) => {
    const l = await setup(t);
    const g = await connect(t, l, { creds: globexDev1, chain: true, clientId: 'dev1' });
    const gotG = collect(g);
    await g.subscribeAsync('devices/dev1/#', { qos: 1 });
    const w = await connect(t, l, { creds: acmeDev2, chain: true, clientId: 'dev2' });
    const gotW = collect(w);
    await w.subscribeAsync('devices/dev1/#', { qos: 1 });

    const a = await connect(t, l, {
      creds: acmeDev1,
      chain: true,
      clientId: 'dev1',
      will: { topic: 'devices/dev1/status', payload: Buffer.from('offline'), qos: 1, retain: false },
    });
    (a as unknown as { stream: { destroy(): void } }).stream.destroy(); // dies without DISCONNECT
    await waitFor(() => gotW.length === 1);
    assert.deepEqual(gotW.map((m) => [m.topic, m.payload]), [['devices/dev1/status', 'offline']]);

    const clean = await connect(t, l, {
      creds: acmeDev1,
      chain: true,
      clientId: 'dev1',
      protocolVersion: 5,
      will: { topic: 'devices/dev1/status', payload: Buffer.from('offline-2'), qos: 1, retain: false },
    });
    await clean.endAsync();
    await sleep(200);
    assert.equal(gotW.length, 1);
    assert.deepEqual(gotG, []);
  });

  test('fail/acl-publish: denied publications are dropped; 3.1.1 still gets PUBACK, 5 gets 0x87', async (t) => {
    const l = await setup(t);
    const w = await connect(t, l, { creds: acmeDev2, chain: true, clientId: 'dev2' });
    const got = collect(w);
    await w.subscribeAsync('devices/+/#', { qos: 1 });
    const v3 = await connect(t, l, { creds: acmeDev1, chain: true, clientId: 'dev1' });
    await v3.publishAsync('devices/dev2/x', 'not mine', { qos: 1 }); // resolves: PUBACK came
    await v3.publishAsync('devices/dev2/x', 'not mine qos0', { qos: 0 });
    const v5 = await connect(t, l, { creds: acmeDev1, chain: true, clientId: 'dev1-v5', protocolVersion: 5 });
    await assert.rejects(v5.publishAsync('devices/dev2/x', 'not mine v5', { qos: 1 }), (err: Error & { code?: number }) => {
      assert.equal(err.code, 0x87);
      return true;
    });
    await v3.publishAsync('devices/dev1/x', 'mine', { qos: 1 });
    await waitFor(() => got.length === 1);
    await sleep(100);
    assert.deepEqual(got.map((m) => m.payload), ['mine']);
    assert.equal(l.listener.stats.publishDenied, 3);
    assert.equal(v3.connected && v5.connected, true);
  });

  test('fail/acl-subscribe: denied subscriptions get 0x80 (3.1.1) / 0x87 (5); allowed ones are granted', async (t) => {
    const l = await setup(t);
    const v3 = await connect(t, l, { creds: acmeDev1, chain: true, clientId: 'dev1' });
    assert.deepEqual(await suback(v3, { 'devices/dev1/+/state': { qos: 1 }, 'devices/#': { qos: 1 }, 'devices/dev2/x': { qos: 0 } }), [
      1, 0x80, 0x80,
    ]);
    const v5 = await connect(t, l, { creds: acmeDev1, chain: true, clientId: 'dev1-v5', protocolVersion: 5 });
    // QoS 2 is granted; a shared subscription is judged on its filter without `$share/{group}/`.
    assert.deepEqual(
      await suback(v5, { 'devices/dev1/#': { qos: 2 }, '#': { qos: 0 }, '$share/g/devices/dev1/x': { qos: 0 }, '$share/g/devices/#': { qos: 0 } }),
      [2, 0x87, 0, 0x87],
    );
    assert.equal(l.listener.stats.subscribeDenied, 4);
  });

  test('ok/persistent-session: subscriptions and QoS 1 messages wait for a clean=false client', async (t) => {
    const l = await setup(t);
    const sub = await connect(t, l, { creds: acmeDev2, chain: true, clientId: 'dev2', clean: false });
    await sub.subscribeAsync('devices/dev1/#', { qos: 1 });
    await sub.endAsync();
    const pub = await connect(t, l, { creds: acmeDev1, chain: true, clientId: 'dev1' });
    await pub.publishAsync('devices/dev1/x', 'while away', { qos: 1 });
    await pub.publishAsync('devices/dev1/x', 'qos0 is not kept', { qos: 0 });
    const back = await connect(t, l, { creds: acmeDev2, chain: true, clientId: 'dev2', clean: false });
    const got = collect(back);
    await waitFor(() => got.length === 1);
    await sleep(100);
    assert.deepEqual(got.map((m) => m.payload), ['while away']);
  });

  test('ok/will-delay: an MQTT 5 client back within its Will Delay Interval has its will discarded', async (t) => {
    const l = await setup(t);
    const w = await connect(t, l, { creds: acmeDev2, chain: true, clientId: 'dev2' });
    const got = collect(w);
    await w.subscribeAsync('devices/dev1/#', { qos: 1 });
    const opts = {
      creds: acmeDev1,
      chain: true,
      clientId: 'dev1',
      protocolVersion: 5 as const,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: { topic: 'devices/dev1/status', payload: Buffer.from('offline'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } },
    };
    const a = await connect(t, l, opts);
    (a as unknown as { stream: { destroy(): void } }).stream.destroy();
    await sleep(300);
    const back = await connect(t, l, opts);
    await sleep(1_200);
    assert.equal(got.length, 0, 'no will: the client came back in time');
    (back as unknown as { stream: { destroy(): void } }).stream.destroy();
    await waitFor(() => got.length === 1, 3_000, 'the delayed will');
    assert.deepEqual(got.map((m) => m.payload), ['offline']);
  });

  test('ok/v5-options: no-local, retain-as-published and retain handling', async (t) => {
    const l = await setup(t);
    const a = await connect(t, l, { creds: acmeDev1, chain: true, clientId: 'dev1', protocolVersion: 5 });
    const got = collect(a);
    await a.publishAsync('devices/dev1/r', 'kept', { qos: 1, retain: true });
    await a.subscribeAsync('devices/dev1/own', { qos: 1, nl: true });
    await a.subscribeAsync('devices/dev1/r', { qos: 1, rh: 2 }); // retained not sent
    await a.subscribeAsync('devices/dev1/rap', { qos: 1, rap: true });
    await a.publishAsync('devices/dev1/own', 'echo?', { qos: 1 });
    await a.publishAsync('devices/dev1/rap', 'flagged', { qos: 1, retain: true });
    await waitFor(() => got.length === 1);
    await sleep(100);
    assert.deepEqual(got, [{ topic: 'devices/dev1/rap', payload: 'flagged', retain: true, qos: 1 }]);
  });
});
