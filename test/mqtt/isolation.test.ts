/**
 * Tenant isolation and the ACL: two tenants each with a device `dev1` on the same
 * topics never see each other's messages, retained messages or wills; denied publications are
 * dropped and denied subscriptions get 0x80 / 0x87. Deny rules win over allow rules; a wider
 * subscription than a deny filter is granted but not sent the denied topics, as mosquitto checks
 * read access on every message it delivers (eclipse/mosquitto src/subs.c, subs__send, and
 * src/retain.c for retained messages).
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { TestVerifier, collect, connect, device, sleep, startListener, suback, tenantPki, waitFor, type Received } from './harness.js';

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

describe('MQTT listener: ACL deny rules', async () => {
  const acme = await tenantPki('acme');
  const dev1 = await device(acme.intermediate, 'dev1');
  const dev2 = await device(acme.intermediate, 'dev2');

  /** Both devices may subscribe to everything and publish under `test/`; dev1 has deny rules. */
  const setup = async (t: TestContext) => {
    const verifier = new TestVerifier({
      acl: () => [
        { permission: 'allow', action: 'subscribe', topic: '#' },
        { permission: 'allow', action: 'publish', topic: 'test/#' },
      ],
      deny: (name) =>
        name === 'dev1'
          ? [
              { permission: 'deny', action: 'publish', topic: 'test/locked' },
              { permission: 'deny', action: 'subscribe', topic: 'test/nosubscribe' },
              { permission: 'deny', action: 'subscribe', topic: 'devices/+/secret' },
            ]
          : [],
    });
    verifier.trust('acme', acme.root);
    return startListener(t, verifier);
  };

  test('fail/acl-deny-subscribe: a filter a deny rule covers gets 0x80 (3.1.1) / 0x87 (5), though `#` is allowed', async (t) => {
    const l = await setup(t);
    const v3 = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1' });
    assert.deepEqual(await suback(v3, { 'test/nosubscribe': { qos: 1 }, 'devices/dev2/secret': { qos: 1 }, '#': { qos: 1 }, 'test/+': { qos: 0 } }), [
      0x80, 0x80, 1, 0,
    ]);
    const v5 = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1-v5', protocolVersion: 5 });
    assert.deepEqual(
      await suback(v5, { 'test/nosubscribe': { qos: 2 }, 'devices/+/secret': { qos: 1 }, '$share/g/test/nosubscribe': { qos: 0 }, '#': { qos: 2 } }),
      [0x87, 0x87, 0x87, 2],
    );
    assert.equal(l.listener.stats.subscribeDenied, 5);
    // Without deny rules the same filter is granted.
    const other = await connect(t, l, { creds: dev2, chain: true, clientId: 'dev2' });
    assert.deepEqual(await suback(other, { 'test/nosubscribe': { qos: 1 } }), [1]);
    assert.equal(v3.connected && v5.connected, true);
  });

  test('fail/acl-deny-publish: a publication a deny rule matches is dropped though `test/#` is allowed; 3.1.1 gets its PUBACK, 5 gets 0x87', async (t) => {
    const l = await setup(t);
    const w = await connect(t, l, { creds: dev2, chain: true, clientId: 'dev2' });
    const got = collect(w);
    await w.subscribeAsync('test/#', { qos: 1 });
    const v3 = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1' });
    await v3.publishAsync('test/locked', 'denied qos1', { qos: 1 });
    await v3.publishAsync('test/locked', 'denied qos2', { qos: 2 });
    const v5 = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1-v5', protocolVersion: 5 });
    await assert.rejects(v5.publishAsync('test/locked', 'denied v5', { qos: 1 }), (err: Error & { code?: number }) => {
      assert.equal(err.code, 0x87);
      return true;
    });
    await v5.publishAsync('test/open', 'allowed', { qos: 1 });
    await waitFor(() => got.length === 1);
    await sleep(100);
    assert.deepEqual(got.map((m) => [m.topic, m.payload]), [['test/open', 'allowed']]);
    assert.equal(l.listener.stats.publishDenied, 3);
    assert.equal(v3.connected && v5.connected, true);
  });

  test('ok/acl-deny-delivery: `#` is granted but never sent messages on a denied topic, live or retained, 3.1.1 and 5', async (t) => {
    const l = await setup(t);
    const pub = await connect(t, l, { creds: dev2, chain: true, clientId: 'dev2', protocolVersion: 5 });
    const gotPub = collect(pub);
    await pub.subscribeAsync('#', { qos: 1 });
    await pub.publishAsync('test/nosubscribe', 'retained denied', { qos: 1, retain: true });
    await pub.publishAsync('test/open', 'retained open', { qos: 1, retain: true });

    const v3 = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1' });
    const v5 = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1-v5', protocolVersion: 5 });
    const got3 = collect(v3);
    const got5 = collect(v5);
    assert.deepEqual(await suback(v3, { '#': { qos: 1 } }), [1]);
    assert.deepEqual(await suback(v5, { '#': { qos: 2 }, 'test/+': { qos: 0 }, 'devices/dev2/+': { qos: 1 } }), [2, 0, 1]);
    await waitFor(() => got3.length >= 1 && got5.length >= 1, 5_000, 'the retained message');

    for (const [topic, qos] of [['test/nosubscribe', 2], ['devices/dev2/secret', 1], ['test/nosubscribe', 0], ['devices/dev2/open', 0]] as const) {
      await pub.publishAsync(topic, `live ${topic} ${qos}`, { qos });
    }
    await pub.publishAsync('test/marker', 'marker', { qos: 1 });
    await waitFor(() => got3.some((m) => m.topic === 'test/marker') && got5.some((m) => m.topic === 'test/marker'));
    await waitFor(() => gotPub.some((m) => m.topic === 'test/marker'));
    await sleep(100);
    const seen = (got: Received[]) => got.map((m) => [m.topic, m.payload]);
    const expected = [
      ['test/open', 'retained open'],
      ['devices/dev2/open', 'live devices/dev2/open 0'],
      ['test/marker', 'marker'],
    ];
    assert.deepEqual(seen(got3), expected);
    // The retained message once per matching subscription (`#`, `test/+`); live ones once (MQTT 5 3.3.4).
    assert.deepEqual(seen(got5), [expected[0], ...expected], 'none on denied topics');
    // The publisher, without deny rules, got everything on the same `#`.
    assert.deepEqual(
      seen(gotPub).map(([topic]) => topic),
      ['test/nosubscribe', 'test/open', 'test/nosubscribe', 'devices/dev2/secret', 'test/nosubscribe', 'devices/dev2/open', 'test/marker'],
    );
    assert.equal(v3.connected && v5.connected, true);
  });

  test('ok/acl-deny-shared: a shared subscription hands a denied topic to a member allowed to read it', async (t) => {
    const l = await setup(t);
    const denied = await connect(t, l, { creds: dev1, chain: true, clientId: 'dev1', protocolVersion: 5 });
    const allowed = await connect(t, l, { creds: dev2, chain: true, clientId: 'dev2', protocolVersion: 5 });
    const gotDenied = collect(denied);
    const gotAllowed = collect(allowed);
    for (const c of [denied, allowed]) assert.deepEqual(await suback(c, { '$share/g/test/+': { qos: 1 } }), [1]);
    const pub = await connect(t, l, { creds: dev2, chain: true, clientId: 'pub', protocolVersion: 5 });
    for (let i = 0; i < 4; i++) await pub.publishAsync('test/nosubscribe', `denied ${i}`, { qos: 1 });
    for (let i = 0; i < 4; i++) await pub.publishAsync('test/open', `open ${i}`, { qos: 1 });
    await waitFor(() => gotDenied.length + gotAllowed.length === 8, 5_000, 'each message to one member');
    await sleep(100);
    assert.deepEqual(gotDenied.filter((m) => m.topic === 'test/nosubscribe'), []);
    assert.equal(gotAllowed.filter((m) => m.topic === 'test/nosubscribe').length, 4);
    assert.ok(gotDenied.some((m) => m.topic === 'test/open'), 'the member with deny rules still gets its turn on other topics');
  });
});
