import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { authorizeTenant } from '../../plugins/auth.js';
import { collectionSchema, errorResponses, pagingQuery } from '../../lib/http-schemas.js';
import { baseUrl, collection, pageWindow } from '../../lib/paging.js';
import {
  createDeviceProfileBody,
  deviceProfileSchema,
  profileParams,
  profilesParams,
  updateDeviceProfileBody,
  type DeviceProfileView,
} from './device-profiles-schemas.js';
import type { DeviceProfilesService } from './device-profiles-service.js';

const tags = ['Device profiles'];

export async function deviceProfilesRouter(app: FastifyInstance, opts: { service: DeviceProfilesService }) {
  const { service } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const base = '/tenant/tenants/:tenantId/device-profiles';
  const withSelf = (req: FastifyRequest, tenantId: string, p: DeviceProfileView) => ({
    ...p,
    self: `${baseUrl(req)}/tenant/tenants/${tenantId}/device-profiles/${p.id}`,
  });

  r.post(base, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'createDeviceProfile',
      summary: 'Create a device profile',
      description:
        'Creates a device profile: how a device name is taken from a certificate (identity source and regex), ' +
        'the client id policy, the auto-registration quota and the topic ACL. The regex must be RE2 syntax (no backreferences, no lookaround) ' +
        'and is compiled here: one it cannot compile, or too large, is a 422.',
      params: profilesParams,
      body: createDeviceProfileBody,
      response: { 201: deviceProfileSchema, ...errorResponses(400, 401, 403, 404, 409, 413, 422, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'devices', true);
      const p = await service.create(req.params.tenantId, req.body);
      return reply.status(201).send(withSelf(req, req.params.tenantId, p));
    },
  });

  r.get(base, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'listDeviceProfiles',
      summary: 'List device profiles',
      description: 'Lists the tenant\'s device profiles, paged.',
      params: profilesParams,
      querystring: pagingQuery,
      response: { 200: collectionSchema('deviceProfiles', deviceProfileSchema), ...errorResponses(400, 401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      const { tenantId } = req.params;
      authorizeTenant(req, tenantId, 'devices', false);
      const { skip, take } = pageWindow(req.query);
      const page = await service.list(tenantId, skip, take, req.query.withTotalPages);
      return collection(req, 'deviceProfiles', { items: page.items.map((p) => withSelf(req, tenantId, p)), total: page.total }, req.query);
    },
  });

  r.get(`${base}/:profileId`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'getDeviceProfile',
      summary: 'Get a device profile',
      description: 'Reads one device profile.',
      params: profileParams,
      response: { 200: deviceProfileSchema, ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      authorizeTenant(req, req.params.tenantId, 'devices', false);
      return withSelf(req, req.params.tenantId, await service.get(req.params.tenantId, req.params.profileId));
    },
  });

  r.put(`${base}/:profileId`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'updateDeviceProfile',
      summary: 'Change a device profile',
      description: 'Changes a device profile; fields left out keep their value. `default: true` moves the default here.',
      params: profileParams,
      body: updateDeviceProfileBody,
      response: { 200: deviceProfileSchema, ...errorResponses(400, 401, 403, 404, 409, 413, 422, 429, 503) },
    },
    handler: async (req) => {
      authorizeTenant(req, req.params.tenantId, 'devices', true);
      return withSelf(req, req.params.tenantId, await service.update(req.params.tenantId, req.params.profileId, req.body));
    },
  });

  r.delete(`${base}/:profileId`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'deleteDeviceProfile',
      summary: 'Delete a device profile',
      description: 'Deletes a device profile that is neither the default nor used by a device.',
      params: profileParams,
      response: { 204: z.null().describe('Deleted'), ...errorResponses(401, 403, 404, 409, 422, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'devices', true);
      await service.remove(req.params.tenantId, req.params.profileId);
      return reply.status(204).send(null);
    },
  });
}
