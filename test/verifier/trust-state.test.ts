/**
 * The trust state's guarantee: a decision is made on a state at least as new as every change
 * committed before it began, or it is not made. First its rules on a feed the test drives, then
 * on a real PostgreSQL: the counter moves with the change's transaction, a change whose
 * notification never arrives is still seen by the next decision, and the sessions are re-checked.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { X509Certificate } from 'node:crypto';
import { COUNTER_SQL, createChangeFeed, createChangePublisher, type ChangeEvent, type ChangeNotice } from '../../src/db/change-feed.js';
import { createPrismaClient } from '../../src/db/prisma.js';
import { createTrustState } from '../../src/verifier/trust-state.js';
import { VerifierUnavailableError } from '../../src/verifier/verifier-types.js';
import { createDevice } from '../../src/certs/certs-service.js';
import { build, VERIFIER_TOKEN } from '../helpers/app.js';
import { createTestDatabase } from '../helpers/database.js';
import { api, devicesNamed, expectAllow, expectDeny, eventually, sleep, trustingTenant } from './fixtures.js';

/** A credential's id: the SHA-256 of the leaf's DER, hex. */
const leafSha256 = (pem: string) => new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();

/** A feed the test drives: notices are delivered when the test says, the counter is a variable. */
function fakeFeed() {
  let onNotice: ((n: ChangeNotice) => void) | undefined;
  let onResync: (() => void) | undefined;
  const feed = {
    counter: 0n,
    connected: true,
    reads: 0,
    /** A read the test holds open until it calls `release`. */
    hold: undefined as undefined | { release: () => void },
    onNotice(l: (n: ChangeNotice) => void) {
      onNotice = l;
      return () => (onNotice = undefined);
    },
    onResync(l: () => void) {
      onResync = l;
      return () => (onResync = undefined);
    },
    async readCounter() {
      feed.reads++;
      const value = feed.counter;
      if (feed.hold) await new Promise<void>((resolve) => (feed.hold!.release = resolve));
      return value;
    },
    notice(n: ChangeNotice) {
      onNotice?.(n);
    },
    resync() {
      onResync?.();
    },
  };
  return feed;
}

function stateOn(feed: ReturnType<typeof fakeFeed>, extra: { readCounter?: () => Promise<bigint>; timeoutMs?: number; pollMs?: number; windowMs?: number } = {}) {
  const applied: ChangeEvent[] = [];
  let clears = 0;
  let missed = 0;
  const state = createTrustState({
    feed,
    readCounter: extra.readCounter ?? (async () => feed.counter),
    apply: (e) => applied.push(e),
    clear: () => clears++,
    ...(extra.timeoutMs ? { timeoutMs: extra.timeoutMs } : {}),
    // Every decision reads the counter, unless the test is about the window.
    windowMs: extra.windowMs ?? 0,
    // The tests read the counter themselves unless they test the poll.
    pollMs: extra.pollMs ?? 3_600_000,
  });
  state.onMissed(() => missed++);
  return { state, applied, counts: () => ({ clears, missed }) };
}

const revoke = (tenantId: string): ChangeEvent => ({ type: 'invalidate', tenantId, what: 'revocations' });

test('ok/in-order: notices move the state on one by one; nothing is dropped while none is missed', async () => {
  const feed = fakeFeed();
  feed.counter = 5n;
  const { state, applied, counts } = stateOn(feed);
  await state.current(); // the first read sets the starting point: nothing was missed before it
  assert.deepEqual(counts(), { clears: 1, missed: 0 });
  for (const seq of [6n, 7n]) {
    feed.counter = seq;
    feed.notice({ seq, events: [revoke('acme')] });
    await state.current();
  }
  assert.equal(applied.length, 2);
  assert.deepEqual(counts(), { clears: 1, missed: 0 }, 'nothing missed after the start');
});

test('fail/notice-gap: a notice that skips a number means some were lost: caches dropped, sessions re-checked', async () => {
  const feed = fakeFeed();
  const { state, counts } = stateOn(feed);
  await state.current();
  feed.counter = 3n;
  feed.notice({ seq: 1n, events: [revoke('acme')] });
  feed.notice({ seq: 3n, events: [revoke('acme')] });
  assert.deepEqual(counts(), { clears: 2, missed: 1 });
  await state.current();
  assert.deepEqual(counts(), { clears: 2, missed: 1 }, 'the counter agrees with what was applied');
});

test('fail/notice-never-arrives: a counter ahead of the notices drops the caches before the decision', async () => {
  const feed = fakeFeed();
  const { state, counts } = stateOn(feed);
  await state.current();
  feed.counter = 1n; // committed, its notice lost
  await state.current();
  assert.deepEqual(counts(), { clears: 2, missed: 1 });
  // The late notice changes nothing more.
  feed.notice({ seq: 1n, events: [revoke('acme')] });
  assert.deepEqual(counts(), { clears: 2, missed: 1 });
});

