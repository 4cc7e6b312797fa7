/**
 * A PostgreSQL of the test's own, which the test may freeze (SIGSTOP on every PostgreSQL process of
 * it, as a hung host or a stalled disk would leave it), thaw, and stop: never the suite's shared
 * server, never the system's. Started in a temporary directory, stopped and removed when the test
 * ends; a frozen server is always thawed first.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { buildApp, type AppDeps } from '../../src/app.js';
import { createChangeFeed, createChangePublisher } from '../../src/db/change-feed.js';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { applyMigrations } from '../../src/db/migrate.js';
import { createPrismaClient } from '../../src/db/prisma.js';
import { sha256Hex } from '../../src/lib/passwords.js';
import { bootstrapManagement } from '../../src/modules/tenants/management-bootstrap.js';
import { createMetrics } from '../../src/plugins/metrics.js';
import { MANAGEMENT_PASSWORD, VERIFIER_TOKEN, type TestApp } from './app.js';

export interface OwnPostgres {
  /** The `certgate` database on it, migrated. */
  url: string;
  /** SIGSTOP to the postmaster and every process under it; answers the pids stopped. */
  freeze(): Promise<number[]>;
  /** SIGCONT to what `freeze` stopped. */
  thaw(): void;
}

export async function ownPostgres(t: Pick<TestContext, 'after'>): Promise<OwnPostgres> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certgate-own-pg-'));
  await fs.chmod(dir, 0o755);
  const db = await startEmbeddedPostgres(dir);
  let frozen: number[] = [];
  const thaw = () => {
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone already
      }
    }
    frozen = [];
  };
  t.after(async () => {
    thaw();
    await db.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });
  await applyMigrations(db.url);
  const settings = JSON.parse(await fs.readFile(path.join(dir, 'embedded-postgres.json'), 'utf8')) as { clusterDir?: string };
  const clusterDir = settings.clusterDir ?? path.join(dir, 'pg');
  return {
    url: db.url,
    async freeze() {
      // postmaster.pid's first line is the postmaster's pid (PostgreSQL's miscinit.c, CreateLockFile).
      const postmaster = Number((await fs.readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
      // The postmaster first, so it forks no new backend while its children are being stopped.
      const pids = [postmaster, ...(await childrenOf(postmaster))];
      for (const pid of pids) {
        process.kill(pid, 'SIGSTOP');
        frozen.push(pid);
      }
      // A backend forked between the listing and the postmaster's stop is caught by a second look.
      for (const pid of await childrenOf(postmaster)) {
        if (frozen.includes(pid)) continue;
        process.kill(pid, 'SIGSTOP');
        frozen.push(pid);
      }
      return [...frozen];
    },
    thaw,
  };
}

/** The pids whose parent is `parent`, from /proc (field 4 of /proc/<pid>/stat, after the name). */
async function childrenOf(parent: number): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8');
      // The name is in parentheses and may hold spaces: the fields after it are read from its end.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/**
 * The app as `certgate api` builds it (store, change feed, default timeouts) on a database of the
 * test's own, with `extra` dependencies; closed when the test ends.
 */
export async function appOn(t: Pick<TestContext, 'after'>, url: string, extra: Partial<AppDeps> = {}): Promise<TestApp & { metrics: ReturnType<typeof createMetrics> }> {
  const prisma = createPrismaClient(url);
  const feed = await createChangeFeed(url);
  await bootstrapManagement(prisma, { adminPassword: MANAGEMENT_PASSWORD, verifierToken: VERIFIER_TOKEN });
  const metrics = createMetrics();
  const app = await buildApp({
    prisma,
    publisher: createChangePublisher(prisma),
    changeFeed: feed,
    metrics,
    readiness: async () => {},
    verifierTokenSha256: sha256Hex(VERIFIER_TOKEN),
    logger: false,
    ...extra,
  });
  let closed = false;
  t.after(async () => {
    if (!closed) await app.close();
    await feed.close();
    await prisma.$disconnect();
  });
  app.addHook('onClose', async () => {
    closed = true;
  });
  const management = `Basic ${Buffer.from(`management/admin:${MANAGEMENT_PASSWORD}`).toString('base64')}`;
  return { app, prisma, databaseUrl: url, published: [], management, changeFeed: feed, metrics };
}
