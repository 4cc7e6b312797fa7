/**
 * Past TURN_PUBLISHES publications in an event-loop turn, a connection hands the broker
 * PUBLISH_PER_TURN of them per turn (mqtt-connection.ts), pausing its socket and going on in the
 * next turn; the others get their turn in between, as with mosquitto, which handles one TLS record of a socket
 * per wake-up before the next socket (eclipse/mosquitto src/mux_epoll.c,
 * loop_handle_reads_writes: `packet__read` while `SSL_DATA_PENDING`). Here: nothing is lost or
 * reordered across the turns, a flood does not hold up another client, and a connection closed
 * while it waits for its next turn is simply gone. Real TLS sockets, raw MQTT clients.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import * as mqttPacket from 'mqtt-packet';
import { PUBLISH_PER_TURN, TURN_PUBLISHES } from '../../src/mqtt/mqtt-connection.js';
import { RawClient, TestVerifier, device, startListener, tenantPki, waitFor } from './harness.js';

const publish = (i: number, qos: 0 | 1 = 1): Buffer =>
  mqttPacket.generate({
    cmd: 'publish',
    topic: `devices/flood/${i}`,
    payload: Buffer.from(String(i)),
    qos,
    ...(qos ? { messageId: i + 1 } : {}),
    retain: false,
    dup: false,
  });

describe('MQTT listener: PUBLISH packets handled per turn', async () => {
  const acme = await tenantPki('acme');
  const flood = await device(acme.intermediate, 'flood');
  const other = await device(acme.intermediate, 'other');

  const setup = async (t: TestContext) => {
    const verifier = new TestVerifier({
      acl: () => [
        { permission: 'allow', action: 'publish', topic: 'devices/#' },
        { permission: 'allow', action: 'subscribe', topic: 'devices/#' },
      ],
    });
    verifier.trust('acme', acme.root);
    return startListener(t, verifier);
  };

  /** Every packet of that kind received so far, taken from the inbox. */
  const takeAll = (c: RawClient, cmd: Packet['cmd']): Packet[] => {
    const out: Packet[] = [];
    for (let i = c.inbox.findIndex((p) => p.cmd === cmd); i !== -1; i = c.inbox.findIndex((p) => p.cmd === cmd)) out.push(c.inbox.splice(i, 1)[0]!);
    return out;
  };

  test('ok/order: packets written at once, handled over many turns, are all served in order, the DISCONNECT behind them last', async (t) => {
    assert.ok(PUBLISH_PER_TURN + TURN_PUBLISHES < 100, 'the flood spans many turns');
    const l = await setup(t);
    const { client: sub } = await RawClient.connect(t, l, other, { clientId: 'other' });
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/flood/#', qos: 0 }] });
    await sub.take('suback');
    const { client: pub } = await RawClient.connect(t, l, flood, { clientId: 'flood' });
    const n = 500;
    // QoS 1 and 0 alternating, a PINGREQ in the middle, DISCONNECT at the end: one write.
    const packets = Array.from({ length: n }, (_, i) => publish(i, i % 2 === 0 ? 1 : 0));
    packets.splice(n / 2, 0, Buffer.from([0xc0, 0x00]));
    pub.write(Buffer.concat([...packets, Buffer.from([0xe0, 0x00])]));
    await waitFor(() => sub.inbox.filter((p) => p.cmd === 'publish').length === n, 10_000, `${n} messages`);
    assert.deepEqual(
      takeAll(sub, 'publish').map((p) => (p as IPublishPacket).payload.toString()),
      Array.from({ length: n }, (_, i) => String(i)),
    );
    await pub.waitClosed();
    // The acknowledgements in order; the PINGRESP after the first half's, before the second's.
    const expected = Array.from({ length: n / 2 }, (_, k) => `puback:${2 * k + 1}`);
    expected.splice(n / 4, 0, 'ping');
    assert.deepEqual(
      pub.inbox.map((p) => (p.cmd === 'pingresp' ? 'ping' : `${p.cmd}:${(p as { messageId: number }).messageId}`)),
      expected,
    );
  });

  test('ok/fair: while one client\'s flood is handled a few packets a turn, another client is answered', async (t) => {
    const l = await setup(t);
    const { client: pub } = await RawClient.connect(t, l, flood, { clientId: 'flood' });
    const { client: quiet } = await RawClient.connect(t, l, other, { clientId: 'other' });
    const n = 20_000;
    pub.write(Buffer.concat(Array.from({ length: n }, (_, i) => publish(i % 60_000))));
    await waitFor(() => pub.inbox.length > 0, 10_000, 'the first PUBACK');
    quiet.send({ cmd: 'pingreq' });
    await quiet.take('pingresp');
    // Answered within a few turns of the flood, long before its end.
    const acked = pub.inbox.length;
    assert.ok(acked < n / 2, `the other client waited for ${acked} of ${n} publications`);
    await waitFor(() => pub.inbox.length === n, 20_000, 'every PUBACK');
  });

  test('fail/closed-while-waiting: a connection closed with packets left for the next turn is gone, the others go on', async (t) => {
    const l = await setup(t);
    const { client: sub } = await RawClient.connect(t, l, other, { clientId: 'other' });
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/#', qos: 0 }] });
    await sub.take('suback');
    const { client: pub } = await RawClient.connect(t, l, flood, { clientId: 'flood' });
    pub.write(Buffer.concat(Array.from({ length: 5_000 }, (_, i) => publish(i))));
    await waitFor(() => pub.inbox.length > 0, 10_000, 'the first PUBACK');
    pub.socket.destroy();
    await waitFor(() => l.listener.stats.connections === 1, 5_000, 'the flood connection to close');
    const routed = l.listener.stats.messagesRouted;
    assert.ok(routed < 5_000, `${routed} routed: the rest was dropped with the connection`);
    // The subscriber is still served, and nothing more of the closed connection is routed.
    const { client: again } = await RawClient.connect(t, l, flood, { clientId: 'flood2' });
    again.send({ cmd: 'publish', topic: 'devices/after', payload: Buffer.from('after'), qos: 1, messageId: 1, retain: false, dup: false });
    await again.take('puback');
    await waitFor(() => sub.inbox.some((p) => p.cmd === 'publish' && (p as IPublishPacket).topic === 'devices/after'), 5_000, 'the next message');
    assert.equal(l.listener.stats.messagesRouted, routed + 1);
  });
});
