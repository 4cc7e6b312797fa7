import { z } from 'zod';
import { DENY_REASONS } from '../pki/reasons.js';

export const denyReasonSchema = z.enum(DENY_REASONS);

/** How a CA trusted by several tenants is routed: stated in the descriptions of every route it concerns. */
export const SHARED_CA_RULE =
  'When several tenants trust the CA that ends the chain, a tenant hint decides: `username` is the tenant id ' +
  '(or `<tenantId>/<user>`), or SNI is `<tenantId>.<host>`. With no hint, the connection goes to the single tenant ' +
  'that proved possession of the CA key, else to the tenant that trusted the CA first; it is denied ' +
  '`AMBIGUOUS_TENANT` only when several tenants proved possession. Uploading a CA certificate therefore never ' +
  'changes how another tenant\'s devices are decided; proving possession of its key does.';

export const authenticateBody = z.object({
  clientId: z.string().max(65_535),
  certificateChain: z
    .array(z.string().min(1).max(64 * 1024))
    .min(1)
    .max(64)
    .describe('PEM or base64 DER, leaf first'),
  username: z.string().max(1024).optional(),
  sni: z.string().max(1024).optional(),
});

export const decisionSchema = z.union([
  z.object({
    result: z.literal('allow'),
    is_superuser: z.literal(false),
    tenantId: z.string(),
    device: z.object({ id: z.string(), name: z.string(), autoRegistered: z.boolean() }),
    matchedBy: z.enum(['DEVICE_CREDENTIALS', 'TRUSTED_CERTIFICATE']),
    trustedCertificateFingerprint: z.string().optional(),
    acl: z.array(
      z.object({ permission: z.literal('allow'), action: z.enum(['publish', 'subscribe']), topic: z.string() }),
    ),
    client_attrs: z.object({ tenant_id: z.string(), device_id: z.string(), device_name: z.string() }),
    cacheTtlSeconds: z.number().int(),
  }),
  z.object({ result: z.literal('deny'), reason: denyReasonSchema, message: z.string() }),
]);
