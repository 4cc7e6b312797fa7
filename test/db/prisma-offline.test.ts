/**
 * Smoke test of the Prisma CLI running offline on the schema engine stand-in
 * (scripts/prisma-schema-engine.mjs, wired in by prisma.config.ts; see docs/prisma-offline.md).
 *
 * It runs the real CLI against a real PostgreSQL: the server named by TEST_DATABASE_URL, else an
 * embedded one started here. The CLI works on a scratch copy of prisma/schema.prisma (and of
 * prisma/migrations, if any) in a temporary directory, in a scratch database, under a
 * non-default Postgres schema so the `?schema=` handling is exercised too.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const prismaCli = path.join(repo, 'node_modules', 'prisma', 'build', 'index.js');
const SCHEMA = 'cg_smoke';

let work: string; // scratch project: prisma.config.ts, prisma/schema.prisma, prisma/migrations
let serverUrl: string; // a database on the server that we may use for CREATE/DROP DATABASE
let databaseUrl: string; // the scratch database, with ?schema=
let databaseName: string;
let stopServer: (() => Promise<void>) | undefined;
let pgDir: string | undefined;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  output: string;
}

function prisma(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    // The engine stand-in is started through its `#!/usr/bin/env node` line: the same Node as ours.
    PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
    DATABASE_URL: databaseUrl,
    CHECKPOINT_DISABLE: '1',
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
    NO_COLOR: '1',
    ...env,
  };
  // The repo's prisma.config.ts must be the one that picks the engine.
  delete childEnv.PRISMA_SCHEMA_ENGINE_BINARY;
  delete childEnv.SHADOW_DATABASE_URL;
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [prismaCli, ...args, '--config', path.join(work, 'prisma.config.ts')], {
      cwd: work,
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, output: `${stdout}\n${stderr}` });
    });
  });
}

function explain(run: Run): string {
  return `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function migrationDirs(): Promise<string[]> {
  const entries = await fs.readdir(path.join(work, 'prisma', 'migrations'), { withFileTypes: true });
  return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
}

async function shadowDatabases(): Promise<string[]> {
  const r = await withClient(serverUrl, (c) =>
    c.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'prisma_migrate_shadow_db_%'`),
  );
  return r.rows.map((row) => row.datname);
}

before(async () => {
  if (process.env.TEST_DATABASE_URL) {
    serverUrl = process.env.TEST_DATABASE_URL;
  } else {
    pgDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-prisma-pg-'));
    await fs.chmod(pgDir, 0o755); // the server runs as user postgres
    const server = await startEmbeddedPostgres(pgDir);
    stopServer = server.stop;
    serverUrl = server.url;
  }
  databaseName = `cg_prisma_smoke_${crypto.randomBytes(5).toString('hex')}`;
  await withClient(serverUrl, (c) => c.query(`CREATE DATABASE ${databaseName}`));
  const url = new URL(serverUrl);
  url.pathname = `/${databaseName}`;
  url.searchParams.set('schema', SCHEMA);
  databaseUrl = url.toString();

  work = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-prisma-cli-'));
  await fs.mkdir(path.join(work, 'prisma', 'migrations'), { recursive: true });
  const schema = await fs.readFile(path.join(repo, 'prisma', 'schema.prisma'), 'utf8');
  await fs.writeFile(
    path.join(work, 'prisma', 'schema.prisma'),
    schema.replace(/output\s*=\s*"[^"]*"/, 'output = "../generated"'),
  );
  const repoMigrations = path.join(repo, 'prisma', 'migrations');
  if (await fs.stat(repoMigrations).catch(() => undefined)) {
    await fs.cp(repoMigrations, path.join(work, 'prisma', 'migrations'), { recursive: true });
  }
  // The repo's own config (engine wiring included), pointed at the scratch schema and migrations.
  const repoConfig = path.join(repo, 'prisma.config.ts');
  await fs.writeFile(
    path.join(work, 'prisma.config.ts'),
    [
      `import base from ${JSON.stringify(repoConfig)};`,
      `export default {`,
      `  ...base,`,
      `  schema: ${JSON.stringify(path.join(work, 'prisma', 'schema.prisma'))},`,
      `  migrations: { ...base.migrations, path: ${JSON.stringify(path.join(work, 'prisma', 'migrations'))} },`,
      `};`,
      '',
    ].join('\n'),
  );
});

after(async () => {
  if (serverUrl && databaseName) {
    await withClient(serverUrl, async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
    }).catch(() => {});
  }
  if (work) await fs.rm(work, { recursive: true, force: true });
  await stopServer?.();
  if (pgDir) await fs.rm(pgDir, { recursive: true, force: true });
});

test('prisma generate needs no database', async () => {
  const run = await prisma(['generate'], { DATABASE_URL: undefined });
  assert.equal(run.code, 0, explain(run));
  assert.match(run.output, /Generated Prisma Client/);
  await fs.access(path.join(work, 'generated', 'client.ts'));
});

test('migrate deploy applies the migration history to a new schema', async () => {
  if ((await migrationDirs()).length === 0) {
    // No migrations in the repo yet: the initial one, from the engine's schema-to-schema diff.
    const dir = path.join(work, 'prisma', 'migrations', '00000000000000_init');
    await fs.mkdir(dir);
    const diff = await prisma([
      'migrate', 'diff', '--from-empty', '--to-schema', path.join(work, 'prisma', 'schema.prisma'),
      '--script', '--output', path.join(dir, 'migration.sql'),
    ]);
    assert.equal(diff.code, 0, explain(diff));
    await fs.writeFile(path.join(work, 'prisma', 'migrations', 'migration_lock.toml'), 'provider = "postgresql"\n');
  }
  const names = await migrationDirs();

  const run = await prisma(['migrate', 'deploy']);
  assert.equal(run.code, 0, explain(run));
  assert.match(run.output, /All migrations have been successfully applied/);

  const applied = await withClient(serverUrl.replace(/\/[^/?]*(\?.*)?$/, `/${databaseName}`), async (c) => {
    const rows = await c.query<{ migration_name: string }>(
      `SELECT migration_name FROM "${SCHEMA}"."_prisma_migrations" WHERE finished_at IS NOT NULL ORDER BY migration_name`,
    );
    const tables = await c.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'Tenant'`,
      [SCHEMA],
    );
    assert.equal(tables.rows[0].n, 1, 'the Tenant table is in the ?schema= schema');
    return rows.rows.map((r) => r.migration_name);
  });
  assert.deepEqual(applied, names);
});

test('migrate status reports an up-to-date database', async () => {
  const run = await prisma(['migrate', 'status']);
  assert.equal(run.code, 0, explain(run));
  assert.match(run.output, /Database schema is up to date!/);
});

test('prisma/migrations reproduce prisma/schema.prisma', async () => {
  // Replays the history in a shadow database and compares it with the schema file.
  const run = await prisma([
    'migrate', 'diff', '--from-migrations', path.join(work, 'prisma', 'migrations'),
    '--to-schema', path.join(work, 'prisma', 'schema.prisma'), '--exit-code',
  ]);
  assert.equal(
    run.code,
    0,
    `prisma/schema.prisma has changes that no migration makes: create one with ` +
      `\`npx prisma migrate dev --name <what-changed>\` (docs/prisma-offline.md)\n${explain(run)}`,
  );
});

test('migrate dev --create-only writes a migration for a schema change, migrate dev applies it', async () => {
  const before = await migrationDirs();
  const shadowBefore = await shadowDatabases();
  const schemaFile = path.join(work, 'prisma', 'schema.prisma');
  await fs.appendFile(
    schemaFile,
    '\nmodel SmokeProbe {\n  id    Int     @id @default(autoincrement())\n  label String  @db.VarChar(40)\n  note  String?\n\n  @@index([label])\n}\n',
  );

  const create = await prisma(['migrate', 'dev', '--name', 'smoke_probe', '--create-only']);
  assert.equal(create.code, 0, explain(create));
  const added = (await migrationDirs()).filter((d) => !before.includes(d));
  assert.equal(added.length, 1, `one new migration directory: ${added.join(', ')}\n${explain(create)}`);
  assert.match(added[0], /^\d{14}_smoke_probe$/);
  const sql = await fs.readFile(path.join(work, 'prisma', 'migrations', added[0], 'migration.sql'), 'utf8');
  assert.match(sql, /CREATE TABLE "SmokeProbe"/);
  assert.match(sql, /"label" VARCHAR\(40\) NOT NULL/);
  assert.match(sql, /CREATE INDEX "SmokeProbe_label_idx"/);

  const pending = await prisma(['migrate', 'status']);
  assert.equal(pending.code, 1, explain(pending));
  assert.match(pending.output, new RegExp(`not yet been applied:\\s+${added[0]}`));

  // Applies the pending migration, replays the history in a shadow database and evaluates
  // data loss: the paths that need the stand-in's shadow-database handling.
  const dev = await prisma(['migrate', 'dev', '--name', 'nothing_else']);
  assert.equal(dev.code, 0, explain(dev));
  assert.match(dev.output, new RegExp(`applied:[\\s\\S]*${added[0]}`));
  assert.match(dev.output, /in sync with your schema/);
  assert.deepEqual((await migrationDirs()).filter((d) => !before.includes(d)), added, 'no second migration');

  const status = await prisma(['migrate', 'status']);
  assert.equal(status.code, 0, explain(status));

  const shadowAfter = await shadowDatabases();
  assert.deepEqual(shadowAfter.filter((d) => !shadowBefore.includes(d)), [], 'shadow databases are dropped');
});