test('ok/notice-a-moment-late: a counter read ahead of its notification waits for it, and drops nothing', async () => {
  const feed = fakeFeed();
  const { state, applied, counts } = stateOn(feed);
  await state.current();
  feed.counter = 1n; // committed; its notification follows the read's answer
  const decided = state.current();
  setTimeout(() => feed.notice({ seq: 1n, events: [revoke('acme')] }), 20);
  await decided;
  assert.equal(applied.length, 1, 'the change was applied from its notification');
  assert.deepEqual(counts(), { clears: 1, missed: 0 }, 'nothing dropped, no session re-checked');
});

test('ok/older-read: a read answered before a notification it does not count never moves the state back', async () => {
  const feed = fakeFeed();
  const { state, counts } = stateOn(feed);
  await state.current();
  feed.hold = { release: () => {} };
  const before = feed.reads;
  const decided = state.current(); // reads 0
  await eventually(async () => feed.reads === before + 1, 5_000, 'the read under way');
  const hold = feed.hold;
  feed.hold = undefined;
  feed.counter = 1n;
  feed.notice({ seq: 1n, events: [revoke('acme')] }); // arrives before the read's answer
  hold.release();
  await decided;
  await state.current(); // reads 1: nothing missed
  assert.deepEqual(counts(), { clears: 1, missed: 0 });
});

test('fail/poll: a process that decides nothing still finds a missed change within about a second', async () => {
  const feed = fakeFeed();
  feed.connected = false;
  const { state, counts } = stateOn(feed, { pollMs: 50 });
  await state.current();
  feed.counter = 3n; // missed while the feed was down; no decision asks
  await eventually(async () => counts().missed === 1, 5_000, 'the poll found the change');
  state.close();
});

test('fail/too-large: a notice without its events counts as every change', async () => {
  const feed = fakeFeed();
  const { state, counts } = stateOn(feed);
  await state.current();
  feed.counter = 1n;
  feed.notice({ seq: 1n, events: null });
  assert.deepEqual(counts(), { clears: 2, missed: 1 });
  await state.current();
  assert.deepEqual(counts(), { clears: 2, missed: 1 });
});

test('fail/resync: a LISTEN connection that comes back re-checks only when the counter moved meanwhile', async () => {
  const feed = fakeFeed();
  const { state, counts } = stateOn(feed);
  await state.current();
  const reads = feed.reads;
  feed.resync();
  await eventually(async () => feed.reads > reads, 5_000, 'the counter read after the resync');
  assert.deepEqual(counts(), { clears: 1, missed: 0 }, 'nothing changed: caches kept');
  feed.counter = 4n;
  feed.resync();
  await eventually(async () => counts().missed === 1, 5_000, 'sessions re-checked after changes were missed');
});

test('fail/read-in-flight: a decision never relies on a counter read that began before it', async () => {
  const feed = fakeFeed();
  const { state, counts } = stateOn(feed);
  await state.current();
  const reads = feed.reads;
  feed.hold = { release: () => {} };
  const first = state.current(); // a read begins, counter 0
  await eventually(async () => feed.reads === reads + 1, 5_000, 'the first read under way');
  feed.counter = 1n; // a change commits while that read is under way
  const hold = feed.hold;
  feed.hold = undefined;
  const second = state.current(); // must wait for a read of its own
  hold.release();
  await first;
  await second;
  assert.ok(feed.reads >= reads + 2, 'the second decision read the counter itself');
  assert.deepEqual(counts(), { clears: 2, missed: 1 }, 'and found the change');
});

test('ok/stale-read: a counter read answered from before notices applied since is no miss', async () => {
  const feed = fakeFeed();
  const { state, counts } = stateOn(feed);
  await state.current();
  const before = counts();
  const reads = feed.reads;
  feed.hold = { release: () => {} };
  const deciding = state.current(); // a read begins, counter 0
  await eventually(async () => feed.reads === reads + 1, 5_000, 'the read under way');
  const hold = feed.hold;
  feed.hold = undefined;
  // Changes commit and their notices arrive while the read is still to answer with its older value.
  for (const seq of [1n, 2n, 3n]) {
    feed.counter = seq;
    feed.notice({ seq, events: [{ type: 'invalidate', tenantId: 'acme', what: 'tenant' } as ChangeEvent] });
  }
  hold.release();
  await deciding;
  assert.deepEqual(counts(), before, 'nothing dropped, no session re-checked: the notices were all applied');
});

