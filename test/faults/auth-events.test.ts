/**
 * No auth event lost: connects and verifier calls run back to back before, during and after a
 * database outage (stopped, then started again). Every decision the client saw has exactly one
 * auth event once the database is back:
 * - a decision is CONNACK 0 (allow) or 5 / 0x87 (deny) on MQTT, HTTP 200 allow / deny from
 *   /verifier/v1/authenticate;
 * - CONNACK 3 / 0x88 and HTTP 503 ("unavailable") are not decisions and have no event;
 * - a connection that ended without any CONNACK is "unknown" (it may or may not have been
 *   decided): the count then has to lie between the decisions and the decisions plus the unknown.
 * Every attempt has a client id of its own, so the events are also matched one by one: each
 * decision has one event, of its result, and no other client id has any.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ROUNDS,
  apiOk,
  attempt,
  createTenant,
  faultEnvForFile,
  logLines,
  makeDevice,
  uniqueClientId,
  report,
  tenantId,
  until,
  verify,
  waitReady,
  type Device,
  type FaultEnv,
} from './harness.js';

const BEFORE_MS = 1_500;
const OUTAGE_MS = 4_000;
const AFTER_MS = 2_000;
const FLUSH_TIMEOUT_MS = 45_000;

interface Tally {
  allow: number;
  deny: number;
  unavailable: number;
  unknown: number;
  /** Decisions (allow or deny) the client saw while the database was down. */
  decidedDuringOutage: number;
  allowDuringOutage: number;
}

