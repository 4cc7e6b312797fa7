import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorResponses } from '../lib/http-schemas.js';
import { verifierTokenHook } from '../verifier/verifier-token.js';
import type { Verifier } from '../verifier/verifier-types.js';
import type { ClusterService } from './cluster-service.js';
import { answerVernemqHook, VERNEMQ_HOOKS } from './vernemq-hooks.js';

export interface ClusterRouterOptions {
  verifier: Verifier;
  cluster: ClusterService;
  /** SHA-256 (hex) of the verifier token. */
  tokenSha256: string;
}

const authorizeBody = z.object({
  clientid: z.string().max(65_535).optional().describe('`${clientid}` (not needed for the decision)'),
  topic: z.string().max(65_535).describe('`${topic}`: a topic name to publish to, or a filter to subscribe to'),
  action: z.enum(['publish', 'subscribe']).describe('`${action}`'),
  tenant_id: z.string().max(64).describe('`${client_attrs.tenant_id}`, set by the authentication'),
  device_id: z.string().max(64).describe('`${client_attrs.device_id}`, set by the authentication'),
});

const vernemqHeaders = z.object({
  'vernemq-hook': z.enum(VERNEMQ_HOOKS).describe('The hook VerneMQ calls'),
});

/**
 * The routes a clustered broker calls besides `authenticate`: EMQX's HTTP authorizer, VerneMQ's
 * webhooks and the CA file of the broker's TLS listener. All take the verifier token.
 */
export async function clusterRouter(app: FastifyInstance, opts: ClusterRouterOptions) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const onRequest = verifierTokenHook(opts.tokenSha256);

  r.post('/verifier/v1/authorize', {
    onRequest,
    schema: {
      tags: ['Verifier'],
      operationId: 'authorize',
      summary: 'Authorize a publish or subscribe (EMQX HTTP authorizer)',
      description:
        'EMQX\'s HTTP authorizer: may this device publish to (or subscribe to) this topic now? Decided from the ' +
        'device\'s current state (device ACTIVE, tenant ACTIVE, the profile\'s ACL templates filled in), so ACL changes, ' +
        'a disabled device or a suspended tenant apply on the next publish or subscribe. A publish is denied when a deny ' +
        'filter matches the topic; a subscription when a deny filter covers it whole. Otherwise a subscription is allowed ' +
        'only when one allowed filter covers it whole; `$share/<group>/` is ignored. Always 200 `{result}`; the topic is the ' +
        'client\'s (before the listener\'s mountpoint). EMQX asks only when the authentication\'s ACL did not decide ' +
        '(see `?acl=omit` on authenticate).',
      security: [{ verifierToken: [] }],
      body: authorizeBody,
      response: { 200: z.object({ result: z.enum(['allow', 'deny']) }), ...errorResponses(400, 401, 413, 503) },
    },
    handler: async (req) => {
      const b = req.body;
      const result = await opts.cluster.authorize({ tenantId: b.tenant_id, deviceId: b.device_id, action: b.action, topic: b.topic });
      return { result };
    },
  });

  r.post('/verifier/v1/vernemq', {
    onRequest,
    schema: {
      tags: ['Verifier'],
      operationId: 'vernemqWebhook',
      summary: 'VerneMQ webhooks (register, publish, subscribe)',
      description:
        'VerneMQ\'s webhooks (vmq_webhooks), named by the `vernemq-hook` header: `auth_on_register(_m5)` decides from ' +
        '`client_cert` (base64 DER; needs `listener.ssl.forward_connection_opts = on`) and answers `ok` with the ' +
        'modifiers `mountpoint` (the tenant id: tenants\' topics and sessions apart), `client_id`, `username` (the ' +
        'device id) and `max_connection_lifetime` (seconds until the leaf expires), or `{result: {error}}`; `auth_on_publish(_m5)` and `auth_on_subscribe(_m5)` decide from the device\'s ' +
        'current ACL (refused subscriptions get qos 128). The token goes as the password of HTTP Basic in the endpoint URL.',
      security: [{ verifierToken: [] }],
      headers: vernemqHeaders,
      body: z.looseObject({}).describe('The hook\'s JSON as VerneMQ sends it'),
      response: { 200: z.looseObject({ result: z.unknown() }), ...errorResponses(400, 401, 413, 503) },
    },
    handler: async (req) =>
      (await answerVernemqHook(req.headers['vernemq-hook'], req.body, { verifier: opts.verifier, cluster: opts.cluster })) as {
        result: unknown;
      },
  });

  r.get('/verifier/v1/ca-bundle', {
    onRequest,
    schema: {
      tags: ['Verifier'],
      operationId: 'caBundle',
      summary: 'Every enabled trusted certificate as one PEM file',
      description:
        'Every ENABLED trusted certificate of every tenant as one PEM file (`application/x-pem-file`), each CA once, ' +
        'for the `cacertfile` of a broker that terminates TLS itself. A strong `ETag` names the content; ' +
        '`If-None-Match` with it answers 304. The broker checks chains against this file; certgate still decides ' +
        'which tenant a leaf belongs to.',
      security: [{ verifierToken: [] }],
      response: {
        200: z.string().describe('PEM certificates'),
        304: z.null().describe('Not modified'),
        ...errorResponses(401, 503),
      },
    },
    handler: async (req, reply) => {
      const bundle = await opts.cluster.caBundle();
      reply.header('etag', bundle.etag).header('cache-control', 'no-cache');
      if (etagMatches(req.headers['if-none-match'], bundle.etag)) {
        // No payload at all: a 304 has no body (a null would be serialized as "null").
        return reply.code(304).send(undefined as unknown as null);
      }
      return reply.type('application/x-pem-file').send(bundle.pem);
    },
  });
}

/** RFC 9110 13.1.2: `*`, or a list of entity tags compared weakly (a `W/` prefix still names this content). */
function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}
