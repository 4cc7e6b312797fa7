/**
 * The Prisma client on the `pg` pool (src/db/prisma.ts): batch statements that bypass Prisma
 * see the same tables as Prisma does, `?schema=` included, and idle connections never hold a
 * process open.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { CopyText } from '../../src/db/copy-text.js';
import { createPrismaClient, executeBulk, pgTransaction, queryBulk } from '../../src/db/prisma.js';
import { createTestDatabase } from '../helpers/database.js';

test('?schema= reaches raw SQL and batch statements through the search_path, even for a name with a space and a quote', async (t) => {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await admin.query(`CREATE SCHEMA "fleet ""b"""; CREATE TABLE "fleet ""b"""."Thing" (x int); CREATE TABLE public."Thing" (x int)`);
  await admin.query(`INSERT INTO "fleet ""b"""."Thing" VALUES (1); INSERT INTO public."Thing" VALUES (2)`);
  await admin.end();

  const url = new URL(db.url);
  url.searchParams.set('schema', 'fleet "b"');
  const scoped = createPrismaClient(url.toString(), 2);
  const plain = createPrismaClient(db.url, 2);
  t.after(() => Promise.all([scoped.$disconnect(), plain.$disconnect()]));
  const read = { name: 'test_read_thing', text: 'SELECT x FROM "Thing" ORDER BY x' };
  assert.deepEqual(await queryBulk(scoped, read, []), [{ x: 1 }]);
  assert.deepEqual(await scoped.$queryRawUnsafe('SELECT x FROM "Thing"'), [{ x: 1 }]);
  assert.deepEqual(await queryBulk(plain, read, []), [{ x: 2 }]);
  assert.equal(await executeBulk(scoped, { name: 'test_add_thing', text: 'INSERT INTO "Thing" SELECT unnest($1::int[])' }, [[3, 4]]), 2);
  assert.deepEqual(await queryBulk(scoped, read, []), [{ x: 1 }, { x: 3 }, { x: 4 }]);
});

test('a client that only ran batch statements lets its process exit at once after $disconnect', async (t) => {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  const { spawn } = await import('node:child_process');
  const script = `
    import { createPrismaClient, executeBulk } from './src/db/prisma.ts';
    const p = createPrismaClient(process.env.URL, 2);
    await executeBulk(p, { name: 'x', text: 'SELECT 1' }, []);
    await p.$disconnect();
    globalThis.disconnectedAt = Date.now();
    process.on('exit', () => process.stdout.write(String(Date.now() - globalThis.disconnectedAt)));
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, URL: db.url } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => child.on('close', resolve));
  assert.equal(code, 0);
  // pg's idle timeout is 10 s; the process ends well before it.
  assert.ok(Number(out) < 2_000, `exited ${out} ms after $disconnect`);
});

test('COPY text written by CopyText reaches PostgreSQL as it was: escapes, NULs, non-ASCII, NULL, bytea and times', async (t) => {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  const client = createPrismaClient(db.url, 2);
  t.after(() => client.$disconnect());
  const texts = ['tab\there', 'line\nbreak\r\n', 'back\\slash\\N', '\\N', 'nul\u0000inside', 'ünïcödé ✓ 𝄞', '', 'x'.repeat(40_000)];
  const der = Uint8Array.from({ length: 300 }, (_, i) => (i * 37) % 256);
  const times = [new Date('2026-12-02T07:05:09.045Z'), new Date(Date.UTC(1999, 0, 1, 0, 0, 0, 7)), new Date('0999-05-06T01:02:03.004Z'), new Date('9999-12-31T23:59:59.999Z')];
  const data = new CopyText(64);
  texts.forEach((text, i) => data.plain(String(i)).text(text).bytea(der.subarray(i)).time(times[i % times.length]!).text(i === 1 ? undefined : 'y').row());
  await pgTransaction(client, async (tx) => {
    await tx.query({ text: 'CREATE TABLE copied (n int, t text, b bytea, at timestamptz, maybe text)' });
    await tx.copy('COPY copied FROM STDIN', data.bytes());
  });
  const rows = await client.$queryRawUnsafe<Array<{ n: number; t: string; b: Uint8Array; at: Date; maybe: string | null }>>('SELECT * FROM copied ORDER BY n');
  assert.deepEqual(
    rows.map((r) => r.t),
    texts.map((s) => s.replace('\u0000', '\ufffd')),
  );
  rows.forEach((r, i) => {
    assert.deepEqual(Buffer.from(r.b), Buffer.from(der.subarray(i)));
    assert.equal(r.at.getTime(), times[i % times.length]!.getTime());
    assert.equal(r.maybe, i === 1 ? null : 'y');
  });
});

test('a connection that breaks in the middle of a transaction fails that transaction only; the process and the pool carry on', async (t) => {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  const client = createPrismaClient(db.url, 2);
  t.after(() => client.$disconnect());
  const admin = new pg.Client({ connectionString: db.url });
  admin.on('error', () => {});
  await admin.connect();

  const failed = pgTransaction(client, async (tx) => {
    const [{ pid }] = await tx.query<{ pid: number }>({ text: 'SELECT pg_backend_pid() AS pid' });
    // Killed from outside while it sleeps, as a server restart or a network cut would.
    setTimeout(() => void admin.query('SELECT pg_terminate_backend($1)', [pid]), 200);
    await tx.query({ text: 'SELECT pg_sleep(5)' });
  });
  await assert.rejects(failed, /terminat/i);
  // The next transaction gets a working connection.
  const n = await pgTransaction(client, async (tx) => (await tx.query<{ n: number }>({ text: 'SELECT 1 AS n' }))[0]!.n);
  assert.equal(n, 1);
  await admin.end();
});
