/**
 * `npm run prisma:embedded -- <prisma arguments>`: runs the Prisma CLI against certgate's embedded
 * PostgreSQL (the one `npm start` uses when DATABASE_URL is unset, kept under DATA_DIR, default
 * `.data`). If certgate is running, its server is used as it is; otherwise one is started for the
 * command and stopped after it. Example: `npm run prisma:embedded -- migrate dev --name add_x`.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const dataDir = path.resolve(process.env.DATA_DIR || '.data');

/** The URL of an embedded server that is already running on this data dir, if any. */
async function runningServer(): Promise<string | undefined> {
  try {
    const settings = JSON.parse(await fs.readFile(path.join(dataDir, 'embedded-postgres.json'), 'utf8')) as {
      port: number;
      password: string;
    };
    const url = `postgresql://postgres:${encodeURIComponent(settings.password)}@127.0.0.1:${settings.port}/certgate`;
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    await client.connect();
    await client.end();
    return url;
  } catch {
    return undefined;
  }
}

let url = await runningServer();
let stop: (() => Promise<void>) | undefined;
if (!url) {
  const db = await startEmbeddedPostgres(dataDir);
  url = db.url;
  stop = db.stop;
}
process.stderr.write(`embedded PostgreSQL: ${url.replace(/:[^:@/]+@/, ':***@')}\n`);

const child = spawn(process.execPath, [path.join(repo, 'node_modules', 'prisma', 'build', 'index.js'), ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: {
    ...process.env,
    DATABASE_URL: url,
    // the schema engine stand-in runs on this same Node
    PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
  },
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
const code: number = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
await stop?.();
process.exit(code);
