import type { FastifyInstance } from 'fastify';
import { serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ServiceUnavailableError } from '../errors.js';
import { errorResponses } from '../lib/http-schemas.js';
import { authenticateBody, authenticateQuery, decisionSchema, SHARED_CA_RULE } from './verifier-schemas.js';
import { presentedChain } from './presented-chain.js';
import { verifierTokenHook } from './verifier-token.js';
import { VerifierUnavailableError, type Decision, type Verifier } from './verifier-types.js';

export interface VerifierRouterOptions {
  verifier: Verifier;
  /** SHA-256 (hex) of the bearer token callers must present. */
  tokenSha256: string;
}

/**
 * The decision is built by the verifier to its TypeScript type, so the route serializes it
 * as is; the zod schema still documents it (and the type provider checks the handler's type).
 */
const serializeDecision = () => (data: unknown) => JSON.stringify(data);

/** What the request's log line says about the decision. */
function decisionLogFields(clientId: string, d: Decision): Record<string, unknown> {
  return d.result === 'allow'
    ? { clientId, result: 'allow', tenantId: d.tenantId, deviceId: d.device.id, deviceName: d.device.name }
    : { clientId, result: 'deny', reason: d.reason };
}

/** What the token check answers: names the service, so a caller knows it reached a certgate verifier. */
export const VERIFIER_SERVICE = 'certgate-verifier' as const;

export async function verifierRouter(app: FastifyInstance, opts: VerifierRouterOptions) {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get('/verifier/v1/token', {
    onRequest: verifierTokenHook(opts.tokenSha256),
    schema: {
      tags: ['Verifier'],
      operationId: 'checkVerifierToken',
      summary: 'Check the verifier token',
      description:
        'What a standalone listener (`certgate mqtt`) calls when it starts: 200 when the token is accepted, 401 when ' +
        'it is not. Needs no database; decides nothing and records nothing.',
      security: [{ verifierToken: [] }],
      response: { 200: z.object({ service: z.literal(VERIFIER_SERVICE) }), ...errorResponses(401) },
    },
    handler: async () => ({ service: VERIFIER_SERVICE }),
  });

  r.post('/verifier/v1/authenticate', {
    onRequest: verifierTokenHook(opts.tokenSha256),
    serializerCompiler: (route) =>
      String(route.httpStatus) === '200' ? serializeDecision() : serializerCompiler(route as unknown as Parameters<typeof serializerCompiler>[0]),
    schema: {
      tags: ['Verifier'],
      operationId: 'authenticate',
      summary: 'Authenticate an MQTT client by its certificate chain',
      description:
        'Resolves a presented certificate chain to one tenant and one device for an MQTT CONNECT. Answers 200 with ' +
        '`result: allow` (ACL ending in a deny of everything else, string `client_attrs`, `expire_at` no later than the ' +
        'leaf\'s notAfter, `is_superuser: false`) or `result: deny` with a reason; 503 when the store is unavailable ' +
        '(callers fail closed). `certificateChain` may be one string, the leaf alone as EMQX 5.8 and VerneMQ send it: ' +
        'then the CA that issued it must be a trusted certificate of the tenant. EMQX 5.8\'s HTTP authenticator reads ' +
        'the answer as it is; its request body and the rest of its setup are in docs/scale-out.md. The token is ' +
        'accepted as Bearer or as the password of HTTP Basic. ' +
        SHARED_CA_RULE,
      security: [{ verifierToken: [] }],
      querystring: authenticateQuery,
      body: authenticateBody,
      response: { 200: decisionSchema, ...errorResponses(400, 401, 413, 503) },
    },
    handler: async (req) => {
      const { certificateChain, tenantId, ...rest } = req.body;
      // A broker that names tenants by a client id prefix names none for this client: no tenant, no device.
      if (tenantId === '') {
        return { result: 'deny' as const, reason: 'NO_TRUSTED_ANCHOR' as const, message: 'the request names no tenant (tenantId is empty)' };
      }
      try {
        const request = {
          ...rest,
          ...(tenantId === undefined ? {} : { tenantId }),
          certificateChain: presentedChain(certificateChain),
        };
        const recheck = req.query.recheck === 'true' ? opts.verifier.recheck : undefined;
        const decision = recheck ? await recheck.call(opts.verifier, request) : await opts.verifier.authenticate(request);
        req.logFields = decisionLogFields(req.body.clientId, decision);
        if (req.query.acl === 'omit' && decision.result === 'allow') {
          // The broker asks its authorizer instead (EMQX checks an ACL given here before any source).
          const { acl: _acl, ...withoutAcl } = decision;
          return withoutAcl as Decision;
        }
        return decision;
      } catch (err) {
        if (err instanceof VerifierUnavailableError) throw new ServiceUnavailableError('The verifier store is unavailable');
        throw err;
      }
    },
  });
}
