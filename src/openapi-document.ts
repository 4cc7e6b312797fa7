import { buildApp } from './app.js';
import { createPrismaClient } from './db/prisma.js';
import { createMetrics } from './plugins/metrics.js';

/**
 * The OpenAPI document as the route schemas describe it. Building the app does not touch the
 * database (Prisma connects on first query), so this runs anywhere.
 */
export async function generateOpenApiDocument(): Promise<object> {
  const prisma = createPrismaClient('postgresql://openapi@127.0.0.1:1/openapi');
  const app = await buildApp({
    prisma,
    publisher: { publish: async () => {} },
    metrics: createMetrics(),
    readiness: async () => {},
    verifierTokenSha256: '0'.repeat(64),
    logger: false,
  });
  try {
    await app.ready();
    return app.swagger();
  } finally {
    await app.close();
    await prisma.$disconnect();
  }
}

export function serializeOpenApi(doc: object): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}
