/**
 * A tenant deleted while the MQTT workers' change feeds were down: its deletion commits (the
 * tenant row gone, the change counter moved) but its notification reaches no worker. When the
 * workers find the change counter ahead they look up every tenant they keep state for, in one
 * query, and drop the state of those gone as on a deletion they heard: live sessions closed,
 * retained messages and persistent sessions forgotten, here and in the primary's copy (which
 * tells the other workers, as for a deletion they heard). A tenant
 * made again with the same id then starts empty on every worker.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  WORKERS,
  attempt,
  closedAt,
  createTenant,
  faultEnvForFile,
  logLines,
  makeDevice,
  onEveryWorker,
  publish,
  report,
  sessionsOnEveryWorker,
  subscribe,
  tenantId,
  until,
  type FaultEnv,
} from './harness.js';

const TOPIC = 'devices/dev1/state';

/**
 * The workers that dropped the tenant: those that found it gone after missed changes, and those
 * told by the primary that another worker did (whichever comes first).
 */
const DROPPED = ['tenant no longer exists (deleted while changes were missed)', 'tenant deleted: its MQTT sessions, wills, queued and retained messages are gone'];
function droppedOn(e: FaultEnv, id: string): { workers: Set<number>; found: number } {
  const lines = logLines(e.mqtt) as Array<{ msg?: string; worker?: number; tenantId?: string }>;
  const mine = lines.filter((l) => l.tenantId === id && l.worker !== undefined && DROPPED.includes(l.msg ?? ''));
  return { workers: new Set(mine.map((l) => l.worker!)), found: mine.filter((l) => l.msg === DROPPED[0]).length };
}

describe('faults: a tenant deleted while the change feeds were down', () => {
  const env = faultEnvForFile();

  test('its broker state is dropped on every worker once the feeds are back; made again with the same id it starts empty', async () => {
    const e = env();
    const id = tenantId('gone');
    const old = await createTenant(e.http, id);
    const oldDev = makeDevice(old, 'dev1');
    const publisher = (await attempt(e, oldDev, { keep: true })).client!;
    await publish(publisher, TOPIC, 'old-retained', true);
    publisher.end(true);
    // The retained message reached every worker.
    for (const a of await onEveryWorker(e, oldDev)) {
      const got = a.received;
      await subscribe(a.client!, 'devices/dev1/#');
      await until(() => got.some((g) => g.payload === 'old-retained'), 10_000, `the retained message on worker ${a.worker}`);
      a.client!.end(true);
    }
    // A persistent session, away, and a live session on every worker.
    const away = await attempt(e, oldDev, { keep: true, clientId: 'listener-1', clean: false });
    assert.equal(away.code, 0);
    await subscribe(away.client!, 'devices/dev1/#');
    await new Promise<void>((r) => away.client!.end(false, {}, () => r()));
    const live = await sessionsOnEveryWorker(e, oldDev);
    const closes = live.map((l) => closedAt(l.client!));

    // Every LISTEN connection terminated, and the deletion committed as the API commits it (the
    // tenant row and the change counter in one transaction) but with its notification lost.
    const terminated = await e.db.terminateListeners();
    assert.ok(terminated >= 1 + WORKERS, `LISTEN connections terminated: ${terminated}`);
    const deletedAt = Date.now();
    await e.db.query(`DELETE FROM "Tenant" WHERE "id" = '${id}'; UPDATE "ChangeCounter" SET "seq" = "seq" + 1 WHERE "id" = 1`);

    await until(() => droppedOn(e, id).workers.size >= WORKERS, 10_000, 'every worker dropping the tenant');
    // No notification told anyone: at least one worker found the tenant gone by itself.
    assert.ok(droppedOn(e, id).found >= 1, 'a worker found the tenant gone after missed changes');
    const droppedMs = Date.now() - deletedAt;
    const closeMs = (await Promise.all(closes)).map((at) => at - deletedAt);

    // Made again with the same id: a new CA, a device of the same name.
    const fresh = await createTenant(e.http, id);
    const newDev = makeDevice(fresh, 'dev1');
    const leaks: string[] = [];
    for (const a of await onEveryWorker(e, newDev)) {
      const got = a.received;
      await subscribe(a.client!, 'devices/dev1/#');
      // A publish of its own arrives after anything retained would have.
      const marker = `marker-${a.clientId}`;
      await publish(a.client!, 'devices/dev1/marker', marker, false);
      await until(() => got.some((g) => g.payload === marker), 10_000, `the marker on worker ${a.worker}`);
      for (const g of got) if (!g.payload.startsWith('marker-')) leaks.push(`worker ${a.worker} subscriber got ${g.topic} "${g.payload}"`);
      a.client!.end(true);
    }
    // The old persistent session's client id, resumed in the new tenant on every worker.
    const resumedOn = new Set<number>();
    for (let i = 0; i < 200 && resumedOn.size < WORKERS; i++) {
      const a = await attempt(e, newDev, {
        keep: true,
        clientId: 'listener-1',
        clean: false,
        protocolVersion: 5,
        extra: { properties: { sessionExpiryInterval: 0 }, resubscribe: false },
      });
      assert.equal(a.code, 0, 'listener-1 connects in the new tenant');
      if (a.sessionPresent) leaks.push(`worker ${a.worker}: listener-1 found a session present`);
      if (a.worker !== undefined) resumedOn.add(a.worker);
      a.client!.end(true);
      await until(() => !a.client!.connected, 5_000);
    }

    report(
      `tenant deleted with its notification lost (${terminated} LISTEN connections terminated): dropped on every worker after ${droppedMs} ms, ` +
        `live sessions closed after ${closeMs.map((ms) => `${ms} ms`).join(', ')}; made again: old state seen: ${leaks.length ? leaks.join('; ') : 'none'}`,
    );
    closeMs.forEach((ms, i) => assert.ok(ms <= 5_000, `live session on worker ${live[i]!.worker} closed after ${ms} ms`));
    assert.equal(resumedOn.size, WORKERS, 'listener-1 tried on every worker');
    assert.deepEqual(leaks, [], 'nothing of the deleted tenant reaches the new one');
  });
});
