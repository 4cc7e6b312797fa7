import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { applyMigrations } from '../../src/db/migrate.js';

/**
 * Tests run against a real PostgreSQL: the server named by TEST_DATABASE_URL (the test runner
 * starts an embedded one and sets it), else an embedded server started for this process.
 * Each caller gets a fresh database with every migration applied.
 */
let serverUrl: Promise<string> | undefined;
let stopServer: (() => Promise<void>) | undefined;

// A server this file started is stopped when the file's tests are done; otherwise the running
// PostgreSQL child would keep the test process alive (`node --test one.test.ts`).
after(async () => {
  await stopServer?.();
});

async function server(): Promise<string> {
  if (process.env.TEST_DATABASE_URL) return process.env.TEST_DATABASE_URL;
  serverUrl ??= (async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-test-pg-'));
    await fs.chmod(dir, 0o755);
    const db = await startEmbeddedPostgres(dir);
    stopServer = async () => {
      await db.stop();
      await fs.rm(dir, { recursive: true, force: true });
    };
    return db.url;
  })();
  return serverUrl;
}

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = new URL(await server());
  const name = `cg_test_${crypto.randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  const url = new URL(admin);
  url.pathname = `/${name}`;
  await applyMigrations(url.toString());
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: admin.toString() });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * Another connection to the test database, for a transaction that holds locks while the code
 * under test runs (ended when the test ends; the database is dropped with its connections).
 */
export async function otherConnection(t: { after(fn: () => Promise<void>): void }, url: string) {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  t.after(() => client.end().catch(() => {}));
  return {
    query: (text: string, values?: unknown[]) => client.query(text, values),
    /** Resolves once `n` connections of this database wait for a lock. */
    async waiters(n: number, what: string): Promise<void> {
      for (let i = 0; ; i++) {
        const { rows } = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
        if (rows[0]!.n >= n) return;
        if (i >= 200) throw new Error(`${what}: fewer than ${n} connection(s) waited for a lock within 5 s`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}
