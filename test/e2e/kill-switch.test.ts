/**
 * The kill switch across processes: a change made through `certgate api` closes
 * the live sessions it concerns on `certgate mqtt`, a separate process that learns of it through
 * PostgreSQL LISTEN/NOTIFY, within 5 seconds, and leaves every other session alone. The device
 * cannot come back afterwards.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { MqttClient } from 'mqtt';
import pg from 'pg';
import { closedWithin, connectDevice, refusedWith } from '../helpers/mqtt-client.js';
import { api, apiOk } from '../helpers/service.js';
import {
  MGMT,
  authEvents,
  createTenant,
  cumulocityCa,
  cumulocityDevice,
  mosquitto,
  splitForFile,
  thingsboardChain,
  tlsOf,
  trust,
  type DeviceFiles,
  type Split,
  type TenantLogin,
} from './harness.js';

const DEADLINE_MS = 5_000;

describe('e2e: kill switch with certgate api and certgate mqtt apart', () => {
  const env = splitForFile();

  interface Fleet {
    tenant: TenantLogin;
    caFingerprint: string;
    dev1: DeviceFiles;
    dev2: DeviceFiles;
    /** Live sessions: dev1 over MQTT.js 3.1.1 and 5, dev2 over MQTT.js. */
    c1: MqttClient;
    c1v5: MqttClient;
    c2: MqttClient;
    /** Another tenant's device, which no change here may touch. */
    bystander: MqttClient;
  }

  /** A tenant with a Cumulocity-style CA, two auto-registered devices, and sessions open. */
  async function fleet(t: TestContext, s: Split, name: string): Promise<Fleet> {
    const tenant = await createTenant(s.http, name);
    const ca = await cumulocityCa(s.dir, `${name} CA`);
    const caFingerprint = await trust(s.http, tenant, ca.certPem);
    const dev1 = await cumulocityDevice(ca, 'dev1');
    const dev2 = await cumulocityDevice(ca, 'dev2');
    const c1 = await connectDevice(t, { ...(await tlsOf(s, dev1)), clientId: 'dev1' });
    const c1v5 = await connectDevice(t, { ...(await tlsOf(s, dev1)), clientId: 'd:dev1', protocolVersion: 5 });
    const c2 = await connectDevice(t, { ...(await tlsOf(s, dev2)), clientId: 'dev2' });
    const other = await createTenant(s.http, `${name}-x`);
    const otherCa = await cumulocityCa(s.dir, `${name} bystander CA`);
    await trust(s.http, other, otherCa.certPem);
    const bystander = await connectDevice(t, { ...(await tlsOf(s, await cumulocityDevice(otherCa, 'dev1'))), clientId: 'dev1' });
    return { tenant, caFingerprint, dev1, dev2, c1, c1v5, c2, bystander };
  }

  async function deviceId(s: Split, f: Fleet, name: string): Promise<string> {
    return (await apiOk(s.http, 'GET', `${f.tenant.base}/devices?name=${name}`, f.tenant.auth)).devices[0].id as string;
  }

  /** Runs the change and checks that exactly `drops` close, each within the deadline. */
  async function expectDrops(f: Fleet, drops: MqttClient[], change: () => Promise<void>): Promise<void> {
    const all = [f.c1, f.c1v5, f.c2, f.bystander];
    const waits = drops.map((c) => closedWithin(c));
    const v5Reason = drops.includes(f.c1v5) ? new Promise<number | undefined>((r) => f.c1v5.once('disconnect', (p) => r(p.reasonCode))) : undefined;
    await change();
    const times = await Promise.all(waits.map((w) => Promise.race([w, new Promise<number>((r) => setTimeout(() => r(Infinity), DEADLINE_MS + 2_000))])));
    for (const ms of times) assert.ok(ms < DEADLINE_MS, `session closed after ${ms} ms`);
    if (v5Reason) assert.equal(await v5Reason, 0x98, 'MQTT 5 hears "administrative action"');
    await new Promise((r) => setTimeout(r, 200));
    for (const c of all) assert.equal(c.connected, !drops.includes(c), `${c.options.clientId} connected`);
  }

  test('ok/ca-disabled: PUT status DISABLED on the trusted certificate drops its sessions, not others', async (t) => {
    const s = env();
    const f = await fleet(t, s, 'ks-ca');
    await expectDrops(f, [f.c1, f.c1v5, f.c2], async () => {
      await apiOk(s.http, 'PUT', `${f.tenant.base}/trusted-certificates/${f.caFingerprint}`, f.tenant.auth, { status: 'DISABLED' });
    });
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, f.dev1)), clientId: 'dev1' }), 5);
    const [latest] = await authEvents(s.http, f.tenant, 'result=deny', 1);
    assert.equal(latest!.reason, 'TRUSTED_CERTIFICATE_DISABLED');
    // Enabled again, the device is back.
    await apiOk(s.http, 'PUT', `${f.tenant.base}/trusted-certificates/${f.caFingerprint}`, f.tenant.auth, { status: 'ENABLED' });
    (await connectDevice(t, { ...(await tlsOf(s, f.dev1)), clientId: 'dev1' })).end(true);
  });

  test('ok/ca-deleted: DELETE of the trusted certificate drops its sessions', async (t) => {
    const s = env();
    const f = await fleet(t, s, 'ks-cadel');
    await expectDrops(f, [f.c1, f.c1v5, f.c2], async () => {
      await apiOk(s.http, 'DELETE', `${f.tenant.base}/trusted-certificates/${f.caFingerprint}`, f.tenant.auth);
    });
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, f.dev2)), clientId: 'dev2' }), 5);
  });

  test('ok/serial-revoked: PUT settings/crl with the leaf serial drops that certificate\'s sessions only', async (t) => {
    const s = env();
    const f = await fleet(t, s, 'ks-crl');
    // openssl prints the serial in upper case; the API compares without case or leading zeros.
    await expectDrops(f, [f.c1, f.c1v5], async () => {
      await apiOk(s.http, 'PUT', `${f.tenant.base}/trusted-certificates/settings/crl`, f.tenant.auth, {
        crls: [{ serialNumberInHex: `00${f.dev1.serialHex.toLowerCase()}`, revocationDate: new Date().toISOString() }],
      });
    });
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, f.dev1)), clientId: 'dev1' }), 5);
    const [latest] = await authEvents(s.http, f.tenant, 'result=deny', 1);
    assert.equal(latest!.reason, 'CERTIFICATE_REVOKED');
  });

  test('ok/device-disabled: PUT status DISABLED on the device drops its sessions only', async (t) => {
    const s = env();
    const f = await fleet(t, s, 'ks-dev');
    const id = await deviceId(s, f, 'dev2');
    await expectDrops(f, [f.c2], async () => {
      await apiOk(s.http, 'PUT', `${f.tenant.base}/devices/${id}`, f.tenant.auth, { status: 'DISABLED' });
    });
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, f.dev2)), clientId: 'dev2' }), 5);
    const [latest] = await authEvents(s.http, f.tenant, 'result=deny', 1);
    assert.equal(latest!.reason, 'DEVICE_DISABLED');
  });

  test('ok/device-deleted: DELETE of the device drops its sessions', async (t) => {
    const s = env();
    const f = await fleet(t, s, 'ks-devdel');
    const id = await deviceId(s, f, 'dev1');
    await expectDrops(f, [f.c1, f.c1v5], async () => {
      await apiOk(s.http, 'DELETE', `${f.tenant.base}/devices/${id}`, f.tenant.auth);
    });
  });

  test('ok/tenant-suspended: PUT status SUSPENDED drops every session of the tenant, and a mosquitto_sub', async (t) => {
    const s = env();
    const f = await fleet(t, s, 'ks-ten');
    const sub = mosquitto('mosquitto_sub', s, f.dev2, ['-i', 'd:dev2', '-t', 'devices/dev2/#', '-W', '30']);
    await authEvents(s.http, f.tenant, 'result=allow&deviceName=dev2', 2);
    const started = Date.now();
    await expectDrops(f, [f.c1, f.c1v5, f.c2], async () => {
      await apiOk(s.http, 'PUT', `/tenant/tenants/${f.tenant.id}`, MGMT, { status: 'SUSPENDED' });
    });
    const code = await sub.exited;
    assert.ok(Date.now() - started < DEADLINE_MS + 1_000, 'mosquitto_sub was cut off too');
    assert.notEqual(code, 0, sub.output());
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, f.dev1)), clientId: 'dev1' }), 5);
    // The suspended tenant's own users are locked out; the management tenant reads its events.
    const [latest] = await authEvents(s.http, f.tenant, 'result=deny', 1, MGMT);
    assert.equal(latest!.reason, 'TENANT_SUSPENDED');
    // Active again, it is let back in.
    await apiOk(s.http, 'PUT', `/tenant/tenants/${f.tenant.id}`, MGMT, { status: 'ACTIVE' });
    (await connectDevice(t, { ...(await tlsOf(s, f.dev1)), clientId: 'dev1' })).end(true);
  });

  test('ok/intermediate-disabled: a ThingsBoard-style intermediate disabled drops the chain\'s sessions', async (t) => {
    const s = env();
    const tenant = await createTenant(s.http, 'ks-tb');
    const chain = await thingsboardChain(s.dir);
    const profile = await apiOk(s.http, 'POST', `${tenant.base}/device-profiles`, tenant.auth, {
      name: 'chain',
      identity: { source: 'COMMON_NAME', pattern: '^(.+)\\.group\\.company\\.com$' },
      clientIdPolicy: 'ANY',
    });
    const fp = await trust(s.http, tenant, chain.intermediatePem, { autoRegistrationEnabled: true, deviceProfileId: profile.id });
    const dev = await chain.device('device123.group.company.com');
    const client = await connectDevice(t, { ...(await tlsOf(s, dev)), clientId: 'anything' });
    const closed = closedWithin(client);
    await apiOk(s.http, 'PUT', `${tenant.base}/trusted-certificates/${fp}`, tenant.auth, { status: 'DISABLED' });
    const ms = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(Infinity), DEADLINE_MS + 2_000))]);
    assert.ok(ms < DEADLINE_MS, `closed after ${ms} ms`);
    const r = await api(s.http, 'GET', `${tenant.base}/devices?name=device123`, tenant.auth);
    assert.equal(r.body.devices[0].status, 'ACTIVE', 'the device itself is untouched');
  });

  test('fail/notification-lost: a change whose NOTIFY never arrives still closes the sessions once the feed is back', async (t) => {
    const s = env();
    const f = await fleet(t, s, 'ks-lost');
    const db = new pg.Client({ connectionString: s.databaseUrl });
    await db.connect();
    db.on('error', () => {});
    t.after(() => db.end());
    await expectDrops(f, [f.c2], async () => {
      // Written as a change is, but without its notification: no process hears of it.
      await db.query('BEGIN');
      await db.query(`UPDATE "Device" SET status = 'DISABLED' WHERE "tenantId" = $1 AND name = 'dev2'`, [f.tenant.id]);
      await db.query('UPDATE "ChangeCounter" SET seq = seq + 1 WHERE id = 1');
      await db.query('COMMIT');
      // The LISTEN connections drop (a restarted database, a proxy timeout): once back, each
      // process finds the counter ahead of what it applied and decides its sessions again.
      await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'certgate change feed'`);
    });
    assert.equal(await refusedWith(t, { ...(await tlsOf(s, f.dev2)), clientId: 'dev2' }), 5);
  });
});
