import { z } from 'zod';
import { ROLES } from '../../plugins/auth.js';

export const userSchema = z
  .object({
    id: z.string(),
    userName: z.string(),
    email: z.string().optional(),
    roles: z.array(z.enum(ROLES)),
    creationTime: z.string(),
    self: z.string(),
  })
  .meta({ id: 'User' });

export const createUserBody = z.strictObject({
  userName: z
    .string()
    .trim()
    .min(1)
    .max(100)
    .regex(/^[^/:\s]+$/, 'must not contain "/", ":" or spaces'),
  password: z.string().min(8).max(256),
  roles: z.array(z.enum(ROLES)).min(1).max(ROLES.length),
  email: z.email().max(254).optional(),
});

export const updateUserBody = z
  .strictObject({
    password: z.string().min(8).max(256).optional().describe('The new password (at least 8 characters); clears the failed-login count'),
    roles: z.array(z.enum(ROLES)).min(1).max(ROLES.length).optional().describe('The new roles, replacing the old ones'),
  })
  .refine((b) => b.password !== undefined || b.roles !== undefined, { message: 'give password, roles or both' });

export const usersParams = z.strictObject({ tenantId: z.string().min(1).max(64) });
export const userParams = usersParams.extend({ userName: z.string().min(1).max(100) });

export type CreateUserInput = z.output<typeof createUserBody>;
export type UpdateUserInput = z.output<typeof updateUserBody>;
export type UserView = Omit<z.output<typeof userSchema>, 'self'>;
