/**
 * QoS 2 end to end and the flow-control limits around it, against the MQTT 5 specification's
 * normative statements ([MQTT-4.3.3-x] ...) and MQTT 3.1.1 where it differs: PUBREC/PUBREL/PUBCOMP
 * in both directions, exactly once across reconnects, Receive Maximum enforced before routing, an
 * outbound in-flight cap (mosquitto's max_inflight_messages, default 20: mosquitto
 * src/conf.c `max_inflight_messages = 20`) with the rest queued, and the will checked before a
 * session is taken over. MQTT.js and mosquitto_pub/mosquitto_sub for the ordinary flows, a raw
 * mqtt-packet client for the exchanges a well-behaved client never makes.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { IPublishPacket } from 'mqtt-packet';
import { Broker, type Outlet, type OutgoingPublish } from '../../src/mqtt/broker.js';
import {
  RawClient,
  TestVerifier,
  collect,
  connect,
  device,
  exited,
  hasMosquittoClients,
  spawnTool,
  startListener,
  tempDir,
  tenantPki,
  waitFor,
  withoutRoot,
  writeFiles,
} from './harness.js';
import type { MqttListenerOptions } from '../../src/mqtt/mqtt-listener.js';

describe('MQTT listener: QoS 2 and flow control', async () => {
  const acme = await tenantPki('acme');
  const dev1 = await device(acme.intermediate, 'dev1');
  const dev2 = await device(acme.intermediate, 'dev2');

  const setup = async (t: TestContext, overrides: Partial<MqttListenerOptions> = {}) => {
    const verifier = new TestVerifier({
      acl: () => [
        { permission: 'allow', action: 'publish', topic: 'fleet/#' },
        { permission: 'allow', action: 'subscribe', topic: 'fleet/#' },
      ],
    });
    verifier.trust('acme', acme.root);
    return startListener(t, verifier, overrides);
  };

  test('ok/qos2-mqttjs: QoS 2 both ways, delivered once at QoS 2; CONNACK announces no Maximum QoS ([MQTT-3.2.2-9])', async (t) => {
    const l = await setup(t);
    for (const protocolVersion of [4, 5] as const) {
      const sub = await connect(t, l, { creds: dev1, chain: true, clientId: `sub-${protocolVersion}`, protocolVersion });
      const got = collect(sub);
      await sub.subscribeAsync('fleet/q2', { qos: 2 });
      const pub = await connect(t, l, { creds: dev2, chain: true, clientId: `pub-${protocolVersion}`, protocolVersion });
      // MQTT.js resolves a QoS 2 publish on PUBCOMP: the whole exchange went through.
      await pub.publishAsync('fleet/q2', 'exactly-once', { qos: 2 });
      await waitFor(() => got.length === 1, 10_000, 'the QoS 2 message');
      assert.deepEqual(got[0], { topic: 'fleet/q2', payload: 'exactly-once', retain: false, qos: 2 });
      await pub.endAsync();
      await sub.endAsync();
    }
    const { connack } = await RawClient.connect(t, l, dev1, { clientId: 'props' }, 5);
    const props = connack.properties ?? {};
    assert.equal(props.maximumQoS, undefined, 'QoS 2 supported: the property is absent');
    assert.equal(props.sharedSubscriptionAvailable, true);
  });

  test('ok/qos2-inbound-once: a resent PUBLISH with the same packet identifier is not routed again, across a reconnect ([MQTT-4.3.3-9], [MQTT-4.3.3-10])', async (t) => {
    const l = await setup(t);
    const sub = await connect(t, l, { creds: dev2, chain: true, clientId: 'watcher' });
    const got = collect(sub);
    await sub.subscribeAsync('fleet/#', { qos: 2 });

    const publish: IPublishPacket = { cmd: 'publish', topic: 'fleet/once', payload: Buffer.from('one'), qos: 2, retain: false, dup: false, messageId: 7 };
    const first = await RawClient.connect(t, l, dev1, { clientId: 'raw-pub', clean: false });
    assert.equal(first.connack.returnCode, 0);
    first.client.send(publish);
    assert.equal((await first.client.take('pubrec')).messageId, 7);
    first.client.send({ ...publish, dup: true });
    assert.equal((await first.client.take('pubrec')).messageId, 7, 'a retransmission is acknowledged again');
    // Gone before PUBREL: the packet identifier stays with the session.
    first.client.socket.destroy();
    await waitFor(() => l.listener.stats.sessions === 1, 5_000, 'the publisher to be gone');

    const again = await RawClient.connect(t, l, dev1, { clientId: 'raw-pub', clean: false });
    assert.equal(again.connack.sessionPresent, true);
    again.client.send({ ...publish, dup: true });
    assert.equal((await again.client.take('pubrec')).messageId, 7);
    again.client.send({ cmd: 'pubrel', messageId: 7 });
    assert.equal((await again.client.take('pubcomp')).messageId, 7);
    // The identifier is free again: a new message under it is a new message.
    again.client.send({ ...publish, payload: Buffer.from('two') });
    assert.equal((await again.client.take('pubrec')).messageId, 7);
    await waitFor(() => got.length === 2, 10_000, 'the second message');
    await again.client.sync();
    assert.deepEqual(got.map((m) => m.payload), ['one', 'two'], 'each message once');
  });

  test('ok/qos2-outbound-session: unacknowledged PUBLISH resent with DUP, then only PUBREL once PUBREC came, across reconnects ([MQTT-4.3.3-5], [MQTT-4.4.0-1])', async (t) => {
    const l = await setup(t);
    const a = await RawClient.connect(t, l, dev1, { clientId: 'slow', clean: false });
    a.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fleet/out', qos: 2 }] });
    assert.deepEqual((await a.client.take('suback') as { granted: number[] }).granted, [2]);
    const pub = await connect(t, l, { creds: dev2, chain: true, clientId: 'pub' });
    await pub.publishAsync('fleet/out', 'hello', { qos: 2 });
    const p1 = (await a.client.take('publish')) as IPublishPacket;
    assert.equal(p1.qos, 2);
    assert.equal(p1.dup, false);
    a.client.socket.destroy();
    await waitFor(() => l.listener.stats.sessions === 1, 5_000, 'the subscriber to be gone');

    const b = await RawClient.connect(t, l, dev1, { clientId: 'slow', clean: false });
    assert.equal(b.connack.sessionPresent, true);
    const p2 = (await b.client.take('publish')) as IPublishPacket;
    assert.equal(p2.messageId, p1.messageId);
    assert.equal(p2.dup, true, 'sent again with DUP set');
    assert.equal(p2.payload.toString(), 'hello');
    b.client.send({ cmd: 'pubrec', messageId: p2.messageId! });
    assert.equal((await b.client.take('pubrel')).messageId, p2.messageId);
    b.client.socket.destroy();
    await waitFor(() => l.listener.stats.sessions === 1, 5_000, 'the subscriber to be gone again');

    const c = await RawClient.connect(t, l, dev1, { clientId: 'slow', clean: false });
    assert.equal((await c.client.take('pubrel')).messageId, p1.messageId, 'PUBREL sent again');
    c.client.send({ cmd: 'pubcomp', messageId: p1.messageId! });
    await c.client.sync();
    assert.equal(c.client.inbox.filter((p) => p.cmd === 'publish').length, 0, 'the message is not sent a third time');
  });

  test('fail/receive-maximum: a QoS 2 PUBLISH over our Receive Maximum is DISCONNECT 0x93 and not routed (MQTT 5 3.3.4)', async (t) => {
    const l = await setup(t, { receiveMaximum: 2 });
    const sub = await connect(t, l, { creds: dev2, chain: true, clientId: 'watcher' });
    const got = collect(sub);
    await sub.subscribeAsync('fleet/#', { qos: 2 });
    const { client, connack } = await RawClient.connect(t, l, dev1, { clientId: 'flood' }, 5);
    assert.equal(connack.properties?.receiveMaximum, 2);
    for (const id of [1, 2, 3]) {
      client.send({ cmd: 'publish', topic: `fleet/m${id}`, payload: Buffer.from(String(id)), qos: 2, retain: false, dup: false, messageId: id });
    }
    const disconnect = await client.take('disconnect');
    assert.equal((disconnect as { reasonCode?: number }).reasonCode, 0x93);
    await client.waitClosed();
    await waitFor(() => got.length === 2, 10_000, 'the two allowed messages');
    // The watcher's own round trip: anything routed before the disconnect has arrived by now.
    await sub.publishAsync('fleet/marker', 'm', { qos: 1 });
    await waitFor(() => got.some((m) => m.topic === 'fleet/marker'), 10_000, 'the marker');
    assert.deepEqual(got.map((m) => m.topic), ['fleet/m1', 'fleet/m2', 'fleet/marker'], 'the third message was never routed');
  });

  test('ok/inflight-cap: an MQTT 3.1.1 client gets at most 20 unacknowledged messages (not 65,535); the rest wait in the queue', async (t) => {
    const l = await setup(t);
    const { client } = await RawClient.connect(t, l, dev1, { clientId: 'no-acks' });
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fleet/burst', qos: 1 }] });
    await client.take('suback');
    const pub = await connect(t, l, { creds: dev2, chain: true, clientId: 'burst' });
    // publishAsync at QoS 1 resolves on PUBACK, sent after the message was routed.
    await Promise.all(Array.from({ length: 30 }, (_, i) => pub.publishAsync('fleet/burst', String(i), { qos: 1 })));
    await client.sync();
    const first = client.inbox.filter((p) => p.cmd === 'publish') as IPublishPacket[];
    assert.equal(first.length, 20);
    assert.deepEqual(first.map((p) => p.payload.toString()), Array.from({ length: 20 }, (_, i) => String(i)));
    client.inbox.length = 0;
    for (const p of first.slice(0, 5)) client.send({ cmd: 'puback', messageId: p.messageId! });
    await client.sync();
    const next = client.inbox.filter((p) => p.cmd === 'publish') as IPublishPacket[];
    assert.deepEqual(next.map((p) => p.payload.toString()), ['20', '21', '22', '23', '24'], 'one queued message per PUBACK, in order');
  });

  test('ok/mqtt5-receive-maximum: an MQTT 5 client receives no more than its own Receive Maximum ([MQTT-3.3.4-9])', async (t) => {
    const l = await setup(t);
    const { client } = await RawClient.connect(t, l, dev1, { clientId: 'rm3', properties: { receiveMaximum: 3 } }, 5);
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fleet/rm', qos: 2 }] });
    await client.take('suback');
    const pub = await connect(t, l, { creds: dev2, chain: true, clientId: 'p', protocolVersion: 5 });
    await Promise.all(Array.from({ length: 6 }, (_, i) => pub.publishAsync('fleet/rm', String(i), { qos: 2 })));
    await client.sync();
    const got = client.inbox.filter((p) => p.cmd === 'publish') as IPublishPacket[];
    assert.equal(got.length, 3);
    // A PUBREC does not free the slot; the PUBCOMP does ([MQTT-4.9.0-2]).
    client.inbox.length = 0;
    client.send({ cmd: 'pubrec', messageId: got[0]!.messageId! });
    await client.take('pubrel');
    await client.sync();
    assert.equal(client.inbox.filter((p) => p.cmd === 'publish').length, 0);
    client.send({ cmd: 'pubcomp', messageId: got[0]!.messageId! });
    assert.equal(((await client.take('publish')) as IPublishPacket).payload.toString(), '3');
  });

  test('fail/will-topic-before-takeover: a CONNECT with an invalid will topic is refused and the live session stays', async (t) => {
    const l = await setup(t);
    const live = await connect(t, l, { creds: dev1, chain: true, clientId: 'same', protocolVersion: 5 });
    let closed = false;
    live.on('close', () => (closed = true));
    const { client, connack } = await RawClient.connect(
      t, l, dev1,
      { clientId: 'same', will: { topic: 'fleet/+/bad', payload: Buffer.from('x'), qos: 0, retain: false } },
      5,
    );
    assert.equal(connack.reasonCode, 0x90);
    await client.waitClosed();
    // The first connection is still served.
    await live.subscribeAsync('fleet/still', { qos: 1 });
    assert.equal(closed, false);
    assert.equal(l.listener.stats.sessions, 1);
  });

  test('ok/will-qos2: a will at QoS 2 is accepted and delivered at QoS 2 to a QoS 2 subscriber', async (t) => {
    const l = await setup(t);
    const sub = await connect(t, l, { creds: dev2, chain: true, clientId: 'w', protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync('fleet/will', { qos: 2 });
    const { client, connack } = await RawClient.connect(
      t, l, dev1,
      { clientId: 'dying', will: { topic: 'fleet/will', payload: Buffer.from('gone'), qos: 2, retain: false } },
      5,
    );
    assert.equal(connack.reasonCode, 0);
    client.socket.destroy();
    await waitFor(() => got.length === 1, 10_000, 'the will');
    assert.deepEqual(got[0], { topic: 'fleet/will', payload: 'gone', retain: false, qos: 2 });
  });

  test('ok/mosquitto-qos2: mosquitto_pub -q 2 to mosquitto_sub -q 2, MQTT 3.1.1 and 5', async (t) => {
    if (!(await hasMosquittoClients())) return t.skip('mosquitto-clients not installed');
    const l = await setup(t);
    const dir = await tempDir(t);
    await writeFiles(dir, { 'ca.pem': l.caPem, 'dev1.pem': withoutRoot(dev1), 'dev1.key': dev1.keyPem, 'dev2.pem': withoutRoot(dev2), 'dev2.key': dev2.keyPem });
    const tlsArgs = (who: string) => ['-h', 'localhost', '-p', String(l.port), '--cafile', 'ca.pem', '--cert', `${who}.pem`, '--key', `${who}.key`];
    for (const v of ['mqttv311', 'mqttv5']) {
      // A retained message first: mosquitto_sub prints it once its subscription is in place, so
      // the live message after it cannot race the SUBSCRIBE.
      const retained = spawnTool('mosquitto_pub', [...tlsArgs('dev2'), '-V', v, '-i', `ret-${v}`, '-q', '2', '-r', '-t', 'fleet/mosq', '-m', 'm0'], dir);
      assert.equal(await exited(retained), 0, retained.output());
      const sub = spawnTool('mosquitto_sub', [...tlsArgs('dev1'), '-V', v, '-i', `sub-${v}`, '-q', '2', '-t', 'fleet/mosq', '-C', '2', '-W', '20', '-v'], dir);
      await waitFor(() => sub.output().includes('fleet/mosq m0'), 15_000, 'mosquitto_sub to get the retained message');
      const pub = spawnTool('mosquitto_pub', [...tlsArgs('dev2'), '-V', v, '-i', `pub-${v}`, '-q', '2', '-t', 'fleet/mosq', '-m', 'm1'], dir);
      assert.equal(await exited(pub), 0, pub.output());
      assert.equal(await exited(sub, 20_000), 0, sub.output());
      assert.deepEqual(sub.output().trim().split('\n'), ['fleet/mosq m0', 'fleet/mosq m1']);
      const clear = spawnTool('mosquitto_pub', [...tlsArgs('dev2'), '-V', v, '-i', `clr-${v}`, '-q', '2', '-r', '-n', '-t', 'fleet/mosq'], dir);
      assert.equal(await exited(clear), 0, clear.output());
      await waitFor(() => l.listener.stats.sessions === 0, 10_000, 'sessions to end');
    }
  });
});

describe('broker: wills and sessions', () => {
  class FakeOutlet implements Outlet {
    receiveMaximum = 20;
    sent: OutgoingPublish[] = [];
    sendPublish(p: OutgoingPublish): boolean {
      this.sent.push(p);
      return true;
    }
    sendPubrel(): void {}
  }

  test('ok/end-session-clears-will-timer: a session ended for good (kill switch, deleted tenant) publishes no will later', () => {
    const broker = new Broker();
    const space = broker.space('acme');
    const { session } = space.openSession('c1', 'acme:dev1', false);
    session.expiryMs = 60_000;
    space.scheduleWill(session, { topic: 'w', payload: Buffer.from('x'), qos: 0, retain: false }, 30_000);
    assert.ok(session.willTimer);
    broker.endDetachedSessions('acme', 'acme:dev1');
    assert.equal(session.willTimer, undefined);
    assert.equal(session.pendingWill, undefined);
  });

  test('ok/clean-start-ends-session-with-its-will: a new clean session of the same client publishes the waiting will now (MQTT 5 3.1.3.2.2)', () => {
    const broker = new Broker();
    const space = broker.space('acme');
    const watcher = space.openSession('watch', 'acme:dev2', true).session;
    const out = new FakeOutlet();
    watcher.attach(out);
    space.subscribe(watcher, 'w', { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 });
    const { session } = space.openSession('c1', 'acme:dev1', false);
    session.expiryMs = 60_000;
    space.scheduleWill(session, { topic: 'w', payload: Buffer.from('bye'), qos: 1, retain: false }, 30_000);
    space.openSession('c1', 'acme:dev1', true);
    assert.equal(session.willTimer, undefined);
    assert.deepEqual(out.sent.map((p) => p.message.payload.toString()), ['bye']);
  });

  test('ok/drop-tenant: a deleted tenant leaves nothing behind; the same id starts empty', () => {
    const broker = new Broker();
    const space = broker.space('acme');
    space.retain({ topic: 'a/b', payload: Buffer.from('old'), qos: 1, retain: true });
    const { session } = space.openSession('c1', 'acme:dev1', false);
    session.expiryMs = 60_000;
    space.subscribe(session, 'a/#', { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 });
    space.scheduleWill(session, { topic: 'a/w', payload: Buffer.from('x'), qos: 0, retain: true }, 30_000);
    assert.equal(broker.dropTenant('acme'), true);
    assert.equal(session.willTimer, undefined);
    const fresh = broker.space('acme');
    assert.notEqual(fresh, space);
    assert.equal(fresh.retained.size, 0);
    assert.equal(fresh.sessions.size, 0);
    assert.equal(fresh.subscriptions.size, 0);
  });
});
