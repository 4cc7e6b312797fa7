import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { authorizeTenant } from '../../plugins/auth.js';
import { errorResponses } from '../../lib/http-schemas.js';
import {
  crlImportParams,
  liftQuery,
  putCrlBody,
  revocationListSchema,
  revocationParams,
  serialParams,
} from './revocation-schemas.js';
import type { RevocationService } from './revocation-service.js';
import { MAX_CRL_BYTES } from '../../pki/crl.js';

/**
 * The CRL import's own body limit: the largest CRL certgate reads (MAX_CRL_BYTES of DER, some
 * 230,000 entries) as PEM, base64 with its line breaks, plus room for the armour. A CRL of
 * 100,000 entries is ~3.5 MB of DER and ~4.7 MB of PEM, beyond the API's general limit.
 */
export const CRL_BODY_LIMIT_BYTES = Math.ceil(((MAX_CRL_BYTES * 4) / 3) * (65 / 64)) + 4096;

const tags = ['Revocation'];

/**
 * Sends a body that is JSON text already (PostgreSQL wrote it: lists of 100,000 holds): Fastify
 * sends a string with a JSON content type as it is, without the response schema's serializer.
 */
function sendJsonText(reply: FastifyReply, status: number, json: string): FastifyReply {
  return reply.status(status).type('application/json; charset=utf-8').send(json);
}

export async function revocationRouter(app: FastifyInstance, opts: { service: RevocationService }) {
  const { service } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const base = '/tenant/tenants/:tenantId/trusted-certificates';

  // CRLs arrive as DER (`application/pkix-crl`) or PEM text; both reach the service unparsed.
  app.addContentTypeParser(['application/pkix-crl', 'application/octet-stream'], { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );
  app.addContentTypeParser(['application/x-pem-file', 'text/plain'], { parseAs: 'string' }, (_req, body, done) =>
    done(null, body),
  );

  r.get(`${base}/settings/crl`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'listRevokedSerials',
      summary: 'List revoked serial numbers',
      description: 'The tenant\'s revoked serial numbers: holds set through the API and entries of imported CRLs.',
      params: revocationParams,
      response: { 200: revocationListSchema, ...errorResponses(401, 403, 404, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', false);
      return sendJsonText(reply, 200, await service.list(req.params.tenantId));
    },
  });

  r.put(`${base}/settings/crl`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'addRevokedSerials',
      summary: 'Revoke serial numbers',
      description:
        'Revokes serial numbers. Without `issuerFingerprint` a serial is revoked for every CA of the tenant; hex is compared ' +
        'case-insensitively, leading zeros ignored. Live MQTT sessions of revoked certificates are closed.',
      params: revocationParams,
      body: putCrlBody,
      response: { 200: revocationListSchema, ...errorResponses(400, 401, 403, 404, 413, 422, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', true);
      return sendJsonText(reply, 200, await service.add(req.params.tenantId, req.body));
    },
  });

  r.delete(`${base}/settings/crl/:serialNumberInHex`, {
    onRequest: app.authenticate,
    schema: {
      tags,
      operationId: 'liftRevokedSerial',
      summary: 'Lift a serial number\'s revocation',
      description: 'Lifts a hold on a serial number (all of its entries, or the one of `?issuerFingerprint=`).',
      params: serialParams,
      querystring: liftQuery,
      response: { 204: z.null().describe('Lifted'), ...errorResponses(400, 401, 403, 404, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', true);
      await service.lift(req.params.tenantId, req.params.serialNumberInHex, req.query.issuerFingerprint);
      return reply.status(204).send(null);
    },
  });

  r.post(`${base}/:fingerprint/crl`, {
    onRequest: app.authenticate,
    bodyLimit: Math.max(CRL_BODY_LIMIT_BYTES, app.initialConfig.bodyLimit ?? 0),
    schema: {
      tags,
      operationId: 'importCrl',
      summary: 'Import a CRL issued by a trusted certificate',
      description:
        'Imports a CRL (DER as `application/pkix-crl`, or PEM) signed by this trusted certificate. The signature and ' +
        'validity are checked (422 otherwise: a CRL whose nextUpdate has passed or whose thisUpdate is still to come, ' +
        'RFC 5280 6.3.3, or a serial longer than 20 octets, RFC 5280 4.1.2.2); every listed serial is revoked for this CA, ' +
        'all or none. Answers the first 2,000 of this CA\'s holds, oldest first (GET settings/crl lists them all). ' +
        'The body may be up to ' + Math.round(CRL_BODY_LIMIT_BYTES / 1024 / 1024) + ' MiB (8 MiB of DER, ' +
        'some 230,000 entries), more than other routes take.',
      params: crlImportParams,
      consumes: ['application/pkix-crl', 'application/x-pem-file', 'text/plain'],
      body: z.any().describe('The CRL, DER or PEM'),
      response: { 201: revocationListSchema, ...errorResponses(400, 401, 403, 404, 413, 415, 422, 429, 503) },
    },
    handler: async (req, reply) => {
      authorizeTenant(req, req.params.tenantId, 'trusted-certificates', true);
      const body = req.body as unknown;
      const raw = Buffer.isBuffer(body) ? body : typeof body === 'string' ? body : undefined;
      const crls = await service.importCrl(req.params.tenantId, req.params.fingerprint, raw ?? '');
      return sendJsonText(reply, 201, crls);
    },
  });
}
