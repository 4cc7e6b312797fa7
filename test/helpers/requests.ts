import type { InjectOptions } from 'fastify';
import type { PrismaClient } from '../../src/db/prisma.js';
import type { TestApp } from './app.js';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  /** Parsed JSON, or the raw text when the body is not JSON. */
  body: any;
  text: string;
}

/** One request through `app.inject`, with the body parsed. */
export async function call(
  t: Pick<TestApp, 'app'>,
  method: InjectOptions['method'],
  url: string,
  auth?: string,
  payload?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await t.app.inject({
    method,
    url,
    headers: { ...(auth ? { authorization: auth } : {}), ...headers },
    ...(payload === undefined ? {} : { payload: payload as InjectOptions['payload'] }),
  });
  let body: unknown = res.body;
  if (String(res.headers['content-type'] ?? '').includes('json') && res.body !== '') {
    body = JSON.parse(res.body);
  }
  return { status: res.statusCode, headers: res.headers, body, text: res.body };
}

/** The path and query of an absolute link the API returned (`self`, `next`, `prev`). */
export function pathOf(link: string): string {
  const u = new URL(link);
  return `${u.pathname}${u.search}`;
}

export interface DatabaseSnapshot {
  /** Rows per table. */
  counts: Record<string, number>;
  /** A digest of every row per table, so changed rows show as well as added or removed ones. */
  digests: Record<string, string>;
}

/** Row counts and content digests of every table of the schema (migration bookkeeping excluded). */
export async function snapshotDatabase(prisma: PrismaClient): Promise<DatabaseSnapshot> {
  const tables = await prisma.$queryRawUnsafe<Array<{ table_name: string }>>(
    `SELECT table_name FROM information_schema.tables
      WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> '_prisma_migrations'
      ORDER BY table_name`,
  );
  const counts: Record<string, number> = {};
  const digests: Record<string, string> = {};
  for (const { table_name: name } of tables) {
    const [row] = await prisma.$queryRawUnsafe<Array<{ n: bigint; digest: string | null }>>(
      `SELECT count(*) AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS digest FROM "${name}" t`,
    );
    counts[name] = Number(row!.n);
    digests[name] = row!.digest ?? '';
  }
  return { counts, digests };
}

/** Row counts of every table that has a tenantId column, for one tenant. */
export async function tenantRowCounts(prisma: PrismaClient, tenantId: string): Promise<Record<string, number>> {
  const tables = await prisma.$queryRawUnsafe<Array<{ table_name: string }>>(
    `SELECT table_name FROM information_schema.columns
      WHERE table_schema = current_schema() AND column_name = 'tenantId' ORDER BY table_name`,
  );
  const out: Record<string, number> = {};
  for (const { table_name: name } of tables) {
    const [row] = await prisma.$queryRawUnsafe<Array<{ n: bigint }>>(
      `SELECT count(*) AS n FROM "${name}" WHERE "tenantId" = $1`,
      tenantId,
    );
    out[name] = Number(row!.n);
  }
  const [tenant] = await prisma.$queryRawUnsafe<Array<{ n: bigint }>>(`SELECT count(*) AS n FROM "Tenant" WHERE id = $1`, tenantId);
  out.Tenant = Number(tenant!.n);
  return out;
}
