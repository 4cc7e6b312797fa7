import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { PrismaClient } from '../../db/prisma.js';
import { authorizeTenant } from '../../plugins/auth.js';
import { collectionSchema, errorResponses, isoDateTime, pagingQuery } from '../../lib/http-schemas.js';
import { collection, pageWindow } from '../../lib/paging.js';

const authEventSchema = z
  .object({
    id: z.string(),
    time: z.string(),
    result: z.enum(['allow', 'deny']),
    reason: z.string().optional(),
    message: z.string(),
    clientId: z.string().optional(),
    deviceId: z.string().optional(),
    deviceName: z.string().optional(),
    fingerprint: z.string().optional().describe('SHA-256 of the presented leaf'),
  })
  .meta({ id: 'AuthEvent' });

const query = pagingQuery.extend({
  deviceName: z.string().max(256).optional(),
  result: z.enum(['allow', 'deny']).optional(),
  since: isoDateTime.optional().describe('Only events at or after this time'),
});

/** Every verifier decision about the tenant's devices, newest first. */
export async function authEventsRouter(app: FastifyInstance, opts: { prisma: Pick<PrismaClient, 'authEvent'> }) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/tenant/tenants/:tenantId/auth-events', {
    onRequest: app.authenticate,
    schema: {
      tags: ['Auth events'],
      operationId: 'listAuthEvents',
      summary: 'Why a device was allowed or refused (auth events)',
      description: 'Lists the verifier\'s decisions for the tenant, newest first; filter by `deviceName`, `result`, `since`.',
      params: z.strictObject({ tenantId: z.string().min(1).max(64) }),
      querystring: query,
      response: { 200: collectionSchema('events', authEventSchema), ...errorResponses(400, 401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      const { tenantId } = req.params;
      authorizeTenant(req, tenantId, 'auth-events', false);
      const q = req.query;
      const where = {
        tenantId,
        ...(q.deviceName !== undefined ? { deviceName: q.deviceName } : {}),
        ...(q.result !== undefined ? { result: q.result } : {}),
        ...(q.since !== undefined ? { time: { gte: new Date(q.since) } } : {}),
      };
      const { skip, take } = pageWindow(q);
      const [rows, total] = await Promise.all([
        opts.prisma.authEvent.findMany({ where, orderBy: [{ time: 'desc' }, { id: 'desc' }], skip, take }),
        q.withTotalPages ? opts.prisma.authEvent.count({ where }) : Promise.resolve(undefined),
      ]);
      const items = rows.map((e) => ({
        id: e.id.toString(),
        time: e.time.toISOString(),
        result: e.result as 'allow' | 'deny',
        ...(e.reason ? { reason: e.reason } : {}),
        message: e.message,
        ...(e.clientId ? { clientId: e.clientId } : {}),
        ...(e.deviceId ? { deviceId: e.deviceId } : {}),
        ...(e.deviceName ? { deviceName: e.deviceName } : {}),
        ...(e.fingerprint ? { fingerprint: e.fingerprint } : {}),
      }));
      return collection(req, 'events', { items, total }, q);
    },
  });
}
