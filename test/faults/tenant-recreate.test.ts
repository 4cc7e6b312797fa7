/**
 * A tenant re-created with the id of a deleted one starts empty on every MQTT worker: tenant
 * `acme` has a retained message (seen on both workers) and persistent sessions with a queued
 * QoS 1 message; `acme` is deleted and created again with a new CA and a device of the same name;
 * the new tenant's subscribers, on every worker, receive no old retained message and find no old
 * session (CONNACK session present 0, nothing delivered).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  MGMT,
  WORKERS,
  apiOk,
  attempt,
  createTenant,
  faultEnvForFile,
  makeDevice,
  onEveryWorker,
  publish,
  report,
  subscribe,
  until,
} from './harness.js';

const TENANT = 'acme';
const TOPIC = 'devices/dev1/state';
const COMMANDS = 'devices/dev1/cmd';
/** Connects of one client id until it has been tried on every worker (the kernel picks the worker). */
const MAX_TRIES = 200;

describe('faults: a re-created tenant starts empty on every worker', () => {
  const env = faultEnvForFile();

  test('acme deleted and created again: no old retained message, no old session state', async () => {
    const e = env();
    // The old customer.
    const old = await createTenant(e.http, TENANT);
    const oldDev = makeDevice(old, 'dev1');
    const publisher = (await attempt(e, oldDev, { keep: true })).client!;
    await publish(publisher, TOPIC, 'old-retained', true);
    // The retained message reached every worker.
    for (const a of await onEveryWorker(e, oldDev)) {
      const got = a.received;
      await subscribe(a.client!, 'devices/dev1/#');
      await until(() => got.some((g) => g.payload === 'old-retained'), 10_000, `the retained message on worker ${a.worker}`);
      a.client!.end(true);
    }
    // Persistent sessions (MQTT 3.1.1, clean session 0) subscribed with QoS 1, then away.
    const sessionIds = ['listener-1', 'listener-2'];
    for (const clientId of sessionIds) {
      const a = await attempt(e, oldDev, { keep: true, clientId, clean: false });
      assert.equal(a.code, 0);
      await subscribe(a.client!, 'devices/dev1/#');
      await new Promise<void>((r) => a.client!.end(false, {}, () => r()));
    }
    await publish(publisher, COMMANDS, 'old-queued', false);
    publisher.end(true);
    // The queue works: listener-2 resumes and gets the message (listener-1 keeps its copy queued).
    {
      const a = await attempt(e, oldDev, { keep: true, clientId: 'listener-2', clean: false, extra: { resubscribe: false } });
      const got = a.received;
      await until(() => got.some((g) => g.payload === 'old-queued'), 10_000, 'the queued message for the old session');
      a.client!.end(true);
    }

    await apiOk(e.http, 'DELETE', `/tenant/tenants/${TENANT}`, MGMT);
    const fresh = await createTenant(e.http, TENANT);
    const newDev = makeDevice(fresh, 'dev1');
    assert.notEqual(fresh.caFingerprint, old.caFingerprint);

    // On every worker: a subscriber receives no retained message; a publish of its own arrives,
    // so anything old would have been delivered before it.
    const leaks: string[] = [];
    let checked = 0;
    for (const a of await onEveryWorker(e, newDev)) {
      const got = a.received;
      await subscribe(a.client!, 'devices/dev1/#');
      const marker = `marker-${a.clientId}`;
      await publish(a.client!, `devices/dev1/marker`, marker, false);
      await until(() => got.some((g) => g.payload === marker), 10_000, `the marker on worker ${a.worker}`);
      for (const g of got) if (!g.payload.startsWith('marker-')) leaks.push(`worker ${a.worker} subscriber got ${g.topic} "${g.payload}" (retain ${g.retain})`);
      checked++;
      a.client!.end(true);
    }

    // The old client ids resumed in the new tenant, on every worker: MQTT 5 with clean start 0 and a
    // session expiry of 0, so each attempt leaves no session behind for the next one.
    const resumedOn = new Map<string, Set<number>>();
    for (const clientId of sessionIds) {
      const on = new Set<number>();
      resumedOn.set(clientId, on);
      for (let i = 0; i < MAX_TRIES && on.size < WORKERS; i++) {
        const a = await attempt(e, newDev, {
          keep: true,
          clientId,
          clean: false,
          protocolVersion: 5,
          extra: { properties: { sessionExpiryInterval: 0 }, resubscribe: false },
        });
        assert.equal(a.code, 0, `${clientId} connects in the new tenant`);
        const got = a.received;
        if (a.sessionPresent) leaks.push(`worker ${a.worker}: ${clientId} found a session present`);
        // Anything queued arrives right after CONNACK; a publish of its own (to a topic it has no
        // subscription for, as the session is new) is acknowledged after that.
        await publish(a.client!, 'devices/dev1/marker', 'ping', false);
        for (const g of got) leaks.push(`worker ${a.worker}: ${clientId} got ${g.topic} "${g.payload}"`);
        if (a.worker !== undefined) on.add(a.worker);
        a.client!.end(true);
        await until(() => !a.client!.connected, 5_000);
      }
    }
    const tried = [...resumedOn].map(([id, on]) => `${id} on workers ${[...on].join(',')}`).join(', ');
    report(`tenant re-created: ${checked} subscribers, old client ids tried (${tried}); old state seen: ${leaks.length ? leaks.join('; ') : 'none'}`);
    for (const [id, on] of resumedOn) assert.equal(on.size, WORKERS, `${id} tried on every worker`);
    assert.deepEqual(leaks, [], 'nothing of the deleted tenant reaches the new one');
  });
});
