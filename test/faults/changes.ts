/**
 * Each change kind made right after a fault, checked on every MQTT worker: the database restarted
 * (stopped, started again, the change made as soon as /ready answers), or every LISTEN connection
 * terminated just before the change. Afterwards
 * - no connect of the device is allowed (CONNACK 5 / 0x87, or 3 / 0x88 while a worker cannot yet
 *   confirm its state; never 0), on either worker, and each worker ends up denying it;
 * - the HTTP verifier never allows it;
 * - every live session of the device opened before the fault (one on each worker) closes within
 *   5 seconds of the change;
 * - a session of another tenant, open since the file started, is not closed by any of this.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { makeCrl } from '../helpers/pki-fixtures.js';
import {
  MGMT,
  ROUNDS,
  WORKERS,
  apiOk,
  attempt,
  closedAt,
  createTenant,
  deviceIdOf,
  faultEnvForFile,
  makeDevice,
  report,
  sessionsOnEveryWorker,
  tenantId,
  until,
  verify,
  waitReady,
  type Attempt,
  type Device,
  type FaultEnv,
  type Tenant,
} from './harness.js';

export type Fault = 'restart' | 'listen-terminated';

const CLOSE_DEADLINE_MS = 5_000;
/** New connects are tried for at least this long after the change. */
const PROBE_MS = 2_000;
/** How long the test waits for a live session to close, to report when it did. */
const CLOSE_WAIT_MS = 8_000;

interface Target {
  tenant: Tenant;
  device: Device;
  deviceId: string;
}

interface ChangeKind {
  name: string;
  change(e: FaultEnv, t: Target): Promise<void>;
}