test('fail/store-down: no counter, no decision: unavailable, within the timeout', async () => {
  const feed = fakeFeed();
  feed.connected = false;
  const { state } = stateOn(feed, { readCounter: () => Promise.reject(new Error('connection refused')) });
  await assert.rejects(state.current(), VerifierUnavailableError);
  const frozen = stateOn(feed, { readCounter: () => new Promise<bigint>(() => {}), timeoutMs: 200 });
  const started = Date.now();
  await assert.rejects(frozen.state.current(), VerifierUnavailableError);
  assert.ok(Date.now() - started < 2_000, 'a frozen store is unavailable after the timeout, not a hang');
});

test('ok/window: a read that found the caches current vouches for them for the window, from when it began', async () => {
  const feed = fakeFeed();
  const { state, counts } = stateOn(feed, { windowMs: 200 });
  await state.current(); // the starting point: this read found nothing to vouch for
  await state.current(); // this one found the caches current
  const reads = feed.reads;
  for (let i = 0; i < 10; i++) await state.current();
  assert.equal(feed.reads, reads, 'decisions inside the window made no read');
  await new Promise((resolve) => setTimeout(resolve, 250));
  feed.counter = 1n; // a change whose notice never arrives
  await state.current();
  assert.equal(feed.reads, reads + 1 + 3, 'after the window the next decision read the counter (and three more while awaiting the notice)');
  assert.deepEqual(counts(), { clears: 2, missed: 1 }, 'and found the change');
});

test('fail/window-not-opened: a read that finds the counter ahead of the caches vouches for nothing', async () => {
  const feed = fakeFeed();
  const { state, counts } = stateOn(feed, { windowMs: 60_000 });
  await eventually(async () => feed.reads >= 1, 5_000, 'the starting point read');
  feed.counter = 1n; // a change whose notice never arrives, before any read vouched
  await state.current();
  assert.deepEqual(counts(), { clears: 2, missed: 1 }, 'the decision found the change');
  const reads = feed.reads;
  await state.current();
  assert.equal(feed.reads, reads + 1, 'the next decision read the counter itself: the reads that found the change opened no window');
  await state.current();
  assert.equal(feed.reads, reads + 1, 'that read found the caches current: now the window is open');
  state.close();
});

/** A fresh database, a Prisma client and a change feed on it, and every notice the feed hears. */
async function feedOn(t: TestContext) {
  const db = await createTestDatabase();
  const prisma = createPrismaClient(db.url);
  const feed = await createChangeFeed(db.url);
  t.after(async () => {
    await feed.close();
    await prisma.$disconnect();
    await db.drop();
  });
  const notices: ChangeNotice[] = [];
  feed.onNotice((n) => notices.push(n));
  return { prisma, feed, notices };
}

test('the counter moves with the change: a rolled back change neither counts nor notifies', async (t) => {
  const { prisma, feed, notices } = await feedOn(t);
  const publisher = createChangePublisher(prisma);
  const before = await feed.readCounter();

  await assert.rejects(
    prisma.$transaction(async (tx) => {
      await publisher.publish([revoke('acme')], tx);
      throw new Error('the write fails after its publish');
    }),
  );
  await prisma.$transaction(async (tx) => publisher.publish([revoke('acme')], tx));
  // Read on the LISTEN connection: the notices it counts have arrived when it answers.
  const after = await feed.readCounter();
  assert.equal(after, before + 1n, 'only the committed change counts');
  assert.deepEqual(notices, [{ seq: after, events: [revoke('acme')] }]);
});

test('a credential observed for the first time counts, in the transaction that records it; seen again it counts nothing', async (t) => {
  // A known credential decides how its leaf resolves (by the credential, before any path), so a
  // process that missed its recording must find out from the counter like for any other change.
  const s = await build(t, { changeFeed: true });
  const notices: ChangeNotice[] = [];
  s.changeFeed!.onNotice((n) => notices.push(n));
  const { acme, ca } = await trustingTenant(s);
  const leaf = await createDevice({ issuer: ca, cn: 'sensor-1' });
  const req = { clientId: 'sensor-1', certificateChain: [leaf.certPem] };
  const counter = async () => BigInt((await s.prisma.$queryRawUnsafe<Array<{ seq: string }>>(COUNTER_SQL))[0]!.seq);
  const credentialRows = () => s.prisma.deviceCredential.count({ where: { tenantId: acme.id, source: 'OBSERVED' } });

  // Read on the LISTEN connection: the notices of the setup have all arrived when it answers.
  const before = await s.changeFeed!.readCounter();
  notices.length = 0;
  await expectAllow(s, req); // registers sensor-1 (counted) and records its leaf behind the answer
  await eventually(async () => (await credentialRows()) === 1, 5_000, 'the observed credential recorded');
  await eventually(async () => notices.some((n) => n.events?.some((e) => e.type === 'credentials-observed')), 5_000, 'its notice');
  const observedNotice = notices.find((n) => n.events?.some((e) => e.type === 'credentials-observed'))!;
  assert.ok(observedNotice.seq !== undefined, 'the notice of the observed credential carries a counter value');
  const afterFirst = await counter();
  assert.equal(afterFirst, before + BigInt(notices.length), 'every notice counted, the observed credential among them');
  assert.deepEqual(
    notices.map((n) => n.seq),
    Array.from({ length: notices.length }, (_, i) => before + 1n + BigInt(i)),
    'counted one after another, none missing',
  );
  const [event] = observedNotice.events!.filter((e) => e.type === 'credentials-observed');
  assert.deepEqual(event, { type: 'credentials-observed', tenantId: acme.id, credentialsIds: [leafSha256(leaf.certPem)] });

  // The same leaf again: its sighting moves lastSeenAt only, which changes no resolution.
  const seenBefore = notices.length;
  await expectAllow(s, req);
  await expectAllow(s, req);
  await sleep(1_500); // sightings are written behind, in batches
  assert.equal(await counter(), afterFirst, 'a known credential seen again counts nothing');
  assert.equal(notices.length, seenBefore);
});

