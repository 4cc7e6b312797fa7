/**
 * Retained messages survive a restart of certgate: kept in PostgreSQL, written by the listener
 * alone or by the worker process its publisher is on, loaded before the first client connects, and
 * deleted with their tenant. Real server (startServer) on a real PostgreSQL, MQTT.js clients; the
 * restarts switch between one listener process and two, so both ways of writing and loading are
 * crossed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { after, before, describe, test, type TestContext } from 'node:test';
import mqtt, { type IPublishPacket } from 'mqtt';
import type { RunningServer } from '../../src/server.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openDevice } from '../helpers/mqtt-client.js';
import { createTrustingTenant, MANAGEMENT_LOGIN, serverDir, startTestServer } from '../helpers/server.js';
import { apiOk } from '../helpers/service.js';
import { device, serverCredentials, tenantPki, waitFor, withoutRoot, type TenantPki } from './harness.js';

process.env.NODE_CLUSTER_SCHED_POLICY = 'rr';

describe('MQTT retained messages across restarts', async () => {
  const acme = await tenantPki('acme');
  const globex = await tenantPki('globex');
  const dev1 = await device(acme.intermediate, 'dev1');
  const globexDev = await device(globex.intermediate, 'dev1');
  const { ca: serverCa, server: serverCert } = await serverCredentials();
  let db: TestDatabase;
  let dir: string;
  let server: RunningServer | undefined;

  const start = async (workers: number) => {
    await stop(); // the previous test's server, if it left one running
    server = await startTestServer(db.url, dir, { MQTT_WORKERS: String(workers) });
  };
  const stop = async () => {
    await server?.close();
    server = undefined;
  };

  const createTenant = (pki: TenantPki) =>
    createTrustingTenant(server!.httpAddress!, pki, {
      clientIdPolicy: 'ANY',
      acl: { publish: ['fleet/#'], subscribe: ['fleet/#'] },
    });

  const open = (t: TestContext, clientId: string, opts: mqtt.IClientOptions = {}, pki: TenantPki = acme) => {
    const dev = pki === acme ? dev1 : globexDev;
    return openDevice(t, server!.mqttPort!, serverCa.certPem, { key: dev.keyPem, cert: withoutRoot(dev), clientId, ...opts });
  };

  /** The retained messages a new subscriber to `fleet/#` gets, before a marker published after. */
  const retainedNow = async (t: TestContext): Promise<IPublishPacket[]> => {
    const { client, got } = await open(t, 'reader');
    await client.subscribeAsync('fleet/#', { qos: 1 });
    await client.publishAsync('fleet/marker', 'm', { qos: 1 });
    await waitFor(() => got.some((p) => p.topic === 'fleet/marker'), 10_000, 'the marker');
    await client.endAsync();
    return got.filter((p) => p.topic !== 'fleet/marker');
  };

  before(async () => {
    db = await createTestDatabase();
    dir = await serverDir('certgate-mqtt-durable-', serverCert);
  });
  after(async () => {
    await stop();
    await db?.drop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('ok/retained-survive-restart: written by two workers\' primary, loaded by one process, changed, loaded by two workers; gone with the tenant', async (t) => {
    await start(2);
    await createTenant(acme);
    const { client } = await open(t, 'writer');
    await client.publishAsync('fleet/config', '{"interval":10}', {
      qos: 1,
      retain: true,
      properties: { contentType: 'application/json', userProperties: { v: '1' }, correlationData: Buffer.from('c1') },
    });
    await client.publishAsync('fleet/status', 'online', { qos: 2, retain: true });
    await client.publishAsync('fleet/short', 'soon gone', { qos: 1, retain: true, properties: { messageExpiryInterval: 2 } });
    const expiresAt = Date.now() + 2_000;
    const before = (await retainedNow(t)).map((p) => p.topic);
    assert.ok(before.includes('fleet/config') && before.includes('fleet/status'), before.join());
    await client.endAsync();
    await stop();
    // Past the expiry of fleet/short.
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now() + 200)));

    await start(1);
    let got = await retainedNow(t);
    assert.deepEqual(got.map((p) => [p.topic, p.payload.toString(), p.qos, p.retain]).sort(), [
      ['fleet/config', '{"interval":10}', 1, true],
      ['fleet/status', 'online', 1, true], // at most the subscription's QoS 1
    ]);
    const config = got.find((p) => p.topic === 'fleet/config')!;
    assert.equal(config.properties?.contentType, 'application/json');
    assert.deepEqual({ ...config.properties?.userProperties }, { v: '1' });
    assert.equal(Buffer.from(config.properties!.correlationData!).toString(), 'c1');
    // Changed in one process: one cleared, one replaced.
    const second = await open(t, 'writer2');
    await second.client.publishAsync('fleet/status', '', { qos: 1, retain: true });
    await second.client.publishAsync('fleet/config', '{"interval":20}', { qos: 1, retain: true });
    await second.client.endAsync();
    await stop();

    await start(2);
    got = await retainedNow(t);
    assert.deepEqual(got.map((p) => [p.topic, p.payload.toString()]), [['fleet/config', '{"interval":20}']]);

    // Deleted with the tenant: a tenant made again with the same id, after a restart, has none.
    await apiOk(server!.httpAddress!, 'DELETE', `/tenant/tenants/${acme.tenantId}`, MANAGEMENT_LOGIN);
    await stop();
    await start(1);
    await createTenant(acme);
    assert.deepEqual(await retainedNow(t), []);
  });

  test('ok/sessions-survive-restart: a persistent session and its queued messages are taken back after a restart, by one process or two', async (t) => {
    const keep = { clean: false, properties: { sessionExpiryInterval: 3600 } };
    const jobs = (got: IPublishPacket[]) => got.filter((p) => p.topic.startsWith('fleet/jobs/')).map((p) => p.payload.toString());
    await start(2);
    await createTenant(globex);
    const first = await open(t, 'keeper', keep, globex);
    await first.client.subscribeAsync('fleet/jobs/#', { qos: 1 });
    await first.client.endAsync();
    const pub = await open(t, 'boss', {}, globex);
    await pub.client.publishAsync('fleet/jobs/1', 'one', { qos: 1 });
    await pub.client.endAsync();
    await stop();

    await start(1);
    const second = await open(t, 'keeper', keep, globex);
    assert.equal(second.sessionPresent, true, 'the session came back from the database');
    await waitFor(() => jobs(second.got).length === 1, 10_000, 'the queued job');
    assert.deepEqual(jobs(second.got), ['one']);
    await second.client.endAsync();
    const pub2 = await open(t, 'boss', {}, globex);
    await pub2.client.publishAsync('fleet/jobs/2', 'two', { qos: 1 });
    await pub2.client.endAsync();
    await stop();

    await start(2);
    const third = await open(t, 'keeper', keep, globex);
    assert.equal(third.sessionPresent, true);
    await waitFor(() => jobs(third.got).length === 1, 10_000, 'the second queued job');
    assert.deepEqual(jobs(third.got), ['two'], 'each job once');
    await third.client.endAsync();

    // A deleted tenant's sessions go too: made again, its client starts without one.
    await apiOk(server!.httpAddress!, 'DELETE', `/tenant/tenants/${globex.tenantId}`, MANAGEMENT_LOGIN);
    await stop();
    await start(1);
    await createTenant(globex);
    const fresh = await open(t, 'keeper', keep, globex);
    assert.equal(fresh.sessionPresent, false);
  });
});
