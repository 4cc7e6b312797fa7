/**
 * Live sessions decided again after missed changes, at scale: 1,000 devices of one tenant hold
 * live sessions on the listener (certgate's own server, listener in process, real verifier on a
 * real PostgreSQL, MQTT.js clients over real TLS sockets). A device is disabled in a transaction
 * that moves the change counter but whose notification is lost; the listener finds the counter
 * ahead (within a second), drops its caches and decides every live session again. The disabled
 * device's session is closed within 5 seconds of the commit, every other session stays, and the
 * time the re-check of all sessions took is printed.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import pino from 'pino';
import { createTrustingTenant, startTestServer, testServerFiles } from '../helpers/server.js';
import type { Credentials } from '../../src/certs/certs-service.js';
import { device, serverCredentials, tenantPki, withoutRoot } from './harness.js';

const DEVICES = Number(process.env.RECHECK_SESSIONS ?? 1000);
/** Clients connecting at once while the sessions are set up. */
const CONNECTING = 100;

test(`${DEVICES} live sessions decided again after missed changes: the disabled device's closed within 5 s, the others kept`, { timeout: 600_000 }, async (t) => {
  const { ca: serverCa, server: serverCert } = await serverCredentials();
  const { db, dir, cleanups } = await testServerFiles(t, 'certgate-mqtt-recheck-', serverCert);
  // The listener's log lines, parsed, for its report of the re-check.
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (!line.includes('decided again')) continue;
        try {
          lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not a log line
        }
      }
      done();
    },
  });
  const server = await startTestServer(db.url, dir, { MQTT_WORKERS: '1', LOG_LEVEL: 'info' }, 'all', pino({ level: 'info' }, sink));
  cleanups.push(() => server.close());

  const acme = await tenantPki('acme');
  await createTrustingTenant(server.httpAddress!, acme);
  const setupStarted = performance.now();
  const names = Array.from({ length: DEVICES }, (_, i) => `fleet-${String(i).padStart(4, '0')}`);
  const creds: Credentials[] = [];
  for (const name of names) creds.push(await device(acme.intermediate, name));

  const certsMade = performance.now();
  // The sessions, a hundred connecting at a time (the storm itself is storm.test.ts's matter).
  const clients: MqttClient[] = [];
  cleanups.push(() => Promise.all(clients.map((c) => c.endAsync(true).catch(() => {}))));
  const connectOne = (i: number) =>
    new Promise<void>((resolve, reject) => {
      const client = mqtt.connect(`mqtts://localhost:${server.mqttPort}`, {
        ca: serverCa.certPem,
        key: creds[i]!.keyPem,
        cert: withoutRoot(creds[i]!),
        clientId: names[i]!,
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 60_000,
        keepalive: 0,
      });
      clients[i] = client;
      client.once('connect', () => resolve());
      client.once('error', reject);
      client.once('close', () => reject(new Error(`${names[i]} closed before CONNACK`)));
    });
  let next = 0;
  await Promise.all(
    Array.from({ length: CONNECTING }, async () => {
      for (let i = next++; i < DEVICES; i = next++) await connectOne(i);
    }),
  );
  console.log(`# setup: ${DEVICES} certificates in ${((certsMade - setupStarted) / 1000).toFixed(1)} s, sessions connected in ${((performance.now() - certsMade) / 1000).toFixed(1)} s`);
  const closedIds: string[] = [];
  clients.forEach((c, i) => c.on('close', () => closedIds.push(names[i]!)));
  assert.equal(server.mqtt!.stats.sessions, DEVICES, 'every device holds a live session');

  // The disabled device, and the change counter moved in the same transaction, with no
  // notification: the change of a process whose LISTEN connection was down.
  const victim = names[Math.floor(DEVICES / 2)]!;
  const store = new pg.Client({ connectionString: db.url });
  store.on('error', () => {});
  await store.connect();
  cleanups.push(() => store.end());
  await store.query('BEGIN');
  await store.query(`UPDATE "Device" SET status = 'DISABLED' WHERE "tenantId" = 'acme' AND name = $1`, [victim]);
  await store.query('UPDATE "ChangeCounter" SET seq = seq + 1 WHERE id = 1');
  await store.query('COMMIT');
  const committed = Date.now();

  const started = Date.now();
  while (!lines.some((l) => l.msg === 'live sessions decided again after missed changes') && Date.now() - started < 60_000) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const report = lines.find((l) => l.msg === 'live sessions decided again after missed changes');
  assert.ok(report, 'the listener decided its sessions again');
  const victimClosedAt = await new Promise<number>((resolve) => {
    const c = clients[names.indexOf(victim)]!;
    if (!c.connected) resolve(Date.now());
    else c.once('close', () => resolve(Date.now()));
  });
  // Closings of the session are under way on the socket: a moment for the clients to see them.
  await new Promise((r) => setTimeout(r, 200));
  console.log(
    `# ${DEVICES} live sessions decided again in ${report.ms} ms (${report.closed} closed, ${report.kept} kept); ` +
      `the disabled device's session closed ${victimClosedAt - committed} ms after the commit`,
  );
  assert.deepEqual(closedIds, [victim], 'only the disabled device\'s session closed');
  assert.equal(report.sessions, DEVICES);
  assert.equal(report.closed, 1);
  assert.ok(victimClosedAt - committed <= 5_000, `closed ${victimClosedAt - committed} ms after the commit`);
});