export const CHANGE_KINDS: ChangeKind[] = [
  {
    name: 'ca-disabled',
    change: (e, t) => apiOk(e.http, 'PUT', `${t.tenant.base}/trusted-certificates/${t.tenant.caFingerprint}`, t.tenant.auth, { status: 'DISABLED' }),
  },
  {
    name: 'ca-deleted',
    change: (e, t) => apiOk(e.http, 'DELETE', `${t.tenant.base}/trusted-certificates/${t.tenant.caFingerprint}`, t.tenant.auth),
  },
  {
    name: 'serial-revoked',
    change: (e, t) =>
      apiOk(e.http, 'PUT', `${t.tenant.base}/trusted-certificates/settings/crl`, t.tenant.auth, {
        crls: [{ serialNumberInHex: t.device.leaf.serialHex, revocationDate: new Date().toISOString() }],
      }),
  },
  {
    name: 'crl-imported',
    async change(e, t) {
      const crl = makeCrl({ issuer: t.tenant.ca, revoked: [{ serialHex: t.device.leaf.serialHex }] });
      const res = await fetch(`${e.http}${t.tenant.base}/trusted-certificates/${t.tenant.caFingerprint}/crl`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(t.tenant.auth).toString('base64')}`, 'content-type': 'application/pkix-crl' },
        body: Buffer.from(crl.der),
      });
      if (res.status !== 201) throw new Error(`CRL import: ${res.status} ${await res.text()}`);
    },
  },
  {
    name: 'device-disabled',
    change: (e, t) => apiOk(e.http, 'PUT', `${t.tenant.base}/devices/${t.deviceId}`, t.tenant.auth, { status: 'DISABLED' }),
  },
  {
    name: 'device-deleted',
    change: (e, t) => apiOk(e.http, 'DELETE', `${t.tenant.base}/devices/${t.deviceId}`, t.tenant.auth),
  },
  {
    name: 'tenant-suspended',
    change: (e, t) => apiOk(e.http, 'PUT', `/tenant/tenants/${t.tenant.id}`, MGMT, { status: 'SUSPENDED' }),
  },
  {
    name: 'tenant-deleted',
    change: (e, t) => apiOk(e.http, 'DELETE', `/tenant/tenants/${t.tenant.id}`, MGMT),
  },
];

const REFUSED = new Set([5, 0x87, 3, 0x88]);
const DENIED = new Set([5, 0x87]);

export interface ChangeSuiteOptions {
  /** Where the MQTT workers decide (see FaultEnvOptions). */
  layout?: 'together' | 'split';
  /** The change kinds to run (all by default). */
  kinds?: string[];
}

export function changeSuite(faults: Fault[], opts: ChangeSuiteOptions = {}): void {
  const layout = opts.layout ?? 'together';
  const what = faults.map((f) => (f === 'restart' ? 'a database restart' : 'the LISTEN connections are terminated')).join(' or ');
  describe(`faults: every change kind right after ${what}${layout === 'split' ? ', certgate api and certgate mqtt apart' : ''}`, () => {
    const env = faultEnvForFile({ layout });
    let bystander: Attempt[] = [];

    test('setup: a session of another tenant on every worker', async () => {
      const e = env();
      const tenant = await createTenant(e.http, tenantId('bystander'));
      bystander = await sessionsOnEveryWorker(e, makeDevice(tenant, 'bystander'));
    });

    for (const fault of faults) {
      for (const kind of CHANGE_KINDS.filter((k) => !opts.kinds || opts.kinds.includes(k.name))) {
        test(`${fault}/${kind.name}: the next connect is refused on every worker, live sessions close within 5 s`, async () => {
          const e = env();
          for (let round = 0; round < ROUNDS; round++) await oneRound(e, fault, kind, round);
          const closed = bystander.filter((b) => !b.client!.connected);
          assert.deepEqual(closed.map((b) => `${b.clientId} on worker ${b.worker}`), [], 'the other tenant\'s sessions stay open');
        });
      }
    }

    test('teardown: the other tenant\'s sessions stayed open throughout', () => {
      const closed = bystander.filter((b) => !b.client!.connected);
      for (const b of bystander) b.client!.end(true);
      assert.deepEqual(closed.map((b) => `${b.clientId} on worker ${b.worker}`), []);
    });
  });
}

async function oneRound(e: FaultEnv, fault: Fault, kind: ChangeKind, round: number): Promise<void> {
  const tenant = await createTenant(e.http, tenantId(kind.name.slice(0, 10)));
  const device = makeDevice(tenant, 'dev');
  const live = await sessionsOnEveryWorker(e, device);
  const target: Target = { tenant, device, deviceId: await deviceIdOf(e.http, tenant, device.name) };
  // Registered now; with auto-registration on, a deleted device would simply be registered again.
  await apiOk(e.http, 'PUT', `${tenant.base}/trusted-certificates/${tenant.caFingerprint}`, tenant.auth, { autoRegistrationEnabled: false });
  // The HTTP verifier has decided on it too (its caches know the device).
  assert.equal((await verify(e.http, device)).result, 'allow');

  let backAfterMs = 0;
  let terminated = 0;
  if (fault === 'restart') {
    const stopped = Date.now();
    await e.db.stop();
    await e.db.start();
    await waitReady(e.http);
    backAfterMs = Date.now() - stopped;
  } else {
    terminated = await e.db.terminateListeners();
    // One for the API, one for each worker.
    assert.ok(terminated >= 1 + WORKERS, `LISTEN connections terminated: ${terminated}`);
  }

  // Closing times are counted from the moment the change is sent: a worker may close a session
  // on the change's notification before the API has answered. A session that closes earlier than
  // that was closed by the fault itself (reported as such).
  const closes = live.map((l) =>
    Promise.race([closedAt(l.client!), new Promise<number>((r) => setTimeout(() => r(Infinity), CLOSE_WAIT_MS))]),
  );
  const before = Date.now();
  await kind.change(e, target);
  const changedAt = Date.now();
  const changeMs = changedAt - before;

  // New connects, back to back, on both workers, for at least PROBE_MS.
  const attempts: Array<Attempt & { at: number }> = [];
  const perWorker = new Map<number, number>();
  const verifierAnswers: string[] = [];
  while (
    Date.now() - changedAt < PROBE_MS ||
    (perWorker.size < WORKERS || [...perWorker.values()].some((n) => n < 2)) && Date.now() - changedAt < 20_000
  ) {
    const a = await attempt(e, device, { protocolVersion: attempts.length % 2 === 0 ? 4 : 5 });
    attempts.push({ ...a, at: Date.now() - changedAt });
    if (a.worker !== undefined) perWorker.set(a.worker, (perWorker.get(a.worker) ?? 0) + 1);
    if (attempts.length % 4 === 0) {
      const v = await verify(e.http, device);
      verifierAnswers.push(v.result ?? String(v.status));
    }
  }
  const closeMs = (await Promise.all(closes)).map((at) => at - before);

  // Each worker ends up deciding "deny" (not "unavailable" forever).
  const finalDeny = new Map<number, number | string>();
  await until(async () => {
    const a = await attempt(e, device);
    if (a.worker !== undefined) finalDeny.set(a.worker, a.code);
    return finalDeny.size >= WORKERS && [...finalDeny.values()].every((c) => typeof c === 'number' && DENIED.has(c));
  }, 15_000, 'every worker denying the device').catch(() => undefined);

  const allowed = attempts.filter((a) => a.code === 0);
  const codes = new Map<string, number>();
  for (const a of attempts) codes.set(String(a.code), (codes.get(String(a.code)) ?? 0) + 1);
  report(
    `${fault}/${kind.name} round ${round + 1}: ${fault === 'restart' ? `database back after ${backAfterMs} ms` : `${terminated} LISTEN connections terminated`}, ` +
      `change answered in ${changeMs} ms; ${attempts.length} connects after it ${JSON.stringify(Object.fromEntries(codes))} ` +
      `per worker ${JSON.stringify(Object.fromEntries(perWorker))}, allowed ${allowed.length}` +
      (allowed.length ? ` (last at +${Math.max(...allowed.map((a) => a.at))} ms, workers ${[...new Set(allowed.map((a) => a.worker))].join(',')})` : '') +
      `; verifier ${JSON.stringify(verifierAnswers)}; live sessions closed after ${closeMs.map((ms) => (ms === Infinity ? `not within ${CLOSE_WAIT_MS} ms` : ms < 0 ? `${ms} ms (closed by the fault, before the change)` : `${ms} ms`)).join(', ')} ` +
      `(workers ${live.map((l) => l.worker).join(', ')}); final ${JSON.stringify(Object.fromEntries(finalDeny))}`,
  );
  for (const l of live) l.client!.end(true);

  assert.deepEqual(
    allowed.map((a) => `${a.clientId} allowed by worker ${a.worker} at +${a.at} ms`),
    [],
    `${kind.name}: no connect allowed after the change`,
  );
  const odd = attempts.filter((a) => !(typeof a.code === 'number' && REFUSED.has(a.code)));
  assert.deepEqual(odd.map((a) => `${a.clientId}: ${a.code} ${a.error ?? ''} at +${a.at} ms`), [], 'every connect answered with a CONNACK refusal');
  assert.equal(perWorker.size, WORKERS, `connects reached every worker: ${JSON.stringify(Object.fromEntries(perWorker))}`);
  assert.ok(!verifierAnswers.includes('allow'), `the HTTP verifier allowed after the change: ${JSON.stringify(verifierAnswers)}`);
  closeMs.forEach((ms, i) => assert.ok(ms <= CLOSE_DEADLINE_MS, `live session on worker ${live[i]!.worker} closed after ${ms === Infinity ? `more than ${CLOSE_WAIT_MS} ms` : `${ms} ms`}`));
  assert.ok(
    finalDeny.size >= WORKERS && [...finalDeny.values()].every((c) => typeof c === 'number' && DENIED.has(c)),
    `every worker denies in the end: ${JSON.stringify(Object.fromEntries(finalDeny))}`,
  );
}
