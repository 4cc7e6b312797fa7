import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorSchema } from '../../lib/http-schemas.js';
import type { Metrics } from '../../plugins/metrics.js';

const tags = ['Operations'];

export interface HealthDeps {
  /** Resolves when the database answers and every migration is applied; rejects with why not. */
  readiness: () => Promise<void>;
  metrics: Metrics;
}

// These answer without credentials (load balancers, Kubernetes probes, Prometheus): `security: []`
// keeps the document from claiming the API-wide Basic authentication for them.
export async function healthRouter(app: FastifyInstance, { readiness, metrics }: HealthDeps) {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get('/health', {
    schema: {
      tags,
      operationId: 'health',
      description: 'The process is up.',
      security: [],
      response: { 200: z.object({ status: z.literal('UP') }), default: errorSchema },
    },
    handler: async () => ({ status: 'UP' as const }),
  });

  r.get('/ready', {
    schema: {
      tags,
      operationId: 'ready',
      description: 'The database is reachable and every migration is applied.',
      security: [],
      response: { 200: z.object({ status: z.literal('READY') }), 503: errorSchema },
    },
    handler: async (req, reply) => {
      try {
        await readiness();
        return { status: 'READY' as const };
      } catch (err) {
        req.log.warn({ err: (err as Error).message }, 'not ready');
        return reply.status(503).send({
          error: 'service/NotReady',
          message: (err as Error).message.slice(0, 200),
          info: '/docs',
        });
      }
    },
  });

  r.get('/metrics', {
    schema: {
      tags,
      operationId: 'metrics',
      description: 'Prometheus metrics: HTTP latency, verifier decisions and latency, MQTT connections.',
      security: [],
      response: {
        200: {
          description: 'Prometheus text exposition format',
          content: { 'text/plain': { schema: z.string().describe('Prometheus text exposition format') } },
        },
        default: errorSchema,
      },
    },
    handler: async (_req, reply) => {
      reply.type(metrics.registry.contentType);
      return metrics.render();
    },
  });
}
