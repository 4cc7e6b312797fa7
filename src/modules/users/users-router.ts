import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ForbiddenError } from '../../errors.js';
import { authorizeTenant, principalOf } from '../../plugins/auth.js';
import { collectionSchema, errorResponses, pagingQuery } from '../../lib/http-schemas.js';
import { baseUrl, collection, pageWindow } from '../../lib/paging.js';
import { createUserBody, updateUserBody, userParams, userSchema, usersParams, type UserView } from './users-schemas.js';
import type { UsersService } from './users-service.js';

const tags = ['Users'];

export async function usersRouter(app: FastifyInstance, opts: { service: UsersService }) {
  const { service } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const withSelf = (req: FastifyRequest, tenantId: string, u: UserView) => ({
    ...u,
    self: `${baseUrl(req)}/user/${tenantId}/users/${encodeURIComponent(u.userName)}`,
  });

  r.post('/user/:tenantId/users', {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'createUser',
      summary: 'Create a user',
      description: 'Creates a user of the tenant with the given roles. Tenant admins only.',
      params: usersParams,
      body: createUserBody,
      response: { 201: userSchema, ...errorResponses(400, 401, 403, 404, 409, 413, 422, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'users', true);
      const u = await service.create(req.params.tenantId, req.body);
      return reply.status(201).send(withSelf(req, req.params.tenantId, u));
    },
  });

  r.get('/user/:tenantId/users', {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'listUsers',
      summary: 'List users',
      description: 'Lists the users of the tenant, paged. Tenant admins only.',
      params: usersParams,
      querystring: pagingQuery,
      response: {
        200: collectionSchema('users', userSchema),
        ...errorResponses(400, 401, 403, 404, 429, 503),
      },
    },
    handler: async (req) => {
      const { tenantId } = req.params;
      authorizeTenant(req, tenantId, 'users', false);
      const { skip, take } = pageWindow(req.query);
      const page = await service.list(tenantId, skip, take, req.query.withTotalPages);
      return collection(req, 'users', { items: page.items.map((u) => withSelf(req, tenantId, u)), total: page.total }, req.query);
    },
  });

  r.put('/user/:tenantId/users/:userName', {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'updateUser',
      summary: 'Change a user\'s password or roles',
      description:
        'Sets a user\'s password and/or roles. Tenant admins change any user of their tenant; every user may change ' +
        'its own password, but not its own roles (403). A new password clears the failed-login count of that login.',
      params: userParams,
      body: updateUserBody,
      response: { 200: userSchema, ...errorResponses(400, 401, 403, 404, 413, 422, 429, 503) },
    },
    handler: async (req) => {
      const { tenantId, userName } = req.params;
      const actor = principalOf(req);
      const own = actor.tenantId === tenantId && actor.userName === userName;
      if (!own) authorizeTenant(req, tenantId, 'users', true);
      else if (req.body.roles !== undefined) throw new ForbiddenError('A user cannot change its own roles', 'user/OwnRoles');
      const u = await service.update(tenantId, userName, req.body);
      if (req.body.password !== undefined) app.forgetLoginFailures(`${tenantId}/${userName}`);
      return withSelf(req, tenantId, u);
    },
  });

  r.delete('/user/:tenantId/users/:userName', {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'deleteUser',
      summary: 'Delete a user',
      description: 'Deletes a user of the tenant. Tenant admins only; nobody deletes their own user.',
      params: userParams,
      response: { 204: z.null().describe('Deleted'), ...errorResponses(401, 403, 404, 422, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'users', true);
      const actor = principalOf(req);
      const self = actor.tenantId === req.params.tenantId ? actor.userName : '';
      await service.remove(req.params.tenantId, req.params.userName, self);
      return reply.status(204).send(null);
    },
  });
}
