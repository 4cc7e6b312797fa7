import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BadRequestError, ServiceUnavailableError } from '../errors.js';
import { authorizeTenant } from '../plugins/auth.js';
import { errorResponses } from '../lib/http-schemas.js';
import { splitPemBundle } from '../pki/certificate.js';
import type { TraceStep } from '../pki/path-validation.js';
import { AFTER_PATH_REASONS } from '../pki/reasons.js';
import { certificateChainField, denyReasonSchema, SHARED_CA_RULE } from './verifier-schemas.js';
import { presentedChain } from './presented-chain.js';
import type { CertgateVerifier } from './verifier-service.js';
import { VerifierUnavailableError } from './verifier-types.js';

const CHAIN_WANTED =
  'Give the chain as `certificateChain`: an array of PEM or base64 DER certificates, leaf first, or one PEM bundle ' +
  '(or in the X-Cumulocity-Client-Cert-Chain header)';

const body = z.strictObject({
  certificateChain: certificateChainField.optional(),
  chain: z
    .string({ error: '`chain` must be one string, a PEM bundle leaf first (or use `certificateChain`)' })
    .min(1, { error: CHAIN_WANTED })
    .max(256 * 1024)
    .optional()
    .describe('The same as `certificateChain` given as one PEM bundle, leaf first (the older name, still accepted)'),
  clientId: z.string().max(65_535).optional().describe('Checked against the profile\'s client id policy when given'),
});

const response = z.object({
  successfullyValidated: z.boolean(),
  tenantId: z.string(),
  issuer: z.string(),
  subject: z.string(),
  decision: z.enum(['allow', 'deny']),
  reason: denyReasonSchema.optional(),
  message: z.string().optional(),
  device: z.object({ id: z.string(), name: z.string(), wouldBeRegistered: z.boolean() }).optional(),
  trace: z.array(z.object({ step: z.string(), ok: z.boolean(), detail: z.string() })),
});


/**
 * `verify-cert-chain`: the decision the verifier would make for this tenant, explained step by
 * step, with no side effects (nothing registered, recorded or counted).
 */
export async function explainRouter(app: FastifyInstance, opts: { verifier: CertgateVerifier }) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post('/tenant/tenants/:tenantId/trusted-certificates/verify-cert-chain', {
    onRequest: app.authenticate,
    // Cumulocity clients send only the header: no body, which Fastify would validate as null.
    preValidation: async (req) => {
      req.body ??= {};
    },
    schema: {
      tags: ['Trusted certificates'],
      operationId: 'verifyCertChain',
      summary: 'Explain how a certificate chain would be decided',
      description:
        'Explains how the verifier would decide for this chain in this tenant: anchor found, each link, validity, extensions, ' +
        'revocation, identity extraction, device match. The chain is the body\'s `certificateChain`, as the verifier ' +
        'takes it (an array of PEM or base64 DER certificates leaf first, or one PEM bundle; `chain`, a PEM bundle, ' +
        'is accepted too), or the `X-Cumulocity-Client-Cert-Chain` header. Nothing is registered or recorded. The decision is this tenant\'s, as ' +
        'if the connection named it; when other tenants trust the chain too (counted, never named), the `tenant choice` ' +
        'step says where a connection with no tenant hint goes. ' +
        SHARED_CA_RULE,
      params: z.strictObject({ tenantId: z.string().min(1).max(64) }),
      headers: z.object({ 'x-cumulocity-client-cert-chain': z.string().max(256 * 1024).optional() }),
      body: body.optional(),
      response: { 200: response, ...errorResponses(400, 401, 403, 404, 413, 429, 503) },
    },
    handler: async (req) => {
      const { tenantId } = req.params;
      authorizeTenant(req, tenantId, 'trusted-certificates', false);
      const headerChain = req.headers['x-cumulocity-client-cert-chain'];
      if (req.body?.certificateChain !== undefined && req.body.chain !== undefined) {
        throw new BadRequestError('Give the chain once: `certificateChain` or `chain`, not both');
      }
      const given = req.body?.certificateChain !== undefined ? presentedChain(req.body.certificateChain) : undefined;
      const text = req.body?.chain ?? headerChain;
      if (!given?.length && !text) throw new BadRequestError(CHAIN_WANTED);
      // Headers cannot carry line breaks: PEM blocks may arrive joined by spaces.
      const pems = given?.length ? [] : splitPemBundle(text!);
      const certificateChain = given?.length ? given : pems.length ? pems : [text!.trim()];
      const trace: TraceStep[] = [];
      let resolution;
      try {
        resolution = await opts.verifier.decide(
          { clientId: req.body?.clientId ?? '', certificateChain },
          { tenantId, dryRun: true, trace, ignoreClientId: req.body?.clientId === undefined },
        );
      } catch (err) {
        if (err instanceof VerifierUnavailableError) throw new ServiceUnavailableError();
        throw err;
      }
      const { decision, leaf } = resolution;
      return {
        // The chain itself is trusted even when a later step (identity, device) denies.
        successfullyValidated: decision.result === 'allow' || AFTER_PATH_REASONS.has(decision.reason),
        tenantId,
        issuer: leaf?.issuer ?? '',
        subject: leaf?.subject ?? '',
        decision: decision.result,
        ...(decision.result === 'deny' ? { reason: decision.reason, message: decision.message } : {}),
        ...(decision.result === 'allow'
          ? { device: { id: decision.device.id, name: decision.device.name, wouldBeRegistered: resolution.wouldRegister ?? false } }
          : {}),
        trace,
      };
    },
  });
}
