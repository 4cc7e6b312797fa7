/**
 * MQTT 5 features and the listener's limits, each against the statement of the specification
 * that decides it: well-formed UTF-8 ([MQTT-1.5.4-1], [MQTT-1.5.4-2]; 3.1.1 [MQTT-1.5.3-1/2]),
 * denied publications made visible, shared subscriptions (4.8.2), topic aliases (3.3.2.3.4),
 * Server Keep Alive (3.2.2.3.14), forwarded properties (3.3.2.3), and every limit answered with a
 * reason code and counted.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test, type TestContext } from 'node:test';
import * as mqttPacket from 'mqtt-packet';
import type { IPublishPacket } from 'mqtt-packet';
import pino from 'pino';
import type { MqttListenerOptions, MqttMetricsSink } from '../../src/mqtt/mqtt-listener.js';
import { RawClient, TestVerifier, collect, connect, device, startListener, tenantPki, waitFor } from './harness.js';

/** A metrics sink that keeps its counts. */
function countingSink(): MqttMetricsSink & { counts: Map<string, number> } {
  const counts = new Map<string, number>();
  const inc = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
  return {
    counts,
    publishDenied: (tenant, reason) => inc(`denied:${tenant}:${reason}`),
    limitHit: (limit) => inc(`limit:${limit}`),
    messageDropped: (tenant, reason) => inc(`dropped:${tenant}:${reason}`),
  };
}

/** A packet with `marker` (ASCII) replaced by `bytes` in its encoding; lengths must match. */
function patched(packet: mqttPacket.Packet, version: 4 | 5, marker: string, bytes: number[]): Buffer {
  const buf = mqttPacket.generate(packet, { protocolVersion: version });
  const at = buf.indexOf(Buffer.from(marker));
  assert.ok(at > 0 && marker.length === bytes.length);
  Buffer.from(bytes).copy(buf, at);
  return buf;
}

