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

/** Characters of one certificate as PEM or base64 DER (a 48 KB DER is 64 K of base64). */
export const MAX_CERTIFICATE_TEXT = 64 * 1024;
/** Certificates a chain may list; the verifier refuses more than it validates (CHAIN_TOO_LONG). */
export const MAX_PRESENTED_CERTIFICATES = 64;

const CHAIN_SHAPE =
  'certificateChain must be an array of certificates (PEM or base64 DER, leaf first), or one string: ' +
  'a PEM bundle, or the leaf alone as base64 DER on one line';

const certificateText = z
  .string({ error: `each certificate of certificateChain must be a string of PEM or base64 DER` })
  .min(1, { error: 'a certificate of certificateChain is empty' })
  .max(MAX_CERTIFICATE_TEXT, { error: `a certificate of certificateChain is longer than ${MAX_CERTIFICATE_TEXT} characters of PEM or base64 DER` });

export const certificateChainField = z
  .union(
    [
      z
        .array(certificateText)
        .min(1, { error: 'certificateChain lists no certificate: give at least the leaf' })
        .max(MAX_PRESENTED_CERTIFICATES, { error: `certificateChain lists more than ${MAX_PRESENTED_CERTIFICATES} certificates` }),
      z
        .string()
        .max(MAX_PRESENTED_CERTIFICATES * MAX_CERTIFICATE_TEXT, {
          error: `certificateChain as one string is longer than ${MAX_PRESENTED_CERTIFICATES * MAX_CERTIFICATE_TEXT} characters`,
        }),
    ],
    { error: CHAIN_SHAPE },
  )
  .describe(
    'The certificates the client presented, leaf first: an array of PEM or base64 DER strings, or one string ' +
      '(a PEM bundle, or the leaf alone as base64 DER on one line, as EMQX\'s `${cert_pem}` and VerneMQ\'s `client_cert` ' +
      'carry it). With the leaf alone, the path is built from the tenant\'s trusted certificates: upload the CA that ' +
      'issued the leaf. An empty string (no client certificate) is denied as MALFORMED_CERTIFICATE.',
  );

export const authenticateQuery = z.object({
  recheck: z
    .enum(['true', 'false'])
    .optional()
    .describe(
      '`true`: decide again for a session that is already open, without side effects: nothing is registered, ' +
        'recorded or logged as an auth event, and a device that would have to be registered anew (it was deleted) is ' +
        'a deny. A standalone `certgate mqtt` asks this when it re-checks its live sessions.',
    ),
  acl: z
    .enum(['inline', 'omit'])
    .optional()
    .describe(
      '`inline` (default): an allow carries the ACL. `omit`: it carries none, so EMQX, which checks an ACL from the ' +
        'authentication before any authorization source and stops at its final deny, asks its HTTP authorizer ' +
        '(`/verifier/v1/authorize`) on every publish and subscribe instead: ACL and device changes apply at once.',
    ),
});

export const authenticateBody = z.object({
  clientId: z.string({ error: 'clientId must be a string (the MQTT client id)' }).max(65_535),
  certificateChain: certificateChainField,
  username: z.string().max(1024).optional().describe('MQTT username; a tenant id here picks the tenant when several trust the chain'),
  sni: z.string().max(1024).optional().describe('TLS server name; `<tenantId>.<anything>` picks the tenant when several trust the chain'),
  tenantId: z
    .string()
    .max(64)
    .optional()
    .describe(
      'Decide for this tenant only: a chain of another tenant is denied (NO_TRUSTED_ANCHOR). A broker that prefixes ' +
        'client ids with the tenant (EMQX `mqtt.clientid_override`) sends the prefix here; empty is denied.',
    ),
}).meta({
  examples: [{ clientId: 'device001', certificateChain: ['-----BEGIN CERTIFICATE-----\nMIIBgDCCASWgAwIBAgIUS6+KqmwRSLlgZM70GgtZmMFyTI4wCgYIKoZIzj0EAwIw\nFDESMBAGA1UEAwwJZGV2aWNlMDAxMCAXDTI2MTIwNDIzNDI1OVoYDzIxMjYxMTEw\nMjM0MjU5WjAUMRIwEAYDVQQDDAlkZXZpY2UwMDEwWTATBgcqhkjOPQIBBggqhkjO\nPQMBBwNCAAT7Ak60gdQpcuzRYmZOtjmPtYbx/vCxOnX5zQTImmTPO+kckjhlBW0p\n/NbT3JHKuQT6f2SVG2KHhl63nRuX6ncmo1MwUTAdBgNVHQ4EFgQUSI9F9VVTyzLe\nFK/hj88cjuUCs24wHwYDVR0jBBgwFoAUSI9F9VVTyzLeFK/hj88cjuUCs24wDwYD\nVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAjOQc5vY5oTfjAaQj1DDI\n6NGH6034JWJIahDPb//BogQCIQC6qTuMe38H+dEc1LFrYy0QDSGIbwO/gdzJjkXW\nPdfkdw==\n-----END CERTIFICATE-----\n'] }],
});

const aclRuleSchema = z.object({
  permission: z.enum(['allow', 'deny']),
  action: z.enum(['publish', 'subscribe', 'all']),
  topic: z.string(),
});

export const decisionSchema = z.union([
  z.object({
    result: z.literal('allow'),
    is_superuser: z.literal(false),
    tenantId: z.string(),
    device: z.object({ id: z.string(), name: z.string(), autoRegistered: z.boolean() }),
    matchedBy: z.enum(['DEVICE_CREDENTIALS', 'TRUSTED_CERTIFICATE']),
    trustedCertificateFingerprint: z.string().optional(),
    acl: z
      .array(aclRuleSchema)
      .describe(
        'The profile\'s rules with the device filled in, its deny rules before its allow rules, then ' +
          '`{permission: deny, action: all, topic: "#"}`: EMQX checks these rules in order, first match wins, before ' +
          'its other sources, so a deny wins over an allow and nothing else is granted.',
      ),
    client_attrs: z
      .object({ tenant_id: z.string(), device_id: z.string(), device_name: z.string() })
      .describe('Strings only (EMQX copies them onto the client: `${client_attrs.tenant_id}` in a listener mountpoint)'),
    cacheTtlSeconds: z.number().int(),
    expire_at: z.number().int().describe('Unix seconds, the leaf\'s notAfter: EMQX disconnects the client then'),
  }),
  z.object({ result: z.literal('deny'), reason: denyReasonSchema, message: z.string() }),
]);
