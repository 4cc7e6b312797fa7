/**
 * No allow during an outage: while PostgreSQL is stopped, or frozen (SIGSTOP), devices that were
 * allowed a moment before get CONNACK "server unavailable" (3.1.1: 3, MQTT 5: 0x88) from every
 * MQTT worker, and /verifier/v1/authenticate answers 503, for the whole outage; a frozen database
 * answers 503 within 5 seconds (each request timed). Once the database is back the same devices
 * are allowed again.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ROUNDS,
  WORKERS,
  attempt,
  createTenant,
  faultEnvForFile,
  makeDevice,
  report,
  tenantId,
  until,
  verify,
  waitReady,
  type Attempt,
  type Device,
  type FaultEnv,
  type VerifierAnswer,
} from './harness.js';

/** How long each outage is probed (the database stays down at least this long). */
const OUTAGE_MS = 6_000 * ROUNDS;
const FROZEN_503_WITHIN_MS = 5_000;
/** Decisions on each known device before the outage, per worker and over HTTP. */
const WARM_DECISIONS = 3;

describe('faults: no allow while the database is down', () => {
  const env = faultEnvForFile();
  let devices: Device[] = [];

  /**
   * Devices allowed several times on every worker and by the HTTP verifier, so every cache keeps
   * them (a decision is kept from the second time it is asked for).
   */
  async function knownDevices(e: FaultEnv, prefix: string): Promise<Device[]> {
    const tenant = await createTenant(e.http, tenantId(prefix));
    const out = [makeDevice(tenant, 'known-1'), makeDevice(tenant, 'known-2')];
    for (const d of out) {
      const allowed = new Map<number, number>();
      await until(async () => {
        const a = await attempt(e, d);
        assert.equal(a.code, 0, `${d.name} allowed before the outage`);
        if (a.worker !== undefined) allowed.set(a.worker, (allowed.get(a.worker) ?? 0) + 1);
        return allowed.size >= WORKERS && [...allowed.values()].every((n) => n >= WARM_DECISIONS);
      }, 60_000, `${d.name} allowed ${WARM_DECISIONS} times on every worker`);
      for (let i = 0; i < WARM_DECISIONS; i++) {
        const v = await verify(e.http, d);
        assert.equal(v.result, 'allow', `${d.name} allowed by the HTTP verifier before the outage`);
      }
    }
    return out;
  }

  interface Probe {
    mqtt: Attempt[];
    http: VerifierAnswer[];
  }

  /** MQTT connects (3.1.1 and 5, alternating) and HTTP verifier calls, back to back, for `ms`. */
  async function probe(e: FaultEnv, ms: number): Promise<Probe> {
    const end = Date.now() + ms;
    const out: Probe = { mqtt: [], http: [] };
    let n = 0;
    const mqttLoop = async (): Promise<void> => {
      while (Date.now() < end) {
        const d = devices[n % devices.length]!;
        out.mqtt.push(await attempt(e, d, { protocolVersion: n++ % 2 === 0 ? 4 : 5, timeoutMs: 20_000 }));
      }
    };
    const httpLoop = async (): Promise<void> => {
      let i = 0;
      while (Date.now() < end) out.http.push(await verify(e.http, devices[i++ % devices.length]!));
    };
    await Promise.all([mqttLoop(), mqttLoop(), httpLoop()]);
    return out;
  }

  function summary(p: Probe): string {
    const codes = new Map<string, number>();
    for (const a of p.mqtt) codes.set(`${a.code}`, (codes.get(`${a.code}`) ?? 0) + 1);
    const statuses = new Map<string, number>();
    for (const h of p.http) statuses.set(`${h.status}${h.result ? `/${h.result}` : ''}`, (statuses.get(`${h.status}${h.result ? `/${h.result}` : ''}`) ?? 0) + 1);
    const maxMqtt = Math.max(0, ...p.mqtt.map((a) => a.ms));
    const maxHttp = Math.max(0, ...p.http.map((h) => h.ms));
    return `mqtt ${p.mqtt.length} connects ${JSON.stringify(Object.fromEntries(codes))} (slowest ${maxMqtt} ms), ` +
      `http ${p.http.length} calls ${JSON.stringify(Object.fromEntries(statuses))} (slowest ${maxHttp} ms)`;
  }

  function assertNoAllow(p: Probe, what: string): void {
    const allowed = p.mqtt.filter((a) => a.code === 0);
    assert.deepEqual(
      allowed.map((a) => `${a.clientId} on worker ${a.worker} after ${a.ms} ms`),
      [],
      `${what}: CONNACK 0 during the outage`,
    );
    const wrong = p.mqtt.filter((a) => !(a.code === 3 || a.code === 0x88));
    assert.deepEqual(wrong.map((a) => `${a.clientId}: ${a.code} ${a.error ?? ''} (worker ${a.worker})`), [], `${what}: every CONNACK is "server unavailable"`);
    const http = p.http.filter((h) => h.status !== 503);
    assert.deepEqual(http.map((h) => `${h.status} ${h.result ?? ''} after ${h.ms} ms`), [], `${what}: every verifier call answers 503`);
    assert.ok(p.mqtt.length > 0 && p.http.length > 0, `${what}: probed`);
  }

  async function allowedAgain(e: FaultEnv): Promise<void> {
    for (const d of devices) {
      await until(async () => (await attempt(e, d)).code === 0, 60_000, `${d.name} allowed again`);
      await until(async () => (await verify(e.http, d)).result === 'allow', 60_000, `${d.name} allowed again over HTTP`);
    }
  }

  test('stopped: every connect and verifier call is refused as unavailable until it is back', async () => {
    const e = env();
    devices = await knownDevices(e, 'out-stop');
    await e.db.stop();
    let p: Probe;
    try {
      p = await probe(e, OUTAGE_MS);
    } finally {
      await e.db.start();
    }
    report(`database stopped ${OUTAGE_MS} ms: ${summary(p)}; allows during outage: ${p.mqtt.filter((a) => a.code === 0).length + p.http.filter((h) => h.result === 'allow').length}`);
    await waitReady(e.http);
    await allowedAgain(e);
    assertNoAllow(p, 'database stopped');
  });

  test('frozen: every connect and verifier call is refused as unavailable, the verifier within 5 s', async () => {
    const e = env();
    devices = await knownDevices(e, 'out-frz');
    await e.db.freeze();
    let p: Probe;
    try {
      p = await probe(e, OUTAGE_MS);
    } finally {
      await e.db.thaw();
    }
    report(`database frozen ${OUTAGE_MS} ms: ${summary(p)}; allows during outage: ${p.mqtt.filter((a) => a.code === 0).length + p.http.filter((h) => h.result === 'allow').length}`);
    await waitReady(e.http);
    await allowedAgain(e);
    assertNoAllow(p, 'database frozen');
    const slow = p.http.filter((h) => h.ms > FROZEN_503_WITHIN_MS);
    assert.deepEqual(slow.map((h) => `${h.status} after ${h.ms} ms`), [], 'every verifier answer within 5 s');
  });
});