describe('MQTT listener: MQTT 5 features and limits', async () => {
  const acme = await tenantPki('acme');
  const dev1 = await device(acme.intermediate, 'dev1');
  const dev2 = await device(acme.intermediate, 'dev2');
  const dev3 = await device(acme.intermediate, 'dev3');

  const setup = async (t: TestContext, overrides: Partial<MqttListenerOptions> = {}) => {
    const verifier = new TestVerifier({
      acl: () => [
        { permission: 'allow', action: 'publish', topic: 'fleet/#' },
        { permission: 'allow', action: 'subscribe', topic: 'fleet/#' },
      ],
    });
    verifier.trust('acme', acme.root);
    const metrics = countingSink();
    const l = await startListener(t, verifier, { metrics, ...overrides });
    return { l, metrics };
  };

  test('fail/utf8-client-id: a client id with ill-formed UTF-8 or U+0000 is refused (3.1.1: 2, 5: 0x85); U+FFFD itself is fine', async (t) => {
    const { l } = await setup(t);
    for (const version of [4, 5] as const) {
      for (const bytes of [[0x61, 0xff, 0x62], [0x61, 0x00, 0x62], [0xed, 0xa0, 0x80]]) {
        const raw = await RawClient.open(t, l, dev1, version);
        raw.write(patched({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId: 'a?b' }, version, 'a?b', bytes));
        const connack = (await raw.take('connack')) as mqttPacket.IConnackPacket;
        if (version === 4) assert.equal(connack.returnCode, 2, `bytes ${bytes}`);
        else assert.equal(connack.reasonCode, 0x85, `bytes ${bytes}`);
        await raw.waitClosed();
      }
    }
    const { connack } = await RawClient.connect(t, l, dev1, { clientId: 'a\ufffdb' });
    assert.equal(connack.returnCode, 0, 'a well-formed U+FFFD is an ordinary character');
  });

  test('fail/utf8-filter: an ill-formed UTF-8 topic filter closes the connection (no SUBACK 0x80); 5 says 0x81', async (t) => {
    const { l } = await setup(t);
    for (const version of [4, 5] as const) {
      const { client } = await RawClient.connect(t, l, dev1, { clientId: `f${version}` }, version);
      client.write(patched({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fleet/??', qos: 0 }] }, version, 'fleet/??', [...Buffer.from('fleet/'), 0xc3, 0x28]));
      await client.waitClosed();
      assert.equal(client.inbox.some((p) => p.cmd === 'suback'), false);
      if (version === 5) assert.equal((client.inbox.find((p) => p.cmd === 'disconnect') as { reasonCode?: number })?.reasonCode, 0x81);
    }
    // And a topic name in PUBLISH.
    const { client } = await RawClient.connect(t, l, dev1, { clientId: 'p' });
    client.write(patched({ cmd: 'publish', topic: 'fleet/??', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 4, 'fleet/??', [...Buffer.from('fleet/'), 0xff, 0xfe]));
    await client.waitClosed();
  });

  test('ok/denied-visible: a denied publication is counted per tenant and reason and logged once per burst; 5 gets 0x87 in PUBACK and PUBREC', async (t) => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _enc, cb) {
          lines.push(JSON.parse(chunk.toString()));
          cb();
        },
      }),
    );
    const { l, metrics } = await setup(t, { logger });
    const v3 = await connect(t, l, { creds: dev1, chain: true, clientId: 'v3' });
    for (let i = 0; i < 3; i++) await v3.publishAsync('secret/x', 'no', { qos: 1 }); // PUBACK as 3.1.1 allows
    const { client } = await RawClient.connect(t, l, dev2, { clientId: 'v5' }, 5);
    client.send({ cmd: 'publish', topic: 'secret/y', payload: Buffer.from('no'), qos: 1, retain: false, dup: false, messageId: 1 });
    assert.equal((await client.take('puback') as { reasonCode?: number }).reasonCode, 0x87);
    client.send({ cmd: 'publish', topic: 'secret/y', payload: Buffer.from('no'), qos: 2, retain: false, dup: false, messageId: 2 });
    assert.equal((await client.take('pubrec') as { reasonCode?: number }).reasonCode, 0x87);
    assert.equal(metrics.counts.get('denied:acme:acl'), 5);
    const denied = lines.filter((l) => l.msg === 'MQTT publish denied by the ACL; message dropped');
    assert.deepEqual(denied.map((l) => [l.deviceId, l.topic, l.level]), [['acme:dev1', 'secret/x', 30], ['acme:dev2', 'secret/y', 30]], 'one info line per device and burst');
  });

  test('ok/shared-subscription: $share/{group}/{filter} hands each message to one member, round robin; plain subscribers get every message (MQTT 5 4.8.2)', async (t) => {
    const { l } = await setup(t);
    const a = await connect(t, l, { creds: dev1, chain: true, clientId: 'a', protocolVersion: 5 });
    const b = await connect(t, l, { creds: dev2, chain: true, clientId: 'b' });
    const plain = await connect(t, l, { creds: dev3, chain: true, clientId: 'plain' });
    const [gotA, gotB, gotPlain] = [collect(a), collect(b), collect(plain)];
    await a.subscribeAsync('$share/workers/fleet/jobs/#', { qos: 1 });
    await b.subscribeAsync('$share/workers/fleet/jobs/#', { qos: 1 });
    await plain.subscribeAsync('fleet/jobs/#', { qos: 1 });
    for (let i = 0; i < 6; i++) await plain.publishAsync(`fleet/jobs/${i}`, String(i), { qos: 1 });
    await waitFor(() => gotA.length + gotB.length === 6 && gotPlain.length === 6, 10_000, 'every job');
    assert.equal(gotA.length, 3);
    assert.equal(gotB.length, 3);
    assert.deepEqual([...gotA, ...gotB].map((m) => m.payload).sort(), ['0', '1', '2', '3', '4', '5']);
    // A member that leaves the group no longer takes turns.
    await b.unsubscribeAsync('$share/workers/fleet/jobs/#');
    for (let i = 6; i < 8; i++) await plain.publishAsync(`fleet/jobs/${i}`, String(i), { qos: 1 });
    await waitFor(() => gotA.length === 5, 10_000, 'the remaining member to take both');
    assert.equal(gotB.length, 3);
  });

  test('ok/topic-alias: a client sets an alias and publishes by it; out of range is DISCONNECT 0x94 (MQTT 5 3.3.2.3.4)', async (t) => {
    const { l, metrics } = await setup(t);
    const sub = await connect(t, l, { creds: dev2, chain: true, clientId: 'sub' });
    const got = collect(sub);
    await sub.subscribeAsync('fleet/#', { qos: 1 });
    const { client, connack } = await RawClient.connect(t, l, dev1, { clientId: 'aliaser' }, 5);
    assert.equal(connack.properties?.topicAliasMaximum, 10);
    const pub = (topic: string, alias: number, id: number): IPublishPacket => ({
      cmd: 'publish', topic, payload: Buffer.from(String(id)), qos: 1, retain: false, dup: false, messageId: id, properties: { topicAlias: alias },
    });
    client.send(pub('fleet/long/topic/name', 1, 1));
    await client.take('puback');
    client.send(pub('', 1, 2));
    await client.take('puback');
    await waitFor(() => got.length === 2, 10_000, 'both messages');
    assert.deepEqual(got.map((m) => m.topic), ['fleet/long/topic/name', 'fleet/long/topic/name']);
    client.send(pub('fleet/x', 11, 3));
    assert.equal((await client.take('disconnect') as { reasonCode?: number }).reasonCode, 0x94);
    assert.equal(metrics.counts.get('limit:topic_alias'), 1);
  });

  test('ok/server-topic-alias: towards a client that allows aliases, a topic is sent once with its alias, then as the alias alone (MQTT 5 3.3.2.3.4)', async (t) => {
    const { l } = await setup(t);
    const { client } = await RawClient.connect(t, l, dev1, { clientId: 'aliased', properties: { topicAliasMaximum: 1 } }, 5);
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fleet/#', qos: 0 }] });
    await client.take('suback');
    const pub = await connect(t, l, { creds: dev2, chain: true, clientId: 'pub' });
    for (const topic of ['fleet/a', 'fleet/a', 'fleet/b', 'fleet/a']) await pub.publishAsync(topic, topic, { qos: 1 });
    await pub.publishAsync('fleet/a', 'last', { qos: 1 });
    await client.sync();
    const got = client.inbox.filter((p) => p.cmd === 'publish') as IPublishPacket[];
    assert.deepEqual(
      got.map((p) => [p.topic, p.properties?.topicAlias]),
      [['fleet/a', 1], ['', 1], ['fleet/b', undefined], ['', 1], ['', 1]],
      'one alias allowed: fleet/a takes it, fleet/b goes by name',
    );
  });

  test('ok/server-keep-alive: a client asking for no keep alive or more than the maximum is told the server keep alive (MQTT 5 3.2.2.3.14)', async (t) => {
    const { l } = await setup(t, { maxKeepAliveSeconds: 30 });
    const none = await RawClient.connect(t, l, dev1, { clientId: 'k0', keepalive: 0 }, 5);
    assert.equal(none.connack.properties?.serverKeepAlive, 30);
    const long = await RawClient.connect(t, l, dev1, { clientId: 'k1', keepalive: 600 }, 5);
    assert.equal(long.connack.properties?.serverKeepAlive, 30);
    const fine = await RawClient.connect(t, l, dev1, { clientId: 'k2', keepalive: 10 }, 5);
    assert.equal(fine.connack.properties?.serverKeepAlive, undefined);
  });

  test('ok/properties-forwarded: payload format, content type, response topic, correlation data, user properties, expiry and subscription id reach the subscriber', async (t) => {
    const { l } = await setup(t);
    const sub = await connect(t, l, { creds: dev2, chain: true, clientId: 'sub', protocolVersion: 5 });
    const got: IPublishPacket[] = [];
    sub.on('message', (_topic, _payload, packet) => got.push(packet));
    await sub.subscribeAsync('fleet/req/#', { qos: 1, properties: { subscriptionIdentifier: 42 } });
    const pub = await connect(t, l, { creds: dev1, chain: true, clientId: 'pub', protocolVersion: 5 });
    await pub.publishAsync('fleet/req/1', '{"a":1}', {
      qos: 1,
      properties: {
        payloadFormatIndicator: true,
        contentType: 'application/json',
        responseTopic: 'fleet/resp/1',
        correlationData: Buffer.from('c-1'),
        userProperties: { origin: 'test', n: ['1', '2'] },
        messageExpiryInterval: 600,
      },
    });
    await waitFor(() => got.length === 1, 10_000, 'the request');
    const p = got[0]!.properties!;
    assert.equal(p.payloadFormatIndicator, true);
    assert.equal(p.contentType, 'application/json');
    assert.equal(p.responseTopic, 'fleet/resp/1');
    assert.equal(Buffer.from(p.correlationData!).toString(), 'c-1');
    assert.deepEqual({ ...p.userProperties }, { origin: 'test', n: ['1', '2'] });
    assert.ok(p.messageExpiryInterval! > 0 && p.messageExpiryInterval! <= 600);
    assert.deepEqual([p.subscriptionIdentifier].flat(), [42]);
  });

  test('fail/limits: subscriptions per client (0x97), connections per tenant (0x97 / 3) and publish rate (0x96) are reason codes and metrics', async (t) => {
    const { l, metrics } = await setup(t, { maxSubscriptionsPerClient: 2, maxConnectionsPerTenant: 2, publishRatePerSecond: 2 });
    const { client } = await RawClient.connect(t, l, dev1, { clientId: 's' }, 5);
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fleet/a', qos: 1 }, { topic: 'fleet/b', qos: 1 }, { topic: 'fleet/c', qos: 1 }] });
    assert.deepEqual((await client.take('suback') as { granted: number[] }).granted, [1, 1, 0x97]);
    assert.equal(metrics.counts.get('limit:subscriptions'), 1);

    const second = await RawClient.connect(t, l, dev2, { clientId: 'second' });
    assert.equal(second.connack.returnCode, 0);
    const third5 = await RawClient.connect(t, l, dev3, { clientId: 'third' }, 5);
    assert.equal(third5.connack.reasonCode, 0x97);
    const third3 = await RawClient.connect(t, l, dev3, { clientId: 'third' });
    assert.equal(third3.connack.returnCode, 3);
    assert.equal(metrics.counts.get('limit:tenant_connections'), 2);

    // Ten publications in one burst with two tokens (refilled at two a second): one of them
    // closes the connection.
    for (let id = 1; id <= 10; id++) {
      client.send({ cmd: 'publish', topic: 'fleet/rate', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, messageId: id });
    }
    assert.equal((await client.take('disconnect') as { reasonCode?: number }).reasonCode, 0x96);
    assert.equal(metrics.counts.get('limit:publish_rate'), 1);
  });
});
