import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client.js';

export type { PrismaClient } from '../generated/prisma/client.js';
export type { Prisma } from '../generated/prisma/client.js';

/** Prisma on the pure-JS `pg` driver: no query-engine binary is needed at run time. */
export function createPrismaClient(databaseUrl: string, poolSize = 10): PrismaClient {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema') ?? undefined;
  url.searchParams.delete('schema');
  const adapter = new PrismaPg(
    { connectionString: url.toString(), max: poolSize, connectionTimeoutMillis: 5_000 },
    schema ? { schema } : undefined,
  );
  return new PrismaClient({ adapter });
}

/** A Prisma client or an interactive transaction: repositories accept either. */
export type Db = Pick<
  PrismaClient,
  | 'tenant'
  | 'user'
  | 'deviceProfile'
  | 'trustedCertificate'
  | 'device'
  | 'deviceCredential'
  | 'revokedSerial'
  | 'authEvent'
  | 'setting'
  | '$queryRawUnsafe'
  | '$executeRawUnsafe'
>;
