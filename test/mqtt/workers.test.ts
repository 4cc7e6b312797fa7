/**
 * The listener on two worker processes (MQTT_WORKERS=2) behaves as one broker: messages and
 * wills, retained messages, session takeover and persistent sessions cross workers within a tenant
 * and never across tenants, the kill switch closes sessions on every worker, and a worker that dies
 * is replaced. Real server (startServer) on a real PostgreSQL, real TLS sockets, MQTT.js clients.
 *
 * Placement: the test process is the cluster primary, and runs it round robin
 * (NODE_CLUSTER_SCHED_POLICY=rr, which certgate respects), so connections alternate between the
 * workers; `openOn` steers a client to a chosen worker with throwaway connections and checks where
 * it landed in the workers' statistics.
 */
import assert from 'node:assert/strict';
import cluster from 'node:cluster';
import fs from 'node:fs/promises';
import { after, before, describe, test, type TestContext } from 'node:test';
import mqtt, { type IConnackPacket, type MqttClient } from 'mqtt';
import type { Credentials } from '../../src/certs/certs-service.js';
import type { MqttCluster } from '../../src/mqtt/mqtt-cluster.js';
import type { RunningServer } from '../../src/server.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { createTrustingTenant, MANAGEMENT_LOGIN, serverDir, startTestServer, tenantLogin } from '../helpers/server.js';
import { apiOk } from '../helpers/service.js';
import { device, serverCredentials, sleep, suback, tenantPki, waitFor, withoutRoot, type Received, type TenantPki } from './harness.js';

process.env.NODE_CLUSTER_SCHED_POLICY = 'rr';

