import { z } from 'zod';

export const deviceSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    deviceProfileId: z.string(),
    status: z.enum(['ACTIVE', 'DISABLED']),
    createdBy: z.enum(['API', 'AUTO_REGISTRATION']),
    pinCredentials: z.boolean(),
    creationTime: z.string(),
    lastConnectedAt: z.string().optional(),
    self: z.string(),
  })
  .meta({ id: 'Device' });

/** Device names appear in MQTT topics, so the topic separators and wildcards are not allowed. */
export function isValidDeviceName(name: string): boolean {
  return name.length >= 1 && name.length <= 256 && !/[#+\u0000/]/.test(name);
}

const deviceName = z
  .string()
  .trim()
  .refine(isValidDeviceName, 'must be 1-256 characters without "/", "#", "+" or NUL (device names appear in MQTT topics)');

export const createDeviceBody = z.strictObject({
  name: deviceName,
  deviceProfileId: z.string().optional().describe('Defaults to the tenant\'s default profile'),
  status: z.enum(['ACTIVE', 'DISABLED']).optional(),
  pinCredentials: z.boolean().optional().describe('When true only the device\'s listed certificates authenticate it'),
});

export const updateDeviceBody = z.strictObject({
  name: deviceName.optional(),
  deviceProfileId: z.string().optional(),
  status: z.enum(['ACTIVE', 'DISABLED']).optional(),
  pinCredentials: z.boolean().optional(),
});

export const devicesParams = z.strictObject({ tenantId: z.string().min(1).max(64) });
export const deviceParams = devicesParams.extend({ deviceId: z.string().min(1).max(64) });
export const credentialParams = deviceParams.extend({ credentialsId: z.string().min(1).max(128) });

export const devicesQuery = z.object({
  name: z.string().max(256).optional(),
  credentialsId: z.string().max(128).optional(),
});

export const credentialSchema = z
  .object({
    credentialsId: z.string().describe('Lowercase hex SHA-256 of the certificate DER'),
    credentialsType: z.literal('X509_CERTIFICATE'),
    deviceId: z.string(),
    certInPemFormat: z.string(),
    subject: z.string(),
    issuer: z.string(),
    serialNumber: z.string(),
    notBefore: z.string(),
    notAfter: z.string(),
    status: z.enum(['ACTIVE', 'REVOKED']),
    source: z.enum(['API', 'OBSERVED']),
    firstSeenAt: z.string().optional(),
    lastSeenAt: z.string().optional(),
    self: z.string(),
  })
  .meta({ id: 'DeviceCredential' });

export const createCredentialBody = z.strictObject({
  credentialsType: z.literal('X509_CERTIFICATE'),
  credentialsValue: z.string().min(1).max(64 * 1024).describe('The device certificate, PEM (header lines optional)'),
});

export const updateCredentialBody = z.strictObject({
  status: z.enum(['ACTIVE', 'REVOKED']),
});

export type CreateDeviceInput = z.output<typeof createDeviceBody>;
export type UpdateDeviceInput = z.output<typeof updateDeviceBody>;
export type DeviceView = Omit<z.output<typeof deviceSchema>, 'self'>;
export type CredentialView = Omit<z.output<typeof credentialSchema>, 'self'>;
