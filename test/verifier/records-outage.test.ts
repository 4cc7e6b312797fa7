/**
 * Nothing the verifier records is lost unseen: auth events (and sightings) waiting to be written
 * survive a database outage and a shutdown that the database outlives by a little; they are written
 * in order, each once. What cannot be kept (more than the queue holds, or still unwritten when the
 * shutdown wait ends) is counted in certgate_records_dropped_total.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { createDevice } from '../../src/certs/certs-service.js';
import type { RecordQueueOptions } from '../../src/verifier/records-queue.js';
import { createVerifierRepository, encodeAuthEvent } from '../../src/verifier/verifier-repository.js';
import { build } from '../helpers/app.js';
import { appOn, ownPostgres, type OwnPostgres } from '../helpers/own-postgres.js';
import { api, authenticate, eventually, expectAllow, sleep, trustingTenant } from './fixtures.js';

/** The app on a database of the test's own, tenant `acme` trusting a CA, and one device allowed once. */
async function setUp(t: TestContext, records: RecordQueueOptions) {
  const db = await ownPostgres(t);
  const s = await appOn(t, db.url, { records, ...(process.env.TEST_LOG ? { logger: (await import('pino')).pino({ level: process.env.TEST_LOG }) } : {}) });
  const { acme, ca } = await trustingTenant(s);
  const leaf = await createDevice({ issuer: ca, cn: 'meter' });
  const req = { clientId: 'meter', certificateChain: [leaf.certPem] };
  await expectAllow(s, req, 'the device registers');
  // A connection of the test's own, to count what was written.
  const counter = new pg.Client({ connectionString: db.url });
  counter.on('error', () => {});
  await counter.connect();
  t.after(() => counter.end().catch(() => {}));
  const authEvents = async () => (await counter.query<{ n: number }>(`SELECT count(*)::int AS n FROM "AuthEvent"`)).rows[0]!.n;
  return { db, s, req, authEvents };
}

/** `n` decisions; answers how many were decisions (200: each one is an auth event) and how many 503. */
async function decide(s: Parameters<typeof authenticate>[0], req: object, n: number): Promise<{ decided: number; unavailable: number }> {
  let decided = 0;
  let unavailable = 0;
  for (let i = 0; i < n; i++) {
    const res = await authenticate(s, req as never);
    if (res.status === 200) decided++;
    else if (res.status === 503) unavailable++;
    else assert.fail(`decision ${i}: ${res.status} ${res.text}`);
  }
  return { decided, unavailable };
}

async function dropped(s: { metrics: { registry: { metrics(): Promise<string> } } }, record: string, reason: string): Promise<number> {
  const text = await s.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`certgate_records_dropped_total{record="${record}",reason="${reason}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function thawLater(db: OwnPostgres, ms: number): Promise<void> {
  await sleep(ms);
  db.thaw();
}

test('auth events waiting while the database is frozen are all written once it thaws, each once', { timeout: 180_000 }, async (t) => {
  // Written only every minute: the decisions below wait in memory when the database freezes.
  const { db, s, req, authEvents } = await setUp(t, { intervalMs: 60_000 });
  await s.app.verifier.flush();
  const before = await authEvents();
  assert.equal(before, 1, 'the registration decision');

  const waiting = await decide(s, req, 300);
  assert.equal(waiting.decided, 300);
  await db.freeze();
  let during = { decided: 0, unavailable: 0 };
  try {
    // The write of what waits fails (a frozen server never answers); decisions go on as far as
    // the verifier may make them without the store.
    await s.app.verifier.flush();
    during = await decide(s, req, 50);
    await s.app.verifier.flush();
  } finally {
    db.thaw();
  }
  const expected = before + waiting.decided + during.decided;
  console.log(`# ${waiting.decided} decisions waiting, ${during.decided} made and ${during.unavailable} refused (503) while frozen; expecting ${expected} auth events`);
  // Tried again by the queue itself, with its backoff (at most 5 s between attempts).
  await eventually(async () => (await authEvents()) >= expected, 30_000, 'every auth event written');
  await s.app.verifier.flush();
  await sleep(500);
  assert.equal(await authEvents(), expected, 'each auth event written once');
  assert.equal(await dropped(s, 'auth_event', 'queue_full'), 0);
});

test('a shutdown waits for the database to take the auth events still waiting, when it returns within the wait', { timeout: 180_000 }, async (t) => {
  const { db, s, req, authEvents } = await setUp(t, { intervalMs: 60_000, closeWaitMs: 20_000 });
  await s.app.verifier.flush();
  const before = await authEvents();
  const waiting = await decide(s, req, 200);
  await db.freeze();
  try {
    await Promise.all([s.app.close(), thawLater(db, 1_500)]);
  } finally {
    db.thaw();
  }
  assert.equal(await authEvents(), before + waiting.decided, 'every decision has its auth event');
  assert.equal(await dropped(s, 'auth_event', 'shutdown'), 0);
});

test('beyond the queue limit, and past the shutdown wait, auth events are dropped and counted', { timeout: 180_000 }, async (t) => {
  const { db, s, req, authEvents } = await setUp(t, { intervalMs: 60_000, limit: 50, closeWaitMs: 1_000 });
  await s.app.verifier.flush();
  const before = await authEvents();
  const made = await decide(s, req, 80);
  assert.equal(made.decided, 80);
  assert.equal(await dropped(s, 'auth_event', 'queue_full'), 30, 'the 30 beyond the limit of 50');
  await s.app.verifier.flush();
  assert.equal(await authEvents(), before + 50, 'the 50 kept are written');

  const late = await decide(s, req, 10);
  await db.freeze();
  try {
    await s.app.close();
  } finally {
    db.thaw();
  }
  assert.equal(await dropped(s, 'auth_event', 'shutdown'), late.decided, 'unwritten when the shutdown wait ended');
  await sleep(500);
  assert.equal(await authEvents(), before + 50, 'nothing more was written');
});

test('a batch written again with the same id (its first COMMIT in doubt) is written once', async (t) => {
  const s = await build(t);
  await api(s, 'POST', '/tenant/tenants', s.management, {
    id: 'acme',
    company: 'Acme Inc.',
    domain: 'acme.example.com',
    adminName: 'admin',
    adminPass: 'tenant-admin-pass',
  });
  const repository = createVerifierRepository(s.prisma);
  const rows = [0, 1, 2].map((i) => encodeAuthEvent({ tenantId: 'acme', time: new Date(1_700_000_000_000 + i), result: 'deny', message: `#${i}` }));
  const id = crypto.randomUUID();
  await repository.insertAuthEvents(rows, id);
  await repository.insertAuthEvents(rows, id);
  await Promise.all([repository.insertAuthEvents(rows, crypto.randomUUID()), repository.insertAuthEvents(rows, crypto.randomUUID())]);
  assert.equal(await s.prisma.authEvent.count({ where: { tenantId: 'acme' } }), 9);
});
