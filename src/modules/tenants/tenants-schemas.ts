import { z } from 'zod';

export const tenantIdPattern = /^[a-z][a-z0-9-]{1,31}$/;

export const tenantSchema = z
  .object({
    id: z.string(),
    company: z.string(),
    domain: z.string(),
    status: z.enum(['ACTIVE', 'SUSPENDED']),
    creationTime: z.string().describe('ISO 8601 UTC'),
    self: z.string(),
  })
  .meta({ id: 'Tenant' });

export const createTenantBody = z.strictObject({
  id: z
    .string()
    .regex(tenantIdPattern, 'must match ^[a-z][a-z0-9-]{1,31}$')
    .optional()
    .describe('Generated (`t` + 8 hex) when absent'),
  company: z.string().trim().min(1).max(200),
  domain: z.string().trim().min(1).max(253),
  adminName: z.string().trim().min(1).max(100).regex(/^[^/:\s]+$/, 'must not contain "/", ":" or spaces'),
  adminPass: z.string().min(8).max(256),
  adminEmail: z.email().max(254).optional(),
}).meta({
  examples: [{ id: 'acme', company: 'ACME', domain: 'acme.example.com', adminName: 'admin', adminPass: 'acme-admin-pass' }],
});

export const updateTenantBody = z.strictObject({
  company: z.string().trim().min(1).max(200).optional(),
  domain: z.string().trim().min(1).max(253).optional(),
  status: z.enum(['ACTIVE', 'SUSPENDED']).optional(),
});

export const tenantParams = z.strictObject({ tenantId: z.string().min(1).max(64) });

export type CreateTenantInput = z.output<typeof createTenantBody>;
export type UpdateTenantInput = z.output<typeof updateTenantBody>;
export type TenantView = Omit<z.output<typeof tenantSchema>, 'self'>;
