import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { authorizeTenant } from '../../plugins/auth.js';
import { collectionSchema, errorResponses, pagingQuery } from '../../lib/http-schemas.js';
import { baseUrl, collection, pageWindow } from '../../lib/paging.js';
import {
  bulkBody,
  certParams,
  certsParams,
  createTrustedCertificateBody,
  popBody,
  trustedCertificateSchema,
  updateTrustedCertificateBody,
  type TrustedCertificateView,
} from './trusted-certificates-schemas.js';
import { SHARED_CA_RULE } from '../../verifier/verifier-schemas.js';
import type { TrustedCertificatesService } from './trusted-certificates-service.js';

const tags = ['Trusted certificates'];

export async function trustedCertificatesRouter(app: FastifyInstance, opts: { service: TrustedCertificatesService }) {
  const { service } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const base = '/tenant/tenants/:tenantId/trusted-certificates';
  const withSelf = (req: FastifyRequest, tenantId: string, c: TrustedCertificateView) => ({
    self: `${baseUrl(req)}/tenant/tenants/${tenantId}/trusted-certificates/${c.fingerprint}`,
    ...c,
  });

  r.post(base, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'createTrustedCertificate',
      summary: 'Upload a trusted CA certificate',
      description:
        'Uploads a CA certificate the tenant trusts (Cumulocity-compatible). It must be one X.509 v3 certificate with ' +
        'basicConstraints CA:true, keyCertSign when keyUsage is present, not expired, and without weak keys or signatures ' +
        '(RSA < 2048, DSA, MD5, SHA-1). PEM is accepted with or without BEGIN/END lines and line breaks. ' +
        SHARED_CA_RULE,
      params: certsParams,
      body: createTrustedCertificateBody,
      response: { 201: trustedCertificateSchema, ...errorResponses(400, 401, 403, 404, 409, 413, 422, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', true);
      const c = await service.create(req.params.tenantId, req.body);
      return reply.status(201).send(withSelf(req, req.params.tenantId, c));
    },
  });

  r.post(`${base}/bulk`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'createTrustedCertificatesBulk',
      summary: 'Upload several trusted CA certificates',
      description: `Uploads several CA certificates at once, all or nothing. ${SHARED_CA_RULE}`,
      params: certsParams,
      body: bulkBody,
      response: {
        201: z.object({ certificates: z.array(trustedCertificateSchema) }),
        ...errorResponses(400, 401, 403, 404, 409, 413, 422, 429, 503),
      },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', true);
      const rows = await service.createMany(req.params.tenantId, req.body.certificates);
      return reply.status(201).send({ certificates: rows.map((c) => withSelf(req, req.params.tenantId, c)) });
    },
  });

  r.get(base, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'listTrustedCertificates',
      summary: 'List trusted certificates',
      description: 'Lists the tenant\'s trusted certificates, paged as Cumulocity does.',
      params: certsParams,
      querystring: pagingQuery,
      response: { 200: collectionSchema('certificates', trustedCertificateSchema), ...errorResponses(400, 401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      const { tenantId } = req.params;
      authorizeTenant(req, tenantId, 'trusted-certificates', false);
      const { skip, take } = pageWindow(req.query);
      const page = await service.list(tenantId, skip, take, req.query.withTotalPages);
      return collection(req, 'certificates', { items: page.items.map((c) => withSelf(req, tenantId, c)), total: page.total }, req.query);
    },
  });

  r.get(`${base}/:fingerprint`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'getTrustedCertificate',
      summary: 'Get a trusted certificate',
      description: 'Reads one trusted certificate by its SHA-1 fingerprint.',
      params: certParams,
      response: { 200: trustedCertificateSchema, ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', false);
      return withSelf(req, req.params.tenantId, await service.get(req.params.tenantId, req.params.fingerprint));
    },
  });

  r.put(`${base}/:fingerprint`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'updateTrustedCertificate',
      summary: 'Change a trusted certificate (status, name, auto-registration, profile)',
      description:
        'Changes name, status, auto-registration or device profile. Disabling closes the live MQTT sessions of devices that authenticated through it.',
      params: certParams,
      body: updateTrustedCertificateBody,
      response: { 200: trustedCertificateSchema, ...errorResponses(400, 401, 403, 404, 413, 422, 429, 503) },
    },
    handler: async (req) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', true);
      return withSelf(req, req.params.tenantId, await service.update(req.params.tenantId, req.params.fingerprint, req.body));
    },
  });

  const popBase = '/tenant/tenants/:tenantId/trusted-certificates-pop/:fingerprint';

  r.post(`${popBase}/verification-code`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'createVerificationCode',
      summary: 'Get a proof-of-possession verification code',
      description: 'Proof of possession, step 1: returns the certificate with an unsigned verification code usable for 10 minutes.',
      params: certParams,
      response: { 200: trustedCertificateSchema, ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', true);
      return withSelf(req, req.params.tenantId, await service.createVerificationCode(req.params.tenantId, req.params.fingerprint));
    },
  });

  r.post(`${popBase}/pop`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'proveProofOfPossession',
      summary: 'Prove possession of the CA key',
      description:
        'Proof of possession, step 2: `proofOfPossessionSignedVerificationCode` is the base64 SHA-256 signature of the code ' +
        'by the CA key (`openssl dgst -sha256 -sign ca.key`). 400 on a wrong signature or an expired code; 422 when the ' +
        'certificate\'s key is one certgate does not accept (see the upload rules), as no signature by it proves anything. ' +
        SHARED_CA_RULE,
      params: certParams,
      body: popBody,
      response: { 200: trustedCertificateSchema, ...errorResponses(400, 401, 403, 404, 413, 422, 429, 503) },
    },
    handler: async (req) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', true);
      return withSelf(
        req,
        req.params.tenantId,
        await service.verifyProofOfPossession(req.params.tenantId, req.params.fingerprint, req.body.proofOfPossessionSignedVerificationCode),
      );
    },
  });

  r.delete(`${base}/:fingerprint`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'deleteTrustedCertificate',
      summary: 'Delete a trusted certificate',
      description: 'Stops trusting the certificate and closes the live MQTT sessions that depend on it.',
      params: certParams,
      response: { 204: z.null().describe('Deleted'), ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', true);
      await service.remove(req.params.tenantId, req.params.fingerprint);
      return reply.status(204).send(null);
    },
  });
}
