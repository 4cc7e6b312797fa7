import crypto from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { UnauthorizedError } from '../../errors.js';
import { errorSchema } from '../../lib/http-schemas.js';
import { createBurstLogger } from '../../lib/logger.js';
import type { Metrics } from '../../plugins/metrics.js';

const tags = ['Operations'];

export interface HealthDeps {
  /** Resolves when the database answers and every migration is applied; rejects with why not. */
  readiness: () => Promise<void>;
  metrics: Metrics;
  /** When set, `/metrics` answers only `Authorization: Bearer <metricsToken>`. */
  metricsToken?: string;
  /** `false` leaves `/metrics` out. */
  metricsEnabled?: boolean;
  /** Where an error body's `info` points. */
  info?: string;
}

function checkMetricsToken(req: FastifyRequest, expected: Buffer): void {
  const header = req.headers.authorization;
  const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : '';
  const actual = crypto.hash('sha256', token, 'buffer');
  if (!token || !crypto.timingSafeEqual(actual, expected)) {
    throw new UnauthorizedError('The metrics token is required (Authorization: Bearer <METRICS_TOKEN>)', 'metrics/Unauthorized');
  }
}

// These answer without credentials (load balancers, Kubernetes probes, Prometheus): `security: []`
// keeps the document from claiming the API-wide Basic authentication for them.
export async function healthRouter(app: FastifyInstance, { readiness, metrics, metricsToken, metricsEnabled = true, info = '/docs' }: HealthDeps) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  // Probes ask every few seconds: an outage is one line per burst, not one per probe.
  const notReady = createBurstLogger(app.log);

  r.get('/health', {
    schema: {
      tags,
      operationId: 'health',
      summary: 'Liveness: the process is up',
      description: 'The process is up. No login needed.',
      security: [],
      response: { 200: z.object({ status: z.literal('UP') }), default: errorSchema },
    },
    handler: async () => ({ status: 'UP' as const }),
  });

  r.get('/ready', {
    schema: {
      tags,
      operationId: 'ready',
      summary: 'Readiness: the database is reachable and migrated',
      description: 'The database is reachable and every migration is applied; 503 with the reason otherwise. No login needed.',
      security: [],
      response: { 200: z.object({ status: z.literal('READY') }), 503: errorSchema },
    },
    handler: async (req, reply) => {
      try {
        await readiness();
        return { status: 'READY' as const };
      } catch (err) {
        notReady.warn('not-ready', { reason: (err as Error).message }, 'not ready');
        return reply.status(503).send({
          error: 'service/NotReady',
          message: (err as Error).message.slice(0, 200),
          info,
        });
      }
    },
  });

  if (!metricsEnabled) return;
  const expected = metricsToken ? crypto.hash('sha256', metricsToken, 'buffer') : undefined;
  r.get('/metrics', {
    onRequest: async (req) => {
      if (expected) checkMetricsToken(req, expected);
    },
    schema: {
      tags,
      operationId: 'metrics',
      summary: 'Prometheus metrics',
      description:
        'Prometheus metrics: HTTP latency, verifier decisions by result and reason, verifier latency, MQTT connections. ' +
        'Open unless METRICS_TOKEN is set; then `Authorization: Bearer <METRICS_TOKEN>` is required. METRICS_ENABLED=false removes it.',
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
