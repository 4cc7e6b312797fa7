import { z } from 'zod';

/** Cumulocity clients send the flag as a boolean or as the string "true"/"false". */
export const booleanish = z.union([
  z.boolean(),
  z.enum(['true', 'false']).transform((v) => v === 'true'),
]);

export const trustedCertificateSchema = z
  .object({
    self: z.string(),
    fingerprint: z.string().describe('Lowercase hex SHA-1 of the DER (Cumulocity\'s fingerprint)'),
    name: z.string(),
    status: z.enum(['ENABLED', 'DISABLED']),
    autoRegistrationEnabled: z.boolean(),
    certInPemFormat: z.string().describe('Base64 DER without header lines, as Cumulocity returns it'),
    serialNumber: z.string(),
    algorithmName: z.string(),
    version: z.number().int(),
    issuer: z.string(),
    subject: z.string(),
    notBefore: z.string(),
    notAfter: z.string(),
    proofOfPossessionValid: z.boolean(),
    proofOfPossessionUnsignedVerificationCode: z.string().optional(),
    proofOfPossessionVerificationCodeUsableUntil: z.string().optional(),
    deviceProfileId: z.string().optional(),
    tenantCertificateAuthority: z.literal(false),
  })
  .meta({ id: 'TrustedCertificate' });

export const createTrustedCertificateBody = z.strictObject({
  name: z.string().trim().min(1).max(256).optional(),
  status: z.enum(['ENABLED', 'DISABLED']),
  autoRegistrationEnabled: booleanish.optional(),
  certInPemFormat: z
    .string()
    .min(1)
    .max(64 * 1024)
    .describe('PEM, with or without BEGIN/END lines and line breaks'),
  deviceProfileId: z.string().max(64).optional(),
}).meta({
  // The Cumulocity guide's upload: the PEM without its line breaks.
  examples: [
    {
      status: 'ENABLED',
      name: 'certificateName',
      autoRegistrationEnabled: 'true',
      certInPemFormat: 'MIIBnzCCAUWgAwIBAgIUGtEQNueQG/rVAQxzgXoUWqr4iwgwCgYIKoZIzj0EAwIwHDEaMBgGA1UEAwwRRXhhbXBsZSBEZXZpY2UgQ0EwIBcNMjYxMjA0MjM0MjU5WhgPMjEyNjExMTAyMzQyNTlaMBwxGjAYBgNVBAMMEUV4YW1wbGUgRGV2aWNlIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAECs83qoTUBhIYG25quXDdqYqWS9yRRMDWP2onEkcK6HDbwhWQKi2p3mXUULP4p0rthsgxNzL1ajfSvUmJJI6Re6NjMGEwHQYDVR0OBBYEFJa+QSf5pFN39H/uNVl9YjnbMTvwMB8GA1UdIwQYMBaAFJa+QSf5pFN39H/uNVl9YjnbMTvwMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMCA0gAMEUCIBHSykBPaW21IJ0lay/6TUIliQ/9qm/qXwdKM5/23mb9AiEAqNxzyTxmP8SCc+LW3L/oiYCiIkFP9S7LbTgy/9c3CkE=',
    },
  ],
});

export const updateTrustedCertificateBody = z.strictObject({
  name: z.string().trim().min(1).max(256).optional(),
  status: z.enum(['ENABLED', 'DISABLED']).optional(),
  autoRegistrationEnabled: booleanish.optional(),
  deviceProfileId: z.string().max(64).nullable().optional(),
});

export const bulkBody = z.strictObject({
  certificates: z.array(createTrustedCertificateBody).min(1).max(1000),
});

export const popBody = z.strictObject({
  proofOfPossessionSignedVerificationCode: z.string().min(1).max(8192).describe('base64 signature of the code'),
});

export const certsParams = z.strictObject({ tenantId: z.string().min(1).max(64) });
export const certParams = certsParams.extend({ fingerprint: z.string().min(1).max(128) });

export type CreateTrustedCertificateInput = z.output<typeof createTrustedCertificateBody>;
export type UpdateTrustedCertificateInput = z.output<typeof updateTrustedCertificateBody>;
export type TrustedCertificateView = Omit<z.output<typeof trustedCertificateSchema>, 'self'>;
