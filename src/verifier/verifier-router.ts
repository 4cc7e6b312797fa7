import crypto from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { ServiceUnavailableError, UnauthorizedError } from '../errors.js';
import { endOfTurn } from '../lib/end-of-turn.js';
import { errorResponses } from '../lib/http-schemas.js';
import { authenticateBody, decisionSchema, SHARED_CA_RULE } from './verifier-schemas.js';
import { decisionJson } from './verifier-service.js';
import { VerifierUnavailableError, type Decision, type Verifier } from './verifier-types.js';

export interface VerifierRouterOptions {
  verifier: Verifier;
  /** SHA-256 (hex) of the bearer token callers must present. */
  tokenSha256: string;
}

/** Constant-time comparison of the presented bearer token's SHA-256 with the configured one. */
function checkToken(req: FastifyRequest, expected: Buffer): void {
  const header = req.headers.authorization;
  const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : '';
  const actual = crypto.hash('sha256', token, 'buffer');
  if (!token || actual.length !== expected.length || !crypto.timingSafeEqual(actual, expected)) {
    throw new UnauthorizedError('A valid verifier bearer token is required', 'verifier/Unauthorized');
  }
}

/**
 * The decision is built by the verifier to its TypeScript type, so the route serializes it
 * as is (a kept decision's JSON is made once); the zod schema still documents it (and the type
 * provider checks the handler's type).
 */
const serializeDecision = () => (data: unknown) => decisionJson(data as Decision);

export async function verifierRouter(app: FastifyInstance, opts: VerifierRouterOptions) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const expectedToken = Buffer.from(opts.tokenSha256, 'hex');

  r.post('/verifier/v1/authenticate', {
    onRequest: (req, _reply, done) => {
      try {
        checkToken(req, expectedToken);
      } catch (err) {
        return done(err as Error);
      }
      done();
    },
    serializerCompiler: (route) =>
      String(route.httpStatus) === '200' ? serializeDecision() : serializerCompiler(route as unknown as Parameters<typeof serializerCompiler>[0]),
    schema: {
      tags: ['Verifier'],
      operationId: 'authenticate',
      description:
        'Resolves a presented certificate chain to one tenant and one device for an MQTT CONNECT. ' +
        'Answers 200 with `result: allow` (ACL, client attributes) or `result: deny` with a reason; 503 when the store ' +
        'is unavailable (callers fail closed). The shape is accepted as-is by EMQX\'s HTTP authenticator. ' +
        SHARED_CA_RULE,
      security: [{ verifierToken: [] }],
      body: authenticateBody,
      response: { 200: decisionSchema, ...errorResponses(400, 401, 413, 503) },
    },
    handler: async (req) => {
      try {
        const decision = await opts.verifier.authenticate(req.body);
        // Answers decided in the same turn leave together (a storm of connections is many at once).
        await endOfTurn();
        return decision;
      } catch (err) {
        if (err instanceof VerifierUnavailableError) throw new ServiceUnavailableError('The verifier store is unavailable');
        throw err;
      }
    },
  });
}