/** Waits for `p`, failing after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}

interface Opened {
  client: MqttClient;
  connack: IConnackPacket;
  got: Received[];
  worker: number;
}

describe('MQTT listener on two worker processes', async () => {
  const acme = await tenantPki('acme');
  const globex = await tenantPki('globex');
  const initech = await tenantPki('initech');
  /** Only for the interest tests: no subscription in it but theirs. */
  const hooli = await tenantPki('hooli');
  const creds = new Map<string, Credentials>();
  const cert = async (pki: TenantPki, name: string) => {
    const key = `${pki.tenantId}/${name}`;
    if (!creds.has(key)) creds.set(key, await device(pki.intermediate, name));
    return creds.get(key)!;
  };
  const { ca: serverCa, server: serverCert } = await serverCredentials();

  let db: TestDatabase;
  let dir: string;
  let server: RunningServer;
  let listener: MqttCluster;
  let workers: number[];

  const api = (method: string, url: string, login: string, body?: unknown) => apiOk(server.httpAddress!, method, url, login, body);

  /** A tenant trusting its root (devices register themselves), whose devices may also use `fleet/#`. */
  const createTenant = (pki: TenantPki) =>
    createTrustingTenant(server.httpAddress!, pki, {
      acl: {
        publish: ['devices/{deviceName}/#', 'fleet/#'],
        subscribe: ['devices/{deviceName}/#', 'fleet/#'],
        // Each device may not read its own `fleet/private/...` topic nor write its `readonly` one (ok/acl-deny).
        deny: { publish: ['fleet/{deviceName}/readonly'], subscribe: ['fleet/private/{deviceName}'] },
      },
    });

  before(async () => {
    db = await createTestDatabase();
    dir = await serverDir('certgate-mqtt-workers-', serverCert);
    server = await startTestServer(db.url, dir, { MQTT_WORKERS: '2' });
    listener = server.mqtt as MqttCluster;
    workers = (await listener.workerStats()).map((s) => s.worker);
    assert.equal(workers.length, 2);
    for (const pki of [acme, globex, initech, hooli]) await createTenant(pki);
  });

  after(async () => {
    await server?.close();
    await db?.drop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  // -------------------------------------------------------------------------------------------

  const accepted = async () => new Map((await listener.workerStats()).map((s) => [s.worker, s.accepted]));

  /** One MQTT.js client, collecting messages from the start (queued ones arrive right after CONNACK). */
  const open = (t: TestContext, pki: TenantPki, name: string, opts: mqtt.IClientOptions = {}) =>
    cert(pki, name).then(
      (c) =>
        new Promise<Omit<Opened, 'worker'>>((resolve, reject) => {
          const client = mqtt.connect(`mqtts://localhost:${server.mqttPort}`, {
            ca: serverCa.certPem,
            key: c.keyPem,
            cert: withoutRoot(c),
            clientId: name,
            protocolVersion: 4,
            reconnectPeriod: 0,
            connectTimeout: 5_000,
            ...opts,
          });
          t.after(() => client.end(true));
          const got: Received[] = [];
          client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), retain: packet.retain, qos: packet.qos }));
          client.once('connect', (connack) => resolve({ client, connack, got }));
          client.once('error', reject);
          client.once('close', () => reject(new Error('closed before CONNACK')));
        }),
    );

  /** Opens a client and finds the worker it landed on. */
  const landed = async (t: TestContext, pki: TenantPki, name: string, opts?: mqtt.IClientOptions): Promise<Opened> => {
    const before = await accepted();
    const o = await open(t, pki, name, opts);
    const now = await accepted();
    const worker = [...now].find(([w, n]) => n > (before.get(w) ?? 0))?.[0];
    assert.ok(worker !== undefined, 'no worker accepted the connection');
    return { ...o, worker };
  };

  /** Opens a client on the given worker: throwaway connections until the next one goes there. */
  const openOn = async (t: TestContext, worker: number, pki: TenantPki, name: string, opts?: mqtt.IClientOptions): Promise<Opened> => {
    for (let i = 0; i < 4; i++) {
      const probe = await landed(t, initech, 'probe');
      probe.client.end(true);
      if (probe.worker === worker) continue;
      const o = await landed(t, pki, name, opts);
      assert.equal(o.worker, worker, 'connections alternate between the workers');
      return o;
    }
    throw new Error(`no connection went to worker ${worker}`);
  };

  const deviceId = async (tenantId: string, name: string): Promise<string> =>
    (await api('GET', `/tenant/tenants/${tenantId}/devices?name=${name}`, tenantLogin(tenantId))).devices[0].id;

  // -------------------------------------------------------------------------------------------

  test('ok/publish: a message published on one worker reaches the tenant\'s subscribers on the other, not another tenant\'s', async (t) => {
    const [a, b] = workers as [number, number];
    const sub = await openOn(t, b, acme, 'sub1');
    const otherTenant = await openOn(t, b, globex, 'sub1');
    const sameWorker = await openOn(t, a, acme, 'sub2');
    for (const o of [sub, otherTenant, sameWorker]) assert.deepEqual(await suback(o.client, { 'fleet/#': { qos: 1 } }), [1]);

    const pub = await openOn(t, a, acme, 'pub1');
    await pub.client.publishAsync('fleet/pub1/temp', '21.5', { qos: 1 });
    await pub.client.publishAsync('fleet/pub1/temp', '21.6', { qos: 0 });
    await waitFor(() => sub.got.length === 2 && sameWorker.got.length === 2, 5_000, 'both messages on both workers');
    assert.deepEqual(
      sub.got.map((m) => [m.topic, m.payload, m.qos]),
      [
        ['fleet/pub1/temp', '21.5', 1],
        ['fleet/pub1/temp', '21.6', 0],
      ],
    );
    // The same topic in another tenant, on the worker the message went to: nothing.
    await globexPublishes(t, a, 'fleet/pub1/temp');
    await sleep(300);
    assert.deepEqual(otherTenant.got.map((m) => m.payload), ['from globex']);
    assert.equal(sub.got.length, 2);
  });

  test('ok/interest: a message goes to the other worker only while the tenant has a subscription there; one published right after a SUBACK there arrives', async (t) => {
    const [a, b] = workers as [number, number];
    const routedOn = async (w: number) => (await listener.workerStats()).find((s) => s.worker === w)!.messagesRouted;
    const pub = await openOn(t, a, hooli, 'ipub');
    // A client of the tenant on b without a subscription: b is sent nothing published on a.
    const idle = await openOn(t, b, hooli, 'iidle');
    const before = await routedOn(b);
    for (let i = 0; i < 20; i++) await pub.client.publishAsync('fleet/ipub/x', String(i), { qos: 1 });
    await sleep(200);
    assert.equal(await routedOn(b), before, 'nothing relayed to a worker without a subscription in the tenant');
    // Each time the tenant gets its first subscription on b, what is published on a once the
    // SUBACK is in reaches it: the SUBACK waited until worker a knew.
    for (let i = 0; i < 10; i++) {
      const sub = await openOn(t, b, hooli, `isub${i}`);
      await suback(sub.client, { 'fleet/#': { qos: 1 } });
      await pub.client.publishAsync('fleet/ipub/x', `m${i}`, { qos: 1 });
      await waitFor(() => sub.got.length === 1, 5_000, `message ${i}`);
      assert.equal(sub.got[0]!.payload, `m${i}`);
      await sub.client.endAsync();
      await sleep(100); // the tenant's last subscription on b is gone: a learns it
    }
    assert.ok(idle.client.connected);
  });

  test('ok/interest-stored: a publisher\'s PUBACK waits for the other worker only when a stored session subscribes in the tenant there', async (t) => {
    const [a, b] = workers as [number, number];
    const pid = Object.values(cluster.workers ?? {}).find((w) => w?.id === b)!.process.pid!;
    const live = await openOn(t, b, hooli, 'slive');
    await suback(live.client, { 'fleet/#': { qos: 1 } });
    const pub = await openOn(t, a, hooli, 'spub');
    // Worker b stopped: clean sessions there do not hold up the publisher on a.
    process.kill(pid, 'SIGSTOP');
    try {
      await within(pub.client.publishAsync('fleet/spub/x', 'clean', { qos: 1 }), 2_000, 'PUBACK while worker b is stopped');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitFor(() => live.got.length === 1, 5_000, 'the message on b');
    // A stored session subscribing on b: the PUBACK waits until b has stored the message.
    const stored = await openOn(t, b, hooli, 'sstored', { clean: false });
    await suback(stored.client, { 'fleet/spub/#': { qos: 1 } });
    process.kill(pid, 'SIGSTOP');
    let acked = false;
    const puback = pub.client.publishAsync('fleet/spub/x', 'stored', { qos: 1 }).then(() => (acked = true));
    try {
      await sleep(500);
      assert.equal(acked, false, 'no PUBACK before worker b stored the message');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await within(puback, 5_000, 'PUBACK once b is back');
    await waitFor(() => stored.got.length === 1, 5_000, 'the message in the stored session');
    // Coming back clean ends the stored session.
    await stored.client.endAsync();
    await open(t, hooli, 'sstored', { clean: true });
  });

  test('ok/acl-deny: the profile\'s deny rules, filled in per device, refuse on either worker; `fleet/#` is not sent a denied topic', async (t) => {
    const [a, b] = workers as [number, number];
    const sub1 = await openOn(t, b, acme, 'dsub1', { protocolVersion: 5 });
    const sub2 = await openOn(t, a, acme, 'dsub2');
    assert.deepEqual(await suback(sub1.client, { 'fleet/private/dsub1': { qos: 1 }, 'fleet/private/dsub2': { qos: 1 }, 'fleet/#': { qos: 1 } }), [0x87, 1, 1]);
    assert.deepEqual(await suback(sub2.client, { 'fleet/private/dsub2': { qos: 1 }, 'fleet/#': { qos: 1 } }), [0x80, 1]);

    const pub = await openOn(t, a, acme, 'dpub1', { protocolVersion: 5 });
    await assert.rejects(pub.client.publishAsync('fleet/dpub1/readonly', 'denied', { qos: 1 }), (err: Error & { code?: number }) => {
      assert.equal(err.code, 0x87);
      return true;
    });
    await pub.client.publishAsync('fleet/private/dsub1', 'for everyone but dsub1', { qos: 1 });
    await pub.client.publishAsync('fleet/private/dsub2', 'for everyone but dsub2', { qos: 1 });
    await pub.client.publishAsync('fleet/dsub1/readonly', 'only dsub1 may not write here', { qos: 1 });
    await pub.client.publishAsync('fleet/marker', 'marker', { qos: 1 });
    await waitFor(() => [sub1, sub2].every((o) => o.got.some((m) => m.topic === 'fleet/marker')), 5_000, 'the marker on both workers');
    await sleep(200);
    // sub1 holds `fleet/private/dsub2` and `fleet/#`: one copy of that message (MQTT 5 3.3.4).
    assert.deepEqual(sub1.got.map((m) => m.topic), ['fleet/private/dsub2', 'fleet/dsub1/readonly', 'fleet/marker']);
    assert.deepEqual(sub2.got.map((m) => m.topic), ['fleet/private/dsub1', 'fleet/dsub1/readonly', 'fleet/marker']);
  });

  /** A device of the other tenant publishes on the same topic from worker `w`. */
  const globexPublishes = async (t: TestContext, w: number, topic: string) => {
    const g = await openOn(t, w, globex, 'pub1');
    await g.client.publishAsync(topic, 'from globex', { qos: 1 });
  };

  test('ok/shared-subscription: a $share group with members on both workers gets each message once, the workers taking turns (MQTT 5 4.8.2)', async (t) => {
    const [a, b] = workers as [number, number];
    const m1 = await openOn(t, a, acme, 'share1', { protocolVersion: 5 });
    const m2 = await openOn(t, b, acme, 'share2', { protocolVersion: 5 });
    for (const o of [m1, m2]) {
      assert.deepEqual(await suback(o.client, { '$share/g/fleet/jobs/#': { qos: 1 }, 'fleet/marker': { qos: 1 } }), [1, 1]);
    }
    const pub = await openOn(t, a, acme, 'jobs-pub');
    // Membership reaches the other worker through the primary: until it has, worker a serves the
    // group alone (still once per message).
    await within(
      (async () => {
        while (!m2.got.some((m) => m.topic === 'fleet/jobs/probe')) {
          await pub.client.publishAsync('fleet/jobs/probe', 'p', { qos: 1 });
          await sleep(50);
        }
      })(),
      10_000,
      'worker b to take a turn',
    );
    m1.got.length = 0;
    m2.got.length = 0;
    for (let i = 0; i < 10; i++) await pub.client.publishAsync(`fleet/jobs/${i}`, String(i), { qos: 1 });
    await pub.client.publishAsync('fleet/marker', 'end', { qos: 1 });
    // Each member gets the marker after every job meant for it.
    await waitFor(() => m1.got.some((m) => m.topic === 'fleet/marker') && m2.got.some((m) => m.topic === 'fleet/marker'), 10_000, 'the marker');
    const jobs = (o: Opened) => o.got.filter((m) => m.topic.startsWith('fleet/jobs/')).map((m) => m.payload);
    assert.deepEqual([...jobs(m1), ...jobs(m2)].sort((x, y) => Number(x) - Number(y)), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    assert.equal(jobs(m1).length, 5);
    assert.equal(jobs(m2).length, 5);
  });

  test('ok/will: a device lost on one worker has its will delivered on the other', async (t) => {
    const [a, b] = workers as [number, number];
    const watcher = await openOn(t, b, acme, 'will-watch');
    await suback(watcher.client, { 'fleet/will1/#': { qos: 1 } });
    const dying = await openOn(t, a, acme, 'will1', { will: { topic: 'fleet/will1/status', payload: Buffer.from('gone'), qos: 1, retain: false } });
    dying.client.stream.destroy();
    await waitFor(() => watcher.got.length === 1, 5_000, 'the will on the other worker');
    assert.deepEqual(watcher.got[0], { topic: 'fleet/will1/status', payload: 'gone', retain: false, qos: 1 });
  });

  test('ok/retained: stored on every worker; cleared from either; all workers end on the same last write', async (t) => {
    const [a, b] = workers as [number, number];
    const pub = await openOn(t, a, acme, 'ret1');
    await pub.client.publishAsync('fleet/ret1/state', 'online', { qos: 1, retain: true });

    const late = await openOn(t, b, acme, 'ret2');
    await suback(late.client, { 'fleet/ret1/#': { qos: 1 } });
    await waitFor(() => late.got.length === 1, 5_000, 'retained message on the other worker');
    assert.deepEqual(late.got[0], { topic: 'fleet/ret1/state', payload: 'online', retain: true, qos: 1 });

    // Another tenant's subscriber on either worker has no such retained message.
    const g = await openOn(t, b, globex, 'ret2');
    await suback(g.client, { 'fleet/#': { qos: 1 } });
    await sleep(300);
    assert.equal(g.got.length, 0);

    // Cleared on b; a new subscriber on a finds nothing.
    await late.client.publishAsync('fleet/ret1/state', '', { qos: 1, retain: true });
    await sleep(200);
    const check = await openOn(t, a, acme, 'ret3');
    await suback(check.client, { 'fleet/ret1/#': { qos: 1 } });
    await sleep(300);
    assert.equal(check.got.length, 0);

    // Both workers write the same retained topic at once, many times: they agree on the last one.
    const w1 = await openOn(t, a, acme, 'race1');
    const w2 = await openOn(t, b, acme, 'race2');
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => [
        w1.client.publishAsync('fleet/race/value', `a${i}`, { qos: 0, retain: true }),
        w2.client.publishAsync('fleet/race/value', `b${i}`, { qos: 0, retain: true }),
      ]).flat(),
    );
    await sleep(500);
    const seen: string[] = [];
    for (const w of [a, b]) {
      const r = await openOn(t, w, acme, `read${w}`);
      await suback(r.client, { 'fleet/race/value': { qos: 0 } });
      await waitFor(() => r.got.length === 1, 5_000, 'retained value');
      seen.push(r.got[0]!.payload);
    }
    assert.equal(seen[0], seen[1], `workers disagree on the retained value: ${seen.join(' / ')}`);
  });

  test('ok/takeover: the same client id of the same tenant on the other worker ends the first connection', async (t) => {
    const [a, b] = workers as [number, number];
    const first = await openOn(t, a, acme, 'take1', { protocolVersion: 5 });
    const bystander = await openOn(t, a, globex, 'take1', { protocolVersion: 5 });
    const disconnected = new Promise<number | undefined>((resolve) => first.client.once('disconnect', (p) => resolve(p.reasonCode)));
    const closed = new Promise<void>((resolve) => first.client.once('close', () => resolve()));

    const second = await openOn(t, b, acme, 'take1', { protocolVersion: 5 });
    assert.equal(await within(disconnected, 5_000, 'DISCONNECT'), 0x8e, 'DISCONNECT with Session taken over');
    await within(closed, 5_000, 'the first connection to close');
    assert.ok(second.client.connected);
    assert.ok(bystander.client.connected, 'another tenant\'s client with the same id stays');

    // The session now lives on b: it gets what is published on a.
    await suback(second.client, { 'fleet/take1/#': { qos: 1 } });
    const pub = await openOn(t, a, acme, 'take-pub');
    await pub.client.publishAsync('fleet/take1/cmd', 'hello', { qos: 1 });
    await waitFor(() => second.got.length === 1, 5_000, 'message on the new connection');
    await sleep(200);
    assert.ok(second.client.connected, 'no stale take-over closed the new connection');
  });

  test('ok/persistent-session: resumed on the other worker with its subscriptions and queued messages', async (t) => {
    const [a, b] = workers as [number, number];
    const first = await openOn(t, a, acme, 'persist1', { clean: false });
    assert.equal(first.connack.sessionPresent, false);
    await suback(first.client, { 'fleet/persist1/#': { qos: 1 } });
    await first.client.endAsync();

    // Published on b while the device is away: queued in its session on a.
    const pub = await openOn(t, b, acme, 'persist-pub');
    await pub.client.publishAsync('fleet/persist1/cmd', 'while away', { qos: 1 });
    await sleep(200);

    const back = await openOn(t, b, acme, 'persist1', { clean: false });
    assert.equal(back.connack.sessionPresent, true, 'CONNACK session present');
    await waitFor(() => back.got.length === 1, 5_000, 'the queued message');
    assert.deepEqual(back.got[0], { topic: 'fleet/persist1/cmd', payload: 'while away', retain: false, qos: 1 });

    // The subscription came along: a message published on a reaches the session on b.
    await pub.client.publishAsync('fleet/persist1/cmd', 'after', { qos: 1 });
    await waitFor(() => back.got.length === 2, 5_000, 'a message after the move');

    // Coming back clean on a ends the session on b.
    const clean = await openOn(t, a, acme, 'persist1', { clean: true });
    assert.equal(clean.connack.sessionPresent, false);
  });

  test('ok/kill-switch: disabling a device or suspending a tenant closes its sessions on every worker', async (t) => {
    const [a, b] = workers as [number, number];
    const onA = await openOn(t, a, acme, 'kill1');
    const onB = await openOn(t, b, acme, 'kill2');
    const closedA = new Promise<void>((resolve) => onA.client.once('close', () => resolve()));
    const closedB = new Promise<void>((resolve) => onB.client.once('close', () => resolve()));

    await api('PUT', `/tenant/tenants/acme/devices/${await deviceId('acme', 'kill2')}`, tenantLogin('acme'), { status: 'DISABLED' });
    await within(closedB, 5_000, 'the session on the other worker to close');
    assert.ok(onA.client.connected, 'the other device stays');

    await api('PUT', `/tenant/tenants/acme/devices/${await deviceId('acme', 'kill1')}`, tenantLogin('acme'), { status: 'DISABLED' });
    await within(closedA, 5_000, 'the session to close');

    // A whole tenant, with one session on each worker.
    const i1 = await openOn(t, a, initech, 'tenant1');
    const i2 = await openOn(t, b, initech, 'tenant2');
    const bystander = await openOn(t, b, globex, 'tenant2');
    const both = Promise.all([i1, i2].map((o) => new Promise<void>((resolve) => o.client.once('close', () => resolve()))));
    await api('PUT', '/tenant/tenants/initech', MANAGEMENT_LOGIN, { status: 'SUSPENDED' });
    await within(both, 5_000, 'the tenant\'s sessions to close');
    assert.ok(bystander.client.connected);
    await api('PUT', '/tenant/tenants/initech', MANAGEMENT_LOGIN, { status: 'ACTIVE' });
  });

  test('ok/metrics: one scrape of the main process counts every worker\'s connections and verifier decisions', async () => {
    await sleep(1_100); // the workers' statistics reach the main process every second
    const perWorker = await listener.workerStats();
    const accepted = perWorker.reduce((n, s) => n + s.accepted, 0);
    assert.ok(perWorker.every((s) => s.accepted > 0), 'both workers took connections');
    const text = await (await fetch(`${server.httpAddress}/metrics`)).text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    assert.equal(value(/^certgate_mqtt_connects_total\{outcome="accepted"\} (\d+)$/m), accepted);
    // Every accepted CONNECT was an allow decision of the verifier of its worker.
    assert.ok(value(/^certgate_verifier_decisions_total\{result="allow",reason=""\} (\d+)$/m) >= accepted);
    assert.ok(value(/^certgate_verifier_duration_seconds_count\{result="allow"\} (\d+)$/m) >= accepted);
  });

  test('ok/metrics-denied: publications the ACL refuses on either worker are counted in one scrape, per tenant and reason', async (t) => {
    const [a, b] = workers as [number, number];
    const scrape = async (tenant: string) => {
      const text = await (await fetch(`${server.httpAddress}/metrics`)).text();
      return Number(new RegExp(`^certgate_mqtt_publish_denied_total\\{tenant="${tenant}",reason="acl"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    };
    const before = { acme: await scrape('acme'), globex: await scrape('globex') };
    const onA = await openOn(t, a, acme, 'denied1');
    const onB = await openOn(t, b, acme, 'denied2');
    const other = await openOn(t, b, globex, 'denied3');
    // MQTT 3.1.1 has no way to refuse a publication: it is acknowledged and dropped.
    await onA.client.publishAsync('secret/denied1', 'x', { qos: 1 });
    await onB.client.publishAsync('secret/denied2', 'x', { qos: 1 });
    await onB.client.publishAsync('devices/denied1/temp', 'not its own device', { qos: 1 });
    await other.client.publishAsync('secret/denied3', 'x', { qos: 1 });
    await onA.client.publishAsync('fleet/denied1/temp', 'allowed', { qos: 1 });
    // The PUBACKs are back, so each worker has counted; the main process asks them at scrape time.
    assert.equal(await scrape('acme'), before.acme + 3);
    assert.equal(await scrape('globex'), before.globex + 1);
  });

  test('ok/restart: a worker that dies is replaced, and the new one has the retained messages', async (t) => {
    const pub = await landed(t, acme, 'restart1');
    await pub.client.publishAsync('fleet/restart1/state', 'kept', { qos: 1, retain: true });
    await sleep(200);
    const victim = Object.values(cluster.workers ?? {}).find((w) => w?.id === workers[1])!;
    victim.process.kill('SIGKILL');
    const until = Date.now() + 15_000;
    let stats = await listener.workerStats();
    while (!(stats.length === 2 && stats.some((s) => !workers.includes(s.worker)))) {
      assert.ok(Date.now() < until, 'no worker replaced the one that died');
      await sleep(100);
      stats = await listener.workerStats();
    }
    const fresh = stats.find((s) => !workers.includes(s.worker))!.worker;
    workers = stats.map((s) => s.worker);
    const sub = await openOn(t, fresh, acme, 'restart2');
    await suback(sub.client, { 'fleet/restart1/#': { qos: 1 } });
    await waitFor(() => sub.got.length === 1, 5_000, 'retained message on the new worker');
    assert.equal(sub.got[0]!.payload, 'kept');
  });
});
