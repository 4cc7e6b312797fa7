/**
 * `npm test`: starts one embedded PostgreSQL for the whole run (unless TEST_DATABASE_URL names a
 * server), then runs every test file with node:test. Each test creates its own database on it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.js';

const args = process.argv.slice(2);
let stop: (() => Promise<void>) | undefined;
let dir: string | undefined;
if (!process.env.TEST_DATABASE_URL) {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-test-pg-'));
  await fs.chmod(dir, 0o755);
  const db = await startEmbeddedPostgres(dir);
  stop = db.stop;
  process.env.TEST_DATABASE_URL = db.url.replace(/\/certgate$/, '/postgres');
  process.stdout.write(`# embedded PostgreSQL for tests at ${process.env.TEST_DATABASE_URL.replace(/:[^:@/]+@/, ':***@')}\n`);
}

const files = args.length ? args : ['test/**/*.test.ts'];
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=300000', ...files],
  { stdio: 'inherit', env: process.env },
);
const code: number = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
await stop?.();
if (dir) await fs.rm(dir, { recursive: true, force: true });
process.exit(code);