test('a change too large for one notification arrives in several, counted one after another, none empty', async (t) => {
  const { prisma, feed, notices } = await feedOn(t);
  const before = await feed.readCounter();
  // 2,000 serial holds as the revocation service announces a large CRL: far over 8,000 bytes.
  const events: ChangeEvent[] = [{ type: 'invalidate', tenantId: 'acme', what: 'revocations' }];
  for (let i = 0; i < 2_000; i++) {
    events.push({ type: 'session-drop', change: { kind: 'serial', tenantId: 'acme', serialHex: i.toString(16).padStart(32, '0') } });
  }
  await prisma.$transaction(async (tx) => createChangePublisher(prisma).publish(events, tx));
  const after = await feed.readCounter();
  assert.ok(after - before > 1n, 'several notifications');
  assert.deepEqual(notices.map((n) => n.seq), Array.from({ length: Number(after - before) }, (_, i) => before + 1n + BigInt(i)));
  assert.ok(notices.every((n) => n.events !== null), 'each carries its events');
  assert.deepEqual(notices.flatMap((n) => n.events!), events, 'all of them, in order');
});

test('a change whose notification never arrives is seen by the next decision all the same', async (t) => {
  const s = await build(t, { changeFeed: true });
  const { acme, ca } = await trustingTenant(s);
  const leaf = await createDevice({ issuer: ca, cn: 'sensor-1' });
  const req = { clientId: 'sensor-1', certificateChain: [leaf.certPem] };
  await expectAllow(s, req);
  await expectAllow(s, req); // now kept by every cache

  // Another process disables the device but its notification is lost: the row and the counter
  // change in one transaction, and no NOTIFY is sent.
  const other = new pg.Client({ connectionString: s.databaseUrl });
  await other.connect();
  await other.query('BEGIN');
  await other.query(`UPDATE "Device" SET status = 'DISABLED' WHERE "tenantId" = $1 AND name = 'sensor-1'`, [acme.id]);
  await other.query(`UPDATE "ChangeCounter" SET seq = seq + 1 WHERE id = 1`);
  await other.query('COMMIT');
  await other.end();

  await expectDeny(s, req, 'DEVICE_DISABLED', 'the very next decision');
});

test('?recheck=true decides again without side effects: a deleted device is not registered anew, nothing is recorded', async (t) => {
  const s = await build(t, { changeFeed: true });
  const { acme, ca } = await trustingTenant(s);
  const leaf = await createDevice({ issuer: ca, cn: 'sensor-2' });
  const req = { clientId: 'sensor-2', certificateChain: [leaf.certPem] };
  const allowed = await expectAllow(s, req); // registers sensor-2
  const again = await api(s, 'POST', '/verifier/v1/authenticate?recheck=true', `Bearer ${VERIFIER_TOKEN}`, req);
  assert.equal(again.body.result, 'allow');
  assert.equal(again.body.device.id, allowed.device.id);
  await s.app.verifier.flush();
  const events = async () => (await s.prisma.authEvent.count({ where: { tenantId: acme.id } }));
  const recorded = await events();

  await api(s, 'DELETE', `/tenant/tenants/acme/devices/${allowed.device.id}`, acme.auth);
  const gone = await api(s, 'POST', '/verifier/v1/authenticate?recheck=true', `Bearer ${VERIFIER_TOKEN}`, req);
  assert.equal(gone.body.result, 'deny', gone.text);
  assert.equal(gone.body.reason, 'DEVICE_NOT_FOUND');
  await s.app.verifier.flush();
  assert.equal((await devicesNamed(s, acme, 'sensor-2')).length, 0, 'not registered anew');
  assert.equal(await events(), recorded, 'nothing recorded');
});
