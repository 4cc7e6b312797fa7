/**
 * `npm start` with the MQTT listener in two worker processes next to the API: each worker has its
 * own verifier and caches, kept fresh by PostgreSQL notifications. What the API has just written
 * must hold on the next CONNECT whichever worker takes it, and a kill reaches every worker.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { closedWithin, connectDevice, refusedWith } from '../helpers/mqtt-client.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { apiOk, startService, until, type Service } from '../helpers/service.js';
import { MGMT, createTenant, cumulocityCa, cumulocityDevice, openssl, trust, type TenantLogin } from './harness.js';

describe('e2e: npm start with MQTT workers', () => {
  let service: Service;
  let db: TestDatabase;
  let dir: string;
  let serverCa: Buffer;
  before(async () => {
    db = await createTestDatabase();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-e2e-co-'));
    service = await startService({
      env: { DATABASE_URL: db.url, MANAGEMENT_ADMIN_PASSWORD: MGMT.split(':')[1]!, MQTT_WORKERS: '2' },
    });
    serverCa = await fs.readFile(service.serverCaPath);
  });
  after(async () => {
    await service?.stop();
    await db?.drop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('ok/provisioned-at-once: a device and its self-signed certificate added through the API connect right away', async (t) => {
    // ThingsBoard's "X.509 Certificate" strategy as a provisioning script runs it: create the
    // device, list its certificate, connect, with no pause.
    const tenant = await createTenant(service.httpUrl, 'prov');
    for (let i = 0; i < 20; i++) {
      const d = path.join(dir, `prov-${i}`);
      await fs.mkdir(d);
      await openssl(d, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'key.pem',
        '-out', 'cert.pem', '-days', '30', '-subj', `/CN=sensor-${i}`);
      const cert = await fs.readFile(path.join(d, 'cert.pem'), 'utf8');
      const device = await apiOk(service.httpUrl, 'POST', `${tenant.base}/devices`, tenant.auth, { name: `sensor-${i}` });
      await apiOk(service.httpUrl, 'POST', `${tenant.base}/devices/${device.id}/credentials`, tenant.auth, {
        credentialsType: 'X509_CERTIFICATE',
        credentialsValue: cert,
      });
      const client = await connectDevice(t, { port: service.mqttPort, serverCa, cert, key: await fs.readFile(path.join(d, 'key.pem')), clientId: `sensor-${i}` });
      client.end(true);
    }
  });

  test('ok/kill-everywhere: disabling a device closes its sessions on every worker within 5 s', async (t) => {
    const tenant = await createTenant(service.httpUrl, 'kill');
    const profile = await apiOk(service.httpUrl, 'POST', `${tenant.base}/device-profiles`, tenant.auth, { name: 'any client id', clientIdPolicy: 'ANY' });
    const ca = await cumulocityCa(dir, 'Co-located CA');
    await trust(service.httpUrl, tenant, ca.certPem, { deviceProfileId: profile.id });
    const tlsOf = async (cn: string) => {
      const d = await cumulocityDevice(ca, cn);
      return { port: service.mqttPort, serverCa, cert: await fs.readFile(d.chainPath), key: await fs.readFile(d.keyPath) };
    };
    const tls1 = await tlsOf('dev1');
    const tls2 = await tlsOf('dev2');
    // Eight sessions of dev1 and four of dev2: the two workers take their share of them.
    const dev1 = [];
    const dev2 = [];
    for (let i = 0; i < 8; i++) dev1.push(await connectDevice(t, { ...tls1, clientId: `dev1-${i}` }));
    for (let i = 0; i < 4; i++) dev2.push(await connectDevice(t, { ...tls2, clientId: `dev2-${i}` }));
    const closed = dev1.map((c) => closedWithin(c));
    const [device] = (await apiOk(service.httpUrl, 'GET', `${tenant.base}/devices?name=dev1`, tenant.auth)).devices;
    await apiOk(service.httpUrl, 'PUT', `${tenant.base}/devices/${device.id}`, tenant.auth, { status: 'DISABLED' });
    const times = await Promise.all(closed.map((c) => Promise.race([c, new Promise<number>((r) => setTimeout(() => r(Infinity), 7_000))])));
    for (const ms of times) assert.ok(ms < 5_000, `a dev1 session closed after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(dev2.map((c) => c.connected), [true, true, true, true], 'dev2 keeps its sessions');
    // Refused on whichever worker takes the next CONNECT.
    for (let i = 0; i < 4; i++) assert.equal(await refusedWith(t, { ...tls1, clientId: `again-${i}` }), 5);
  });

  test('ok/shared-ca-upload-takes-nothing: another tenant uploading a CA keeps its devices where they were; a proof of possession moves them', async (t) => {
    const owner = await createTenant(service.httpUrl, 'owner');
    const squatter = await createTenant(service.httpUrl, 'squat');
    const ca = await cumulocityCa(dir, 'Owner Devices CA');
    await trust(service.httpUrl, owner, ca.certPem);
    const tlsOf = async (cn: string) => {
      const d = await cumulocityDevice(ca, cn);
      return { port: service.mqttPort, serverCa, cert: await fs.readFile(d.chainPath), key: await fs.readFile(d.keyPath), clientId: cn };
    };
    const filedUnder = async (tenant: TenantLogin, name: string) =>
      (await apiOk(service.httpUrl, 'GET', `${tenant.base}/auth-events?pageSize=50&deviceName=${name}&result=allow`, tenant.auth)).events.length;
    const meter1 = await tlsOf('meter-1');
    (await connectDevice(t, meter1)).end(true);

    // The squatter uploads the owner's public CA certificate, without its key: whichever worker
    // takes them, the owner's devices, known or new, still connect as the owner's (they used to be
    // refused as AMBIGUOUS_TENANT).
    await trust(service.httpUrl, squatter, ca.certPem);
    for (let i = 0; i < 4; i++) (await connectDevice(t, { ...meter1, clientId: 'meter-1' })).end(true);
    for (let i = 2; i < 6; i++) (await connectDevice(t, await tlsOf(`meter-${i}`))).end(true);
    await until(async () => (await filedUnder(owner, 'meter-5')) === 1, 15_000, 'the owner\'s auth event');
    assert.equal(await filedUnder(squatter, 'meter-5'), 0);

    // The squatter proves possession of the CA key (so it is not a squatter): a device with no
    // tenant hint now goes to it, and the owner's devices name the owner.
    const fingerprint = (await apiOk(service.httpUrl, 'GET', `${squatter.base}/trusted-certificates`, squatter.auth)).certificates[0].fingerprint;
    const pop = `${squatter.base}/trusted-certificates-pop/${fingerprint}`;
    const code = (await apiOk(service.httpUrl, 'POST', `${pop}/verification-code`, squatter.auth, undefined, 200)).proofOfPossessionUnsignedVerificationCode;
    const signature = crypto.sign('sha256', Buffer.from(code), await fs.readFile(path.join(ca.dir, 'caKey.pem'))).toString('base64');
    await apiOk(service.httpUrl, 'POST', `${pop}/pop`, squatter.auth, { proofOfPossessionSignedVerificationCode: signature }, 200);
    // Auth events are written behind: wait for the one decision to show up under either tenant.
    const tenantOf = async (name: string) => {
      let where = '';
      await until(async () => {
        where = (await filedUnder(squatter, name)) ? 'squatter' : (await filedUnder(owner, name)) ? 'owner' : '';
        return where !== '';
      }, 15_000, `the auth event of ${name}`);
      return where;
    };
    // Every change committed before a decision begins is part of it, on every worker.
    for (let i = 0; i < 3; i++) {
      (await connectDevice(t, await tlsOf(`moved-${i}`))).end(true);
      assert.equal(await tenantOf(`moved-${i}`), 'squatter', `moved-${i}`);
    }
    (await connectDevice(t, { ...(await tlsOf('meter-9')), username: owner.id })).end(true);
    assert.equal(await tenantOf('meter-9'), 'owner', 'the hint names the owner');
  });

  test('ok/tenant-recreated-empty: a deleted tenant leaves no retained message, session, queued message or will on any worker', async (t) => {
    const first = await createTenant(service.httpUrl, 'reborn');
    const setUp = async (tenant: TenantLogin) => {
      const profile = await apiOk(service.httpUrl, 'POST', `${tenant.base}/device-profiles`, tenant.auth, {
        name: 'any client id',
        clientIdPolicy: 'ANY',
        acl: { publish: ['#'], subscribe: ['#'] },
      });
      const ca = await cumulocityCa(dir, `Reborn CA ${tenant.id}`);
      await trust(service.httpUrl, tenant, ca.certPem, { deviceProfileId: profile.id });
      const d = await cumulocityDevice(ca, 'dev1');
      return { port: service.mqttPort, serverCa, cert: await fs.readFile(d.chainPath), key: await fs.readFile(d.keyPath) };
    };
    const oldTls = await setUp(first);
    const collectAll = (c: Awaited<ReturnType<typeof connectDevice>>) => {
      const got: string[] = [];
      c.on('message', (topic, payload) => got.push(`${topic} ${payload.toString()}`));
      return got;
    };

    // The old tenant's state: a retained message (seen on both workers: connections alternate),
    // a persistent session with a queued message, and a will waiting out its delay.
    const pub = await connectDevice(t, { ...oldTls, clientId: 'pub' });
    await pub.publishAsync('old/retained', 'secret', { qos: 1, retain: true });
    for (let i = 0; i < 2; i++) {
      const seer = await connectDevice(t, { ...oldTls, clientId: `seer-${i}` });
      const got = collectAll(seer);
      await seer.subscribeAsync('old/#', { qos: 1 });
      await until(() => got.includes('old/retained secret'), 10_000, 'the retained message on this worker');
      seer.end(true);
    }
    const keeper = await connectDevice(t, { ...oldTls, clientId: 'keeper', clean: false });
    await keeper.subscribeAsync('old/#', { qos: 1 });
    await keeper.endAsync();
    await pub.publishAsync('old/queued', 'for keeper', { qos: 1 });
    const dying = await connectDevice(t, {
      ...oldTls,
      clientId: 'dying',
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 120 },
      will: { topic: 'old/will', payload: Buffer.from('late'), qos: 1, retain: true, properties: { willDelayInterval: 2 } },
    });
    const willDue = Date.now() + 2_000;
    dying.stream.destroy();

    await apiOk(service.httpUrl, 'DELETE', first.base, MGMT);
    await until(() => !pub.connected, 10_000, 'the old tenant\'s connection to close');
    await apiOk(service.httpUrl, 'POST', '/tenant/tenants', MGMT, {
      id: first.id,
      company: 'reborn Inc',
      domain: `${first.id}.example.com`,
      adminName: 'admin',
      adminPass: 'tenant-admin-pass',
    });
    const newTls = await setUp(first);
    // Past the old will's delay: had it survived, it would be retained by now.
    await new Promise((r) => setTimeout(r, Math.max(0, willDue - Date.now() + 500)));
    for (let i = 0; i < 2; i++) {
      const c = await connectDevice(t, { ...newTls, clientId: 'keeper', clean: false });
      const got = collectAll(c);
      await c.subscribeAsync('#', { qos: 1 });
      // Retained messages come right after SUBACK, before anything published later.
      await c.publishAsync('new/marker', String(i), { qos: 1 });
      await until(() => got.includes(`new/marker ${i}`), 10_000, 'the marker');
      assert.deepEqual(got, [`new/marker ${i}`], 'nothing of the old tenant on this worker');
      c.end(true);
      await until(() => !c.connected, 5_000, 'the client to close');
    }
  });
});
