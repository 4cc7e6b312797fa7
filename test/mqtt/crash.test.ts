/**
 * What the listener acknowledged survives the listener being killed (SIGKILL, no shutdown): the
 * standalone listener (`certgate mqtt`, asking the API's verifier over HTTP) runs as a child
 * process on a real PostgreSQL and is killed right after the acknowledgements; the next process
 * on the same database gives the clients their sessions back. MQTT.js clients over mTLS (MQTT 5
 * and 3.1.1), and a raw client for a QoS 2 exchange left between PUBREC and PUBREL.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import mqtt, { type IPublishPacket } from 'mqtt';
import type { IConnackPacket, IPubcompPacket, IPubrecPacket } from 'mqtt-packet';
import pg from 'pg';
import { sessionFromJson } from '../../src/mqtt/durable-store.js';
import type { RunningServer } from '../../src/server.js';
import { VERIFIER_TOKEN } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openDevice } from '../helpers/mqtt-client.js';
import { createTrustingTenant, serverDir, startTestServer } from '../helpers/server.js';
import { startService, type Service } from '../helpers/service.js';
import { device, RawClient, serverCredentials, tenantPki, waitFor, withoutRoot, type RunningListener } from './harness.js';

describe('MQTT state across a killed listener', async () => {
  const acme = await tenantPki('crash');
  const dev = await device(acme.intermediate, 'dev1');
  const { ca: serverCa, server: serverCert } = await serverCredentials();
  let db: TestDatabase;
  let apiServer: RunningServer;
  let dir: string;
  let sql: pg.Client;

  /** `certgate mqtt` on the test database: one process, or a primary and its worker processes. */
  const startListener = (t: TestContext, workers: number): Promise<Service> =>
    startService({
      mode: 'mqtt',
      dataDir: dir,
      env: {
        DATABASE_URL: db.url,
        VERIFIER_URL: apiServer.httpAddress!,
        VERIFIER_TOKEN,
        MQTT_WORKERS: String(workers),
        MQTT_TLS_CERT: path.join(dir, 'server.crt'),
        MQTT_TLS_KEY: path.join(dir, 'server.key'),
        LOG_FORMAT: 'json',
      },
    }).then((s) => {
      t.after(() => s.stop());
      return s;
    });
  /** SIGKILL to the process group (workers included): no shutdown, nothing written on the way out. */
  const kill = async (s: Service) => {
    process.kill(-s.pid, 'SIGKILL');
    await s.stop();
  };

  const open = (t: TestContext, l: Service, clientId: string, opts: mqtt.IClientOptions = {}) =>
    openDevice(t, l.mqttPort, serverCa.certPem, { key: dev.keyPem, cert: withoutRoot(dev), clientId, ...opts });
  const raw = (t: TestContext, l: Service, clientId: string, properties?: object) =>
    RawClient.connect(
      t,
      { port: l.mqttPort, caPem: serverCa.certPem } as RunningListener,
      dev,
      { clientId, clean: false, ...(properties ? { properties } : {}) },
      5,
    );

  /** The stored state of a client's session, as the database has it now. */
  const storedSession = async (clientId: string) => {
    const rows = await sql.query<{ state: unknown }>('SELECT "state" FROM "MqttSession" WHERE "tenantId" = $1', [acme.tenantId]);
    return rows.rows.map((r) => sessionFromJson(r.state)).find((s) => s.clientId === clientId);
  };

  /**
   * The messages a client got, once a marker published after them arrived too. The marker is QoS
   * 2: MQTT.js hands a QoS 2 message over on PUBREL, and the listener sends its PUBRELs in order.
   */
  const jobsUntilMarker = async (t: TestContext, l: Service, c: { got: IPublishPacket[] }, marker: string) => {
    const { client } = await open(t, l, `marker-${marker}`);
    await client.publishAsync(`fleet/jobs/${marker}`, marker, { qos: 2 });
    await waitFor(() => c.got.some((p) => p.topic === `fleet/jobs/${marker}`), 15_000, `the marker ${marker}`);
    await client.endAsync();
    return c.got.filter((p) => p.topic !== `fleet/jobs/${marker}`).map((p) => [p.topic, p.payload.toString()]);
  };

  before(async () => {
    db = await createTestDatabase();
    dir = await serverDir('certgate-mqtt-crash-', serverCert);
    apiServer = await startTestServer(db.url, dir, {}, 'api');
    await createTrustingTenant(apiServer.httpAddress!, acme, {
      clientIdPolicy: 'ANY',
      acl: { publish: ['fleet/#'], subscribe: ['fleet/#'] },
    });
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
  });
  after(async () => {
    await sql?.end();
    await apiServer?.close();
    await db?.drop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  for (const workers of [1, 2]) {
    test(`ok/sigkill-keeps-acknowledged (${workers} listener process${workers > 1 ? 'es' : ''}): subscriptions, queued QoS 1 and 2 messages, retained messages and a QoS 2 exchange awaiting PUBREL survive SIGKILL; each message arrives once`, async (t) => {
      const w = `-w${workers}`;
      let listener = await startListener(t, workers);
      // Persistent sessions: MQTT 5 with a session expiry, MQTT 3.1.1 with clean session 0.
      const v5opts = { clean: false, properties: { sessionExpiryInterval: 3600 } };
      const v3opts = { clean: false, protocolVersion: 4 as const };
      const k5 = await open(t, listener, `keeper5${w}`, v5opts);
      assert.equal(k5.sessionPresent, false);
      await k5.client.subscribeAsync({ 'fleet/jobs/#': { qos: 2 }, 'fleet/alerts': { qos: 1 } });
      await k5.client.endAsync();
      const k3 = await open(t, listener, `keeper3${w}`, v3opts);
      await k3.client.subscribeAsync({ 'fleet/jobs/#': { qos: 2 }, 'fleet/alerts': { qos: 1 } });
      await k3.client.endAsync();

      // Published while both are away; each publishAsync resolves on PUBACK (QoS 1) or PUBCOMP (QoS 2).
      const boss = await open(t, listener, `boss${w}`);
      await boss.client.publishAsync('fleet/jobs/1', 'one', { qos: 1 });
      await boss.client.publishAsync('fleet/jobs/2', 'two', { qos: 2 });
      await boss.client.publishAsync('fleet/alerts', 'alert', { qos: 1 });
      await boss.client.publishAsync(`fleet/config${w}`, `cfg${w}`, { qos: 1, retain: true });
      // A persistent publisher's QoS 2 message: PUBREC came, PUBREL not sent before the kill.
      const sender = await raw(t, listener, `sender${w}`, { sessionExpiryInterval: 3600 });
      sender.client.send({ cmd: 'publish', topic: 'fleet/jobs/3', payload: Buffer.from('three'), qos: 2, messageId: 7, retain: false, dup: false });
      const pubrec = (await sender.client.take('pubrec')) as IPubrecPacket;
      assert.equal(pubrec.reasonCode ?? 0, 0);
      await kill(listener);

      listener = await startListener(t, workers);
      // The QoS 2 exchange goes on: the PUBLISH sent again is not routed again ([MQTT-4.3.3-9]),
      // and the PUBREL finds its packet identifier ([MQTT-4.3.3-10]: PUBCOMP, not 0x92).
      const sender2 = await raw(t, listener, `sender${w}`, { sessionExpiryInterval: 3600 });
      assert.equal((sender2.connack as IConnackPacket).sessionPresent, true);
      sender2.client.send({ cmd: 'publish', topic: 'fleet/jobs/3', payload: Buffer.from('three'), qos: 2, messageId: 7, retain: false, dup: true });
      assert.equal(((await sender2.client.take('pubrec')) as IPubrecPacket).reasonCode ?? 0, 0);
      sender2.client.send({ cmd: 'pubrel', messageId: 7 });
      assert.equal(((await sender2.client.take('pubcomp')) as IPubcompPacket).reasonCode ?? 0, 0);
      sender2.client.end();

      const expected = [
        ['fleet/alerts', 'alert'],
        ['fleet/jobs/1', 'one'],
        ['fleet/jobs/2', 'two'],
        ['fleet/jobs/3', 'three'],
      ];
      const k5b = await open(t, listener, `keeper5${w}`, v5opts);
      assert.equal(k5b.sessionPresent, true, 'MQTT 5 session back after SIGKILL');
      assert.deepEqual((await jobsUntilMarker(t, listener, k5b, `m1${w}`)).sort(), expected);
      assert.deepEqual(
        k5b.got.filter((p) => p.topic === 'fleet/jobs/2' || p.topic === 'fleet/jobs/3').map((p) => p.qos),
        [2, 2],
        'QoS 2 kept',
      );
      const k3b = await open(t, listener, `keeper3${w}`, v3opts);
      assert.equal(k3b.sessionPresent, true, 'MQTT 3.1.1 session back after SIGKILL');
      assert.deepEqual((await jobsUntilMarker(t, listener, k3b, `m2${w}`)).sort(), [...expected, [`fleet/jobs/m1${w}`, `m1${w}`]].sort());

      // The retained message acknowledged before the kill.
      const reader = await open(t, listener, `reader${w}`);
      await reader.client.subscribeAsync(`fleet/config${w}`, { qos: 1 });
      await waitFor(() => reader.got.length === 1, 10_000, 'the retained message');
      assert.deepEqual([reader.got[0]!.payload.toString(), reader.got[0]!.retain], [`cfg${w}`, true]);
      await reader.client.endAsync();

      // Delivered and acknowledged: gone from the stored sessions (the client's PUBACK and PUBCOMP
      // are written after the turn they came in), so a second kill delivers nothing again.
      await k5b.client.endAsync();
      await k3b.client.endAsync();
      for (const id of [`keeper5${w}`, `keeper3${w}`]) {
        const deadline = Date.now() + 10_000;
        for (;;) {
          const s = await storedSession(id);
          assert.ok(s, `${id} is stored`);
          if (s.inflight.length === 0 && s.queued.length === 0) break;
          assert.ok(Date.now() < deadline, `${id}: acknowledged messages still stored ${JSON.stringify(s.inflight)}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.deepEqual((await storedSession(id))!.subscriptions.map(([f, o]) => [f, o.qos]).sort(), [
          ['fleet/alerts', 1],
          ['fleet/jobs/#', 2],
        ]);
      }
      await kill(listener);
      listener = await startListener(t, workers);
      const k5c = await open(t, listener, `keeper5${w}`, v5opts);
      assert.equal(k5c.sessionPresent, true);
      assert.deepEqual(await jobsUntilMarker(t, listener, k5c, `m3${w}`), [], 'nothing delivered twice');
      await k5c.client.endAsync();

      // A clean start ends the stored session: gone from the database, and not back after a kill.
      const k3c = await open(t, listener, `keeper3${w}`, { clean: true, protocolVersion: 4 });
      assert.equal(k3c.sessionPresent, false);
      await k3c.client.endAsync();
      const deadline = Date.now() + 10_000;
      while (await storedSession(`keeper3${w}`)) {
        assert.ok(Date.now() < deadline, 'keeper3 still stored after a clean start');
        await new Promise((r) => setTimeout(r, 50));
      }
      await kill(listener);
      listener = await startListener(t, workers);
      const k3d = await open(t, listener, `keeper3${w}`, v3opts);
      assert.equal(k3d.sessionPresent, false);
      await k3d.client.endAsync();
      await listener.stop();
    });
  }

  test('ok/memory-only-said: without a database the listener says in one line that sessions and retained messages live in memory only', async (t) => {
    delete process.env.DATABASE_URL; // a fresh DATA_DIR has no embedded database to find either
    const alone = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-mqtt-memory-'));
    t.after(() => fs.rm(alone, { recursive: true, force: true }));
    const listener = await startService({
      mode: 'mqtt',
      dataDir: alone,
      env: {
        VERIFIER_URL: apiServer.httpAddress!,
        VERIFIER_TOKEN,
        MQTT_WORKERS: '1',
        MQTT_TLS_CERT: path.join(dir, 'server.crt'),
        MQTT_TLS_KEY: path.join(dir, 'server.key'),
        LOG_FORMAT: 'json',
      },
    });
    t.after(() => listener.stop());
    const lines = listener.output().split('\n').filter((l) => /kept in memory only/.test(l));
    assert.equal(lines.length, 1, listener.output());
    assert.match(lines[0]!, /persistent MQTT sessions and retained messages are kept in memory only/);
    assert.equal(JSON.parse(lines[0]!).level, 40, 'a warning');
  });
});
