import { pino } from 'pino';
import type { TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { createChangeFeed, createChangePublisher, type ChangeEvent, type ChangeFeed } from '../../src/db/change-feed.js';
import { createPrismaClient, type PrismaClient } from '../../src/db/prisma.js';
import { bootstrapManagement } from '../../src/modules/tenants/management-bootstrap.js';
import { createMetrics } from '../../src/plugins/metrics.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export const MANAGEMENT_PASSWORD = 'management-secret-1';
export const VERIFIER_TOKEN = 'test-verifier-token-0123456789';

export interface TestApp {
  app: FastifyInstance;
  prisma: PrismaClient;
  databaseUrl: string;
  /** Every change the app published, in order. */
  published: ChangeEvent[];
  management: string;
  /** The PostgreSQL LISTEN feed, when built with `changeFeed: true`. */
  changeFeed?: ChangeFeed;
}

export interface BuildOptions {
  bodyLimit?: number;
  authFailuresBeforeLockout?: number;
  /** Listen to the database's change feed (PostgreSQL LISTEN/NOTIFY), as a deployed process does. */
  changeFeed?: boolean;
  /**
   * Another process on the database of an app built before: no fresh database; the first app
   * drops it. Build the first one with `changeFeed: true` too when it must see this one's changes.
   */
  sameDatabaseAs?: TestApp;
  /** PUBLIC_URL: the base of `self`, `next` and `prev` links. */
  publicUrl?: string;
}

export function basic(login: string, password: string): string {
  return `Basic ${Buffer.from(`${login}:${password}`).toString('base64')}`;
}

/** Builds the app on a fresh database (fastify/demo's `build(t)`); closed when the test ends. */
export async function build(t: TestContext, opts: BuildOptions = {}): Promise<TestApp> {
  const db: TestDatabase = opts.sameDatabaseAs
    ? { url: opts.sameDatabaseAs.databaseUrl, drop: async () => {} }
    : await createTestDatabase();
  const prisma = createPrismaClient(db.url);
  const boot = await bootstrapManagement(prisma, { adminPassword: MANAGEMENT_PASSWORD, verifierToken: VERIFIER_TOKEN });
  const changeFeed = opts.changeFeed ? await createChangeFeed(db.url) : undefined;
  const published: ChangeEvent[] = [];
  const notify = createChangePublisher(prisma);
  const app = await buildApp({
    prisma,
    publisher: {
      async publish(events, tx) {
        await notify.publish(events, tx);
        published.push(...events);
      },
    },
    metrics: createMetrics(),
    readiness: async () => {},
    verifierTokenSha256: boot.verifierTokenSha256,
    changeFeed,
    // TEST_LOG=warn shows what the app logs (the verifier's reasons for a 503, for instance).
    logger: process.env.TEST_LOG ? pino({ level: process.env.TEST_LOG }) : false,
    bodyLimit: opts.bodyLimit,
    authFailuresBeforeLockout: opts.authFailuresBeforeLockout,
    publicUrl: opts.publicUrl,
  });
  // Every test also checks the contract's error rules on every response it caused:
  // nothing answers 500, and every error body is {error, message, info}.
  const contractViolations: string[] = [];
  app.addHook('onSend', async (req, reply, payload) => {
    const status = reply.statusCode;
    if (status < 400) return payload;
    const where = `${req.method} ${req.url} -> ${status}`;
    if (status === 500) contractViolations.push(`${where}: 500 answered`);
    if (typeof payload !== 'string') {
      contractViolations.push(`${where}: error body is not JSON text`);
      return payload;
    }
    try {
      const body = JSON.parse(payload) as Record<string, unknown>;
      for (const key of ['error', 'message', 'info']) {
        if (typeof body[key] !== 'string' || body[key] === '') contractViolations.push(`${where}: error body lacks "${key}"`);
      }
      if (/\bat .+:\d+:\d+\)?/.test(String(body.message))) contractViolations.push(`${where}: stack trace in message`);
    } catch {
      contractViolations.push(`${where}: error body is not JSON`);
    }
    return payload;
  });
  t.after(() => {
    if (contractViolations.length > 0) {
      throw new Error(`error responses broke the error shape {error, message, info}:\n${contractViolations.join('\n')}`);
    }
  });
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // Apps sharing this database close before its owner drops it.
      if (!opts.sameDatabaseAs) for (const other of sharers.get(db.url) ?? []) if (other !== close) await other();
      await app.close();
      await changeFeed?.close();
      await prisma.$disconnect();
      if (!opts.sameDatabaseAs) {
        sharers.delete(db.url);
        await db.drop();
      }
    })());
  sharers.set(db.url, [...(sharers.get(db.url) ?? []), close]);
  t.after(close);
  return { app, prisma, databaseUrl: db.url, published, management: basic('management/admin', MANAGEMENT_PASSWORD), changeFeed };
}

/** Close functions of the apps on each database, so a shared one is dropped last. */
const sharers = new Map<string, Array<() => Promise<void>>>();

/** Creates a tenant through the API and returns its admin's Authorization header. */
export async function createTenant(
  t: TestApp,
  id: string,
  admin = { name: 'admin', pass: 'tenant-admin-pass' },
): Promise<string> {
  const res = await t.app.inject({
    method: 'POST',
    url: '/tenant/tenants',
    headers: { authorization: t.management },
    payload: { id, company: `${id} Inc.`, domain: `${id}.example.com`, adminName: admin.name, adminPass: admin.pass },
  });
  if (res.statusCode !== 201) throw new Error(`tenant ${id}: ${res.statusCode} ${res.body}`);
  return basic(`${id}/${admin.name}`, admin.pass);
}