describe('faults: every decision around an outage has its auth event', () => {
  const env = faultEnvForFile();

  async function eventCounts(e: FaultEnv, tenant: string): Promise<{ allow: number; deny: number }> {
    const rows = await e.db.query<{ result: string; n: string }>(
      `SELECT result, count(*)::text AS n FROM "AuthEvent" WHERE "tenantId" = $1 GROUP BY result`,
      [tenant],
    );
    const get = (r: string) => Number(rows.find((x) => x.result === r)?.n ?? 0);
    return { allow: get('allow'), deny: get('deny') };
  }

  test('database stopped under load: one auth event per decision, none per "unavailable"', async () => {
    const e = env();
    for (let round = 0; round < ROUNDS; round++) {
      const tenant = await createTenant(e.http, tenantId('events'));
      const tally: Tally = { allow: 0, deny: 0, unavailable: 0, unknown: 0, decidedDuringOutage: 0, allowDuringOutage: 0 };
      let down = false;
      const clientIds = new Set<string>();
      /** What each client id saw, to reconcile with the events one by one. */
      const seen = new Map<string, { kind: string; via: string; down: boolean; at: string }>();
      const count = (kind: 'allow' | 'deny' | 'unavailable' | 'unknown', clientId: string, via: string, started: number): void => {
        seen.set(clientId, { kind, via, down, at: new Date(started).toISOString() });
        tally[kind]++;
        if (down && (kind === 'allow' || kind === 'deny')) tally.decidedDuringOutage++;
        if (down && kind === 'allow') tally.allowDuringOutage++;
      };
      const mqttDecision = async (d: Device, protocolVersion: 4 | 5): Promise<void> => {
        const started = Date.now();
        const a = await attempt(e, d, { protocolVersion });
        clientIds.add(a.clientId);
        const via = `mqtt v${protocolVersion === 4 ? '3.1.1' : '5'} worker ${a.worker ?? '?'} code ${a.code}`;
        if (a.code === 0) count('allow', a.clientId, via, started);
        else if (a.code === 5 || a.code === 0x87) count('deny', a.clientId, via, started);
        else if (a.code === 3 || a.code === 0x88) count('unavailable', a.clientId, via, started);
        else count('unknown', a.clientId, via, started);
      };
      const httpDecision = async (d: Device): Promise<void> => {
        const clientId = uniqueClientId(d.name);
        const started = Date.now();
        const v = await verify(e.http, d, clientId);
        const via = `http ${v.status}`;
        if (v.status === 200 && v.result === 'allow') count('allow', clientId, via, started);
        else if (v.status === 200 && v.result === 'deny') count('deny', clientId, via, started);
        else if (v.status === 503) count('unavailable', clientId, via, started);
        else count('unknown', clientId, via, started);
      };

      // Two registered devices (one connect each registers them), then no more registration:
      // a third certificate of the tenant's CA is denied (DEVICE_NOT_FOUND), a decision too.
      const known = [makeDevice(tenant, 'known-1'), makeDevice(tenant, 'known-2')];
      for (const d of known) await mqttDecision(d, 4);
      assert.equal(tally.allow, 2, 'the devices registered');
      await apiOk(e.http, 'PUT', `${tenant.base}/trusted-certificates/${tenant.caFingerprint}`, tenant.auth, { autoRegistrationEnabled: false });
      const stranger = makeDevice(tenant, 'stranger');

      let stop = false;
      const loop = async (i: number): Promise<void> => {
        for (let n = 0; !stop; n++) {
          const d = n % 3 === 2 ? stranger : known[(n + i) % 2]!;
          if (i === 2) await httpDecision(d);
          else await mqttDecision(d, n % 2 === 0 ? 4 : 5);
        }
      };
      const loops = [loop(0), loop(1), loop(2)];
      const t0 = Date.now();
      await until(() => Date.now() - t0 >= BEFORE_MS, BEFORE_MS + 5_000, 'load before the outage');
      down = true;
      await e.db.stop();
      const stopped = Date.now();
      await until(() => Date.now() - stopped >= OUTAGE_MS, OUTAGE_MS + 5_000, 'the outage');
      await e.db.start();
      down = false;
      await waitReady(e.http);
      const back = Date.now();
      await until(() => Date.now() - back >= AFTER_MS, AFTER_MS + 5_000, 'load after the outage');
      stop = true;
      await Promise.all(loops);

      const decided = tally.allow + tally.deny;
      let events = { allow: 0, deny: 0 };
      // Flushed when every decision has an event of its client id (a count alone could be reached
      // early by an event written twice).
      const decidedIds = [...seen].filter(([, w]) => w.kind === 'allow' || w.kind === 'deny').map(([id]) => id);
      const flushed = await until(async () => {
        events = await eventCounts(e, tenant.id);
        if (events.allow + events.deny < decided) return false;
        const have = await e.db.query<{ n: string }>(
          `SELECT count(DISTINCT "clientId")::text AS n FROM "AuthEvent" WHERE "tenantId" = $1 AND "clientId" = ANY($2::text[])`,
          [tenant.id, decidedIds],
        );
        return Number(have[0]!.n) >= decidedIds.length;
      }, FLUSH_TIMEOUT_MS, 'the auth events of every decision').then(
        (ms) => ms,
        () => undefined,
      );
      // One by one: the client ids whose events differ from what the client saw.
      const rows = await e.db.query<{ clientId: string | null; result: string; reason: string | null; time: Date }>(
        `SELECT "clientId", result, reason, time FROM "AuthEvent" WHERE "tenantId" = $1 ORDER BY time`,
        [tenant.id],
      );
      const byClient = new Map<string, string[]>();
      for (const r of rows) byClient.set(r.clientId ?? '', [...(byClient.get(r.clientId ?? '') ?? []), `${r.result}${r.reason ? ` ${r.reason}` : ''} at ${r.time.toISOString()}`]);
      const odd: string[] = [];
      for (const [clientId, what] of seen) {
        const got = byClient.get(clientId) ?? [];
        const want = what.kind === 'allow' || what.kind === 'deny' ? 1 : 0;
        const same = got.length === want && (want === 0 || got[0]!.startsWith(what.kind));
        if (!same && what.kind !== 'unknown') odd.push(`${clientId} (${what.via}, sent ${what.at}${what.down ? ', while down' : ''}): saw ${what.kind}, events [${got.join('; ')}]`);
      }
      for (const [clientId, got] of byClient) if (!seen.has(clientId)) odd.push(`${clientId}: no attempt, events [${got.join('; ')}]`);
      // What the MQTT workers logged about their refusals (a refusal the listener makes on its own
      // after the verifier allowed, REVOKED_DURING_CONNECT, has the verifier's allow event).
      const workerDenials = new Map<string, number>();
      for (const l of logLines(e.mqtt)) {
        if (l.msg === 'MQTT authentication denied' && typeof l.reason === 'string' && clientIds.has(l.clientId ?? '')) {
          workerDenials.set(l.reason, (workerDenials.get(l.reason) ?? 0) + 1);
        }
      }
      report(
        `auth events round ${round + 1}: decisions ${decided} (allow ${tally.allow}, deny ${tally.deny}; ${tally.decidedDuringOutage} while down, ` +
          `${tally.allowDuringOutage} allows while down), unavailable ${tally.unavailable}, unknown ${tally.unknown}; ` +
          `events ${events.allow + events.deny} (allow ${events.allow}, deny ${events.deny})` +
          (flushed === undefined ? ` after ${FLUSH_TIMEOUT_MS} ms: ${decided - events.allow - events.deny} missing` : `, all there ${flushed} ms after the load`) +
          `; MQTT refusals by reason ${JSON.stringify(Object.fromEntries(workerDenials))}` +
          `; ${odd.length} client ids whose events differ from what the client saw` +
          (odd.length ? `: ${odd.slice(0, 10).join(' | ')}` : ''),
      );
      assert.ok(tally.unavailable > 0, 'the outage was seen by the clients');
      assert.deepEqual(odd, [], 'each decision has exactly its own event (by client id), and nothing else has one');
      if (tally.unknown === 0) {
        assert.deepEqual(events, { allow: tally.allow, deny: tally.deny }, 'one auth event per decision, by result');
      } else {
        assert.ok(events.allow + events.deny >= decided && events.allow + events.deny <= decided + tally.unknown, `events between ${decided} and ${decided + tally.unknown}`);
      }
    }
  });
});
