/**
 * A change the listener could not store is never acknowledged as a success: with the database
 * frozen (a PostgreSQL of the test's own, SIGSTOP), an MQTT 5 PUBACK carries 0x80, an MQTT 5
 * SUBACK of a persistent session becomes DISCONNECT 0x80 (unspecified error; 0x88 server
 * unavailable is a CONNACK code only), and an MQTT 3.1.1
 * client is disconnected without its PUBACK. A publication that reaches no stored session is
 * acknowledged as before: clean sessions never wait for the database. Raw MQTT clients over mTLS.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IConnackPacket, IDisconnectPacket, IPubackPacket, ISubackPacket } from 'mqtt-packet';
import { pino } from 'pino';
import { createPrismaClient } from '../../src/db/prisma.js';
import { createDurableStore } from '../../src/mqtt/durable-store.js';
import { ownPostgres } from '../helpers/own-postgres.js';
import { device, RawClient, startListener, tenantPki, TestVerifier } from './harness.js';

test('fail/store-down-no-success-ack: while the database is frozen nothing it should hold is acknowledged; afterwards it is again', { timeout: 120_000 }, async (t) => {
  const pg = await ownPostgres(t);
  const prisma = createPrismaClient(pg.url, { poolSize: 2, statementTimeoutMs: 500, acquireTimeoutMs: 500 });
  t.after(() => prisma.$disconnect());
  const acme = await tenantPki('acme');
  await prisma.tenant.create({ data: { id: acme.tenantId, company: 'Acme', domain: 'acme.example.com' } });
  const dev = await device(acme.intermediate, 'dev1');
  const verifier = new TestVerifier({
    acl: () => [
      { permission: 'allow', action: 'publish', topic: 'fleet/#' },
      { permission: 'allow', action: 'subscribe', topic: 'fleet/#' },
    ],
  });
  verifier.trust(acme.tenantId, acme.root);
  const durable = createDurableStore(prisma, pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }));
  const l = await startListener(t, verifier, { durable });
  t.after(() => durable.close());

  const persistent = { clean: false, properties: { sessionExpiryInterval: 3600 } };
  const keeper = await RawClient.connect(t, l, dev, { clientId: 'keeper', ...persistent }, 5);
  keeper.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fleet/#', qos: 1 }] });
  assert.deepEqual(((await keeper.client.take('suback')) as ISubackPacket).granted, [1]);
  keeper.client.send({ cmd: 'disconnect' });
  await keeper.client.waitClosed();

  await pg.freeze();
  const pub5 = await RawClient.connect(t, l, dev, { clientId: 'pub5' }, 5);
  // For the offline persistent session: not stored, so not acknowledged as a success.
  pub5.client.send({ cmd: 'publish', topic: 'fleet/a', payload: Buffer.from('a'), qos: 1, messageId: 1, retain: false, dup: false });
  assert.equal(((await pub5.client.take('puback')) as IPubackPacket).reasonCode, 0x80);
  // A retained message: not stored either.
  pub5.client.send({ cmd: 'publish', topic: 'fleet/cfg', payload: Buffer.from('c'), qos: 1, messageId: 2, retain: true, dup: false });
  assert.equal(((await pub5.client.take('puback')) as IPubackPacket).reasonCode, 0x80);
  // Reaching no stored session: acknowledged without the database.
  pub5.client.send({ cmd: 'publish', topic: 'devices/dev1/x', payload: Buffer.from('x'), qos: 1, messageId: 3, retain: false, dup: false });
  assert.equal(((await pub5.client.take('puback')) as IPubackPacket).reasonCode ?? 0, 0);

  // MQTT 3.1.1 cannot say it: the connection is closed, no PUBACK.
  const pub3 = await RawClient.connect(t, l, dev, { clientId: 'pub3' }, 4);
  pub3.client.send({ cmd: 'publish', topic: 'fleet/b', payload: Buffer.from('b'), qos: 1, messageId: 1, retain: false, dup: false });
  await pub3.client.waitClosed();
  assert.equal(pub3.client.inbox.filter((p) => p.cmd === 'puback').length, 0, 'no PUBACK for what was not stored');

  // A persistent session's subscription: DISCONNECT 0x80 instead of the SUBACK.
  const sub5 = await RawClient.connect(t, l, dev, { clientId: 'sub5', ...persistent }, 5);
  sub5.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fleet/x', qos: 1 }] });
  assert.equal(((await sub5.client.take('disconnect')) as IDisconnectPacket).reasonCode, 0x80);
  await sub5.client.waitClosed();
  assert.equal(sub5.client.inbox.filter((p) => p.cmd === 'suback').length, 0);

  pg.thaw();
  // Written again once the database answers (the store tries again within seconds).
  let id = 10;
  const deadline = Date.now() + 20_000;
  for (;;) {
    pub5.client.send({ cmd: 'publish', topic: 'fleet/c', payload: Buffer.from('c'), qos: 1, messageId: ++id, retain: false, dup: false });
    const ack = (await pub5.client.take('puback')) as IPubackPacket;
    if ((ack.reasonCode ?? 0) === 0) break;
    assert.ok(Date.now() < deadline, 'still not stored after the database came back');
    await new Promise((r) => setTimeout(r, 250));
  }
  const back = await RawClient.connect(t, l, dev, { clientId: 'keeper', ...persistent }, 5);
  assert.equal((back.connack as IConnackPacket).sessionPresent, true);
  const rows = await prisma.mqttSession.count({ where: { tenantId: acme.tenantId } });
  assert.ok(rows >= 1, 'the persistent session is stored');
});
