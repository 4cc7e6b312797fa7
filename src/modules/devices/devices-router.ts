import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { authorizeTenant } from '../../plugins/auth.js';
import { collectionSchema, errorResponses, pagingQuery } from '../../lib/http-schemas.js';
import { baseUrl, collection, pageWindow } from '../../lib/paging.js';
import {
  createCredentialBody,
  createDeviceBody,
  credentialParams,
  credentialSchema,
  deviceParams,
  deviceSchema,
  devicesParams,
  devicesQuery,
  updateCredentialBody,
  updateDeviceBody,
  type CredentialView,
  type DeviceView,
} from './devices-schemas.js';
import type { DevicesService } from './devices-service.js';

const tags = ['Devices'];
const credentialTags = ['Device credentials'];

export async function devicesRouter(app: FastifyInstance, opts: { service: DevicesService }) {
  const { service } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const base = '/tenant/tenants/:tenantId/devices';
  const deviceUrl = (req: FastifyRequest, tenantId: string, id: string) => `${baseUrl(req)}/tenant/tenants/${tenantId}/devices/${id}`;
  const withSelf = (req: FastifyRequest, tenantId: string, d: DeviceView) => ({ ...d, self: deviceUrl(req, tenantId, d.id) });
  const credWithSelf = (req: FastifyRequest, tenantId: string, c: CredentialView) => ({
    ...c,
    self: `${deviceUrl(req, tenantId, c.deviceId)}/credentials/${c.credentialsId}`,
  });

  r.post(base, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'createDevice',
      summary: 'Create a device',
      description: 'Registers a device by name (unique in the tenant).',
      params: devicesParams,
      body: createDeviceBody,
      response: { 201: deviceSchema, ...errorResponses(400, 401, 403, 404, 409, 413, 422, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'devices', true);
      const d = await service.create(req.params.tenantId, req.body);
      return reply.status(201).send(withSelf(req, req.params.tenantId, d));
    },
  });

  r.get(base, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'listDevices',
      summary: 'List devices',
      description: 'Lists devices, paged; `?name=` and `?credentialsId=` filter.',
      params: devicesParams,
      querystring: pagingQuery.extend(devicesQuery.shape),
      response: { 200: collectionSchema('devices', deviceSchema), ...errorResponses(400, 401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      const { tenantId } = req.params;
      authorizeTenant(req, tenantId, 'devices', false);
      const { skip, take } = pageWindow(req.query);
      const page = await service.list(tenantId, { name: req.query.name, credentialsId: req.query.credentialsId }, skip, take, req.query.withTotalPages);
      return collection(req, 'devices', { items: page.items.map((d) => withSelf(req, tenantId, d)), total: page.total }, req.query);
    },
  });

  r.get(`${base}/:deviceId`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'getDevice',
      summary: 'Get a device',
      description: 'Reads one device.',
      params: deviceParams,
      response: { 200: deviceSchema, ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      authorizeTenant(req, req.params.tenantId, 'devices', false);
      return withSelf(req, req.params.tenantId, await service.get(req.params.tenantId, req.params.deviceId));
    },
  });

  r.put(`${base}/:deviceId`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'updateDevice',
      summary: 'Change a device',
      description:
        'Renames, moves to another profile, disables or pins a device. Changes that narrow what it may do close its live MQTT sessions.',
      params: deviceParams,
      body: updateDeviceBody,
      response: { 200: deviceSchema, ...errorResponses(400, 401, 403, 404, 409, 413, 422, 429, 503) },
    },
    handler: async (req) => {
      authorizeTenant(req, req.params.tenantId, 'devices', true);
      return withSelf(req, req.params.tenantId, await service.update(req.params.tenantId, req.params.deviceId, req.body));
    },
  });

  r.delete(`${base}/:deviceId`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'deleteDevice',
      summary: 'Delete a device',
      description: 'Deletes a device and its credentials and closes its live MQTT sessions.',
      params: deviceParams,
      response: { 204: z.null().describe('Deleted'), ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'devices', true);
      await service.remove(req.params.tenantId, req.params.deviceId);
      return reply.status(204).send(null);
    },
  });

  r.get(`${base}/:deviceId/credentials`, {
    onRequest: app.authenticate,
    schema: {
      tags: credentialTags,
      operationId: 'listDeviceCredentials',
      summary: 'List a device\'s certificates',
      description: 'Lists the device\'s certificates: listed through the API or observed when they authenticated.',
      params: deviceParams,
      querystring: pagingQuery,
      response: { 200: collectionSchema('credentials', credentialSchema), ...errorResponses(400, 401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      const { tenantId, deviceId } = req.params;
      authorizeTenant(req, tenantId, 'devices', false);
      const { skip, take } = pageWindow(req.query);
      const page = await service.listCredentials(tenantId, deviceId, skip, take, req.query.withTotalPages);
      return collection(req, 'credentials', { items: page.items.map((c) => credWithSelf(req, tenantId, c)), total: page.total }, req.query);
    },
  });

  r.post(`${base}/:deviceId/credentials`, {
    onRequest: app.authenticate,
    schema: {
      tags: credentialTags,
      operationId: 'createDeviceCredential',
      summary: 'Pin a certificate to a device',
      description:
        'Lists a certificate for the device. `credentialsId` is the SHA-256 of its DER; a certificate belongs to at most one device.',
      params: deviceParams,
      body: createCredentialBody,
      response: { 201: credentialSchema, ...errorResponses(400, 401, 403, 404, 409, 413, 422, 429, 503) },
    },
    handler: async (req, reply) => {
      const { tenantId, deviceId } = req.params;
      authorizeTenant(req, tenantId, 'devices', true);
      const c = await service.addCredential(tenantId, deviceId, req.body.credentialsValue);
      return reply.status(201).send(credWithSelf(req, tenantId, c));
    },
  });

  r.get(`${base}/:deviceId/credentials/:credentialsId`, {
    onRequest: app.authenticate,
    schema: {
      tags: credentialTags,
      operationId: 'getDeviceCredential',
      summary: 'Get a device certificate',
      description: 'Reads one of the device\'s certificates.',
      params: credentialParams,
      response: { 200: credentialSchema, ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      const { tenantId, deviceId, credentialsId } = req.params;
      authorizeTenant(req, tenantId, 'devices', false);
      return credWithSelf(req, tenantId, await service.getCredential(tenantId, deviceId, credentialsId));
    },
  });

  r.put(`${base}/:deviceId/credentials/:credentialsId`, {
    onRequest: app.authenticate,
    schema: {
      tags: credentialTags,
      operationId: 'updateDeviceCredential',
      summary: 'Change a device certificate\'s status',
      description: 'Revokes or reactivates one certificate of the device; revoking closes the device\'s live sessions.',
      params: credentialParams,
      body: updateCredentialBody,
      response: { 200: credentialSchema, ...errorResponses(400, 401, 403, 404, 413, 429, 503) },
    },
    handler: async (req) => {
      const { tenantId, deviceId, credentialsId } = req.params;
      authorizeTenant(req, tenantId, 'devices', true);
      return credWithSelf(req, tenantId, await service.setCredentialStatus(tenantId, deviceId, credentialsId, req.body.status));
    },
  });

  r.delete(`${base}/:deviceId/credentials/:credentialsId`, {
    onRequest: app.authenticate,
    schema: {
      tags: credentialTags,
      operationId: 'deleteDeviceCredential',
      summary: 'Remove a device certificate',
      description: 'Removes one certificate from the device.',
      params: credentialParams,
      response: { 204: z.null().describe('Deleted'), ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req, reply) => {
      const { tenantId, deviceId, credentialsId } = req.params;
      authorizeTenant(req, tenantId, 'devices', true);
      await service.removeCredential(tenantId, deviceId, credentialsId);
      return reply.status(204).send(null);
    },
  });
}
