import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { authorizeTenant, isManagement, requireManagement } from '../../plugins/auth.js';
import { collectionSchema, errorResponses, pagingQuery } from '../../lib/http-schemas.js';
import { baseUrl, collection, pageWindow } from '../../lib/paging.js';
import { createTenantBody, tenantParams, tenantSchema, updateTenantBody, type TenantView } from './tenants-schemas.js';
import type { TenantsService } from './tenants-service.js';

const tags = ['Tenants'];

export async function tenantsRouter(app: FastifyInstance, opts: { service: TenantsService }) {
  const { service } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const withSelf = (req: FastifyRequest, t: TenantView) => ({ ...t, self: `${baseUrl(req)}/tenant/tenants/${t.id}` });

  r.post('/tenant/tenants', {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'createTenant',
      summary: 'Create a tenant',
      description: 'Creates a tenant with its first administrator and default device profile. Management tenant only.',
      body: createTenantBody,
      response: { 201: tenantSchema, ...errorResponses(400, 401, 403, 409, 413, 429, 503) },
    },
    handler: async (req, reply) => {
      requireManagement(req);
      const t = await service.create(req.body);
      return reply.status(201).send(withSelf(req, t));
    },
  });

  r.get('/tenant/tenants', {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'listTenants',
      summary: 'List tenants',
      description: 'Lists tenants, paged. Management tenant only.',
      querystring: pagingQuery,
      response: {
        200: collectionSchema('tenants', tenantSchema),
        ...errorResponses(400, 401, 403, 429, 503),
      },
    },
    handler: async (req) => {
      requireManagement(req);
      const { skip, take } = pageWindow(req.query);
      const page = await service.list(skip, take, req.query.withTotalPages);
      return collection(req, 'tenants', { items: page.items.map((t) => withSelf(req, t)), total: page.total }, req.query);
    },
  });

  r.get('/tenant/tenants/:tenantId', {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'getTenant',
      summary: 'Get a tenant',
      description: 'Reads one tenant: its own users, or the management tenant.',
      params: tenantParams,
      response: { 200: tenantSchema, ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      authorizeTenant(req, req.params.tenantId, 'tenant', false);
      return withSelf(req, await service.get(req.params.tenantId));
    },
  });

  r.put('/tenant/tenants/:tenantId', {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'updateTenant',
      summary: 'Change a tenant (company, domain, status)',
      description:
        'Changes company or domain (tenant admin or management), or suspends/activates the tenant (management only). ' +
        'A suspended tenant\'s devices are denied with TENANT_SUSPENDED and their live sessions are closed.',
      params: tenantParams,
      body: updateTenantBody,
      response: { 200: tenantSchema, ...errorResponses(400, 401, 403, 404, 413, 429, 503) },
    },
    handler: async (req) => {
      const byManagement = isManagement(req);
      if (!byManagement) authorizeTenant(req, req.params.tenantId, 'tenant', true);
      return withSelf(req, await service.update(req.params.tenantId, req.body, byManagement));
    },
  });

  r.delete('/tenant/tenants/:tenantId', {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'deleteTenant',
      summary: 'Delete a tenant and everything in it',
      description: 'Deletes the tenant and everything it owns. Management tenant only.',
      params: tenantParams,
      response: { 204: z.null().describe('Deleted'), ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'tenant', false);
      requireManagement(req);
      await service.remove(req.params.tenantId);
      return reply.status(204).send(null);
    },
  });
}
